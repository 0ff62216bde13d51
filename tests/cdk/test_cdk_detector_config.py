"""The detector's inputs: the Flink zip it deploys and the property groups the job reads."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cdk.detector import job_property_groups
from cdk.flink_artifact import RUN_OPTIONS, FlinkArtifactError, check_flink_zip, resolve_flink_zip
from cdk.settings import DeploySettings
from flink_app.config import ConfigError, JobConfig, SourceKind
from tests.cdk.synthesis import stand_in_flink_zip

# What CloudFormation tokens look like to Python before synthesis.
STREAM_TOKEN = "${Token[TOKEN.101]}"
TABLE_TOKEN = "${Token[TOKEN.202]}"
REGION_TOKEN = "${Token[AWS.Region.7]}"


def write_zip(path: Path, entries: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for entry in entries:
            archive.writestr(entry, "x")
    return path


# --- the zip -------------------------------------------------------------------------------------


def test_an_explicit_zip_is_used_as_is(tmp_path: Path) -> None:
    zip_path = stand_in_flink_zip(tmp_path)
    assert resolve_flink_zip(zip_path) == zip_path.resolve()


def test_a_missing_explicit_zip_fails_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FlinkArtifactError, match=r"run `make package`.*-c flinkZip=PATH"):
        resolve_flink_zip(tmp_path / "absent.zip")


def test_a_missing_default_zip_is_built_with_the_build_command(tmp_path: Path) -> None:
    # Given no zip at the default path and a build command that produces it
    default = tmp_path / "dist" / "pulse-flink.zip"
    entries = ", ".join(repr(entry) for entry in RUN_OPTIONS.values())
    build = [
        sys.executable,
        "-c",
        "import pathlib, zipfile; p = pathlib.Path('dist/pulse-flink.zip'); p.parent.mkdir();"
        f"z = zipfile.ZipFile(p, 'w'); [z.writestr(e, 'x') for e in ({entries},)]; z.close()",
    ]
    # When the zip is resolved
    resolved = resolve_flink_zip(None, build_command=build, cwd=tmp_path, default=default)
    # Then the build ran in the project directory and its zip is used
    assert resolved == default and default.exists()


def test_a_failing_build_is_reported_with_its_exit_code(tmp_path: Path) -> None:
    with pytest.raises(FlinkArtifactError, match=r"failed \(exit 3\)"):
        resolve_flink_zip(
            None,
            build_command=[sys.executable, "-c", "raise SystemExit(3)"],
            cwd=tmp_path,
            default=tmp_path / "dist" / "pulse-flink.zip",
        )


def test_building_can_be_switched_off(tmp_path: Path) -> None:
    with pytest.raises(FlinkArtifactError, match="does not exist"):
        resolve_flink_zip(
            None,
            build_if_missing=False,
            build_command=["false"],
            cwd=tmp_path,
            default=tmp_path / "dist" / "pulse-flink.zip",
        )


def test_a_zip_without_the_connector_jar_is_refused(tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path / "pulse-flink.zip", ["main.py", "lib/other.jar"])
    with pytest.raises(FlinkArtifactError, match=r"lacks lib/pulse-connectors\.jar"):
        check_flink_zip(zip_path)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    not_zip = tmp_path / "pulse-flink.zip"
    not_zip.write_text("hello")
    with pytest.raises(FlinkArtifactError, match="not a zip file"):
        check_flink_zip(not_zip)


# --- the job's property groups -------------------------------------------------------------------


def groups_for(settings: DeploySettings) -> list[dict[str, Any]]:
    return job_property_groups(settings, STREAM_TOKEN, TABLE_TOKEN, REGION_TOKEN)


def test_property_groups_carry_stream_table_and_region_tokens() -> None:
    groups = groups_for(DeploySettings())
    config = JobConfig.from_property_groups(groups)
    assert config.source.kind is SourceKind.KINESIS
    assert (config.source.stream_arn, config.source.region) == (STREAM_TOKEN, REGION_TOKEN)
    assert (config.sink.table_name, config.sink.region) == (TABLE_TOKEN, REGION_TOKEN)
    assert config.source.endpoint is None and config.sink.endpoint is None
    config.check_runnable()


def test_job_properties_from_context_are_validated_and_kept() -> None:
    settings = DeploySettings.model_validate(
        {"jobProperties": {"pulse.detect": {"spike.ratio": "4.5"}, "pulse.source": {"init.position": "TRIM_HORIZON"}}}
    )
    config = JobConfig.from_property_groups(groups_for(settings))
    assert config.detect.spike_ratio == 4.5
    assert config.source.start_position.value == "TRIM_HORIZON"
    assert config.source.stream_arn == STREAM_TOKEN


def test_the_stack_owns_where_the_job_reads_and_writes() -> None:
    # Given context that tries to point the job at a local file and an emulator
    settings = DeploySettings.model_validate(
        {
            "jobProperties": {
                "pulse.source": {"kind": "filesystem", "path": "/tmp/x", "aws.endpoint": "http://127.0.0.1:5000"},
                "pulse.sink": {"kind": "jsonl", "path": "/tmp/y"},
            }
        }
    )
    # Then the deployed job still reads this stream and writes this table, on AWS's endpoints
    by_id = {group["PropertyGroupId"]: group["PropertyMap"] for group in groups_for(settings)}
    assert "aws.endpoint" not in by_id["pulse.source"] and "path" not in by_id["pulse.source"]
    assert "kind" not in by_id["pulse.source"] or by_id["pulse.source"]["kind"] == "kinesis"
    assert by_id["pulse.source"]["stream.arn"] == STREAM_TOKEN
    assert "kind" not in by_id["pulse.sink"] or by_id["pulse.sink"]["kind"] == "dynamodb"
    assert by_id["pulse.sink"]["table.name"] == TABLE_TOKEN


def test_an_unknown_job_property_fails_naming_it() -> None:
    settings = DeploySettings.model_validate({"jobProperties": {"pulse.detect": {"spike.zz": "4"}}})
    with pytest.raises(ConfigError, match=r"pulse.detect: unknown key 'spike.zz'"):
        groups_for(settings)


def test_checkpoint_interval_is_the_one_managed_flink_uses() -> None:
    settings = DeploySettings.model_validate({"flinkCheckpointIntervalS": 30})
    config = JobConfig.from_property_groups(groups_for(settings))
    assert config.job.checkpoint_interval_s == 30
    assert config.job.parallelism is None  # Managed Flink's parallelism and autoscaling decide

import json
import re
from pathlib import Path

import pytest

from flink_app.config import ConfigError, JobConfig, SourceKind


def test_defaults_work_and_render_no_groups() -> None:
    config = JobConfig()
    assert config.windows.route_size_s % config.windows.route_slide_s == 0
    assert config.to_property_groups() == []


def test_property_groups_round_trip() -> None:
    groups = [
        {
            "PropertyGroupId": "pulse.source",
            "PropertyMap": {"stream.arn": "arn:aws:kinesis:us-east-1:1:stream/s", "init.position": "TRIM_HORIZON"},
        },
        {"PropertyGroupId": "pulse.windows", "PropertyMap": {"route.size.s": "30", "route.slide.s": "5"}},
        {"PropertyGroupId": "kinesis.analytics.flink.run.options", "PropertyMap": {"python": "main.py"}},
    ]
    config = JobConfig.from_property_groups(groups)
    assert config.source.kind is SourceKind.KINESIS
    assert config.windows.route_size_s == 30
    assert JobConfig.from_property_groups(config.to_property_groups()) == config


@pytest.mark.parametrize(
    ("groups", "named"),
    [
        (
            [{"PropertyGroupId": "pulse.windows", "PropertyMap": {"route.sise.s": "30"}}],
            "pulse.windows: unknown key 'route.sise.s'",
        ),
        (
            [{"PropertyGroupId": "pulse.windows", "PropertyMap": {"route.size.s": "many"}}],
            "pulse.windows: route.size.s",
        ),
        ([{"PropertyGroupId": "pulse.bogus", "PropertyMap": {}}], "unknown property group 'pulse.bogus'"),
    ],
)
def test_errors_name_the_group_and_key(groups: list[dict[str, object]], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        JobConfig.from_property_groups(groups)


def test_kinesis_needs_a_stream_arn_to_run() -> None:
    with pytest.raises(ConfigError, match=r"stream\.arn"):
        JobConfig().check_runnable()


def test_load_reads_a_local_file_of_the_managed_flink_shape(tmp_path: Path) -> None:
    file = tmp_path / "props.json"
    file.write_text(json.dumps([{"PropertyGroupId": "pulse.sink", "PropertyMap": {"table.name": "t-anoms"}}]))
    assert JobConfig.load(file).sink.table_name == "t-anoms"
    with pytest.raises(ConfigError, match="does not exist"):
        JobConfig.load(tmp_path / "missing.json")

"""`make package`'s zip: the Managed Flink layout with the one Maven-built connector JAR."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pulse_local import managed_flink
from pulse_local.emulator import Emulator, create_anomaly_table, create_stream
from tests.conftest import ROOT, skip_unless_ci, unique_name
from tests.flink.conftest import DETECT, START_MS, WINDOWS, incident, poll
from tests.streams import put as put_events

RUN_OPTIONS_GROUP = managed_flink.RUN_OPTIONS_GROUP

pytestmark = [pytest.mark.slow]

FACTORY_SERVICES = "META-INF/services/org.apache.flink.table.factories.Factory"


@pytest.fixture(scope="module")
def application_zip(connector_jar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make package`'s zip: the command it runs, into a directory of the test's."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pulse_build.flink_zip", "--jar", str(connector_jar), "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return out / "pulse-flink.zip"


def test_the_zip_holds_the_entry_file_the_job_its_dependencies_and_one_connector_jar(
    application_zip: Path, connector_jar: Path
) -> None:
    # given `make package`'s zip (the fixture), then: the layout the run options point at
    with zipfile.ZipFile(application_zip) as archive:
        names = archive.namelist()
        jars = [name for name in names if name.endswith(".jar")]
        assert "main.py" in names
        assert {"flink_app/__init__.py", "flink_app/cli.py", "flink_app/detect/engine.py"} <= set(names)
        assert jars == [f"lib/{connector_jar.name}"]
        assert any(name.startswith("deps/pydantic/") for name in names)
        assert any(name.startswith("deps/pydantic_core/") and name.endswith(".so") for name in names)
        assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n or n.startswith("tests/")]
        jar = zipfile.ZipFile(io.BytesIO(archive.read(jars[0])))

    # and the JAR registers both table factories
    factories = [
        line.strip()
        for line in jar.read(FACTORY_SERVICES).decode().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert any("kinesis" in f.lower() for f in factories), factories
    assert any("dynamodb" in f.lower() for f in factories), factories
    assert not [n for n in jar.namelist() if n.upper().endswith((".SF", ".DSA", ".RSA"))]


# --- the zip as Managed Flink runs it ----------------------------------------------------------------

# Test-sized windows and detectors, given to the stack as a user would (context `jobProperties`). The
# idle timeout is longer than the test: a cold start stalls for seconds at a time, and the idle-stream
# estimate of event time would report silences that depend on how slow this machine is right now.
JOB_PROPERTIES = {
    "pulse.source": {"init.position": "TRIM_HORIZON"},
    "pulse.windows": {**WINDOWS, "idle.timeout.s": "3600"},
    "pulse.detect": DETECT,
    "pulse.job": {"python.bundle.time.ms": "100"},
}


def synthesized_property_groups(application_zip: Path, outdir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Flink application's property groups in the stack's template, and the template."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk import App

    from cdk.synth import build_app, project_context

    context = {
        **project_context(),
        "stage": "zip",
        "flinkZip": str(application_zip),
        "jobProperties": json.dumps(JOB_PROPERTIES),
        "nag": "false",
    }
    app = App(outdir=str(outdir), context=context)
    build_app(app)
    app.synth()
    template = json.loads((outdir / "pulse-zip.template.json").read_text())
    [application] = [r for r in template["Resources"].values() if r["Type"] == "AWS::KinesisAnalyticsV2::Application"]
    groups = application["Properties"]["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    return groups, template


def resolved(
    groups: list[dict[str, Any]], template: dict[str, Any], emulator: Emulator, stream_arn: str, table: str
) -> list[dict[str, Any]]:
    """The template's groups with its references resolved to emulator resources, and the emulator's
    endpoint added to the source and the sink (the one thing a deployed job has no need of)."""
    resources = template["Resources"]

    def value(raw: Any) -> str:
        if isinstance(raw, str):
            return raw
        if raw == {"Ref": "AWS::Region"}:
            return emulator.region
        if "Fn::GetAtt" in raw and resources[raw["Fn::GetAtt"][0]]["Type"] == "AWS::Kinesis::Stream":
            return stream_arn
        if "Ref" in raw and resources[raw["Ref"]]["Type"] == "AWS::DynamoDB::Table":
            return table
        raise AssertionError(f"unexpected reference in the Flink application's properties: {raw}")

    out = []
    for group in groups:
        properties = {key: value(raw) for key, raw in group["PropertyMap"].items()}
        if group["PropertyGroupId"] in ("pulse.source", "pulse.sink"):
            properties["aws.endpoint"] = emulator.endpoint
        out.append({"PropertyGroupId": group["PropertyGroupId"], "PropertyMap": properties})
    return out


@pytest.mark.flink
@pytest.mark.integration
def test_the_zip_runs_as_managed_flink_runs_it_against_the_emulator(
    application_zip: Path, emulator: Emulator, tmp_path: Path
) -> None:
    try:
        managed_flink.find_python()
    except managed_flink.ManagedRuntimeError as error:
        skip_unless_ci(str(error))
    # given: the stack synthesized with the zip, its application's property groups pointed at the emulator
    groups, template = synthesized_property_groups(application_zip, tmp_path / "cdk.out")
    assert {g["PropertyGroupId"] for g in groups} >= {RUN_OPTIONS_GROUP, "pulse.source", "pulse.sink"}
    stream_arn = create_stream(emulator, unique_name("pulse-zip"), shards=1)
    table = unique_name("pulse-anomalies")
    create_anomaly_table(emulator, table)
    route = "/api/r1/{item_id}"
    put_events(emulator, stream_arn, incident(START_MS, 40, route, spike_at_s=30))

    # when: the zip is unpacked and its main.py started by the runtime's Python with its lib/ JAR
    log = tmp_path / "managed-flink.log"
    [application] = [r for r in template["Resources"].values() if r["Type"] == "AWS::KinesisAnalyticsV2::Application"]
    flink_settings = application["Properties"]["ApplicationConfiguration"]["FlinkApplicationConfiguration"]
    parallelism = int(flink_settings["ParallelismConfiguration"]["Parallelism"])
    process = managed_flink.start(
        application_zip,
        resolved(groups, template, emulator, stream_arn, table),
        tmp_path,
        log_path=log,
        parallelism=parallelism,
    )
    try:

        def spike() -> list[dict[str, Any]] | None:
            if process.poll() is not None:
                pytest.fail(f"the job exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            items = emulator.client("dynamodb").scan(TableName=table)["Items"]
            kinds = [{i["kind"]["S"], *i.get("kinds", {}).get("S", "").split(",")} for i in items]
            return [i for i, its in zip(items, kinds, strict=True) if "spike" in its] or None

        [item] = poll(spike, 600, f"the spike item from the zip's job (logs: {tmp_path / 'log'}, {log})")
    finally:
        managed_flink.stop(process)

    # then: the job that ran is the zip's, not the working tree's
    assert item["pk"]["S"] == f"route#{route}"
    assert (tmp_path / "app" / "lib" / "pulse-connectors.jar").is_file()
    assert str(ROOT / "flink_app") not in log.read_text()

"""CDK test fixtures: one synthesis per configuration per session (see synthesis.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cdk.synthesis import STAGE, VARIANT_CONTEXT, Synthesis, stand_in_flink_zip, validation_findings

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App

from cdk import PROJECT_ROOT
from cdk.synth import build_app, project_context


@pytest.fixture(scope="session")
def flink_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stand_in_flink_zip(tmp_path_factory.mktemp("flink-zip"))


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory, flink_zip: Path) -> Synthesis:
    """The default configuration (stage "test"), built in-process with build_app as app.py does."""
    outdir = tmp_path_factory.mktemp("cdk-default")
    app = App(outdir=str(outdir), context={**project_context(), "stage": STAGE, "flinkZip": str(flink_zip)})
    build_app(app)
    try:
        app.synth()
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
    template = json.loads((outdir / f"pulse-{STAGE}.template.json").read_text())
    return Synthesis(template=template, findings=validation_findings(outdir), outdir=outdir, app=app)


@pytest.fixture(scope="session")
def variant_synth(tmp_path_factory: pytest.TempPathFactory, flink_zip: Path) -> Synthesis:
    """Every option switched on, through the real entry point: `python app.py -c key=value ...`."""
    workdir = tmp_path_factory.mktemp("cdk-variant")
    arguments = [
        item
        for key, value in {**VARIANT_CONTEXT, "flinkZip": str(flink_zip)}.items()
        for item in ("-c", f"{key}={value}")
    ]
    # CDK_OUTDIR, the CDK's own convention for where an app writes, is honoured by app.py too.
    outdir = workdir / "templates"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CDK_")}
    environment["CDK_OUTDIR"] = str(outdir)
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "app.py"), *arguments],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    template_file = outdir / "pulse-prod.template.json"
    assert template_file.exists(), f"app.py wrote no template (exit {result.returncode}):\n{result.stderr[-3000:]}"
    synthesis = Synthesis(
        template=json.loads(template_file.read_text()), findings=validation_findings(outdir), outdir=outdir
    )
    if result.returncode != 0 and not synthesis.findings:
        pytest.fail(f"app.py failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return synthesis

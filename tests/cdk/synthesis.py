"""Synthesis helpers for the CDK tests: a synthesized configuration, nag findings, a stand-in Flink zip.

The stand-in zip only has the two entries the run options name (``main.py`` and
``lib/pulse-connectors.jar``) with placeholder bytes: template tests check what the stack
declares, not the job; the real zip is `make package`'s. It lives in a temporary directory and is
passed with the ``flinkZip`` context key, so `dist/` is never touched.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App

from cdk.flink_artifact import RUN_OPTIONS

STAGE = "test"
NAG_PLUGIN = "AwsSolutions"
ANNOTATIONS_PLUGIN = "Construct Annotations"
# The second configuration: everything optional switched on, through `python app.py -c ...`.
VARIANT_CONTEXT = {
    "stage": "prod",
    "alarmEmail": "ops@example.com",
    "streamShards": "2",
    "streamRetentionHours": "48",
    "lambdaReservedConcurrency": "5",
    "lambdaProvisionedConcurrency": "2",
    "monitoringAuth": "none",
    "retainData": "false",
    "flinkParallelism": "2",
    "flinkAutoscaling": "false",
    "jobProperties": json.dumps({"pulse.detect": {"spike.ratio": "5"}}),
}


@dataclass
class Synthesis:
    """One synthesized configuration: the template, nag's unacknowledged findings, the construct tree."""

    template: dict[str, Any]
    findings: list[str]
    outdir: Path
    app: App | None = None

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource for name, resource in self.template["Resources"].items() if resource["Type"] == resource_type
        }

    def only(self, resource_type: str) -> dict[str, Any]:
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.values()))

    def logical_id(self, resource_type: str) -> str:
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found))


def validation_findings(outdir: Path, plugin: str = NAG_PLUGIN) -> list[str]:
    """One plugin's violations in the validation report, as ``rule at path`` lines."""
    report = outdir / "policy-validation-report.json"
    if not report.exists():
        return [f"no validation report in {outdir}"]
    findings = []
    for plugin_report in json.loads(report.read_text()).get("pluginReports", []):
        if plugin_report.get("summary", {}).get("pluginName") != plugin:
            continue
        for violation in plugin_report.get("violations", []):
            for resource in violation.get("violatingResources", []):
                findings.append(f"{violation['ruleName']} at {resource['constructPath']}")
    return findings


def stand_in_flink_zip(directory: Path) -> Path:
    path = directory / "pulse-flink.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for entry in RUN_OPTIONS.values():
            archive.writestr(entry, f"stand-in for {entry} (template tests only)\n")
    return path

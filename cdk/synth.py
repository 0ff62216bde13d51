"""Builds the app from its context: settings, the two code artifacts, the stack, and cdk-nag."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import App

from cdk import PROJECT_ROOT
from cdk.flink_artifact import resolve_flink_zip
from cdk.lambda_bundle import build_bundle
from cdk.nag import enable_checks
from cdk.settings import DeploySettings, DeploySettingsError
from cdk.stack import PulseStack

# Set by the cdk CLI when it runs the app; it then passes cdk.json's context itself.
CLI_CONTEXT_VARIABLE = "CDK_CONTEXT_JSON"


def build_app(app: App) -> PulseStack:
    """Add the Pulse stack that ``app``'s context describes (and the nag checks, unless ``nag=false``)."""
    DeploySettings.check_unknown(app.node.get_all_context())
    settings = DeploySettings.from_context(app.node.try_get_context)
    flink_zip = resolve_flink_zip(settings.flink_zip, build_if_missing=settings.build_flink_zip)
    stack = PulseStack(app, settings, lambda_bundle=build_bundle(), flink_zip=flink_zip)
    if settings.nag:
        enable_checks(app)
    return stack


def project_context(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """cdk.json's context (feature flags, report format) merged with cdk.context.json, as the CLI does."""
    context: dict[str, Any] = {}
    for name in ("cdk.json", "cdk.context.json"):
        path = root / name
        if path.exists():
            data = json.loads(path.read_text())
            context.update(data.get("context", {}) if name == "cdk.json" else data)
    return context


STANDALONE_OUTDIR = "cdk.out"
OUTDIR_VARIABLE = "CDK_OUTDIR"  # where a CDK app writes: set by the cdk CLI, or by whoever runs app.py


def standalone_outdir(environ: Mapping[str, str]) -> str:
    """Where ``python app.py`` writes: $CDK_OUTDIR, as the CDK's own apps do, else ``cdk.out``."""
    return environ.get(OUTDIR_VARIABLE) or STANDALONE_OUTDIR


def standalone_context(
    argv: Sequence[str], environ: Mapping[str, str], root: Path = PROJECT_ROOT
) -> dict[str, Any] | None:
    """Context for ``python app.py [-c key=value ...]``; None when the cdk CLI already supplies it."""
    if CLI_CONTEXT_VARIABLE in environ:
        if argv:
            raise DeploySettingsError("under the cdk CLI pass context as `cdk synth -c key=value`, not to app.py")
        return None
    context = project_context(root)
    arguments = list(argv)
    while arguments:
        flag = arguments.pop(0)
        if flag not in ("-c", "--context") or not arguments or "=" not in arguments[0]:
            raise DeploySettingsError(f"usage: python app.py [-c key=value ...] (got {flag!r})")
        key, value = arguments.pop(0).split("=", 1)
        context[key] = value
    return context

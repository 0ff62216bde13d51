#!/usr/bin/env python3
"""The Pulse CDK app: `python app.py [-c key=value ...]` or `npx cdk synth|deploy|destroy` (cdk.json runs this file).

Settings come from CDK context (`-c stage=prod -c alarmEmail=ops@example.com`); see docs/deploy.md.
"""

from __future__ import annotations

import os
import sys

# Before aws_cdk is imported: its jsii runtime warns about Node 20 when it starts.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App

from cdk.flink_artifact import FlinkArtifactError
from cdk.lambda_bundle import BundleError
from cdk.settings import DeploySettingsError
from cdk.synth import build_app, standalone_context, standalone_outdir


def main(argv: list[str]) -> int:
    try:
        context = standalone_context(argv, os.environ)
        # Run by hand, the app writes where the CLI would (the CLI passes its own outdir).
        app = App(context=context, outdir=standalone_outdir(os.environ) if context is not None else None)
        build_app(app)
    except (DeploySettingsError, BundleError, FlinkArtifactError) as error:
        print(f"pulse: {error}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

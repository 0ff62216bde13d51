"""Pulse infrastructure as code: one construct per concern, composed in :class:`cdk.stack.PulseStack`.

``app.py`` reads the CDK context into :class:`cdk.settings.DeploySettings` and builds the stack; see
``docs/deploy.md``.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

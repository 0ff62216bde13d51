"""cdk-nag (AwsSolutions) wiring and acknowledgements that always carry a written reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

MIN_REASON_CHARS = 40
ACKNOWLEDGED_METADATA = "aws:cdk:acknowledged-rules"


def enable_checks(app: App) -> None:
    """Run the AwsSolutions pack on every synth; an unacknowledged finding fails synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one nag finding (``AwsSolutions-IAM5[Resource::...]`` style) on ``construct``."""
    if len(reason.strip()) < MIN_REASON_CHARS:
        raise ValueError(f"acknowledging {rule} needs a reason of at least {MIN_REASON_CHARS} characters")
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))

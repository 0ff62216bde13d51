"""cdk-nag (AwsSolutions) and cfn-lint on the synthesized templates."""

from __future__ import annotations

import json

import pytest
from cfnlint.api import lint

from cdk.nag import ACKNOWLEDGED_METADATA, MIN_REASON_CHARS
from tests.cdk.synthesis import ANNOTATIONS_PLUGIN, Synthesis, validation_findings

pytestmark = pytest.mark.slow  # uses the session's synthesis (~15-20 s once)

# Regions the stack is linted for: where Managed Flink runs and CloudFormation knows every resource
# type used (newer regions lack AWS::KinesisAnalyticsV2::ApplicationCloudWatchLoggingOption).
LINT_REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1", "ap-southeast-2"]
# Every acknowledged nag finding, reviewed: a new one must be added here on purpose.
EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-L1",
    "AwsSolutions-APIG4",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:*]",
}


def test_default_stack_has_no_unacknowledged_nag_findings(default_synth: Synthesis) -> None:
    assert default_synth.findings == []
    # nor any other synthesis warning
    assert validation_findings(default_synth.outdir, ANNOTATIONS_PLUGIN) == []


def test_variant_stack_has_no_unacknowledged_nag_findings(variant_synth: Synthesis) -> None:
    assert variant_synth.findings == []


def test_every_acknowledgement_is_expected_and_explained(default_synth: Synthesis) -> None:
    # Given every acknowledgement recorded in the construct tree
    assert default_synth.app is not None
    acknowledged: dict[str, str] = {}
    for construct in default_synth.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == ACKNOWLEDGED_METADATA:
                acknowledged.update({rule.split("::", 1)[-1]: reason for rule, reason in entry.data.items()})
    # Then each one is on the reviewed list and carries a real reason
    assert set(acknowledged) == EXPECTED_ACKNOWLEDGEMENTS
    for rule, reason in acknowledged.items():
        assert len(reason) >= MIN_REASON_CHARS, f"{rule}: reason too short: {reason!r}"


@pytest.mark.parametrize("configuration", ["default_synth", "variant_synth"])
def test_cfn_lint_finds_no_errors(configuration: str, request: pytest.FixtureRequest) -> None:
    synthesis: Synthesis = request.getfixturevalue(configuration)
    matches = lint(json.dumps(synthesis.template), regions=LINT_REGIONS)
    errors = [f"{match.rule.id} {match.message}" for match in matches if match.rule.id.startswith("E")]
    assert errors == []
    # Known warnings only: W3005, CDK's explicit DependsOn on the Lambda role it also references.
    assert {match.rule.id for match in matches} <= {"W3005"}

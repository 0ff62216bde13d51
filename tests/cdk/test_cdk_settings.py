"""Deployment settings from CDK context, and the context `python app.py` builds for itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdk.settings import DeploySettings, DeploySettingsError
from cdk.synth import standalone_context


def settings_from(context: dict[str, object]) -> DeploySettings:
    return DeploySettings.from_context(context.get)


def test_defaults_deploy_a_small_dev_system() -> None:
    settings = settings_from({})
    assert settings.stage == "dev"
    assert settings.prefix == "pulse-dev"
    assert settings.stream_shards is None  # on-demand
    assert settings.lambda_reserved_concurrency is None
    assert settings.monitoring_auth == "iam"
    assert settings.retains_data is True


def test_data_is_retained_unless_told_otherwise_whatever_the_stage() -> None:
    assert settings_from({"stage": "dev"}).retains_data is True
    assert settings_from({"stage": "prod", "retainData": "false"}).retains_data is False
    assert settings_from({"stage": "staging", "retainData": True}).retains_data is True


def test_command_line_strings_become_typed_values() -> None:
    # Given context values as `cdk synth -c key=value` passes them: strings
    settings = settings_from(
        {
            "streamShards": "4",
            "lambdaMemoryMb": "1024",
            "flinkAutoscaling": "false",
            "apiRateLimit": "12.5",
            "lambdaReservedConcurrency": "none",
            "jobProperties": json.dumps({"pulse.detect": {"spike.z": 5, "warmup.windows": "3"}}),
        }
    )
    # Then they are converted, "none" unsets an optional value, property values become strings
    assert settings.stream_shards == 4
    assert settings.lambda_memory_mb == 1024
    assert settings.flink_autoscaling is False
    assert settings.api_rate_limit == 12.5
    assert settings.lambda_reserved_concurrency is None
    assert settings.job_properties == {"pulse.detect": {"spike.z": "5", "warmup.windows": "3"}}


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"streamShards": "0"}, "streamShards"),
        ({"stage": "Prod_1"}, "stage"),
        ({"logRetentionDays": "10"}, "logRetentionDays"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        ({"monitoringAuth": "public"}, "monitoringAuth"),
        ({"lambdaTimeoutS": "30"}, "lambdaTimeoutS"),
        ({"flinkLogLevel": "TRACE"}, "flinkLogLevel"),
    ],
)
def test_an_invalid_value_fails_naming_its_context_key(context: dict[str, object], key: str) -> None:
    with pytest.raises(DeploySettingsError, match=rf"context {key}\b"):
        settings_from(context)


def test_none_is_a_value_of_monitoring_auth_not_an_unset_marker() -> None:
    assert settings_from({"monitoringAuth": "none"}).monitoring_auth == "none"


def test_a_mistyped_context_key_is_refused_naming_it() -> None:
    with pytest.raises(DeploySettingsError, match=r"unknown context key\(s\) alarmEmial;"):
        DeploySettings.check_unknown(["stage", "alarmEmial", "@aws-cdk/core:newStyleStackSynthesis"])


def test_toolkit_context_keys_are_not_settings_but_allowed() -> None:
    DeploySettings.check_unknown(
        [
            "@aws-cdk/aws-lambda:recognizeVersionProps",
            "aws:cdk:enable-path-metadata",
            "cli-telemetry",
            "availability-zones:account=123456789012:region=us-east-1",
            *DeploySettings.context_keys(),
        ]
    )


def test_provisioned_concurrency_cannot_exceed_reserved() -> None:
    with pytest.raises(DeploySettingsError, match="lambdaProvisionedConcurrency cannot exceed"):
        settings_from({"lambdaReservedConcurrency": "2", "lambdaProvisionedConcurrency": "3"})


def test_job_properties_must_be_json() -> None:
    with pytest.raises(DeploySettingsError, match="context jobProperties: not valid JSON"):
        settings_from({"jobProperties": "{pulse.detect: 1"})


def test_standalone_run_reads_cdk_json_and_command_line_context(tmp_path: Path) -> None:
    # Given a project with feature flags in cdk.json and a cdk.context.json
    (tmp_path / "cdk.json").write_text(json.dumps({"app": "x", "context": {"@aws-cdk/flag": True, "stage": "a"}}))
    (tmp_path / "cdk.context.json").write_text(json.dumps({"cached-lookup": "v"}))
    # When app.py runs by hand with -c arguments
    context = standalone_context(["-c", "stage=b", "--context", "alarmEmail=x@y.io"], environ={}, root=tmp_path)
    # Then the flags, the cached context and the arguments (last wins) are all there
    assert context == {"@aws-cdk/flag": True, "stage": "b", "cached-lookup": "v", "alarmEmail": "x@y.io"}


def test_under_the_cli_the_app_takes_its_context_from_the_cli(tmp_path: Path) -> None:
    assert standalone_context([], environ={"CDK_CONTEXT_JSON": "{}"}, root=tmp_path) is None


@pytest.mark.parametrize("argv", [["stage=b"], ["-c"], ["-c", "stage"]])
def test_malformed_app_arguments_are_refused(argv: list[str], tmp_path: Path) -> None:
    with pytest.raises(DeploySettingsError, match=r"usage: python app\.py"):
        standalone_context(argv, environ={}, root=tmp_path)

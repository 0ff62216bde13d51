"""Deployment settings: one typed object read from CDK context values.

Every setting is a context key (``cdk synth -c streamShards=2``, or ``"context"`` in ``cdk.json``)
with a default that deploys a small, secure system. Values given on the command line arrive as
strings; they are converted and validated here, and a bad value fails synthesis with an error that
names the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from aws_cdk import aws_logs as logs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# CloudWatch Logs accepts only these retention periods (days).
_RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
LOG_RETENTION_DAYS = tuple(_RETENTION)
_NONE_WORDS = {"", "none", "null"}
# Context keys of the CDK toolkit itself (feature flags start with "@", lookups and aws:cdk:* contain ":").
_TOOLKIT_KEYS = {"cli-telemetry", "acknowledged-issue-numbers"}


class DeploySettingsError(ValueError):
    """A context value is invalid; the message names the context key."""


class DeploySettings(BaseModel):
    """What a deployment may vary; field aliases are the CDK context keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    stage: str = Field("dev", pattern=r"^[a-z][a-z0-9-]{1,15}$", alias="stage")
    # None: an on-demand stream; a number: a provisioned stream with that many shards.
    stream_shards: int | None = Field(None, ge=1, le=500, alias="streamShards")
    stream_retention_hours: int = Field(24, ge=24, le=8760, alias="streamRetentionHours")
    lambda_memory_mb: int = Field(512, ge=128, le=10240, alias="lambdaMemoryMb")
    # API Gateway gives up on an integration after 30 s.
    lambda_timeout_s: int = Field(10, ge=1, le=29, alias="lambdaTimeoutS")
    lambda_reserved_concurrency: int | None = Field(None, ge=1, alias="lambdaReservedConcurrency")
    lambda_provisioned_concurrency: int | None = Field(None, ge=1, alias="lambdaProvisionedConcurrency")
    api_rate_limit: float = Field(100.0, gt=0, alias="apiRateLimit")
    api_burst_limit: int = Field(200, ge=1, alias="apiBurstLimit")
    # "iam": /monitoring/* needs SigV4-signed requests (it serves client IPs); "none": public like the rest.
    monitoring_auth: Literal["iam", "none"] = Field("iam", alias="monitoringAuth")
    log_retention_days: int = Field(30, alias="logRetentionDays")
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", alias="alarmEmail")
    flink_parallelism: int = Field(1, ge=1, le=256, alias="flinkParallelism")
    flink_parallelism_per_kpu: int = Field(1, ge=1, le=8, alias="flinkParallelismPerKpu")
    flink_autoscaling: bool = Field(True, alias="flinkAutoscaling")
    flink_checkpoint_interval_s: int = Field(60, ge=1, le=3600, alias="flinkCheckpointIntervalS")
    flink_log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = Field("INFO", alias="flinkLogLevel")
    # The Managed Flink zip; default dist/pulse-flink.zip (built by `make package` when missing).
    flink_zip: str | None = Field(None, alias="flinkZip")
    build_flink_zip: bool = Field(True, alias="buildFlinkZip")
    # Extra job property groups, e.g. {"pulse.detect": {"spike.ratio": "5"}}; validated by flink_app's JobConfig.
    job_properties: dict[str, dict[str, str]] = Field(default_factory=dict, alias="jobProperties")
    # Keep the stream, table and logs when the stack is deleted, and protect the table from deletion;
    # default: retain, whatever the stage (set false for throw-away stages).
    retain_data: bool = Field(True, alias="retainData")
    nag: bool = Field(True, alias="nag")

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return value

    @field_validator("job_properties", mode="before")
    @classmethod
    def _stringify_properties(cls, value: Any) -> Any:
        # Managed Flink property values are strings; accept numbers and booleans from cdk.json.
        if isinstance(value, Mapping):
            return {
                group: {key: _as_property(item) for key, item in (keys or {}).items()}
                if isinstance(keys, Mapping)
                else keys
                for group, keys in value.items()
            }
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeploySettings:
        if (
            self.lambda_provisioned_concurrency
            and self.lambda_reserved_concurrency
            and self.lambda_provisioned_concurrency > self.lambda_reserved_concurrency
        ):
            raise ValueError("lambdaProvisionedConcurrency cannot exceed lambdaReservedConcurrency")
        return self

    @property
    def prefix(self) -> str:
        """Resource name prefix: ``pulse-<stage>``."""
        return f"pulse-{self.stage}"

    @property
    def log_retention(self) -> logs.RetentionDays:
        return logs.RetentionDays[_RETENTION[self.log_retention_days]]

    @property
    def retains_data(self) -> bool:
        return self.retain_data

    @classmethod
    def context_keys(cls) -> list[str]:
        """Every context key this object reads."""
        return [field.alias or name for name, field in cls.model_fields.items()]

    @classmethod
    def check_unknown(cls, context_keys: Iterable[str]) -> None:
        """Fail on a context key that is neither a setting nor the toolkit's (a typo would be ignored)."""
        known = set(cls.context_keys()) | _TOOLKIT_KEYS
        unknown = sorted(key for key in context_keys if key not in known and not key.startswith("@") and ":" not in key)
        if unknown:
            raise DeploySettingsError(
                f"unknown context key(s) {', '.join(unknown)}; settings are: {', '.join(sorted(cls.context_keys()))}"
            )

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> DeploySettings:
        """Read every key with ``get`` (``app.node.try_get_context``); errors name the key."""
        raw: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            key = field.alias or name
            value = get(key)
            if value is None:
                continue
            # "-c lambdaReservedConcurrency=none" unsets an optional value; "none" stays a word elsewhere.
            if field.default is None and isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
                continue
            if key == "jobProperties" and isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as error:
                    raise DeploySettingsError(f"context jobProperties: not valid JSON ({error})") from None
            raw[key] = value
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            raise DeploySettingsError(_describe(error)) from None


def _as_property(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _describe(error: ValidationError) -> str:
    aliases = {name: field.alias or name for name, field in DeploySettings.model_fields.items()}
    problems = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        key = ".".join([aliases.get(location[0], location[0]), *location[1:]]) if location else "(settings)"
        problems.append(f"context {key}: {item['msg']}")
    return "invalid deployment settings: " + "; ".join(problems)

"""The job's configuration: one typed object, read from Managed Flink application properties.

On Managed Flink the properties are ``/etc/flink/application_properties.json``: a list of
``{"PropertyGroupId": ..., "PropertyMap": {...}}``. Locally the same shape comes from a JSON
file. Every key has a default that works; an unknown group or key, or a malformed value, fails at
start-up with an error that names it. The CDK stack renders its property groups from this object
(:meth:`JobConfig.to_property_groups`), so property names live here only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flink_app.detect.settings import DetectSettings

MANAGED_FLINK_PROPERTIES = Path("/etc/flink/application_properties.json")
# Where the application properties are, when not at the service's path: the local emulation of the
# service (pulse_local.managed_flink) sets it; the job then runs as it runs on the service.
APPLICATION_PROPERTIES_ENV = "PULSE_APPLICATION_PROPERTIES"


def application_properties_path() -> Path:
    """The service's application properties file (or the local emulation's)."""
    return Path(os.environ.get(APPLICATION_PROPERTIES_ENV) or MANAGED_FLINK_PROPERTIES)


class ConfigError(ValueError):
    """The job's configuration is invalid; the message names the group and key."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SourceKind(StrEnum):
    KINESIS = "kinesis"
    FILESYSTEM = "filesystem"


class StartPosition(StrEnum):
    LATEST = "LATEST"
    TRIM_HORIZON = "TRIM_HORIZON"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class SinkKind(StrEnum):
    DYNAMODB = "dynamodb"
    JSONL = "jsonl"


class SourceConfig(_Group):
    """Where request events come from (group ``pulse.source``)."""

    kind: SourceKind = Field(SourceKind.KINESIS, alias="kind")
    stream_arn: str | None = Field(None, alias="stream.arn")
    region: str | None = Field(None, alias="aws.region")
    endpoint: str | None = Field(None, alias="aws.endpoint")
    start_position: StartPosition = Field(StartPosition.LATEST, alias="init.position")
    start_timestamp: str | None = Field(None, alias="init.timestamp")
    path: str | None = Field(None, alias="path")
    monitor_interval_s: float | None = Field(None, gt=0, alias="monitor.interval.s")

    @model_validator(mode="after")
    def _complete(self) -> SourceConfig:
        if self.kind is SourceKind.FILESYSTEM and not self.path:
            raise ValueError("path is required when kind=filesystem")
        if self.start_position is StartPosition.AT_TIMESTAMP and not self.start_timestamp:
            raise ValueError("init.timestamp is required when init.position=AT_TIMESTAMP")
        return self


class SinkConfig(_Group):
    """Where anomalies go (group ``pulse.sink``)."""

    kind: SinkKind = Field(SinkKind.DYNAMODB, alias="kind")
    table_name: str = Field("pulse-anomalies", min_length=3, alias="table.name")
    region: str | None = Field(None, alias="aws.region")
    endpoint: str | None = Field(None, alias="aws.endpoint")
    path: str | None = Field(None, alias="path")
    flush_timeout_ms: int = Field(1000, ge=10, alias="flush.timeout.ms")

    @model_validator(mode="after")
    def _complete(self) -> SinkConfig:
        if self.kind is SinkKind.JSONL and not self.path:
            raise ValueError("path is required when kind=jsonl")
        return self


DAY_S = 86_400  # windows, slides and delays range from one second to a day


class WindowConfig(_Group):
    """Event time and windows (group ``pulse.windows``): every duration from 1 s to a day."""

    route_size_s: int = Field(60, ge=1, le=DAY_S, alias="route.size.s")
    route_slide_s: int = Field(10, ge=1, le=DAY_S, alias="route.slide.s")
    client_size_s: int = Field(60, ge=1, le=DAY_S, alias="client.size.s")
    watermark_delay_s: int = Field(5, ge=0, le=DAY_S, alias="watermark.delay.s")
    idle_timeout_s: int = Field(30, ge=1, le=DAY_S, alias="idle.timeout.s")
    max_record_bytes: int = Field(16384, ge=256, alias="max.record.bytes")

    @model_validator(mode="after")
    def _slide_divides_size(self) -> WindowConfig:
        if self.route_size_s % self.route_slide_s:
            raise ValueError("route.size.s must be a multiple of route.slide.s")
        return self


class JobRuntimeConfig(_Group):
    """How the job runs (group ``pulse.job``)."""

    checkpoint_interval_s: int = Field(60, ge=1, alias="checkpoint.interval.s")
    parallelism: int | None = Field(None, ge=1, alias="parallelism")
    bundle_size: int = Field(1000, ge=1, alias="python.bundle.size")
    bundle_time_ms: int = Field(1000, ge=1, alias="python.bundle.time.ms")
    rejected_sample_size: int = Field(20, ge=0, alias="rejected.sample.size")
    # Client keys are many and come and go: their state expires after this long without a window
    # (processing time), so idle clients' state does not grow forever. An expired client is new again.
    client_state_ttl_h: float = Field(24.0, gt=0, alias="client.state.ttl.h")
    # Events are delivered at least once: a copy of an id seen within this long (processing time) is
    # dropped before the windows. 0 turns deduplication off (one shuffle and one state entry per id less).
    dedup_ttl_s: int = Field(600, ge=0, le=DAY_S, alias="dedup.ttl.s")


class JobConfig(BaseModel):
    """The whole job configuration; one field per property group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    GROUPS: ClassVar[dict[str, str]] = {
        "source": "pulse.source",
        "sink": "pulse.sink",
        "windows": "pulse.windows",
        "job": "pulse.job",
        "detect": "pulse.detect",
    }

    source: SourceConfig = Field(default_factory=SourceConfig)
    sink: SinkConfig = Field(default_factory=SinkConfig)
    windows: WindowConfig = Field(default_factory=WindowConfig)
    job: JobRuntimeConfig = Field(default_factory=JobRuntimeConfig)
    detect: DetectSettings = Field(default_factory=DetectSettings)

    @classmethod
    def from_property_groups(cls, groups: Iterable[Mapping[str, Any]]) -> JobConfig:
        """Build from Managed Flink's list of property groups; errors name group and key.

        Groups other than ``pulse.*`` (for example ``kinesis.analytics.flink.run.options``) belong
        to the service and are ignored.
        """
        by_field: dict[str, dict[str, Any]] = {}
        known = {group_id: name for name, group_id in cls.GROUPS.items()}
        for group in groups:
            group_id = str(group.get("PropertyGroupId", ""))
            if not group_id.startswith("pulse."):
                continue
            if group_id not in known:
                raise ConfigError(f"unknown property group {group_id!r} (known: {', '.join(sorted(known))})")
            by_field[known[group_id]] = dict(group.get("PropertyMap") or {})
        try:
            return cls.model_validate(by_field)
        except ValidationError as error:
            raise ConfigError(_describe(error)) from None

    def check_runnable(self) -> None:
        """Fail, naming the key, when something a run needs has no default (the stream's ARN)."""
        if self.source.kind is SourceKind.KINESIS and not self.source.stream_arn:
            raise ConfigError("invalid job configuration: pulse.source: stream.arn is required when kind=kinesis")

    @classmethod
    def load(cls, path: str | Path | None = None) -> JobConfig:
        """Read ``path``, or Managed Flink's properties file when none is given and it exists."""
        file = Path(path) if path else application_properties_path()
        if not file.exists():
            if path:
                raise ConfigError(f"configuration file {file} does not exist")
            return cls()
        try:
            groups = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"{file}: not valid JSON ({error})") from None
        if not isinstance(groups, list):
            raise ConfigError(f"{file}: expected a list of property groups")
        return cls.from_property_groups(groups)

    def to_property_groups(self, include_defaults: bool = False) -> list[dict[str, Any]]:
        """Render as Managed Flink property groups (string values, aliases as keys)."""
        rendered = []
        for name, group_id in self.GROUPS.items():
            group: BaseModel = getattr(self, name)
            values = group.model_dump(
                by_alias=True, exclude_none=True, exclude_defaults=not include_defaults, mode="json"
            )
            if values:
                rendered.append(
                    {
                        "PropertyGroupId": group_id,
                        "PropertyMap": {key: _as_property(value) for key, value in values.items()},
                    }
                )
        return rendered


def _as_property(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        group = JobConfig.GROUPS.get(location[0], location[0]) if location else "?"
        key = ".".join(location[1:]) or "(group)"
        if item["type"] == "extra_forbidden":
            problems.append(f"{group}: unknown key {key!r}")
        else:
            problems.append(f"{group}: {key}: {item['msg']}")
    return "invalid job configuration: " + "; ".join(problems)


def region_of_arn(arn: str) -> str:
    """The region of a Kinesis stream ARN (its fourth field); ConfigError when it is not one."""
    parts = arn.split(":")
    if len(parts) < 6 or not parts[3]:
        raise ConfigError(f"invalid job configuration: pulse.source: stream.arn {arn!r} is not a Kinesis stream ARN")
    return parts[3]

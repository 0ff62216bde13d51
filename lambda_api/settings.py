"""Every setting of the monitored API and its request-event pipeline: one typed object, ``PULSE_`` prefix.

Read from the environment once at start-up (:func:`load_settings`); a bad value fails there with
an error that names the environment variable, never later inside a request.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pulse_contract import UNMATCHED_ROUTE

ENV_PREFIX = "PULSE_"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ApiSettingsError(ValueError):
    """The configuration is invalid; the message names each offending ``PULSE_*`` variable."""


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ApiSettings(BaseSettings):
    """Settings of the monitored API; the field ``stream_name`` is read from ``PULSE_STREAM_NAME``, and so on."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Where events and anomalies live.
    stream_name: str | None = Field(None, min_length=1, max_length=128, description="Kinesis stream for events")
    anomaly_table: str | None = Field(None, min_length=3, max_length=255, description="DynamoDB anomaly table")

    # Which publisher, and how it delivers.
    publisher: Literal["kinesis", "log", "off"] = Field("kinesis", description="where request events go")
    publisher_mode: Literal["auto", "request", "buffered"] = Field(
        "auto", description="kinesis only: per-request (Lambda) or buffered (servers); auto picks by environment"
    )
    lambda_delivery: Literal["after_response", "in_request"] = Field(
        "after_response",
        description="on Lambda (per-request mode): deliver after the response is posted (internal extension) "
        "or before the handler returns",
    )
    connect_timeout_s: float = Field(0.2, gt=0, le=10, description="Kinesis client connect timeout")
    read_timeout_s: float = Field(0.5, gt=0, le=30, description="Kinesis client read timeout")
    request_budget_s: float = Field(
        0.3, gt=0, le=10, description="per-request mode (either Lambda delivery): time for one invocation's delivery"
    )
    flush_budget_s: float = Field(5.0, gt=0, le=60, description="buffered mode: time for one batch and its retries")
    backoff_base_s: float = Field(0.02, gt=0, le=5, description="first retry delay (exponential, full jitter)")
    backoff_max_s: float = Field(0.5, gt=0, le=30, description="longest retry delay")
    buffer_max_events: int = Field(10_000, ge=1, le=1_000_000, description="buffered mode: queue bound")
    flush_interval_s: float = Field(1.0, gt=0, le=60, description="buffered mode: longest wait before a flush")
    flush_records: int = Field(500, ge=1, le=500, description="buffered mode: flush as soon as this many wait")
    fallback_log: str = Field(
        "stderr", min_length=1, description="undelivered events: 'stderr', 'stdout' or a file path (one JSON line each)"
    )
    event_log: str = Field("stdout", min_length=1, description="log publisher: 'stdout', 'stderr' or a file path")

    # What the middleware records.
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = Field(
        (), description="comma-separated CIDRs whose X-Forwarded-For is believed; empty: the socket peer is the client"
    )
    excluded_routes: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated route templates not recorded; a trailing * matches a prefix"
    )
    max_path_length: int = Field(256, ge=16, le=8192, description="recorded path truncated to this many characters")
    max_user_agent_length: int = Field(256, ge=0, le=8192, description="recorded user agent truncated likewise")
    record_path: Literal["off", "redacted", "raw"] = Field(
        "off",
        description="the request path in events: off (empty; the job never reads it), redacted (emails, "
        "tokens and long ids replaced) or raw",
    )

    # Kinesis unreachable: stop waiting for it (circuit breaker).
    breaker_failures: int = Field(
        3, ge=1, le=1000, description="consecutive failed deliveries after which events go straight to the fallback log"
    )
    breaker_cooldown_s: float = Field(
        5.0, gt=0, le=600, description="how long the breaker stays open before one delivery probes Kinesis again"
    )
    shutdown_deadline_s: float = Field(
        20.0,
        gt=0,
        le=600,
        description="buffered mode: longest shutdown; what is still queued then goes to the fallback log",
    )

    # GET /monitoring/anomalies.
    anomalies_lookback_days: int = Field(7, ge=1, le=366, description="default time range when `since` is absent")
    anomalies_max_items_read: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="DynamoDB items evaluated per request at most (a page cut short has a cursor)",
    )
    monitoring_auth: Literal["auto", "iam", "authorizer", "none"] = Field(
        "auto",
        description="who may read /monitoring/*: iam (API Gateway's IAM authorizer context required), authorizer "
        "(any API Gateway authorizer: IAM, JWT, Lambda), none; auto: iam on Lambda, none elsewhere",
    )

    @field_validator("excluded_routes", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        networks = []
        for network in _comma_list(value):
            try:
                networks.append(ipaddress.ip_network(network, strict=False))
            except ValueError:
                raise ValueError(f"{network!r} is not an IP address or CIDR network") from None
        return tuple(networks)

    @field_validator("excluded_routes", mode="after")
    @classmethod
    def _route_templates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for route in value:
            if not route.startswith("/") and route != UNMATCHED_ROUTE:
                raise ValueError(f"{route!r} is not a route template (it must start with '/', or be {UNMATCHED_ROUTE})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ApiSettings:
        if self.publisher == "kinesis" and not self.stream_name:
            raise ValueError(
                f"{ENV_PREFIX}STREAM_NAME is required when {ENV_PREFIX}PUBLISHER=kinesis "
                f"(or set {ENV_PREFIX}PUBLISHER=log|off)"
            )
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError(f"{ENV_PREFIX}BACKOFF_BASE_S must not exceed {ENV_PREFIX}BACKOFF_MAX_S")
        return self

    def resolved_mode(self, environ: Mapping[str, str] | None = None) -> Literal["request", "buffered"]:
        """``request`` on Lambda (frozen after each answer, so nothing may stay in flight), else ``buffered``."""
        if self.publisher_mode != "auto":
            return self.publisher_mode
        environ = os.environ if environ is None else environ
        return "request" if environ.get("AWS_LAMBDA_FUNCTION_NAME") else "buffered"

    def resolved_monitoring_auth(
        self, environ: Mapping[str, str] | None = None
    ) -> Literal["iam", "authorizer", "none"]:
        """``iam`` on Lambda (behind API Gateway), ``none`` elsewhere, unless set explicitly."""
        if self.monitoring_auth != "auto":
            return self.monitoring_auth
        environ = os.environ if environ is None else environ
        return "iam" if environ.get("AWS_LAMBDA_FUNCTION_NAME") else "none"


def load_settings(**overrides: Any) -> ApiSettings:
    """Settings from ``PULSE_*`` variables (keyword overrides win); :class:`ApiSettingsError` names what is wrong."""
    try:
        return ApiSettings(**overrides)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = f"{ENV_PREFIX}{str(item['loc'][0]).upper()}" if item["loc"] else "settings"
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ApiSettingsError("invalid Pulse settings: " + "; ".join(problems)) from None

"""Settings: one typed object from PULSE_* variables, validated at start-up with errors naming the variable."""

from __future__ import annotations

import ipaddress

import pytest

from lambda_api.app import create_app
from lambda_api.settings import ApiSettingsError, load_settings


def test_lists_and_networks_come_from_comma_separated_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_PUBLISHER", "off")
    monkeypatch.setenv("PULSE_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::/32,192.0.2.1")
    monkeypatch.setenv("PULSE_EXCLUDED_ROUTES", "/health, /internal/*")
    settings = load_settings()
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.1/32"),
    )
    assert settings.excluded_routes == ("/health", "/internal/*")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PULSE_READ_TIMEOUT_S", "-1"),
        ("PULSE_PUBLISHER", "kafka"),
        ("PULSE_TRUSTED_PROXIES", "10.0.0.0/8,not-a-network"),
        ("PULSE_EXCLUDED_ROUTES", "health"),
        ("PULSE_FLUSH_RECORDS", "501"),
        ("PULSE_MAX_PATH_LENGTH", "lots"),
    ],
)
def test_a_bad_value_fails_naming_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv("PULSE_PUBLISHER", "off")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ApiSettingsError, match=variable):
        load_settings()


def test_kinesis_publisher_requires_a_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULSE_STREAM_NAME", raising=False)
    monkeypatch.setenv("PULSE_PUBLISHER", "kinesis")
    with pytest.raises(ApiSettingsError, match="PULSE_STREAM_NAME is required"):
        load_settings()


def test_the_app_validates_settings_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a bad variable, when the app is created (not when a request comes), then it fails
    monkeypatch.setenv("PULSE_PUBLISHER", "off")
    monkeypatch.setenv("PULSE_REQUEST_BUDGET_S", "forever")
    with pytest.raises(ApiSettingsError, match="PULSE_REQUEST_BUDGET_S"):
        create_app()


@pytest.mark.parametrize(
    ("mode", "environ", "resolved"),
    [
        ("auto", {"AWS_LAMBDA_FUNCTION_NAME": "pulse-api"}, "request"),
        ("auto", {}, "buffered"),
        ("buffered", {"AWS_LAMBDA_FUNCTION_NAME": "pulse-api"}, "buffered"),
        ("request", {}, "request"),
    ],
)
def test_auto_mode_delivers_per_request_on_lambda_only(mode: str, environ: dict[str, str], resolved: str) -> None:
    settings = load_settings(publisher="off", publisher_mode=mode)
    assert settings.resolved_mode(environ) == resolved

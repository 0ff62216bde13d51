"""The Lambda entry point end to end: API Gateway v2 events in, one schema-v1 event per request on the stream."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from pulse_contract.request_event import RequestEvent
from pulse_local.apigw import http_api_event, lambda_context
from pulse_local.emulator import Emulator
from tests.streams import read_events

pytestmark = pytest.mark.integration


def test_the_handler_puts_one_event_per_request_on_the_configured_stream(
    emulator: Emulator, stream: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the handler module loaded as Lambda loads it, configured by environment only
    name, _ = stream
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "pulse-api")
    monkeypatch.setenv("PULSE_STREAM_NAME", name)
    monkeypatch.setenv("PULSE_PUBLISHER", "kinesis")
    monkeypatch.setenv("PULSE_RECORD_PATH", "raw")
    monkeypatch.delenv("PULSE_PUBLISHER_MODE", raising=False)
    sys.modules.pop("lambda_api.handler", None)
    handler = importlib.import_module("lambda_api.handler").handler
    # when three requests arrive through API Gateway
    ok = handler(http_api_event("GET", "/users/3/orders", source_ip="203.0.113.9"), lambda_context())
    # then the first one's event is on the stream before the handler returned
    [first] = read_events(emulator, name)
    denied = handler(
        http_api_event("POST", "/login", body={"username": "alice", "password": "guess"}, source_ip="198.51.100.4"),
        lambda_context(),
    )
    missing = handler(http_api_event("GET", "/wp-login.php", user_agent="scanner"), lambda_context())
    # and each response is the app's, each request one valid v1 event, in order
    assert [ok["statusCode"], denied["statusCode"], missing["statusCode"]] == [200, 401, 404]
    events = [RequestEvent.from_dict(e) for e in read_events(emulator, name)]
    assert events[0].to_dict() == first
    assert [(e.method, e.route, e.path, e.status, e.client_ip) for e in events] == [
        ("GET", "/users/{user_id}/orders", "/users/3/orders", 200, "203.0.113.9"),
        ("POST", "/login", "/login", 401, "198.51.100.4"),
        ("GET", "UNMATCHED", "/wp-login.php", 404, "203.0.113.9"),
    ]
    assert events[0].bytes_out == len(ok["body"].encode()) and json.loads(ok["body"])["orders"] is not None
    assert events[0].user_agent == "pytest-lambda/1.0" and events[2].user_agent == "scanner"
    assert len({e.id for e in events}) == 3

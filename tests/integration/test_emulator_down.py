"""Kinesis unreachable: the API keeps answering, every event lands in the fallback log, replay delivers it later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lambda_api.adapter import build_handler
from lambda_api.app import create_app
from lambda_api.settings import load_settings
from pulse_local.apigw import http_api_event, lambda_context
from pulse_local.emulator import Emulator, create_stream, start_moto
from tests.streams import read_events

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A moto server of this test's own, so stopping it leaves the session's emulator alone."""
    emulator = start_moto(log_path=tmp_path / "moto.log")
    for key, value in emulator.env.items():
        monkeypatch.setenv(key, value)
    try:
        yield emulator
    finally:
        emulator.stop()


def fallback_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def replay_cli(emulator: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lambda_api.fallback_replay", *args],
        env={**os.environ, **emulator.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lambda_keeps_answering_and_replay_delivers_once_the_stream_is_back(
    own_emulator: Emulator, tmp_path: Path
) -> None:
    # given the Lambda handler delivering per request to a stream on our own emulator
    name = f"pulse-down-{uuid.uuid4().hex[:8]}"
    create_stream(own_emulator, name)
    fallback = tmp_path / "fallback.log"
    settings = load_settings(
        stream_name=name, publisher="kinesis", publisher_mode="request", request_budget_s=0.2,
        connect_timeout_s=0.2, read_timeout_s=0.5, fallback_log=str(fallback),
    )  # fmt: skip
    handler = build_handler(create_app(settings))
    assert handler(http_api_event("GET", "/health"), lambda_context())["statusCode"] == 200
    assert len(read_events(own_emulator, name)) == 1 and fallback_lines(fallback) == []
    # when the emulator goes down and requests keep coming
    own_emulator.stop()
    responses = [
        handler(http_api_event("GET", "/items/4"), lambda_context()),
        handler(http_api_event("GET", "/users/2"), lambda_context()),
        handler(http_api_event("POST", "/login", body={"username": "eve", "password": "x"}), lambda_context()),
    ]
    # then the API still answers, and each request's event is one fallback line saying why
    assert [r["statusCode"] for r in responses] == [200, 200, 401]
    lines = fallback_lines(fallback)
    assert [line["event"]["route"] for line in lines] == ["/items/{item_id}", "/users/{user_id}", "/login"]
    assert all(line["stream"] == name and "EndpointConnectionError" in line["reason"] for line in lines)
    # when the emulator is back (empty, as after a crash) and the log is replayed
    own_emulator.restart()
    create_stream(own_emulator, name)
    result = replay_cli(own_emulator, str(fallback), "--stream", name)
    # then exactly those events are delivered
    assert result.returncode == 0, result.stderr
    assert "delivered=3 undelivered=0" in result.stdout
    assert sorted(e["id"] for e in read_events(own_emulator, name)) == sorted(line["event"]["id"] for line in lines)


def test_a_server_with_a_buffered_publisher_falls_back_when_it_cannot_flush(
    own_emulator: Emulator, tmp_path: Path
) -> None:
    # given the app with a buffered publisher whose stream's emulator is down
    name = f"pulse-down-{uuid.uuid4().hex[:8]}"
    create_stream(own_emulator, name)
    fallback = tmp_path / "fallback.log"
    settings = load_settings(
        stream_name=name, publisher="kinesis", publisher_mode="buffered", flush_interval_s=60, flush_budget_s=0.3,
        connect_timeout_s=0.2, read_timeout_s=0.5, fallback_log=str(fallback), record_path="raw",
    )  # fmt: skip
    own_emulator.stop()
    # when a server runs it, serves requests and shuts down
    with TestClient(create_app(settings)) as api:
        statuses = [api.get(path).status_code for path in ("/health", "/items/1", "/search?q=tent")]
    # then the requests were served and the shutdown flush wrote each event to the fallback log
    assert statuses == [200, 200, 200]
    lines = fallback_lines(fallback)
    assert [line["event"]["path"] for line in lines] == ["/health", "/items/1", "/search"]
    # and replay delivers them once the emulator is back
    own_emulator.restart()
    create_stream(own_emulator, name)
    assert replay_cli(own_emulator, str(fallback), "--stream", name).returncode == 0
    assert len(read_events(own_emulator, name)) == 3

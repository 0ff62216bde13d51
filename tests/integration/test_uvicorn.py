"""The same app under uvicorn: buffered delivery, flushed when the server shuts down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pulse_local.emulator import Emulator, free_port
from tests.streams import read_events

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def wait_until_serving(base: str, process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"uvicorn exited with {process.returncode}")
        try:
            httpx.get(base + "/openapi.json", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("uvicorn did not answer")


def test_uvicorn_serves_the_app_and_flushes_buffered_events_on_shutdown(
    emulator: Emulator, stream: tuple[str, str], tmp_path: Path
) -> None:
    # given the app factory under uvicorn with a buffered publisher that would wait a minute to flush
    name, _ = stream
    port = free_port()
    env = {**os.environ, **emulator.env, "PULSE_STREAM_NAME": name, "PULSE_PUBLISHER": "kinesis",
           "PULSE_FLUSH_INTERVAL_S": "60", "PULSE_FALLBACK_LOG": str(tmp_path / "fallback.log")}  # fmt: skip
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    env.pop("PULSE_PUBLISHER_MODE", None)
    command = [sys.executable, "-m", "uvicorn", "lambda_api.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    with (tmp_path / "uvicorn.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process)
        # when requests are served
        statuses = [httpx.get(base + path).status_code for path in ("/items/2", "/users/1/orders", "/.env")]
        statuses.append(httpx.post(base + "/login", json={"username": "x", "password": "y"}).status_code)
        # then the events wait in the buffer (a minute's interval, far fewer than 500 events)
        assert read_events(emulator, name) == []
        # and when the server shuts down gracefully, they are flushed to the stream
        process.send_signal(signal.SIGTERM)
        # (uvicorn re-raises the signal after its graceful shutdown, so the exit status is -SIGTERM)
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert statuses == [200, 200, 404, 401]
    events = read_events(emulator, name)
    routes = [(e["route"], e["status"]) for e in events if e["route"] != "/openapi.json"]
    assert routes == [("/items/{item_id}", 200), ("/users/{user_id}/orders", 200), ("UNMATCHED", 404), ("/login", 401)]
    assert {e["client_ip"] for e in events} == {"127.0.0.1"}
    assert not (tmp_path / "fallback.log").exists()

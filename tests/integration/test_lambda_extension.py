"""After-response delivery on Lambda: the real runtime client (awslambdaric) under the local Lambda runtime.

Kinesis is the emulator, seen through a recording proxy (when each PutRecord(s) call came and what
it carried); the local runtime records when each response was posted and when the extension asked
for its next event, and lets the tests look at the stream and the fallback log at those instants.
Each request carries its own user agent, which identifies its event.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pulse_local.apigw import http_api_event
from pulse_local.emulator import Emulator, create_stream, free_port
from pulse_local.lambda_runtime import Invocation, LocalLambdaRuntime, Shutdown
from tests.kinesis_proxy import RecordingKinesisProxy
from tests.streams import read_events

pytestmark = pytest.mark.integration

HANDLER = "lambda_api.handler.handler"
FALLBACK_WARNING = "after-response delivery unavailable"


def request(tag: str, n: int) -> dict[str, Any]:
    return http_api_event("GET", f"/items/{n}", user_agent=f"{tag}-{n}")


def user_agent(invocation: Invocation) -> str:
    return str(json.loads(invocation.event)["headers"]["user-agent"])


def fallback_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def lambda_env(emulator: Emulator, stream: str, endpoint: str, fallback: Path, **settings: str) -> dict[str, str]:
    return {
        **emulator.env,
        "AWS_ENDPOINT_URL": endpoint,
        "PULSE_STREAM_NAME": stream,
        "PULSE_FALLBACK_LOG": str(fallback),
        **{f"PULSE_{name.upper()}": value for name, value in settings.items()},
    }


def fresh_stream(emulator: Emulator) -> str:
    name = f"pulse-lambda-{uuid.uuid4().hex[:8]}"
    create_stream(emulator, name)
    return name


@dataclass
class Run:
    """Four invocations in after-response mode, and what was seen while they ran."""

    invocations: list[Invocation]
    proxy: RecordingKinesisProxy
    log: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def after_response(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    stream = fresh_stream(emulator)
    fallback = tmp_path_factory.mktemp("after-response") / "fallback.log"
    with RecordingKinesisProxy(emulator.endpoint) as proxy:
        run = Run([], proxy)
        with LocalLambdaRuntime(HANDLER, lambda_env(emulator, stream, proxy.endpoint, fallback)) as runtime:
            run.invocations = [runtime.invoke(request("after", n), wait="complete") for n in range(1, 5)]
            run.log = runtime.log_text()
        run.events = read_events(emulator, stream)
        assert fallback_lines(fallback) == []
        yield run


def test_the_response_is_posted_before_any_put_records_call_of_its_invocation(after_response: Run) -> None:
    for invocation in after_response.invocations:
        # given an invocation answered by the handler
        assert invocation.payload()["statusCode"] == 200
        assert invocation.response_at is not None and invocation.handed_out_at is not None
        # then no call reached Kinesis while the client waited for the response
        during = [
            c
            for c in after_response.proxy.put_calls()
            if invocation.handed_out_at <= c.received_at <= invocation.response_at
        ]
        assert during == []
        # and the call carrying the invocation's event came after the response
        carrying = after_response.proxy.calls_carrying(user_agent(invocation))
        assert carrying and all(call.received_at > invocation.response_at for call in carrying)
    # and the extension started on the runtime's post, not on the fallback timer for posts it cannot see
    assert "post was not observed" not in after_response.log


def test_every_event_is_on_the_stream_before_the_extension_asks_for_its_next_event(after_response: Run) -> None:
    for invocation in after_response.invocations:
        # the emulator had stored the event (answered its call, not reporting it failed) when the extension asked
        [asked_at] = invocation.extension_next_at.values()
        stored_at = [
            call.answered_at
            for call in after_response.proxy.calls_carrying(user_agent(invocation))
            if any(event["user_agent"] == user_agent(invocation) for event in call.delivered())
        ]
        assert len(stored_at) == 1 and stored_at[0] is not None and stored_at[0] < asked_at


def test_each_invocation_puts_exactly_one_event_on_the_stream(after_response: Run) -> None:
    agents = sorted(event["user_agent"] for event in after_response.events)
    assert agents == sorted(user_agent(invocation) for invocation in after_response.invocations)


def test_with_kinesis_down_the_response_goes_out_at_once_and_the_event_falls_back_before_next(
    emulator: Emulator, tmp_path: Path
) -> None:
    # given after-response delivery to a Kinesis endpoint nothing listens on
    fallback = tmp_path / "fallback.log"
    at_response: dict[str, list[str]] = {}
    at_next: dict[str, list[dict[str, Any]]] = {}

    def on_response(invocation: Invocation) -> None:
        at_response[invocation.request_id] = [line["event"]["user_agent"] for line in fallback_lines(fallback)]

    def on_extension_next(invocation: Invocation, extension: str) -> None:
        at_next[invocation.request_id] = fallback_lines(fallback)

    env = lambda_env(emulator, "pulse-unreachable", f"http://127.0.0.1:{free_port()}", fallback)
    with LocalLambdaRuntime(HANDLER, env, on_response=on_response, on_extension_next=on_extension_next) as runtime:
        # when requests are served
        invocations = [runtime.invoke(request("down", n), wait="complete") for n in (1, 2)]
    for invocation in invocations:
        agent = user_agent(invocation)
        # then each response was posted before its event's delivery had given up (it did not wait for the retries)
        assert invocation.payload()["statusCode"] == 200
        assert agent not in at_response[invocation.request_id]
        # and the event was in the fallback log, after several attempts, before the extension asked for more
        [line] = [line for line in at_next[invocation.request_id] if line["event"]["user_agent"] == agent]
        assert "EndpointConnectionError" in line["reason"] and line["attempts"] >= 2
    assert len(fallback_lines(fallback)) == len(invocations)


@dataclass
class Reset:
    invocation: Invocation
    shutdown: Shutdown
    proxy: RecordingKinesisProxy
    stream: str
    fallback: Path


def reset_during_delivery(emulator: Emulator, tmp_path: Path, **proxy_options: Any) -> Reset:
    """One quick invocation, then one whose delivery is still under way at the function's 1 s timeout."""
    stream = fresh_stream(emulator)
    fallback = tmp_path / "fallback.log"
    with RecordingKinesisProxy(emulator.endpoint) as proxy:
        # generous delivery timeouts: the call is still in flight when Lambda resets the environment
        env = lambda_env(emulator, stream, proxy.endpoint, fallback, read_timeout_s="10", request_budget_s="10")
        with LocalLambdaRuntime(HANDLER, env, timeout_s=1.0) as runtime:
            runtime.invoke(request("warm", 1), wait="complete")  # connections made, code paths warm
            for option, value in proxy_options.items():
                setattr(proxy, option, value)
            invocation = runtime.invoke(request("reset", 2), wait="complete")
            shutdown = runtime.shutdown_record
    assert shutdown is not None
    return Reset(invocation, shutdown, proxy, stream, fallback)


def test_shutdown_during_delivery_lets_the_queued_event_reach_the_stream(emulator: Emulator, tmp_path: Path) -> None:
    # given a delivery whose PutRecords call is answered 0.15 s after the timeout reset began
    # (the proxy forwards a held call only if its sender is still alive)
    reset = reset_during_delivery(emulator, tmp_path, delay_puts_s=1.15)
    # then the client had its answer, and the environment was reset and ended by SIGTERM within its grace period
    assert reset.invocation.outcome == "response" and reset.shutdown.reason == "timeout"
    assert not reset.shutdown.killed and reset.shutdown.returncode == -signal.SIGTERM
    # and the event reached the stream during the grace period, once, with nothing in the fallback log
    [call] = reset.proxy.calls_carrying("reset-2")
    assert reset.shutdown.sigterm_at is not None and call.answered_at is not None
    assert call.answered_at > reset.shutdown.sigterm_at
    assert [e["user_agent"] for e in read_events(emulator, reset.stream)].count("reset-2") == 1
    assert fallback_lines(reset.fallback) == []


def test_shutdown_with_an_unanswered_delivery_writes_the_event_to_the_fallback_log(
    emulator: Emulator, tmp_path: Path
) -> None:
    # given a Kinesis that never answers the second invocation's PutRecords call
    reset = reset_during_delivery(emulator, tmp_path, black_hole=True)
    # then the client had its answer, and the process still ended by SIGTERM within its grace period
    assert reset.invocation.outcome == "response" and reset.shutdown.reason == "timeout"
    assert not reset.shutdown.killed and reset.shutdown.returncode == -signal.SIGTERM
    # and the unconfirmed event is in the fallback log, so replay can deliver it
    [line] = fallback_lines(reset.fallback)
    assert line["event"]["user_agent"] == "reset-2" and line["reason"] == "shutdown: delivery unconfirmed"
    assert "reset-2" not in [e["user_agent"] for e in read_events(emulator, reset.stream)]


@pytest.mark.parametrize(
    "refusal", [{"extensions_api": False}, {"registration_status": 403}], ids=["api-absent", "registration-refused"]
)
def test_without_the_extensions_api_events_are_delivered_in_the_request_and_that_is_logged_once(
    emulator: Emulator, tmp_path: Path, refusal: dict[str, Any]
) -> None:
    # given a local runtime whose Extensions API is absent or refuses the registration
    stream = fresh_stream(emulator)
    on_stream_at_response: dict[str, list[str]] = {}

    def on_response(invocation: Invocation) -> None:
        on_stream_at_response[invocation.request_id] = [e["user_agent"] for e in read_events(emulator, stream)]

    env = lambda_env(emulator, stream, emulator.endpoint, tmp_path / "fallback.log")
    with LocalLambdaRuntime(HANDLER, env, on_response=on_response, **refusal) as runtime:
        # when requests are served
        invocations = [runtime.invoke(request("inline", n), wait="complete") for n in (1, 2, 3)]
        log = runtime.log_text()
        extensions = list(runtime.extensions)
    # then they are answered, each event on the stream before its response was posted
    for invocation in invocations:
        assert invocation.payload()["statusCode"] == 200
        assert user_agent(invocation) in on_stream_at_response[invocation.request_id]
    # and no extension took part, and the fallback to in-request delivery was logged once
    assert extensions == []
    assert log.count(FALLBACK_WARNING) == 1

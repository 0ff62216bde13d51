"""After-response delivery piece by piece: the publisher's invocation protocol, shutdown, post watch, mode choice."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambda_api import lambda_delivery
from lambda_api.lambda_delivery import extensions_api_unavailable, lambda_publisher
from lambda_api.lambda_delivery.after_response import AfterResponsePublisher
from lambda_api.lambda_delivery.extension import cancel_response_watch, watch_response_post
from lambda_api.publishers.delivery import KinesisDelivery, kinesis_client
from lambda_api.publishers.fallback import FallbackLog
from lambda_api.publishers.kinesis import RequestKinesisPublisher
from lambda_api.settings import load_settings
from pulse_contract.request_event import RequestEvent
from pulse_local.emulator import Emulator
from pulse_local.lambda_runtime import LocalLambdaRuntime
from tests.streams import read_events


def make_event(n: int = 0) -> RequestEvent:
    return RequestEvent(
        1, uuid.uuid4().hex, 1_700_000_000_000 + n, "GET", "/items/{item_id}", f"/items/{n}", 200, 1.5,
        "198.51.100.7", f"agent-{n}", 17,
    )  # fmt: skip


class RecordingKinesis:
    """Accepts every PutRecords call; ``gate`` (when given) holds each call until it is set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.keys: list[str] = []
        self.called = threading.Event()

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.called.set()
        if self.gate is not None:
            self.gate.wait()
        self.keys.extend(record["PartitionKey"] for record in Records)
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records]}


def fallback_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def fallback_path(tmp_path: Path) -> Path:
    return tmp_path / "fallback.log"


def deferred_publisher(client: Any, fallback_path: Path, post_wait_s: float = 10.0) -> AfterResponsePublisher:
    publisher = AfterResponsePublisher(
        KinesisDelivery("events", client), FallbackLog(str(fallback_path)), budget_s=1.0, post_wait_s=post_wait_s
    )
    publisher.attach_extension()
    return publisher


def serve(publisher: AfterResponsePublisher, request_id: str) -> threading.Thread:
    """The extension's part of one invocation, in its own thread."""
    thread = threading.Thread(target=publisher.serve_invocation, args=(request_id, None), daemon=True)
    thread.start()
    return thread


def test_an_invocations_events_wait_until_its_response_is_posted(fallback_path: Path) -> None:
    # given an invocation whose handler queued an event and returned
    kinesis = RecordingKinesis()
    publisher = deferred_publisher(kinesis, fallback_path)
    event = make_event()
    publisher.handler_started("r1")
    publisher.publish(event)
    extension = serve(publisher, "r1")
    publisher.handler_finished("r1")
    # when only a stale post signal (an earlier invocation's) arrives, then nothing is sent
    publisher.response_posted("r0")
    extension.join(timeout=0.2)
    assert extension.is_alive() and kinesis.keys == [] and publisher.pending == 1
    # when the runtime posts this invocation's response, then the event is delivered and the extension is done
    publisher.response_posted("r1")
    extension.join(timeout=5)
    assert not extension.is_alive() and kinesis.keys == [event.id] and publisher.pending == 0


def test_a_post_that_cannot_be_seen_delays_delivery_by_the_post_wait_and_is_logged_once(
    fallback_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given a runtime whose response posts are never observed
    kinesis = RecordingKinesis()
    publisher = deferred_publisher(kinesis, fallback_path, post_wait_s=0.05)
    with caplog.at_level(logging.WARNING, logger="pulse.publisher"):
        for n, request_id in enumerate(("r1", "r2")):
            publisher.handler_started(request_id)
            publisher.publish(make_event(n))
            extension = serve(publisher, request_id)
            publisher.handler_finished(request_id)
            extension.join(timeout=5)
            # then each invocation's event is still delivered once the handler has returned
            assert not extension.is_alive() and len(kinesis.keys) == n + 1
    # and the operator is told once
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "post was not observed" in caplog.records[0].message and len(caplog.records) == 1


def test_an_invocation_that_never_reaches_the_handler_does_not_hold_the_extension(
    fallback_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given an invocation the runtime answers without calling the handler (say, an event it cannot decode)
    publisher = deferred_publisher(RecordingKinesis(), fallback_path, post_wait_s=0.05)
    with caplog.at_level(logging.WARNING, logger="pulse.publisher"):
        extension = serve(publisher, "r1")
        # then the extension moves on (asks for its next event) instead of waiting for the deadline
        extension.join(timeout=5)
    assert not extension.is_alive() and "did not reach the handler" in caplog.text


def test_shutdown_delivers_the_events_still_queued(
    emulator: Emulator, stream: tuple[str, str], fallback_path: Path
) -> None:
    # given events queued for after the response when SIGTERM comes
    name, _ = stream
    publisher = AfterResponsePublisher(
        KinesisDelivery(name, kinesis_client(1.0, 5.0)), FallbackLog(str(fallback_path)), budget_s=1.0
    )
    publisher.attach_extension()
    events = [make_event(n) for n in range(3)]
    for event in events:
        publisher.publish(event)
    assert read_events(emulator, name) == []
    # when the runtime shuts down
    publisher.shutdown(0.45)
    # then they are on the stream, and later events go to the fallback log instead of a queue nobody drains
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in events)
    assert fallback_entries(fallback_path) == []
    late = make_event(9)
    publisher.publish(late)
    assert [(e["event"]["id"], e["reason"]) for e in fallback_entries(fallback_path)] == [(late.id, "publisher_closed")]


def test_shutdown_logs_what_is_still_in_flight_and_returns_within_its_grace(fallback_path: Path) -> None:
    # given the extension delivering an invocation's event to a Kinesis that does not answer
    gate = threading.Event()
    kinesis = RecordingKinesis(gate)
    publisher = deferred_publisher(kinesis, fallback_path)
    event = make_event()
    publisher.publish(event)
    extension = serve(publisher, "r1")
    publisher.response_posted("r1")
    assert kinesis.called.wait(5)
    # when SIGTERM's flush runs
    flush = threading.Thread(target=publisher.shutdown, args=(0.3,), daemon=True)
    flush.start()
    flush.join(timeout=5)
    # then it returned, with the unconfirmed event in the fallback log
    assert not flush.is_alive()
    entries = fallback_entries(fallback_path)
    assert [(e["event"]["id"], e["reason"]) for e in entries] == [(event.id, "shutdown: delivery unconfirmed")]
    # and when the call is answered after all, the event is not logged a second time
    gate.set()
    extension.join(timeout=5)
    assert kinesis.keys == [event.id] and len(fallback_entries(fallback_path)) == 1


def test_when_the_extension_stops_events_are_delivered_in_the_request(fallback_path: Path) -> None:
    # given an event queued for after the response
    kinesis = RecordingKinesis()
    publisher = deferred_publisher(kinesis, fallback_path)
    queued, later = make_event(1), make_event(2)
    publisher.publish(queued)
    # when the extension stops (the Extensions API failed)
    publisher.extension_failed(RuntimeError("next refused: HTTP 500"))
    # then the queued event is delivered at once, and the next one before publish returns
    assert kinesis.keys == [queued.id]
    publisher.publish(later)
    assert kinesis.keys == [queued.id, later.id] and not publisher.deferred


def post_invocation_result() -> str:
    """Named like the runtime client's method that posts a response."""
    return "posted"


def test_the_watch_fires_once_when_the_runtime_client_returns_from_posting() -> None:
    # given a watch installed in this thread
    seen: list[str] = []
    previous = sys.getprofile()
    watch_response_post(lambda: seen.append("posted"))
    # when other functions run, then nothing fires
    json.dumps({"a": 1})
    assert seen == []
    # when the post method returns, then the callback runs once and the watch is gone
    post_invocation_result()
    post_invocation_result()
    assert seen == ["posted"] and sys.getprofile() is previous


def test_a_cancelled_watch_never_fires() -> None:
    seen: list[str] = []
    watch_response_post(lambda: seen.append("posted"))
    cancel_response_watch()
    post_invocation_result()
    assert seen == [] and sys.getprofile() is None


ON_LAMBDA = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "AWS_LAMBDA_FUNCTION_NAME": "api"}


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"AWS_LAMBDA_FUNCTION_NAME": "api"}, "AWS_LAMBDA_RUNTIME_API is not set"),
        ({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}, "AWS_LAMBDA_FUNCTION_NAME is not set"),
        ({**ON_LAMBDA, "AWS_LAMBDA_MAX_CONCURRENCY": "8"}, "concurrently"),
    ],
)
def test_an_extension_is_registered_only_on_lambda(environ: dict[str, str], reason: str) -> None:
    assert reason in (extensions_api_unavailable(environ) or "")
    assert extensions_api_unavailable(ON_LAMBDA) is None


@pytest.fixture
def lambda_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalLambdaRuntime]:
    """This process as a Lambda runtime process (the test plays the runtime client); SIGTERM restored after."""
    runtime = LocalLambdaRuntime(None)
    runtime.start()
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(lambda_delivery, "_registered_in_process", False)
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", runtime.address)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "pulse-api")
    try:
        yield runtime
    finally:
        runtime.close()  # the extension thread's next fails, and it stops
        signal.signal(signal.SIGTERM, previous_sigterm)


def test_on_lambda_the_handler_registers_its_extension_for_invoke_during_init(
    lambda_process: LocalLambdaRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(publisher="kinesis", stream_name="events")
    # when the handler's publisher is made at import (init)
    publisher = lambda_publisher(settings)
    # then an extension is registered for INVOKE only, and events wait for it
    assert isinstance(publisher, AfterResponsePublisher) and publisher.deferred
    assert [(e.name, e.events) for e in lambda_process.extensions] == [("pulse-events", ("INVOKE",))]
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
    # and a second handler in the same process delivers in the request, saying why, rather than register again
    with caplog.at_level(logging.WARNING, logger="pulse.lambda"):
        second = lambda_publisher(settings)
    assert isinstance(second, RequestKinesisPublisher) and "registered its extension already" in caplog.text
    assert len(lambda_process.extensions) == 1


def test_in_request_delivery_registers_nothing(lambda_process: LocalLambdaRuntime) -> None:
    publisher = lambda_publisher(load_settings(publisher="kinesis", stream_name="events", lambda_delivery="in_request"))
    assert isinstance(publisher, RequestKinesisPublisher) and lambda_process.extensions == []

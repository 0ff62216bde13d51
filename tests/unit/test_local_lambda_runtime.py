"""The local Lambda runtime enforces the Runtime and Extensions API rules the after-response delivery relies on.

The test plays the runtime and an extension over HTTP (no child process), so each rule is seen directly.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from pulse_local.lambda_runtime import LocalLambdaRuntime

Answer = tuple[int, dict[str, str], Any]


def call(runtime: LocalLambdaRuntime, method: str, path: str, body: Any = None, **headers: str) -> Answer:
    connection = http.client.HTTPConnection(runtime.address, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        raw = response.read()
        return response.status, dict(response.getheaders()), json.loads(raw) if raw else None
    finally:
        connection.close()


def register(runtime: LocalLambdaRuntime, events: list[str], name: str = "probe") -> Answer:
    return call(runtime, "POST", "/2020-01-01/extension/register", {"events": events}, Lambda_Extension_Name=name)


def extension_next(runtime: LocalLambdaRuntime, identifier: str) -> Answer:
    return call(runtime, "GET", "/2020-01-01/extension/event/next", Lambda_Extension_Identifier=identifier)


def runtime_next(runtime: LocalLambdaRuntime) -> Answer:
    return call(runtime, "GET", "/2018-06-01/runtime/invocation/next")


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


@pytest.fixture
def runtime(pool: ThreadPoolExecutor) -> Iterator[LocalLambdaRuntime]:
    """Serving the APIs only; closed before the pool, which releases every call still waiting."""
    local = LocalLambdaRuntime(None, timeout_s=30)
    local.start()
    try:
        yield local
    finally:
        local.close()


def test_extensions_register_only_until_the_runtime_asks_for_its_first_invocation(
    runtime: LocalLambdaRuntime, pool: ThreadPoolExecutor
) -> None:
    # given an extension registered during init
    status, headers, answer = register(runtime, ["INVOKE"], name="early")
    assert status == 200 and headers["Lambda-Extension-Identifier"]
    assert answer["functionName"] == runtime.function_name
    # when the runtime asks for its first invocation
    pool.submit(runtime_next, runtime)
    wait_until(lambda: not runtime.registration_open)
    # then a later registration is refused
    late_status, _, late_answer = register(runtime, ["INVOKE"], name="late")
    assert late_status == 403 and late_answer["errorType"] == "Extension.RegistrationClosed"
    assert [e.name for e in runtime.extensions] == ["early"]


def test_an_internal_extension_may_not_register_for_shutdown(runtime: LocalLambdaRuntime) -> None:
    status, headers, answer = register(runtime, ["INVOKE", "SHUTDOWN"])
    assert status == 400 and "Lambda-Extension-Identifier" not in headers
    assert "SHUTDOWN" in answer["errorType"].upper()
    assert runtime.extensions == [] and runtime.refused_registrations[0].status == 400


def test_no_invocation_is_handed_out_before_every_extension_finished_its_init(
    runtime: LocalLambdaRuntime, pool: ThreadPoolExecutor
) -> None:
    # given a registered extension that has not asked for its first event, and a runtime waiting
    _, headers, _ = register(runtime, ["INVOKE"])
    handed: Future[Answer] = pool.submit(runtime_next, runtime)
    pool.submit(runtime.invoke, {"n": 1})
    wait_until(lambda: runtime.runtime_waiting and len(runtime.invocations) == 1)
    # then the invocation waits
    assert runtime.invocations[0].handed_out_at is None and not handed.done()
    # when the extension asks for its first event, then both get the invocation
    invoke = pool.submit(extension_next, runtime, headers["Lambda-Extension-Identifier"])
    assert handed.result(timeout=5)[0] == 200
    assert invoke.result(timeout=5)[2]["eventType"] == "INVOKE"


def test_an_invocation_ends_only_when_the_runtime_answered_and_the_extension_asked_for_its_next_event(
    runtime: LocalLambdaRuntime, pool: ThreadPoolExecutor
) -> None:
    # given a runtime and an extension registered for INVOKE, both waiting, and two invocations queued
    _, headers, _ = register(runtime, ["INVOKE"])
    identifier = headers["Lambda-Extension-Identifier"]
    first_event = pool.submit(extension_next, runtime, identifier)
    first = pool.submit(runtime_next, runtime)
    pool.submit(runtime.invoke, {"n": 1}, wait="complete")
    # when the first invocation is handed out
    status, invocation_headers, body = first.result(timeout=5)
    request_id = invocation_headers["Lambda-Runtime-Aws-Request-Id"]
    # then the runtime gets the event with the documented headers, and the extension its INVOKE event
    assert status == 200 and body == {"n": 1}
    assert int(invocation_headers["Lambda-Runtime-Deadline-Ms"]) > time.time() * 1000
    assert invocation_headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(f":function:{runtime.function_name}")
    assert invocation_headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    _, event_headers, invoke = first_event.result(timeout=5)
    assert invoke["eventType"] == "INVOKE" and invoke["requestId"] == request_id
    assert invoke["deadlineMs"] == int(invocation_headers["Lambda-Runtime-Deadline-Ms"])
    assert invoke["tracing"]["type"] == "X-Amzn-Trace-Id" and event_headers["Lambda-Extension-Event-Identifier"]
    # when the runtime posts the response and asks for more while a second invocation waits
    pool.submit(runtime.invoke, {"n": 2})
    posted = call(runtime, "POST", f"/2018-06-01/runtime/invocation/{request_id}/response", {"ok": True})
    second = pool.submit(runtime_next, runtime)
    wait_until(lambda: runtime.runtime_waiting and len(runtime.invocations) == 2)
    # then the first invocation is not over and the second not handed out: the extension is still busy
    done, waiting = runtime.invocations
    assert posted[0] == 202 and done.response_at is not None
    assert done.completed_at is None and waiting.handed_out_at is None and not second.done()
    # when the extension asks for its next event
    second_event = pool.submit(extension_next, runtime, identifier)
    # then the first invocation completes, and only then the second is handed out (with its INVOKE event)
    assert second.result(timeout=5)[2] == {"n": 2}
    assert second_event.result(timeout=5)[2]["requestId"] == waiting.request_id
    assert done.completed_at is not None and waiting.handed_out_at is not None
    assert done.response_at <= done.extension_next_at["probe"] <= done.completed_at <= waiting.handed_out_at
    assert json.loads(done.response or b"") == {"ok": True}


def test_a_response_for_an_invocation_not_in_progress_is_refused(runtime: LocalLambdaRuntime) -> None:
    status, _, answer = call(runtime, "POST", "/2018-06-01/runtime/invocation/not-a-request/response", {})
    assert status == 400 and answer["errorType"] == "InvalidRequestID"


def test_a_runtime_removes_the_log_file_it_made_and_keeps_its_text() -> None:
    # given a runtime that made its own temporary log file, with something written to it
    local = LocalLambdaRuntime(None, timeout_s=30)
    local.start()
    local.log_path.write_text("START RequestId: probe\n")

    # when it is closed
    local.close()

    # then the file is gone and its text is still there to read
    assert not local.log_path.exists()
    assert local.log_text() == "START RequestId: probe\n"

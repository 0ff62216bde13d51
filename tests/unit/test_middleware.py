"""The request-event middleware: one schema-v1 event per request, whatever the request or the app does."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from lambda_api.middleware import PulseMiddleware
from lambda_api.settings import ApiSettings, load_settings
from pulse_contract.request_event import FIELD_NAMES, UNKNOWN_CLIENT, UNMATCHED_ROUTE, RequestEvent


class CapturingPublisher:
    def __init__(self) -> None:
        self.events: list[RequestEvent] = []
        self.flushes = 0
        self.closes = 0

    def publish(self, event: RequestEvent) -> None:
        self.events.append(event)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closes += 1


class Boom(RuntimeError):
    pass


def monitored_app(publisher: CapturingPublisher, **overrides: Any) -> FastAPI:
    """A small app with one route of each kind, monitored by the middleware in one line."""
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/users/{user_id}/orders/{order_id}")
    async def order(user_id: int, order_id: int) -> dict[str, int]:
        return {"user": user_id, "order": order_id}

    @app.get("/fail")
    async def fail() -> None:
        raise Boom("the app raised")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in (b"a" * 10, b"b" * 20, b"c" * 30):
                await asyncio.sleep(0.02)
                yield chunk

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/internal/metrics")
    async def metrics() -> dict[str, int]:
        return {"n": 1}

    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    app.mount("/v2", sub)
    app.mount("/raw", plain_asgi_app)

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["name"])

    app.add_route("/plain/{name}", plain)
    app.add_middleware(PulseMiddleware, settings=load_settings(publisher="off", **overrides), publisher=publisher)
    return app


@pytest.fixture
def publisher() -> CapturingPublisher:
    return CapturingPublisher()


@pytest.fixture
def client(publisher: CapturingPublisher) -> TestClient:
    return TestClient(monitored_app(publisher, record_path="raw"), raise_server_exceptions=True)


def test_matched_route_records_every_v1_field(client: TestClient, publisher: CapturingPublisher) -> None:
    # given a monitored app; when a plain route is requested
    before_ms = time.time_ns() // 1_000_000
    response = client.get("/hello", headers={"user-agent": "pytest-agent/1.0"})
    after_ms = time.time_ns() // 1_000_000
    # then one event describes it, field by field
    assert response.status_code == 200
    [event] = publisher.events
    assert tuple(event.to_dict()) == FIELD_NAMES
    assert event.v == 1
    assert len(event.id) == 32 and int(event.id, 16) >= 0
    assert before_ms <= event.ts <= after_ms
    assert (event.method, event.route, event.path, event.status) == ("GET", "/hello", "/hello", 200)
    assert event.bytes_out == len(response.content)
    assert 0 < event.latency_ms < (after_ms - before_ms) + 1
    assert event.client_ip == "testclient"
    assert event.user_agent == "pytest-agent/1.0"
    assert RequestEvent.from_dict(json.loads(event.to_json())) == event


def test_parameterised_route_records_the_template_not_the_values(
    client: TestClient, publisher: CapturingPublisher
) -> None:
    # when two requests hit the same route with different parameters
    client.get("/users/1/orders/7")
    client.get("/users/42/orders/9000")
    # then both carry the route template, and the raw paths differ
    assert [e.route for e in publisher.events] == ["/users/{user_id}/orders/{order_id}"] * 2
    assert [e.path for e in publisher.events] == ["/users/1/orders/7", "/users/42/orders/9000"]


def test_unmatched_paths_collapse_to_one_route_value(client: TestClient, publisher: CapturingPublisher) -> None:
    # when a scanner probes paths no route matches
    for path in ("/wp-admin.php", "/.env", "/users/1/orders/7/extra"):
        assert client.get(path).status_code == 404
    # then all of them share one route value
    assert {e.route for e in publisher.events} == {UNMATCHED_ROUTE}
    assert {e.status for e in publisher.events} == {404}


def test_wrong_method_on_a_known_route_keeps_its_template(client: TestClient, publisher: CapturingPublisher) -> None:
    # when a route is called with a method it does not serve
    response = client.delete("/hello")
    # then the event carries 405 and the route's template
    assert response.status_code == 405
    assert (publisher.events[0].route, publisher.events[0].status) == ("/hello", 405)


def test_raising_route_records_500_and_the_exception_propagates(
    client: TestClient, publisher: CapturingPublisher
) -> None:
    # when the route raises, then the exception still reaches the server
    with pytest.raises(Boom):
        client.get("/fail")
    # and the event says 500 for the route's template
    [event] = publisher.events
    assert (event.route, event.status) == ("/fail", 500)


def test_raising_route_seen_by_a_client_is_a_500_event(publisher: CapturingPublisher) -> None:
    # given a server that turns exceptions into responses (as uvicorn does)
    client = TestClient(monitored_app(publisher), raise_server_exceptions=False)
    # when the route raises
    response = client.get("/fail")
    # then the client gets a 500 and so does the event
    assert response.status_code == 500
    assert publisher.events[0].status == 500


def test_streaming_route_counts_every_chunk_and_times_the_last_one(
    client: TestClient, publisher: CapturingPublisher
) -> None:
    # when a streaming route sends three chunks 20 ms apart
    response = client.get("/stream")
    # then bytes_out is the whole body and latency runs to the last chunk
    [event] = publisher.events
    assert response.content == b"a" * 10 + b"b" * 20 + b"c" * 30
    assert event.bytes_out == 60
    assert event.latency_ms >= 55  # three sleeps of 20 ms before the last byte


def test_mounted_sub_application_routes_get_the_mount_prefix(client: TestClient, publisher: CapturingPublisher) -> None:
    # when a route of an app mounted under /v2 is requested
    client.get("/v2/things/abc")
    # then the template includes the mount's prefix
    assert publisher.events[0].route == "/v2/things/{thing_id}"


def test_plain_starlette_routes_and_mounted_asgi_apps_get_their_templates(
    client: TestClient, publisher: CapturingPublisher
) -> None:
    # when a route added with add_route and an ASGI app mounted under /raw are requested
    client.get("/plain/abc")
    client.get("/raw/some/file.txt")
    # then each carries its template (FastAPI does not put such routes in the scope itself)
    assert [(e.route, e.status) for e in publisher.events] == [("/plain/{name}", 200), ("/raw/{path}", 204)]


def test_a_starlette_app_with_nested_mounts(publisher: CapturingPublisher) -> None:
    # given a plain Starlette app: a router mounted under /api and an ASGI app under /files
    async def thing(request: Request) -> PlainTextResponse:
        return PlainTextResponse("thing")

    routes = [Mount("/api", routes=[Route("/things/{thing_id}", thing)]), Mount("/files", app=plain_asgi_app)]
    app = Starlette(routes=routes)
    app.add_middleware(PulseMiddleware, settings=load_settings(publisher="off"), publisher=publisher)
    # when both are requested, then the templates include the mount prefixes once
    client = TestClient(app)
    client.get("/api/things/7")
    client.get("/files/a/b")
    assert [e.route for e in publisher.events] == ["/api/things/{thing_id}", "/files/{path}"]


def test_excluded_routes_are_not_recorded(publisher: CapturingPublisher) -> None:
    # given /health excluded exactly and /internal/* by prefix
    client = TestClient(monitored_app(publisher, excluded_routes="/health,/internal/*"))
    # when those and another route are requested
    client.get("/health")
    client.get("/internal/metrics")
    client.get("/hello")
    # then only the other route is recorded
    assert [e.route for e in publisher.events] == ["/hello"]


def test_excluding_unmatched_drops_scanner_noise(publisher: CapturingPublisher) -> None:
    client = TestClient(monitored_app(publisher, excluded_routes="UNMATCHED"))
    client.get("/nothing/here")
    client.get("/hello")
    assert [e.route for e in publisher.events] == ["/hello"]


def test_a_failing_publisher_never_breaks_the_request() -> None:
    # given a publisher that raises
    class BrokenPublisher(CapturingPublisher):
        def publish(self, event: RequestEvent) -> None:
            raise OSError("disk full")

    client = TestClient(monitored_app(BrokenPublisher()))
    # when a request is served, then the client still gets its answer
    response = client.get("/hello")
    assert response.status_code == 200
    assert response.json() == {"hello": "world"}


def test_lifespan_shutdown_closes_the_publisher_off_the_event_loop(publisher: CapturingPublisher) -> None:
    # given a publisher whose close takes a while (delivering what is queued)
    loop_threads: set[int] = set()
    close_threads: list[int] = []

    def slow_close() -> None:
        close_threads.append(threading.get_ident())
        time.sleep(0.05)
        publisher.closes += 1

    publisher.close = slow_close  # type: ignore[method-assign]
    app = monitored_app(publisher)

    @app.get("/loop")
    async def loop() -> dict[str, str]:
        loop_threads.add(threading.get_ident())
        return {}

    # when a server starts and stops the app
    with TestClient(app) as client:
        client.get("/loop")
        assert publisher.closes == 0
    # then the publisher was closed on shutdown, in a thread other than the event loop's
    assert publisher.closes == 1
    assert close_threads and close_threads[0] not in loop_threads


def test_one_line_on_any_fastapi_app_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the log publisher configured by environment only
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("PULSE_PUBLISHER", "log")
    monkeypatch.setenv("PULSE_EVENT_LOG", str(log))
    app = FastAPI()

    @app.get("/ping/{n}")
    async def ping(n: int) -> int:
        return n

    # when the middleware is added in one line and a request served
    app.add_middleware(PulseMiddleware)
    TestClient(app).get("/ping/3")
    # then the event is a line of the event log
    [line] = log.read_text().splitlines()
    assert json.loads(line)["route"] == "/ping/{n}"


# Hostile input


def test_a_4_kib_path_is_truncated_and_stays_unmatched(client: TestClient, publisher: CapturingPublisher) -> None:
    # when a 4 KiB path is requested
    path = "/" + "a" * 4096
    client.get(path)
    # then the recorded path is cut to the limit and the route stays bounded
    [event] = publisher.events
    assert event.path == path[:256]
    assert event.route == UNMATCHED_ROUTE
    assert len(event.to_json()) < 1024


def test_non_ascii_and_percent_encoded_paths_are_recorded_decoded(
    client: TestClient, publisher: CapturingPublisher
) -> None:
    # when paths carry percent-encoded UTF-8 and encoded slashes
    client.get("/v2/things/%E2%9C%93%20caf%C3%A9")
    client.get("/users/1/orders/%2F..%2Fetc")
    # then the route is still the template, the path is decoded text, and the JSON is ASCII
    first, second = publisher.events
    assert (first.route, first.path, first.status) == ("/v2/things/{thing_id}", "/v2/things/✓ café", 200)
    assert second.route == UNMATCHED_ROUTE and second.status == 404
    assert first.to_json().isascii()
    assert json.loads(first.to_json())["path"] == "/v2/things/✓ café"


def test_a_huge_user_agent_is_truncated(client: TestClient, publisher: CapturingPublisher) -> None:
    client.get("/hello", headers={"user-agent": "x" * 65_536})
    assert publisher.events[0].user_agent == "x" * 256


async def _call(middleware: PulseMiddleware, scope: dict[str, Any]) -> list[MutableMapping[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


async def plain_asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def http_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/anything",
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    scope.update(overrides)
    return scope


def test_missing_client_and_invalid_utf8_user_agent_on_a_plain_asgi_app() -> None:
    # given the middleware around a plain ASGI app (no router at all)
    publisher = CapturingPublisher()
    middleware = PulseMiddleware(plain_asgi_app, settings=load_settings(publisher="off"), publisher=publisher)
    # when a request has no client and a user agent that is not UTF-8
    sent = asyncio.run(_call(middleware, http_scope(headers=[(b"user-agent", b"bot\xff\xfe/1")])))
    # then the response passes through and the event records what it can
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    [event] = publisher.events
    assert (event.client_ip, event.route, event.status) == (UNKNOWN_CLIENT, UNMATCHED_ROUTE, 204)
    assert event.user_agent == "bot\ufffd\ufffd/1"


def test_an_app_that_never_answers_is_recorded_as_500() -> None:
    async def silent_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    publisher = CapturingPublisher()
    middleware = PulseMiddleware(silent_app, settings=load_settings(publisher="off"), publisher=publisher)
    asyncio.run(_call(middleware, http_scope()))
    assert publisher.events[0].status == 500


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.text(max_size=600),
    user_agent=st.binary(max_size=2000),
    client=st.one_of(st.none(), st.tuples(st.text(max_size=200), st.integers(0, 65535))),
)
def test_any_path_user_agent_and_client_make_a_bounded_valid_event(
    path: str, user_agent: bytes, client: tuple[str, int] | None
) -> None:
    # given arbitrary text in the path, bytes in the user agent and anything as the client
    publisher = CapturingPublisher()
    config = load_settings(publisher="off", max_path_length=64, max_user_agent_length=32, record_path="raw")
    middleware = PulseMiddleware(plain_asgi_app, settings=config, publisher=publisher)
    scope = http_scope(path=path, headers=[(b"user-agent", user_agent)], client=client)
    # when the request is served
    asyncio.run(_call(middleware, scope))
    # then the event is bounded and its JSON decodes back to the same event
    [event] = publisher.events
    assert len(event.path) <= 64 and len(event.user_agent) <= 32 and len(event.client_ip) <= 64
    assert RequestEvent.from_dict(json.loads(event.to_json())) == event


# Client address behind proxies


def forwarded_event(peer: str, forwarded: list[bytes], config: ApiSettings) -> RequestEvent:
    publisher = CapturingPublisher()
    middleware = PulseMiddleware(plain_asgi_app, settings=config, publisher=publisher)
    headers = [(b"x-forwarded-for", value) for value in forwarded]
    asyncio.run(_call(middleware, http_scope(client=(peer, 443), headers=headers)))
    return publisher.events[0]


TRUSTING = load_settings(publisher="off", trusted_proxies="10.0.0.0/8")


def test_without_trusted_proxies_forwarded_for_is_ignored() -> None:
    event = forwarded_event("10.1.2.3", [b"198.51.100.7"], load_settings(publisher="off"))
    assert event.client_ip == "10.1.2.3"


def test_a_trusted_proxy_hands_over_the_rightmost_untrusted_hop() -> None:
    # given a client-supplied (spoofable) hop, the real client, and an inner proxy hop
    event = forwarded_event("10.0.0.5", [b"203.0.113.66, 198.51.100.7", b"10.0.0.9"], TRUSTING)
    # then the first untrusted hop from the right is the client, not the spoofed leftmost one
    assert event.client_ip == "198.51.100.7"


def test_an_untrusted_peer_cannot_spoof_its_address() -> None:
    event = forwarded_event("198.51.100.7", [b"10.0.0.1"], TRUSTING)
    assert event.client_ip == "198.51.100.7"


def test_garbage_in_the_forwarded_chain_stops_at_the_last_trusted_hop() -> None:
    event = forwarded_event("10.0.0.5", [b"198.51.100.7, not-an-ip, 10.0.0.9"], TRUSTING)
    assert event.client_ip == "10.0.0.9"


def test_a_huge_forwarded_chain_costs_only_its_last_hops() -> None:
    chain = b", ".join([b"10.9.9.9"] * 50_000)
    event = forwarded_event("10.0.0.5", [b"203.0.113.1, " + chain], TRUSTING)
    # every examined hop is trusted, so the leftmost examined one is reported, never the distant hop
    assert event.client_ip == "10.9.9.9"


# What the path may reveal (personal data): recorded only when asked


def test_the_path_is_not_recorded_by_default(publisher: CapturingPublisher) -> None:
    client = TestClient(monitored_app(publisher))
    client.get("/users/1/orders/7")
    client.get("/reset/alice@example.com")
    assert [(e.route, e.path) for e in publisher.events] == [
        ("/users/{user_id}/orders/{order_id}", ""),
        (UNMATCHED_ROUTE, ""),
    ]
    assert "alice" not in publisher.events[1].to_json().decode()


def test_redacted_paths_hide_emails_tokens_and_long_numbers(publisher: CapturingPublisher) -> None:
    client = TestClient(monitored_app(publisher, record_path="redacted"))
    for path in (
        "/reset/alice@example.com/confirm",
        "/session/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "/download/3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "/cards/4111111111111111",
        "/users/42/orders/7",
    ):
        client.get(path)
    assert [e.path for e in publisher.events] == [
        "/reset/{redacted}/confirm",
        "/session/{redacted}",
        "/download/{redacted}",
        "/cards/{redacted}",
        "/users/42/orders/7",
    ]

"""The API the demo monitors: the example shop (``lambda_api.app.create_app``) with its dependencies played by the demo.

The shop answers in well under a millisecond and never fails by itself, so a latency or error
surge needs something behind it to go wrong. Here the traffic driver plays the shop's downstream
dependencies: a request may carry ``x-demo-delay-ms`` (the dependency takes that long) and
``x-demo-fail`` (it fails, and the shop answers that 5xx status). :class:`DependencyFaults` applies
them *inside* Pulse's middleware, so Pulse records the response the client really got, with the
latency it really had. Everything else (routes, 404s for unknown ids, 401s for bad logins or a
missing token) is the shop's own logic.

    uvicorn pulse_local.demo_app:create_demo_app --factory    # buffered publisher, like any server
    pulse_local.demo_app.handler                              # on a (local) Lambda runtime
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware

from lambda_api.anomaly_reader import AnomalyReader
from lambda_api.app import create_app
from lambda_api.publishers import Publisher
from lambda_api.settings import ApiSettings

DELAY_HEADER = b"x-demo-delay-ms"
FAIL_HEADER = b"x-demo-fail"
MAX_DELAY_MS = 15_000.0  # a slow dependency, not a hung one

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class DependencyFaults:
    """Pure ASGI: wait ``x-demo-delay-ms``, then answer ``x-demo-fail`` (a 5xx) or let the shop answer."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        delay_ms, fail = 0.0, 0
        for name, value in scope.get("headers") or ():
            if name == DELAY_HEADER:
                delay_ms = _number(value, 0.0, MAX_DELAY_MS)
            elif name == FAIL_HEADER:
                fail = int(_number(value, 0, 599))
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if fail < 500:
            await self.app(scope, receive, send)
            return
        # The shop still handles the request (routing included, so Pulse records the route that
        # matched); what it answers is replaced by the failure, as a failed dependency would.
        body = json.dumps({"detail": "a dependency of the shop failed"}).encode()
        replaced = False

        async def failing(message: MutableMapping[str, Any]) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": fail, "headers": headers})
            elif message["type"] == "http.response.body" and not replaced:
                replaced = True
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, failing)


def _number(raw: bytes, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        return low
    return min(max(value, low), high) if value == value else low  # NaN: none


def create_demo_app(
    settings: ApiSettings | None = None,
    publisher: Publisher | None = None,
    anomaly_reader: AnomalyReader | None = None,
) -> FastAPI:
    """The example API with :class:`DependencyFaults` innermost (Pulse's middleware sees what it does)."""
    app = create_app(settings, publisher, anomaly_reader)
    # add_middleware() would put it outermost, where Pulse could not see the delay or the failure.
    app.user_middleware.append(Middleware(DependencyFaults))  # type: ignore[arg-type]
    return app


def lambda_handler() -> Any:
    """The Lambda handler of the demo app: the Lambda publisher (after-response extension), built at init."""
    from lambda_api.adapter import build_handler
    from lambda_api.lambda_delivery import lambda_publisher
    from lambda_api.settings import load_settings

    settings = load_settings()
    return build_handler(create_demo_app(settings, publisher=lambda_publisher(settings)))


def __getattr__(name: str) -> Any:
    # ``pulse_local.demo_app.handler`` for the Lambda runtime client; built on first access (its init),
    # so that importing this module for uvicorn registers no Lambda extension.
    if name == "handler":
        handler = lambda_handler()
        globals()["handler"] = handler
        return handler
    raise AttributeError(name)

"""The Lambda adapter: API Gateway (HTTP API, payload v2) events in, the ASGI app in between, responses out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def build_handler(app: FastAPI | None = None) -> LambdaHandler:
    """A Lambda handler serving ``app`` (default: ``create_app()`` from the environment) through Mangum.

    Lifespan is off: Mangum would run startup and shutdown on every invocation. After each
    invocation the publisher is flushed, so even a buffered publisher leaves nothing in flight when
    Lambda freezes the environment (the per-request publisher never has anything pending).
    """
    if app is None:
        from lambda_api.app import create_app

        app = create_app()
    adapter = Mangum(app, lifespan="off")
    publisher = getattr(app.state, "pulse_publisher", None)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return adapter(event, context)
        finally:
            if publisher is not None:
                publisher.flush()

    handler.app = app  # type: ignore[attr-defined]
    return handler

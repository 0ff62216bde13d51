"""The Lambda adapter: API Gateway (HTTP API, payload v2) events in, the ASGI app in between, responses out."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from lambda_api.lambda_delivery.after_response import AfterResponsePublisher
from lambda_api.lambda_delivery.extension import cancel_response_watch, watch_response_post

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def build_handler(app: FastAPI | None = None) -> LambdaHandler:
    """A Lambda handler serving ``app`` (default: ``create_app()`` from the environment) through Mangum.

    Lifespan is off: Mangum would run startup and shutdown on every invocation. Without ``app``,
    the publisher is the one for Lambda (:func:`lambda_api.lambda_delivery.lambda_publisher`), which
    registers the after-response extension when that is the delivery mode: so build the handler
    at import time, during Lambda's init phase.

    After each invocation, an after-response publisher learns that the handler returned and, once
    the runtime client has posted the response, that it was posted (its extension delivers then).
    Any other publisher is flushed, so even a buffered one leaves nothing in flight when Lambda
    freezes the environment (the per-request publisher never has anything pending).
    """
    if app is None:
        from lambda_api.app import create_app
        from lambda_api.lambda_delivery import lambda_publisher
        from lambda_api.settings import load_settings

        settings = load_settings()
        app = create_app(settings, publisher=lambda_publisher(settings))
    adapter = Mangum(app, lifespan="off")
    publisher = getattr(app.state, "pulse_publisher", None)

    if isinstance(publisher, AfterResponsePublisher):
        after_response = publisher

        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            cancel_response_watch()  # the previous invocation's, if its post went unseen
            request_id = str(getattr(context, "aws_request_id", ""))
            after_response.handler_started(request_id)
            try:
                return adapter(event, context)
            finally:
                if after_response.deferred:
                    after_response.handler_finished(request_id)
                    watch_response_post(partial(after_response.response_posted, request_id))

    else:

        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            try:
                return adapter(event, context)
            finally:
                if publisher is not None:
                    publisher.flush()

    handler.app = app  # type: ignore[attr-defined]
    return handler

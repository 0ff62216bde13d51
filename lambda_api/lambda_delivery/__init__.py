"""How request events leave a Lambda invocation: after the response (default) or in the request.

``PULSE_LAMBDA_DELIVERY=after_response`` (default) registers an internal extension with the Lambda
Extensions API while the handler module is imported (init phase), and events are put on Kinesis
after the runtime has posted the response, before Lambda may freeze the environment.
``in_request`` puts them on Kinesis before the handler returns. After-response delivery falls back
to in-request delivery, with one warning, wherever the Extensions API cannot be used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from lambda_api.publishers import Publisher, build_publisher, kinesis_delivery
from lambda_api.settings import ApiSettings

logger = logging.getLogger("pulse.lambda")

_registered_in_process = False


def wants_after_response(settings: ApiSettings, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``settings`` ask for after-response delivery (the Kinesis publisher, per-request mode)."""
    return (
        settings.publisher == "kinesis"
        and settings.resolved_mode(environ) == "request"
        and settings.lambda_delivery == "after_response"
    )


def extensions_api_unavailable(environ: Mapping[str, str]) -> str | None:
    """Why an internal extension cannot be registered here, or None when it can."""
    if not environ.get("AWS_LAMBDA_RUNTIME_API"):
        return "the Lambda Runtime API is not available (AWS_LAMBDA_RUNTIME_API is not set)"
    if not environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return "not running on Lambda (AWS_LAMBDA_FUNCTION_NAME is not set)"
    if environ.get("AWS_LAMBDA_MAX_CONCURRENCY"):
        return "invocations run concurrently in this environment (AWS_LAMBDA_MAX_CONCURRENCY)"
    if _registered_in_process:
        return "this process has registered its extension already"
    return None


def lambda_publisher(settings: ApiSettings, environ: Mapping[str, str] | None = None) -> Publisher | None:
    """The publisher for a Lambda handler; registers the extension when it delivers after the response.

    Must run during init (module import): Lambda refuses registrations once the runtime has asked
    for its first invocation.
    """
    global _registered_in_process
    environ = os.environ if environ is None else environ
    if not wants_after_response(settings, environ):
        return build_publisher(settings)

    from lambda_api.lambda_delivery.after_response import AfterResponsePublisher
    from lambda_api.lambda_delivery.extension import ExtensionsApiError, InternalExtension, on_sigterm

    reason = extensions_api_unavailable(environ)
    if reason is None:
        delivery, fallback = kinesis_delivery(settings)
        publisher = AfterResponsePublisher(delivery, fallback, settings.request_budget_s)
        try:
            extension = InternalExtension.register(
                environ["AWS_LAMBDA_RUNTIME_API"], publisher.serve_invocation, publisher.extension_failed
            )
        except ExtensionsApiError as error:
            reason = str(error)
        else:
            _registered_in_process = True
            publisher.attach_extension()
            extension.start()
            if not on_sigterm(publisher.shutdown):
                logger.warning("pulse: no SIGTERM handler (not the main thread): events queued at shutdown may be lost")
            return publisher
    logger.warning("pulse: after-response delivery unavailable: %s; events are delivered in the request", reason)
    return build_publisher(settings)

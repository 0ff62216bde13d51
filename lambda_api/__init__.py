"""Pulse inside the monitored API: request events, their publishers, the Lambda delivery, and an example app.

What a FastAPI app needs to be monitored is importable from here::

    from lambda_api import PulseMiddleware, load_settings
    app.add_middleware(PulseMiddleware, settings=load_settings())

The rest of the package is the example shop (:mod:`lambda_api.shop`, :func:`create_app`), its Lambda
handler (:mod:`lambda_api.handler`), the anomalies endpoint and the fallback-log replay tool.
Names are resolved on first use, so importing one part does not import the others (cold starts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambda_api.adapter import build_handler
    from lambda_api.app import create_app
    from lambda_api.lambda_delivery import lambda_publisher
    from lambda_api.middleware import PulseMiddleware
    from lambda_api.publishers import Publisher, build_publisher
    from lambda_api.settings import ApiSettings, ApiSettingsError, load_settings
    from pulse_contract.request_event import RequestEvent

_EXPORTS = {
    "PulseMiddleware": "lambda_api.middleware",
    "ApiSettings": "lambda_api.settings",
    "ApiSettingsError": "lambda_api.settings",
    "load_settings": "lambda_api.settings",
    "Publisher": "lambda_api.publishers",
    "build_publisher": "lambda_api.publishers",
    "lambda_publisher": "lambda_api.lambda_delivery",
    "RequestEvent": "pulse_contract.request_event",
    "create_app": "lambda_api.app",
    "build_handler": "lambda_api.adapter",
}

__all__ = [
    "ApiSettings",
    "ApiSettingsError",
    "Publisher",
    "PulseMiddleware",
    "RequestEvent",
    "build_handler",
    "build_publisher",
    "create_app",
    "lambda_publisher",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lambda_api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""The monitored application: ``create_app()`` builds the example shop API with Pulse's middleware.

uvicorn lambda_api.app:create_app --factory      # a long-running server (buffered publisher)
lambda_api.handler.handler                       # the same app on Lambda (per-request publisher)
"""

from __future__ import annotations

from fastapi import FastAPI

from lambda_api import anomalies_endpoint, shop
from lambda_api.anomaly_reader import AnomalyReader
from lambda_api.middleware import PulseMiddleware
from lambda_api.publishers import Publisher, build_publisher
from lambda_api.settings import ApiSettings, load_settings


def create_app(
    settings: ApiSettings | None = None,
    publisher: Publisher | None = None,
    anomaly_reader: AnomalyReader | None = None,
) -> FastAPI:
    """The example API. Settings default to the ``PULSE_*`` environment and are validated here, at start-up.

    ``publisher`` and ``anomaly_reader`` replace the ones the settings select (tests, benchmarks).
    The publisher is ``app.state.pulse_publisher`` (None when ``PULSE_PUBLISHER=off``).
    """
    settings = settings if settings is not None else load_settings()
    app = FastAPI(
        title="Pulse example shop",
        summary="A small API monitored by Pulse: every request becomes an event on Kinesis.",
        version="1.0.0",
    )
    app.state.settings = settings
    app.state.shop = shop.Shop.seeded()
    app.state.anomaly_reader = (
        anomaly_reader
        if anomaly_reader is not None
        else anomalies_endpoint.LazyAnomalyReader(
            settings.anomaly_table, max_items_read=settings.anomalies_max_items_read
        )
    )
    app.state.monitoring_auth = settings.resolved_monitoring_auth()
    app.include_router(shop.router)
    app.include_router(anomalies_endpoint.router)
    publisher = publisher if publisher is not None else build_publisher(settings)
    app.state.pulse_publisher = publisher
    if publisher is not None:
        app.add_middleware(PulseMiddleware, settings=settings, publisher=publisher)
    return app

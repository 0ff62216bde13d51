"""Where request events go: Kinesis (per request or buffered), a log, or nowhere (``PULSE_PUBLISHER``)."""

from __future__ import annotations

from typing import Protocol

from lambda_api.events import RequestEvent
from lambda_api.settings import PulseSettings


class Publisher(Protocol):
    """What the middleware hands events to. ``publish`` must return within the publisher's budget."""

    def publish(self, event: RequestEvent) -> None: ...

    def flush(self) -> None:
        """Deliver anything queued, now."""

    def close(self) -> None:
        """Flush, then release resources; later events go to the fallback log."""


def build_publisher(settings: PulseSettings) -> Publisher | None:
    """The publisher ``settings`` select; None for ``off`` (the middleware then records nothing)."""
    if settings.publisher == "off":
        return None
    if settings.publisher == "log":
        from lambda_api.publishers.log import LogPublisher

        return LogPublisher(settings.event_log)
    from lambda_api.publishers.delivery import KinesisDelivery, kinesis_client
    from lambda_api.publishers.fallback import FallbackLog
    from lambda_api.publishers.kinesis import BufferedKinesisPublisher, RequestKinesisPublisher

    assert settings.stream_name is not None  # validated by PulseSettings
    mode = settings.resolved_mode()
    delivery = KinesisDelivery(
        settings.stream_name,
        kinesis_client(settings.connect_timeout_s, settings.read_timeout_s),
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
    )
    fallback = FallbackLog(settings.fallback_log)
    if mode == "request":
        return RequestKinesisPublisher(delivery, fallback, budget_s=settings.request_budget_s)
    return BufferedKinesisPublisher(
        delivery,
        fallback,
        budget_s=settings.flush_budget_s,
        max_events=settings.buffer_max_events,
        flush_interval_s=settings.flush_interval_s,
        flush_records=settings.flush_records,
    )

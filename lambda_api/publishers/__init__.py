"""Where request events go: Kinesis (per request or buffered), a log, or nowhere (``PULSE_PUBLISHER``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from lambda_api.settings import ApiSettings
from pulse_contract.request_event import RequestEvent

if TYPE_CHECKING:
    from lambda_api.publishers.delivery import KinesisDelivery
    from lambda_api.publishers.fallback import FallbackLog


class Publisher(Protocol):
    """What the middleware hands events to. ``publish`` must return within the publisher's budget."""

    def publish(self, event: RequestEvent) -> None: ...

    def flush(self) -> None:
        """Deliver anything queued, now."""

    def close(self) -> None:
        """Flush, then release resources; later events go to the fallback log."""


def build_publisher(settings: ApiSettings) -> Publisher | None:
    """The publisher ``settings`` select; None for ``off`` (the middleware then records nothing)."""
    if settings.publisher == "off":
        return None
    if settings.publisher == "log":
        from lambda_api.publishers.log import LogPublisher

        return LogPublisher(settings.event_log)
    from lambda_api.publishers.kinesis import BufferedKinesisPublisher, RequestKinesisPublisher

    delivery, fallback = kinesis_delivery(settings)
    if settings.resolved_mode() == "request":
        return RequestKinesisPublisher(delivery, fallback, budget_s=settings.request_budget_s)
    return BufferedKinesisPublisher(
        delivery,
        fallback,
        budget_s=settings.flush_budget_s,
        max_events=settings.buffer_max_events,
        flush_interval_s=settings.flush_interval_s,
        flush_records=settings.flush_records,
        shutdown_deadline_s=settings.shutdown_deadline_s,
    )


def kinesis_delivery(settings: ApiSettings) -> tuple[KinesisDelivery, FallbackLog]:
    """The Kinesis delivery (one client with the settings' timeouts) and fallback log a publisher uses."""
    from lambda_api.publishers.delivery import CircuitBreaker, KinesisDelivery, kinesis_client
    from lambda_api.publishers.fallback import FallbackLog

    if settings.stream_name is None:
        raise ValueError("the kinesis publisher needs a stream name")  # ApiSettings validates this
    delivery = KinesisDelivery(
        settings.stream_name,
        kinesis_client(settings.connect_timeout_s, settings.read_timeout_s),
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
        breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s),
    )
    return delivery, FallbackLog(settings.fallback_log)

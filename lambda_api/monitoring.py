"""``GET /monitoring/anomalies``: the anomalies the detection job wrote, newest first, one page at a time."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lambda_api.anomalies import (
    DAY_MS,
    AnomalyQuery,
    AnomalyStore,
    CursorError,
    StoreUnavailable,
    default_range,
)
from lambda_api.settings import PulseSettings

Kind = Literal["spike", "drop", "silence", "error_surge", "latency_surge", "ip_burst", "ip_scan", "ip_auth_failures"]


class AnomalyFilters(BaseModel):
    """Query parameters of the endpoint; unknown parameters are rejected rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")

    subject_type: Literal["route", "client"] | None = Field(None, description="route or client; required with subject")
    subject: str | None = Field(None, min_length=1, max_length=1024, description="route template or client IP")
    kind: Kind | None = None
    since: datetime | None = Field(None, description="window_end at or after (ISO 8601; naive means UTC)")
    until: datetime | None = Field(None, description="window_end before (default: now)")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, min_length=1, max_length=4096, description="next_cursor of the previous page")

    @model_validator(mode="after")
    def _consistent(self) -> AnomalyFilters:
        if self.subject is not None and self.subject_type is None:
            raise ValueError("subject needs subject_type")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class AnomalyRecord(BaseModel):
    """DESIGN.md's anomaly record."""

    pk: str
    sk: str
    kind: str
    subject_type: str
    subject: str
    window_start: int
    window_end: int
    observed: float
    expected: float
    score: float
    severity: str
    detected_at: int
    ttl: int
    phase: Literal["open", "escalate", "end"] = Field(
        "open", description="where the record sits in its incident: first window, escalation, or end"
    )
    kinds: str | None = Field(
        None, description="every kind the subject's incident has shown so far, comma-separated, `kind` first"
    )


class AnomalyPageOut(BaseModel):
    items: list[AnomalyRecord]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class LazyAnomalyStore:
    """Creates the DynamoDB client on first use: most requests never read anomalies, so cold starts skip it."""

    def __init__(self, table_name: str | None, connect_timeout_s: float = 1.0, read_timeout_s: float = 3.0) -> None:
        self.table_name = table_name
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._store: AnomalyStore | None = None
        self._lock = threading.Lock()

    def get(self) -> AnomalyStore:
        if self.table_name is None:
            raise StoreUnavailable("PULSE_ANOMALY_TABLE is not set")
        with self._lock:
            if self._store is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=self._timeouts[0],
                    read_timeout=self._timeouts[1],
                    retries={"total_max_attempts": 2, "mode": "standard"},
                )
                self._store = AnomalyStore(self.table_name, boto3.client("dynamodb", config=config))
            return self._store


async def get_store(request: Request) -> LazyAnomalyStore | AnomalyStore:
    """The app's store (resolved in the endpoint, after the parameters are validated)."""
    store: LazyAnomalyStore | AnomalyStore = request.app.state.anomaly_store
    return store


async def get_settings(request: Request) -> PulseSettings:
    settings: PulseSettings = request.app.state.settings
    return settings


def _invalid(field: str, message: str, value: Any) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    detail = [
        {"type": "value_error", "loc": ["query", field], "msg": message, "input": None if value is None else str(value)}
    ]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


router = APIRouter(prefix="/monitoring", tags=["monitoring"])


@router.get("/anomalies")
def list_anomalies(
    filters: Annotated[AnomalyFilters, Query()],
    settings: Annotated[PulseSettings, Depends(get_settings)],
    source: Annotated[LazyAnomalyStore | AnomalyStore, Depends(get_store)],
) -> AnomalyPageOut:
    """Anomalies with window_end in [since, until), newest first; one subject's, or across subjects."""
    since_ms, until_ms = default_range(
        filters.since, filters.until, settings.anomalies_lookback_days, time.time_ns() // 1_000_000
    )
    if since_ms >= until_ms:
        raise _invalid("since", "since must be before until", filters.since)
    query = AnomalyQuery(
        since_ms=since_ms,
        until_ms=until_ms,
        subject_type=filters.subject_type,
        subject=filters.subject,
        kind=filters.kind,
        limit=filters.limit,
    )
    if not query.by_subject and until_ms - since_ms > settings.anomalies_max_days * DAY_MS:
        raise _invalid(
            "since",
            f"across subjects the range is at most {settings.anomalies_max_days} days; narrow it or give a subject",
            filters.since,
        )
    try:
        store = source.get() if isinstance(source, LazyAnomalyStore) else source
    except StoreUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    try:
        page = store.page(query, filters.cursor)
    except CursorError as error:
        raise _invalid("cursor", str(error), filters.cursor) from None
    except StoreUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "anomaly store unavailable") from error
    return AnomalyPageOut(items=[AnomalyRecord(**item) for item in page.items], next_cursor=page.next_cursor)

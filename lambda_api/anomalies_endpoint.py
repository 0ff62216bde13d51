"""``GET /monitoring/anomalies``: the anomalies the detection job wrote, newest first, one page at a time."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from lambda_api.anomaly_reader import (
    RESPONSE_COLUMNS,
    AnomalyQuery,
    AnomalyReader,
    CursorError,
    QueryRejected,
    StoreUnavailable,
    default_range,
)
from lambda_api.openapi import errors
from lambda_api.settings import ApiSettings
from pulse_contract import UNMATCHED_ROUTE, Anomaly, AnomalyKind, SubjectType
from pulse_contract.anomaly_table import KEY_ATTRIBUTES

# The partition key is "<subject_type>#<subject>" and DynamoDB keys hold at most 2048 bytes of UTF-8:
# 500 characters (at most 2000 bytes) always fit.
MAX_SUBJECT_CHARS = 500


def _iso_only(value: Any) -> Any:
    """ISO 8601 text only: pydantic would also take a number of seconds (``0.5``), which the document does not."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
    raise ValueError("an ISO 8601 date-time is required")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


class AnomalyFilters(BaseModel):
    """Query parameters of the endpoint; unknown parameters are rejected rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")

    subject_type: SubjectType | None = Field(
        None, description="route or client; with `subject` absent, filters across subjects"
    )
    subject: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_SUBJECT_CHARS,
        description="a route template or a client IP; without `subject_type`, a subject starting with '/' "
        f"(or {UNMATCHED_ROUTE}) is a route and any other a client",
    )
    kind: AnomalyKind | None = None
    since: IsoDateTime | None = Field(
        None,
        description="window_end at or after (ISO 8601; naive means UTC); times before 1970 mean 1970. "
        "Default: `PULSE_ANOMALIES_LOOKBACK_DAYS` before `until`",
    )
    until: IsoDateTime | None = Field(
        None,
        description="window_end before (default: now); times after 9999-12-31 mean that day. "
        "Not after `since`: an empty range, so no items",
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page of the same query (422 for any other value)",
    )

    def resolved_subject_type(self) -> str | None:
        if self.subject is None or self.subject_type is not None:
            return self.subject_type
        return "route" if self.subject.startswith("/") or self.subject == UNMATCHED_ROUTE else "client"


def _record_model() -> type[BaseModel]:
    """The response model of one record, made from the contract: its keys, then its fields in order."""
    specs = {spec.name: spec for spec in dataclasses.fields(Anomaly)}
    definitions: dict[str, Any] = {}
    for name, kind in RESPONSE_COLUMNS:
        spec = specs.get(name)
        if spec is None:  # a key attribute
            definitions[name] = (kind, Field(description=KEY_ATTRIBUTES[name]))
            continue
        values = spec.metadata.get("values")
        annotation = Literal[values] if values else kind  # Literal[("a", "b")]: one of them
        default = ... if spec.default is dataclasses.MISSING else spec.default
        definitions[name] = (annotation, Field(default, description=spec.metadata["doc"]))
    return create_model("AnomalyRecord", __doc__="One anomaly record, as the detection job wrote it.", **definitions)


if TYPE_CHECKING:
    AnomalyRecord = BaseModel
else:
    AnomalyRecord = _record_model()


class AnomalyPageOut(BaseModel):
    items: list[AnomalyRecord]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class LazyAnomalyReader:
    """Creates the DynamoDB client on first use: most requests never read anomalies, so cold starts skip it."""

    def __init__(
        self,
        table_name: str | None,
        connect_timeout_s: float = 1.0,
        read_timeout_s: float = 3.0,
        max_items_read: int = 2000,
    ) -> None:
        self.table_name = table_name
        self.max_items_read = max_items_read
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._store: AnomalyReader | None = None
        self._lock = threading.Lock()

    def get(self) -> AnomalyReader:
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
                client = boto3.client("dynamodb", config=config)
                self._store = AnomalyReader(self.table_name, client, max_items_read=self.max_items_read)
            return self._store


async def get_store(request: Request) -> LazyAnomalyReader | AnomalyReader:
    """The app's store (resolved in the endpoint, after the parameters are validated)."""
    store: LazyAnomalyReader | AnomalyReader = request.app.state.anomaly_reader
    return store


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def _invalid(field: str, message: str, value: Any) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    detail = [
        {"type": "value_error", "loc": ["query", field], "msg": message, "input": None if value is None else str(value)}
    ]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


async def require_authorization(request: Request) -> None:
    """Refuse (403) a request without the API Gateway authorizer context ``PULSE_MONITORING_AUTH`` asks for.

    On Lambda, API Gateway routes ``/monitoring`` and ``/monitoring/{proxy+}`` through its IAM
    authorizer, but any path it does not match that way (encodings, double slashes, case) reaches
    the same function through ``$default``, unauthenticated, and the app may still serve it as
    ``/monitoring/...``. So the endpoint checks, itself, that API Gateway authorized this request:
    the event's ``requestContext.authorizer`` (``iam``, or with ``authorizer`` also ``jwt`` and
    ``lambda``) is set only by an authorizer that allowed it.
    """
    mode = request.app.state.monitoring_auth
    if mode == "none":
        return
    event = request.scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    authorizer = context.get("authorizer") if isinstance(context, dict) else None
    kinds = ("iam",) if mode == "iam" else AUTHORIZER_KINDS
    if isinstance(authorizer, dict) and any(isinstance(authorizer.get(k), dict) and authorizer[k] for k in kinds):
        return
    needed = "IAM (SigV4) authorization" if mode == "iam" else "an API Gateway authorizer"
    raise HTTPException(status.HTTP_403_FORBIDDEN, f"/monitoring needs {needed}")


# The authorizer contexts API Gateway HTTP APIs put in payload v2 events.
AUTHORIZER_KINDS = ("iam", "jwt", "lambda")

router = APIRouter(
    prefix="/monitoring",
    tags=["monitoring"],
    dependencies=[Depends(require_authorization)],
    responses=errors(403),
)


@router.get("/anomalies", responses=errors(503))
def list_anomalies(
    filters: Annotated[AnomalyFilters, Query()],
    settings: Annotated[ApiSettings, Depends(get_settings)],
    source: Annotated[LazyAnomalyReader | AnomalyReader, Depends(get_store)],
) -> AnomalyPageOut:
    """Anomalies with window_end in [since, until), newest first; one subject's, or across subjects.

    A page ends early, with a `next_cursor`, after 25 DynamoDB calls or `PULSE_ANOMALIES_MAX_ITEMS_READ`
    items evaluated; 422 for a cursor of another query, 503 when the table cannot be read.
    """
    since_ms, until_ms = default_range(
        filters.since, filters.until, settings.anomalies_lookback_days, time.time_ns() // 1_000_000
    )
    query = AnomalyQuery(
        since_ms=since_ms,
        until_ms=until_ms,
        subject_type=filters.resolved_subject_type(),
        subject=filters.subject,
        kind=filters.kind,
        limit=filters.limit,
    )
    try:
        store = source.get() if isinstance(source, LazyAnomalyReader) else source
    except StoreUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(error)) from None
    try:
        page = store.page(query, filters.cursor)
    except CursorError as error:
        raise _invalid("cursor", str(error), filters.cursor) from None
    except QueryRejected as error:
        raise _invalid("query", str(error), None) from None
    except StoreUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "anomaly store unavailable") from error
    return AnomalyPageOut(items=[AnomalyRecord(**item) for item in page.items], next_cursor=page.next_cursor)

"""Reading the anomaly table: by subject, or newest first across subjects, one page at a time.

The table's keys are :mod:`pulse_contract.anomaly_table`'s (``pk`` = subject, ``sk`` = window end
and kind; the ``by_day`` index by window end's date). A subject's anomalies are one query on the
table; anomalies across subjects are queries on the index, one day at a time from the newest,
which bounds the work by the number of days asked for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pulse_contract.anomaly_record import OPTIONAL_FIELDS, RECORD_COLUMNS
from pulse_contract.anomaly_table import (
    MAX_KEY_BYTES,
    MAX_TIME_MS,
    MIN_TIME_MS,
    PARTITION_KEY,
    SORT_KEY,
    TIME_INDEX,
    TIME_INDEX_PARTITION_KEY,
    iso_utc,
    subject_key,
)

# What the API returns of an item: its keys and the record's fields (not the index's ``day``).
RESPONSE_COLUMNS = tuple((name, kind) for name, kind in RECORD_COLUMNS if name != TIME_INDEX_PARTITION_KEY)
DAY_MS = 86_400_000


class CursorError(ValueError):
    """The cursor is malformed or belongs to another query."""


class QueryRejected(ValueError):
    """DynamoDB refused the query as invalid (a client error, not an outage)."""


class StoreUnavailable(RuntimeError):
    """The anomaly table could not be read (not configured, missing, unreachable)."""


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of ``moment``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class AnomalyQuery:
    """Which anomalies: window_end in [since_ms, until_ms), optionally one subject type/subject and one kind."""

    since_ms: int
    until_ms: int
    subject_type: str | None = None
    subject: str | None = None
    kind: str | None = None
    limit: int = 50

    @property
    def by_subject(self) -> bool:
        return self.subject_type is not None and self.subject is not None

    def day_count(self) -> int:
        """How many UTC dates the range touches: the index partitions this query reads (0: empty range)."""
        if self.since_ms >= self.until_ms:
            return 0
        return (self._last_day() - datetime.fromtimestamp(self.since_ms / 1000, tz=UTC).date()).days + 1

    def day(self, position: int) -> str:
        """The ``position``-th partition from the newest (0: until's date)."""
        return (self._last_day() - timedelta(days=position)).isoformat()

    def day_position(self, day: Any) -> int | None:
        """Where ``day`` (an ISO date string) is among this query's partitions, or None when it is not one."""
        if not isinstance(day, str) or len(day) != 10:
            return None
        try:
            position = (self._last_day() - date.fromisoformat(day)).days
        except ValueError:
            return None
        return position if 0 <= position < self.day_count() else None

    def _last_day(self) -> date:
        return datetime.fromtimestamp((self.until_ms - 1) / 1000, tz=UTC).date()

    def fingerprint(self) -> str:
        """Binds a cursor to the query it continues (the limit may change between pages)."""
        identity = {key: value for key, value in asdict(self).items() if key != "limit"}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: an index day (None on the table) and the key to start after."""

    fingerprint: str
    day: str | None
    start_key: dict[str, str] | None

    def encode(self) -> str:
        raw = json.dumps({"q": self.fingerprint, "d": self.day, "k": self.start_key}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, query: AnomalyQuery) -> Cursor:
        try:
            raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            fingerprint, day, key = raw["q"], raw["d"], raw["k"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise CursorError("malformed cursor") from None
        if fingerprint != query.fingerprint():
            raise CursorError("cursor belongs to another query")
        if key is not None and (
            not isinstance(key, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in key.items())
            or any(len(v.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES.get(k, 0) for k, v in key.items())
        ):
            raise CursorError("malformed cursor")
        if query.by_subject:
            if day is not None or (
                key is not None and (set(key) != {PARTITION_KEY, SORT_KEY} or key[PARTITION_KEY] != _pk(query))
            ):
                raise CursorError("cursor belongs to another query")
        elif query.day_position(day) is None or (
            key is not None
            and (
                set(key) != {PARTITION_KEY, SORT_KEY, TIME_INDEX_PARTITION_KEY} or key[TIME_INDEX_PARTITION_KEY] != day
            )
        ):
            raise CursorError("cursor belongs to another query")
        return cls(fingerprint, day, key)


@dataclass(frozen=True, slots=True)
class AnomalyPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def _pk(query: AnomalyQuery) -> str:
    return subject_key(str(query.subject_type), str(query.subject))


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (attribute-value form) as a record: keys, every field, plain numbers."""
    record: dict[str, Any] = {}
    for name, kind in RESPONSE_COLUMNS:
        value = item.get(name)
        if value is None:
            # A record written before a field existed: its default, and before grouping, ``kind`` alone.
            record[name] = (
                (record["kind"] if name == "kinds" else OPTIONAL_FIELDS[name]) if name in OPTIONAL_FIELDS else None
            )
        elif "N" in value:
            record[name] = int(float(value["N"])) if kind is int else float(value["N"])
        else:
            record[name] = value.get("S")
    return record


class AnomalyReader:
    """Pages of anomalies from the table, newest first. ``client`` is a boto3 DynamoDB client."""

    def __init__(self, table_name: str, client: Any, max_calls: int = 25, max_items_read: int = 2000) -> None:
        self.table_name = table_name
        self.client = client
        # Bound the DynamoDB calls and the items evaluated for one page; a page cut short still carries a cursor.
        self.max_calls = max_calls
        self.max_items_read = max_items_read

    def page(self, query: AnomalyQuery, cursor_token: str | None = None) -> AnomalyPage:
        """One page of ``query``; CursorError for a bad cursor, QueryRejected or StoreUnavailable when DynamoDB fails.

        A page ends early, with a cursor, after ``max_calls`` DynamoDB calls or ``max_items_read``
        items evaluated (a filter may read many items for few matches).
        """
        cursor = Cursor.decode(cursor_token, query) if cursor_token else None
        if query.by_subject:
            partitions = 1
            first = 0
        else:
            partitions = query.day_count()
            first = (query.day_position(cursor.day) or 0) if cursor else 0
        start_key = cursor.start_key if cursor else None
        fingerprint = query.fingerprint()
        items: list[dict[str, Any]] = []
        calls = 0
        read = 0

        def partition(position: int) -> str | None:
            return None if query.by_subject else query.day(position)

        def resume(day: str | None, key: dict[str, str] | None) -> AnomalyPage:
            return AnomalyPage([_from_item(i) for i in items], Cursor(fingerprint, day, key).encode())

        for position in range(first, partitions):
            day = partition(position)
            while True:
                if calls >= self.max_calls or read >= self.max_items_read:
                    return resume(day, start_key)
                need = query.limit - len(items)
                found, start_key, scanned = self._query(query, day, start_key, need, self.max_items_read - read)
                calls += 1
                read += scanned
                items.extend(found)
                if len(items) >= query.limit:
                    if start_key is not None:
                        return resume(day, start_key)
                    if position + 1 < partitions:
                        return resume(partition(position + 1), None)
                    return AnomalyPage([_from_item(i) for i in items], None)
                if start_key is None:
                    break
        return AnomalyPage([_from_item(i) for i in items], None)

    def _query(
        self, query: AnomalyQuery, day: str | None, start_key: dict[str, str] | None, need: int, may_read: int
    ) -> tuple[list[dict[str, Any]], dict[str, str] | None, int]:
        """One Query call: at most ``need`` matching items, the key to continue after (None: partition done),
        and how many items it evaluated (at most ``may_read``)."""
        names = {"#sk": SORT_KEY}
        values: dict[str, Any] = {":lo": {"S": iso_utc(query.since_ms)}, ":hi": {"S": iso_utc(query.until_ms)}}
        filters = []
        if query.kind is not None:
            names["#kind"] = "kind"
            values[":kind"] = {"S": query.kind}
            filters.append("#kind = :kind")
        request: dict[str, Any] = {"TableName": self.table_name, "ScanIndexForward": False}
        if day is None:
            names["#pk"] = PARTITION_KEY
            values[":pk"] = {"S": _pk(query)}
            request["KeyConditionExpression"] = "#pk = :pk AND #sk BETWEEN :lo AND :hi"
        else:
            names["#day"] = TIME_INDEX_PARTITION_KEY
            values[":day"] = {"S": day}
            request["IndexName"] = TIME_INDEX
            request["KeyConditionExpression"] = "#day = :day AND #sk BETWEEN :lo AND :hi"
            if query.subject_type is not None:
                names["#st"] = "subject_type"
                values[":st"] = {"S": query.subject_type}
                filters.append("#st = :st")
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        request["ExpressionAttributeNames"] = names
        request["ExpressionAttributeValues"] = values
        # Without a filter every evaluated item matches, so Limit=need is exact; with one, read more per call.
        request["Limit"] = max(1, min(need if not filters else max(need, 100), 1000, may_read))
        if start_key is not None:
            request["ExclusiveStartKey"] = {name: {"S": value} for name, value in start_key.items()}
        try:
            response = self.client.query(**request)
        except Exception as error:  # botocore ClientError / connection errors
            if _error_code(error) == "ValidationException":
                raise QueryRejected(_error_message(error)) from error
            raise StoreUnavailable(f"anomaly table {self.table_name!r}: {type(error).__name__}") from error
        found = list(response.get("Items", []))
        last = response.get("LastEvaluatedKey")
        next_key = {name: value["S"] for name, value in last.items()} if last else None
        if len(found) > need:
            found = found[:need]
            next_key = _key_of(found[-1], day)
        return found, next_key, int(response.get("ScannedCount", len(found)))


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _error_message(error: Exception) -> str:
    response = getattr(error, "response", None)
    message = response.get("Error", {}).get("Message", "") if isinstance(response, dict) else ""
    return str(message)[:200] or "invalid query"


def _key_of(item: dict[str, Any], day: str | None) -> dict[str, str]:
    key = {PARTITION_KEY: item[PARTITION_KEY]["S"], SORT_KEY: item[SORT_KEY]["S"]}
    if day is not None:
        key[TIME_INDEX_PARTITION_KEY] = day
    return key


def iter_all(store: AnomalyReader, query: AnomalyQuery) -> Iterator[dict[str, Any]]:
    """Every anomaly of ``query``, following cursors (for scripts and tests)."""
    token: str | None = None
    while True:
        page = store.page(query, token)
        yield from page.items
        if page.next_cursor is None:
            return
        token = page.next_cursor


def default_range(since: datetime | None, until: datetime | None, lookback_days: int, now_ms: int) -> tuple[int, int]:
    """[since, until) in epoch ms: until defaults to now, since to ``lookback_days`` before until.

    Both are clamped to the times the table can hold (:data:`MIN_TIME_MS`, :data:`MAX_TIME_MS`),
    which changes no answer: no window ends outside them.
    """
    until_ms = _clamp(epoch_ms(until)) if until is not None else _clamp(now_ms)
    since_ms = _clamp(epoch_ms(since)) if since is not None else _clamp(until_ms - lookback_days * DAY_MS)
    return since_ms, until_ms


def _clamp(moment_ms: int) -> int:
    return min(max(moment_ms, MIN_TIME_MS), MAX_TIME_MS)

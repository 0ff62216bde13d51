"""The anomaly table: its key schema, the keys of a record, and what the keys can hold.

One item per anomaly record. ``pk`` = ``<subject_type>#<subject>`` (a subject's history is one
query), ``sk`` = ``<window_end ISO 8601>#<kind>`` (sorted by time; a replay of the same window and
kind overwrites the item), ``ttl`` = epoch seconds after which DynamoDB deletes the item. The
``by_day`` index has ``day`` (window_end's UTC date) as partition and ``sk`` as sort key: the newest
anomalies across subjects, one day per query. The CDK construct, the local emulator's table, the
Flink sink and the API's reader all take these names from here.
"""

from __future__ import annotations

from datetime import UTC, datetime

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "ttl"
TIME_INDEX = "by_day"
TIME_INDEX_PARTITION_KEY = "day"
TIME_INDEX_SORT_KEY = SORT_KEY
# Every attribute a key of the table or its index uses (all strings), with what it holds.
KEY_ATTRIBUTES = {
    PARTITION_KEY: "the subject: `<subject_type>#<subject>`",
    SORT_KEY: "the window's end (ISO 8601 UTC, milliseconds) and the kind: `<window_end>#<kind>`",
    TIME_INDEX_PARTITION_KEY: "the UTC date of the window's end (the by_day index's partition)",
}

# DynamoDB's key size limits (bytes of UTF-8): partition key 2048, sort key 1024; ``day`` is a date.
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
MAX_KEY_BYTES = {PARTITION_KEY: MAX_PARTITION_KEY_BYTES, SORT_KEY: MAX_SORT_KEY_BYTES, TIME_INDEX_PARTITION_KEY: 10}
# The window ends the keys can hold: from the epoch to the last day of year 9999 (4-digit ISO years).
MIN_TIME_MS = 0
MAX_TIME_MS = 253_402_214_400_000  # 9999-12-31T00:00:00Z


def iso_utc(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and a Z, sortable as text (the ``sk`` prefix)."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


SUBJECT_KEY_SEPARATOR = "#"


def subject_key(subject_type: str, subject: str) -> str:
    """``pk``: ``route#/users/{id}`` or ``client#10.0.0.1``; also the detection operator's key."""
    return f"{subject_type}{SUBJECT_KEY_SEPARATOR}{subject}"


def sort_key(window_end_ms: int, kind: str) -> str:
    """``sk``: the window's end, then the kind."""
    return f"{iso_utc(window_end_ms)}#{kind}"


def day_key(window_end_ms: int) -> str:
    """``day``: the UTC date of the window's end, the time index's partition."""
    return iso_utc(window_end_ms)[:10]

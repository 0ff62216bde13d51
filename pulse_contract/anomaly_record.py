"""The anomaly record: what the detection job writes and the API returns, one item per record.

Written once here: the Flink sink's columns, the JSON lines of a backtest, the table's items and
the API's response model are all derived from :class:`Anomaly`'s fields. Adding a field is a change
here and in the code that fills it.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from pulse_contract.anomaly_table import (
    PARTITION_KEY,
    SORT_KEY,
    TIME_INDEX_PARTITION_KEY,
    day_key,
    sort_key,
    subject_key,
)
from pulse_contract.request_event import python_type


class SubjectType(StrEnum):
    """What an anomaly is about: a route template, or a client IP."""

    ROUTE = "route"
    CLIENT = "client"


class AnomalyKind(StrEnum):
    """What was seen. Route kinds first, then client kinds (``ip_``)."""

    SPIKE = "spike"
    DROP = "drop"
    SILENCE = "silence"
    ERROR_SURGE = "error_surge"
    LATENCY_SURGE = "latency_surge"
    IP_BURST = "ip_burst"
    IP_SCAN = "ip_scan"
    IP_AUTH_FAILURES = "ip_auth_failures"

    @property
    def subject_type(self) -> SubjectType:
        return SubjectType.CLIENT if self.value.startswith("ip_") else SubjectType.ROUTE


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Phase(StrEnum):
    """Where a record sits in its incident: the first flagged window, a window of higher severity, the end."""

    OPEN = "open"
    ESCALATE = "escalate"
    END = "end"


SUBJECT_TYPES = tuple(s.value for s in SubjectType)
KINDS = tuple(k.value for k in AnomalyKind)
ROUTE_KINDS = tuple(k.value for k in AnomalyKind if k.subject_type is SubjectType.ROUTE)
CLIENT_KINDS = tuple(k.value for k in AnomalyKind if k.subject_type is SubjectType.CLIENT)
SEVERITIES = tuple(s.value for s in Severity)
PHASES = tuple(p.value for p in Phase)


def _doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"doc": text, **extra}


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One record of an incident. Its keys are deterministic, so that a replay overwrites it."""

    kind: str = field(metadata=_doc("the kind that opened the incident", values=KINDS))
    subject_type: str = field(metadata=_doc("route or client", values=SUBJECT_TYPES))
    subject: str = field(metadata=_doc("the route template or the client IP"))
    window_start: int = field(metadata=_doc("start of the window, epoch ms (an end record: of the incident)"))
    window_end: int = field(metadata=_doc("end of the window, epoch ms, exclusive"))
    observed: float = field(metadata=_doc("the value seen in the window (count, rate, latency)"))
    expected: float = field(metadata=_doc("what the baseline expected"))
    score: float = field(metadata=_doc("distance from normal in units of the alert threshold (1.0 = at it)"))
    severity: str = field(metadata=_doc("low, medium or high", values=SEVERITIES))
    detected_at: int = field(metadata=_doc("when the job wrote the record, epoch ms (wall clock)"))
    ttl: int = field(metadata=_doc("epoch seconds after which the table deletes the item"))
    # Optional fields: records written before they existed lack them and read with their default.
    phase: str = field(
        default=Phase.OPEN.value,
        metadata=_doc("where the record sits in its incident: first window, escalation, or end", values=PHASES),
    )
    kinds: str = field(
        default="",
        metadata=_doc("every kind the subject's incident has shown so far, comma-separated, `kind` first"),
    )

    @property
    def kind_list(self) -> tuple[str, ...]:
        """The incident's kinds (``kind`` alone for a record without ``kinds``)."""
        return tuple(self.kinds.split(",")) if self.kinds else (self.kind,)

    @property
    def pk(self) -> str:
        return subject_key(self.subject_type, self.subject)

    @property
    def sk(self) -> str:
        return sort_key(self.window_end, self.kind)

    @property
    def day(self) -> str:
        return day_key(self.window_end)

    def to_record(self) -> dict[str, Any]:
        """The item / JSON line: the keys, every field, and ``day`` for the time index."""
        return {PARTITION_KEY: self.pk, SORT_KEY: self.sk, **asdict(self), TIME_INDEX_PARTITION_KEY: self.day}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Anomaly:
        """A record read back (JSON line, item, API response): numbers coerced, optional fields defaulted."""
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name in record and record[spec.name] is not None:
                values[spec.name] = python_type(spec)(record[spec.name])
        return cls(**values)


# The record's attributes in order with their Python types: keys, fields, the index's day.
RECORD_COLUMNS: tuple[tuple[str, type], ...] = (
    (PARTITION_KEY, str),
    (SORT_KEY, str),
    *((spec.name, python_type(spec)) for spec in fields(Anomaly)),
    (TIME_INDEX_PARTITION_KEY, str),
)
# Fields a record written by an older job may lack, with the value they read as.
OPTIONAL_FIELDS = {spec.name: spec.default for spec in fields(Anomaly) if spec.default is not MISSING}

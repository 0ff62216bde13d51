"""What crosses between the SQL stages, the detectors and the sinks: window aggregates and anomalies.

Plain dataclasses with no Flink import. Field names match the SQL stages' column names, so a
Flink ``Row`` converts with ``RouteWindow(**row.as_dict())``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

ROUTE_KINDS = ("spike", "drop", "silence", "error_surge", "latency_surge")
CLIENT_KINDS = ("ip_burst", "ip_scan", "ip_auth_failures")
KINDS = ROUTE_KINDS + CLIENT_KINDS
UNMATCHED_ROUTE = "UNMATCHED"
# Where a record sits in its incident: the first flagged window, a window of higher severity, the end.
PHASES = ("open", "escalate", "end")


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class RouteWindow:
    """One sliding (HOP) window of one route: counts and latency."""

    route: str
    window_start: int  # epoch ms
    window_end: int  # epoch ms
    count: int
    errors_4xx: int
    errors_5xx: int
    latency_mean: float
    latency_max: float
    # Optional (added with the detectors): AVG(LN(GREATEST(latency_ms, 0.001))), the log of the
    # geometric mean latency. One multi-second request moves it by a few percent where it doubles the
    # mean of a fast route, so latency_surge uses it when the SQL stage provides it.
    latency_log_mean: float | None = None
    # Optional (added with cause grouping): the most requests any single client sent in this window
    # (``MAX`` of the per-client counts). A spike that one client made is that client's anomaly, left
    # to the client detectors; without the column every spike is judged on the whole count.
    top_client_count: int | None = None


@dataclass(frozen=True, slots=True)
class ClientWindow:
    """One tumbling window of one client IP, with the population's figures for the same window."""

    client_ip: str
    window_start: int
    window_end: int
    count: int
    distinct_routes: int
    unmatched: int
    not_found: int
    auth_failures: int
    # The whole population of clients in this window (computed in SQL, identical on every row).
    pop_clients: int
    pop_mean_count: float
    pop_std_count: float


def iso_utc(epoch_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a Z, sortable as text."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """DESIGN.md's anomaly record. Keys are deterministic so that a replay overwrites."""

    kind: str
    subject_type: str  # "route" | "client"
    subject: str
    window_start: int
    window_end: int
    observed: float
    expected: float
    score: float
    severity: str
    detected_at: int  # epoch ms
    ttl: int  # epoch seconds
    # Optional (added with the detectors): "open", "escalate" or "end". An "end" record spans the
    # whole incident (window_start of its first window, window_end when it closed) and carries its
    # peak observed value, score and severity.
    phase: str = "open"
    # Optional (added with incident grouping): every kind the subject's incident has shown so far,
    # comma-separated, ``kind`` (the one that opened it) first; "" in records written before.
    kinds: str = ""

    @property
    def kind_list(self) -> tuple[str, ...]:
        """The incident's kinds (``kind`` alone for a record without ``kinds``)."""
        return tuple(self.kinds.split(",")) if self.kinds else (self.kind,)

    @property
    def pk(self) -> str:
        return f"{self.subject_type}#{self.subject}"

    @property
    def sk(self) -> str:
        return f"{iso_utc(self.window_end)}#{self.kind}"

    @property
    def day(self) -> str:
        """The ``by_day`` index's partition: window_end's UTC date (newest anomalies across subjects)."""
        return iso_utc(self.window_end)[:10]

    def to_record(self) -> dict[str, Any]:
        """The item / JSON line: every DESIGN.md field plus ``day`` for the time index."""
        record = {"pk": self.pk, "sk": self.sk, **asdict(self), "day": self.day}
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Anomaly:
        optional = {"phase", "kinds"}  # records written before the fields existed lack them
        fields = {name: record[name] for name in cls.__dataclass_fields__ if name in record or name not in optional}
        for name in ("window_start", "window_end", "detected_at", "ttl"):
            fields[name] = int(fields[name])
        for name in ("observed", "expected", "score"):
            fields[name] = float(fields[name])
        return cls(**fields)

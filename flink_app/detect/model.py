"""What the SQL stages hand the detectors: window aggregates per route and per client.

Plain dataclasses with no Flink import. Field names match the SQL stages' column names, so a
Flink ``Row`` converts with ``RouteWindow(**row.as_dict())``. What the detectors hand back is the
anomaly record of :mod:`pulse_contract`.
"""

from __future__ import annotations

from dataclasses import dataclass


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

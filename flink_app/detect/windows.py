"""Reference aggregation in plain Python: request events -> route and client window aggregates.

This is the specification of what the job's SQL stages compute, written so it can run without
Flink (unit tests, the quality benchmark, the pure-Python backtest). The SQL stages must produce
exactly these rows:

Route windows: ``HOP(TABLE events, DESCRIPTOR(rowtime), INTERVAL slide, INTERVAL size)`` grouped by
``route``, windows aligned to the epoch, ``[window_start, window_end)``:

* ``count`` = ``COUNT(*)``
* ``errors_4xx`` = requests with ``400 <= status < 500``; ``errors_5xx`` = ``status >= 500``
* ``latency_mean`` = ``AVG(latency_ms)`` as DOUBLE; ``latency_max`` = ``MAX(latency_ms)``;
  ``latency_log_mean`` = ``AVG(LN(GREATEST(latency_ms, 0.001)))``
* ``top_client_count``: the largest number of requests one ``client_ip`` sent to the route in the
  window (the SQL stage aggregates per route and client first, then per route: ``SUM`` of the
  per-client figures, ``MAX`` of their counts)

Client windows: ``TUMBLE(..., INTERVAL size)`` grouped by ``client_ip``:

* ``count``; ``distinct_routes`` = ``COUNT(DISTINCT route)``; ``unmatched`` = requests whose route is
  ``UNMATCHED``; ``not_found`` = ``status = 404``; ``auth_failures`` = ``status IN (401, 403)``
* ``pop_clients``, ``pop_mean_count``, ``pop_std_count``: over every client row of the same window,
  ``COUNT(*)``, ``AVG(CAST(count AS DOUBLE))`` and ``STDDEV_POP(CAST(count AS DOUBLE))`` (population,
  not sample, standard deviation: the detectors remove the client's own share exactly). Flink's
  planner rewrites them to ``SUM(x) / COUNT(x)`` and ``POWER((SUM(x * x) - SUM(x) * SUM(x) / COUNT(x))
  / COUNT(x), 0.5)``; this module computes exactly that (the sums of integer counts are exact), so the
  figures agree to the last bit.

The job sends only the client windows that can matter to the detectors
(:class:`flink_app.detect.clients.CandidateFloors`), with the population of *every* client; the
pure-Python backtest (:mod:`flink_app.detect.backtest`) drops the others the same way.

A window with no request for a key produces no row for that key. Rows come out ordered by
``window_end`` and then key, the order in which an event-time job emits them (per key, increasing).
Latency sums are floating point, added in a different order by Flink's sliced windows: those two
columns agree to within rounding in the last bits (anomaly records round what they report).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flink_app.detect.model import ClientWindow, RouteWindow
from pulse_contract import UNMATCHED_ROUTE

MIN_LATENCY_MS = 0.001  # the floor under LN(): a zero latency must not be -infinity


@dataclass(frozen=True, slots=True)
class WindowGeometry:
    """Window sizes in milliseconds (``pulse.windows``: route.size.s, route.slide.s, client.size.s)."""

    route_size_ms: int = 60_000
    route_slide_ms: int = 10_000
    client_size_ms: int = 60_000

    @classmethod
    def from_config(cls, windows: Any) -> WindowGeometry:
        """From ``JobConfig.windows`` (``pulse.windows``)."""
        return cls(windows.route_size_s * 1000, windows.route_slide_s * 1000, windows.client_size_s * 1000)

    def __post_init__(self) -> None:
        if self.route_size_ms % self.route_slide_ms:
            raise ValueError("route window size must be a multiple of its slide")


@dataclass(frozen=True, slots=True)
class Aggregates:
    route_windows: list[RouteWindow]
    client_windows: list[ClientWindow]
    events: int
    max_ts: int | None  # the newest event time seen (the watermark follows it)


def population_figures(counts: list[int]) -> tuple[int, float, float]:
    """``pop_clients``, ``pop_mean_count``, ``pop_std_count`` as Flink computes them (see the docstring)."""
    n = len(counts)
    total, squares = float(sum(counts)), float(sum(c * c for c in counts))
    # The sums of integer counts are exact; the difference is 0 when every count is equal and otherwise at
    # least 1/n, far above the rounding of total * total / n (below 1e-16 of it) for any real window.
    return n, total / n, math.sqrt((squares - total * total / n) / n)


def aggregate(events: Iterable[Mapping[str, Any]], geometry: WindowGeometry | None = None) -> Aggregates:
    """Route (HOP) and client (TUMBLE) windows of ``events``, as the SQL stages compute them (each
    ``id`` once: within a backtest every copy arrives within the job's deduplication time)."""
    g = geometry or WindowGeometry()
    routes: dict[tuple[int, str], list[float]] = {}
    route_clients: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    clients: dict[tuple[int, str], list[Any]] = {}
    n_events, max_ts = 0, None
    hops = g.route_size_ms // g.route_slide_ms
    seen: set[str] = set()  # the job keeps the first copy of an id (delivery is at least once)
    for event in events:
        event_id = event.get("id")
        if event_id is not None:
            if event_id in seen:
                continue
            seen.add(event_id)
        ts, route, status = int(event["ts"]), str(event["route"]), int(event["status"])
        latency, ip = float(event["latency_ms"]), str(event["client_ip"])
        log_latency = math.log(max(latency, MIN_LATENCY_MS))
        n_events += 1
        max_ts = ts if max_ts is None else max(max_ts, ts)
        last_start = ts - ts % g.route_slide_ms
        for hop in range(hops):
            key = (last_start - hop * g.route_slide_ms, route)
            agg = routes.get(key)
            if agg is None:
                routes[key] = agg = [0, 0, 0, 0.0, latency, 0.0]
            agg[0] += 1
            agg[1] += 400 <= status < 500
            agg[2] += status >= 500
            agg[3] += latency
            agg[4] = max(agg[4], latency)
            agg[5] += log_latency
            route_clients[key][ip] += 1
        start = ts - ts % g.client_size_ms
        cagg = clients.get((start, ip))
        if cagg is None:
            clients[(start, ip)] = cagg = [0, set(), 0, 0, 0]
        cagg[0] += 1
        cagg[1].add(route)
        cagg[2] += route == UNMATCHED_ROUTE
        cagg[3] += status == 404
        cagg[4] += status in (401, 403)

    route_rows = [
        RouteWindow(
            route=route,
            window_start=start,
            window_end=start + g.route_size_ms,
            count=int(a[0]),
            errors_4xx=int(a[1]),
            errors_5xx=int(a[2]),
            latency_mean=a[3] / a[0],
            latency_max=a[4],
            latency_log_mean=a[5] / a[0],
            top_client_count=max(route_clients[(start, route)].values()),
        )
        for (start, route), a in routes.items()
    ]
    route_rows.sort(key=lambda w: (w.window_end, w.route))

    population: dict[int, list[int]] = defaultdict(list)
    for (start, _ip), cagg in clients.items():
        population[start].append(cagg[0])
    figures = {start: population_figures(counts) for start, counts in population.items()}
    client_rows = [
        ClientWindow(
            client_ip=ip,
            window_start=start,
            window_end=start + g.client_size_ms,
            count=c[0],
            distinct_routes=len(c[1]),
            unmatched=c[2],
            not_found=c[3],
            auth_failures=c[4],
            pop_clients=figures[start][0],
            pop_mean_count=figures[start][1],
            pop_std_count=figures[start][2],
        )
        for (start, ip), c in clients.items()
    ]
    client_rows.sort(key=lambda w: (w.window_end, w.client_ip))
    return Aggregates(route_rows, client_rows, n_events, max_ts)

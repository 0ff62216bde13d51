"""The reference aggregation (what the SQL stages must compute) and the pure-Python backtest."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from flink_app.detect.backtest import backtest, replay_windows
from flink_app.detect.engine import DetectionEngine
from flink_app.detect.windows import WindowGeometry, aggregate
from pulse_contract import UNMATCHED_ROUTE
from pulse_local.evaluation import evaluate
from pulse_local.traffic import TrafficGenerator, TrafficSpec
from tests.synthetic import CLOCK_MS, T0

ROUTES = ("/items", "/items/{item_id}", UNMATCHED_ROUTE)


def events(n: int, seed: int = 1, span_ms: int = 300_000) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(T0, T0 + span_ms, n))
    statuses = [200, 401, 403, 404, 500]
    return [
        {
            "ts": int(t),
            "route": ROUTES[int(rng.integers(0, 3))],
            "status": int(rng.choice(statuses)),
            "latency_ms": float(rng.uniform(0, 900)),
            "client_ip": f"192.0.2.{int(rng.integers(1, 6))}",
        }
        for t in ts
    ]


def test_route_windows_are_every_hop_window_that_holds_a_request() -> None:
    # given a few hundred events over five minutes
    sample = events(400)
    geometry = WindowGeometry(route_size_ms=60_000, route_slide_ms=20_000)
    # when aggregated
    windows = {(w.route, w.window_start): w for w in aggregate(sample, geometry).route_windows}
    # then they equal a brute-force count over every aligned window
    starts = range(T0 - 60_000, T0 + 300_000 + 60_000, 20_000)
    expected = 0
    for route in ROUTES:
        for start in starts:
            inside = [e for e in sample if e["route"] == route and start <= e["ts"] < start + 60_000]
            if not inside:
                assert (route, start) not in windows
                continue
            expected += 1
            w = windows[(route, start)]
            latencies = [e["latency_ms"] for e in inside]
            assert (w.count, w.errors_4xx, w.errors_5xx) == (
                len(inside),
                sum(400 <= e["status"] < 500 for e in inside),
                sum(e["status"] >= 500 for e in inside),
            )
            assert w.window_end == start + 60_000
            assert w.latency_mean == pytest.approx(sum(latencies) / len(latencies))
            assert w.latency_max == max(latencies)
            assert w.latency_log_mean == pytest.approx(sum(math.log(max(x, 0.001)) for x in latencies) / len(inside))
    assert len(windows) == expected


def test_client_windows_carry_their_population() -> None:
    sample = events(300)
    clients = aggregate(sample).client_windows
    assert [(w.window_end, w.client_ip) for w in clients] == sorted((w.window_end, w.client_ip) for w in clients)
    for end in {w.window_end for w in clients}:
        minute = [w for w in clients if w.window_end == end]
        counts = [w.count for w in minute]
        mean = sum(counts) / len(counts)
        for w in minute:
            inside = [e for e in sample if e["client_ip"] == w.client_ip and end - 60_000 <= e["ts"] < end]
            assert (w.count, w.unmatched, w.not_found, w.auth_failures, w.distinct_routes) == (
                len(inside),
                sum(e["route"] == UNMATCHED_ROUTE for e in inside),
                sum(e["status"] == 404 for e in inside),
                sum(e["status"] in (401, 403) for e in inside),
                len({e["route"] for e in inside}),
            )
            assert (w.pop_clients, w.pop_mean_count) == (len(minute), pytest.approx(mean))
            assert w.pop_std_count == pytest.approx(math.sqrt(sum((c - mean) ** 2 for c in counts) / len(counts)))


def test_windows_still_open_when_the_input_ends_are_not_judged() -> None:
    # given a busy route whose input simply ends (the route does not stop; the file does)
    rng = np.random.default_rng(3)
    ts = np.sort(rng.integers(T0, T0 + 3_600_000, 12_000))
    sample = [
        {"ts": int(t), "route": "/items", "status": 200, "latency_ms": 40.0, "client_ip": "192.0.2.1"} for t in ts
    ]
    # then neither the fading last windows nor the end of time look like a drop or a silence
    result = backtest(sample, clock_ms=lambda: CLOCK_MS)
    assert result.anomalies == []
    last_judged = max(s.last_end for s in result.states.values() if hasattr(s, "route"))
    assert last_judged <= int(ts[-1]) - 5_000


@pytest.mark.slow
def test_backtest_finds_every_injected_kind_in_unseen_traffic() -> None:
    # given 78 minutes of traffic with one injection of each of the eight kinds (a seed no one tuned on)
    generator = TrafficGenerator(TrafficSpec(seed=424242, duration_s=4_680, peak_rps=12.0, start_phase=0.45))
    labels = generator.plan(per_kind=1)
    # when backtested without Flink
    result = backtest(generator.events(labels), clock_ms=lambda: CLOCK_MS)
    # then every label is found, and every incident is explained by an injection
    evaluation = evaluate(result.anomalies, labels)
    assert evaluation.missed == []
    assert evaluation.unexplained == []
    assert max(evaluation.delays_s) <= 150


def test_replay_calls_the_engine_per_key_in_window_order() -> None:
    seen: list[tuple[str, int]] = []

    class Recording(DetectionEngine):
        def on_route_window(self, state, window):  # type: ignore[no-untyped-def]
            seen.append((window.route, window.window_end))
            return super().on_route_window(state, window)

    aggregates = aggregate(events(500, seed=5))
    replay_windows(Recording(clock_ms=lambda: CLOCK_MS), aggregates.route_windows, aggregates.client_windows)
    for route in ROUTES:
        ends = [end for r, end in seen if r == route]
        assert ends == sorted(ends) and len(ends) == len(set(ends))
    assert [end for _, end in seen] == sorted(end for _, end in seen)

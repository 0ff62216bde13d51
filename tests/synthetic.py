"""Synthetic window series for detector tests: HOP route windows built from per-slide traffic, and
tumbling client windows with their population, shaped exactly as the SQL stages emit them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flink_app.detect.backtest import replay_windows
from flink_app.detect.engine import DetectionEngine
from flink_app.detect.model import ClientWindow, RouteWindow
from pulse_contract import Anomaly

SLIDE_MS = 10_000
SIZE_MS = 60_000
SLOTS = SIZE_MS // SLIDE_MS
T0 = 1_740_000_000_000 - 1_740_000_000_000 % 3_600_000  # an hour boundary
CLOCK_MS = 1_750_000_000_000  # a fixed "now" for detected_at, so whole records compare equal


def engine(**settings: object) -> DetectionEngine:
    from flink_app.detect.settings import DetectSettings

    return DetectionEngine(DetectSettings(**settings), clock_ms=lambda: CLOCK_MS)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Slide:
    """The requests of one 10-second slide of one route (all with the same latency)."""

    count: int
    errors_5xx: int = 0
    latency_ms: float = 50.0
    client: int = 0  # of ``count``, the requests of one client (route_windows' ``top_share``)


def route_windows(
    slides: Sequence[Slide | int],
    route: str = "/items",
    start_ms: int = T0,
    tail: bool = False,
    top_share: float | None = None,
) -> list[RouteWindow]:
    """The HOP windows (60 s, sliding by 10 s) over ``slides``; a window without requests is absent.

    The traffic goes on after the last slide (its windows are not closed yet), unless ``tail``: then
    it stops there and the last windows see it fade out. With ``top_share`` the windows carry
    ``top_client_count``: the larger of the one client's requests (``Slide.client``) and the busiest
    of the others, taken as that share of their requests.
    """
    items = [s if isinstance(s, Slide) else Slide(int(s)) for s in slides]
    windows = []
    for end_slot in range(1, len(items) + (SLOTS if tail else 1)):
        covered = [items[i] for i in range(max(0, end_slot - SLOTS), min(end_slot, len(items))) if items[i].count]
        count = sum(s.count for s in covered)
        if not count:
            continue
        end = start_ms + end_slot * SLIDE_MS
        windows.append(
            RouteWindow(
                route=route,
                window_start=end - SIZE_MS,
                window_end=end,
                count=count,
                errors_4xx=0,
                errors_5xx=sum(s.errors_5xx for s in covered),
                latency_mean=sum(s.latency_ms * s.count for s in covered) / count,
                latency_max=max(s.latency_ms for s in covered),
                latency_log_mean=sum(math.log(s.latency_ms) * s.count for s in covered) / count,
                top_client_count=None
                if top_share is None
                else max(
                    sum(s.client for s in covered),
                    max(1, round(top_share * sum(s.count - s.client for s in covered))),
                ),
            )
        )
    return windows


def poisson_slides(
    rates: Iterable[float], seed: int = 1, errors: float = 0.0, latency_ms: float = 50.0, latency_sigma: float = 0.0
) -> list[Slide]:
    """Poisson arrivals per slide at ``rates`` (requests per slide), with binomial 5xx and a lognormal
    typical latency per slide."""
    rng = np.random.default_rng(seed)
    out = []
    for rate in rates:
        n = int(rng.poisson(max(rate, 0.0)))
        out.append(
            Slide(
                n,
                int(rng.binomial(n, errors)) if n else 0,
                float(latency_ms * math.exp(rng.normal(0, latency_sigma))) if latency_sigma else latency_ms,
            )
        )
    return out


def run_routes(detector: DetectionEngine, windows: Sequence[RouteWindow], fire_timers: bool = True) -> list[Anomaly]:
    """Every record ``detector`` writes for ``windows``, timers fired in event time as the job does."""
    return replay_windows(detector, windows, [], fire_timers=fire_timers).anomalies


def clients_window(counts: Mapping[str, int], end_ms: int, **fields: Mapping[str, int]) -> list[ClientWindow]:
    """One tumbling minute of several clients: ``counts`` per IP, optional per-IP ``unmatched``,
    ``not_found``, ``auth_failures``; population figures computed as the SQL stage does."""
    values = list(counts.values())
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [
        ClientWindow(
            client_ip=ip,
            window_start=end_ms - SIZE_MS,
            window_end=end_ms,
            count=count,
            distinct_routes=1,
            unmatched=fields.get("unmatched", {}).get(ip, 0),
            not_found=fields.get("not_found", {}).get(ip, 0),
            auth_failures=fields.get("auth_failures", {}).get(ip, 0),
            pop_clients=len(values),
            pop_mean_count=mean,
            pop_std_count=std,
        )
        for ip, count in counts.items()
    ]


def population(n: int, seed: int = 1, mean: float = 4.0) -> dict[str, int]:
    """A long tail of ``n`` clients: a few busy ones, most with a request or two."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(1, n + 1) + 5.0) ** 1.1
    counts = rng.poisson(weights / weights.sum() * n * mean)
    return {f"198.51.{i // 250}.{i % 250 + 1}": int(c) for i, c in enumerate(counts) if c}


def run_clients(
    detector: DetectionEngine, minutes: Sequence[list[ClientWindow]], fire_timers: bool = True
) -> list[Anomaly]:
    windows = sorted((w for minute in minutes for w in minute), key=lambda w: (w.window_end, w.client_ip))
    return replay_windows(detector, [], windows, fire_timers=fire_timers).anomalies


def opened(anomalies: Iterable[Anomaly], kind: str | None = None) -> list[Anomaly]:
    """The records that opened an incident (of ``kind``)."""
    return [a for a in anomalies if a.phase == "open" and (kind is None or a.kind == kind)]


def slot_of(epoch_ms: int, start_ms: int = T0) -> float:
    return (epoch_ms - start_ms) / SLIDE_MS

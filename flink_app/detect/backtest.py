"""Pure-Python backtest: run the engine over window aggregates in event time, as the Flink job does.

The job's operator sees, per key, windows in increasing ``window_end`` order, and fires event-time
timers when the watermark passes a key's deadline: a window ending at ``E`` is emitted once the
watermark reaches ``E - 1``, and timers up to that watermark fire after it. :func:`replay_windows` follows
the same order over the reference aggregates of :mod:`flink_app.detect.windows`. In backtest the
watermark trails the newest event by ``watermark.delay.s``; the end of the input is not time
passing, so windows still open then are not judged and timers past the last watermark never fire.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flink_app.detect.engine import DetectionEngine, SubjectState
from flink_app.detect.model import ClientWindow, RouteWindow
from flink_app.detect.settings import DetectSettings
from flink_app.detect.windows import WindowGeometry, aggregate
from pulse_contract import Anomaly, SubjectType, subject_key

Progress = Callable[[int, int], None]


@dataclass
class ReferenceBacktest:
    """What the pure-Python backtest found, and what it went through."""

    anomalies: list[Anomaly]
    states: dict[str, SubjectState] = field(default_factory=dict)
    route_windows: int = 0
    client_windows: int = 0  # candidate client windows (those the job's operator receives)
    events: int = 0


def window_key(window: RouteWindow | ClientWindow) -> str:
    """The operator's key of a window: its subject's partition key (``route#<route>`` or ``client#<ip>``)."""
    if isinstance(window, RouteWindow):
        return subject_key(SubjectType.ROUTE, window.route)
    return subject_key(SubjectType.CLIENT, window.client_ip)


def replay_windows(
    engine: DetectionEngine,
    route_windows: Iterable[RouteWindow],
    client_windows: Iterable[ClientWindow],
    *,
    watermark_end: int | None = None,
    fire_timers: bool = True,
    progress: Progress | None = None,
) -> ReferenceBacktest:
    """Feed windows (each list ordered by ``window_end``) and timers to ``engine`` in event-time order.

    ``watermark_end``: the last watermark of the input. Windows that end after it are still open
    when the input ends: they hold only part of their traffic (a busy route would look like a drop),
    so they are not judged, as a streaming job would not have closed them yet; deadlines up to it
    fire after the last window. ``fire_timers=False`` never calls ``on_silence`` (deadlines are then
    only acted on when a key's next window arrives): what it finds is the same, later or not at all
    at the very end.
    """
    routes, clients = list(route_windows), list(client_windows)
    if watermark_end is not None:
        routes = [w for w in routes if w.window_end - 1 <= watermark_end]
        clients = [w for w in clients if w.window_end - 1 <= watermark_end]
    total = len(routes) + len(clients)
    merged: Iterable[RouteWindow | ClientWindow] = heapq.merge(routes, clients, key=lambda w: w.window_end)
    states: dict[str, SubjectState] = {}
    registered: dict[str, int] = {}
    timers: list[tuple[int, str]] = []
    out: list[Anomaly] = []

    def register(key: str) -> None:
        deadline = engine.silence_deadline(states[key])
        if deadline is not None and registered.get(key) != deadline:
            registered[key] = deadline
            heapq.heappush(timers, (deadline, key))

    def fire(watermark: int) -> None:
        while timers and timers[0][0] <= watermark:
            deadline, key = heapq.heappop(timers)
            if registered.get(key) != deadline:
                continue  # superseded by a newer window's deadline
            del registered[key]
            state, found = engine.on_silence(states[key], watermark)
            if state is not None:
                states[key] = state
            out.extend(found)
            register(key)

    done = judged_clients = 0
    admit = engine.clients.admit
    for window_end, batch in itertools.groupby(merged, key=lambda w: w.window_end):
        # Every window moves event time (the job's watermark follows the events), judged or not.
        if fire_timers:
            fire(window_end - 1)
        for window in batch:
            done += 1
            key = window_key(window)
            if isinstance(window, RouteWindow):
                route_state, found = engine.on_route_window(states.get(key), window)  # type: ignore[arg-type]
                states[key] = route_state
            elif admit(window):
                # Only candidate client windows cross into the job's Python operator (the engine would
                # ignore the others anyway).
                client_state, found = engine.on_client_window(states.get(key), window)  # type: ignore[arg-type]
                states[key] = client_state
                judged_clients += 1
            else:
                continue
            out.extend(found)
            register(key)
        if progress is not None:
            progress(done, total)
    if fire_timers and watermark_end is not None:
        fire(watermark_end)
    return ReferenceBacktest(out, states, len(routes), judged_clients)


def backtest(
    events: Iterable[Mapping[str, Any]],
    settings: DetectSettings | None = None,
    geometry: WindowGeometry | None = None,
    *,
    watermark_delay_ms: int = 5_000,
    clock_ms: Callable[[], int] | None = None,
    progress: Progress | None = None,
) -> ReferenceBacktest:
    """Events -> reference window aggregates -> engine: the whole job's detection, without Flink."""
    aggregates = aggregate(events, geometry)
    engine = DetectionEngine(settings, clock_ms)
    watermark_end = None if aggregates.max_ts is None else aggregates.max_ts - watermark_delay_ms - 1
    result = replay_windows(
        engine, aggregates.route_windows, aggregates.client_windows, watermark_end=watermark_end, progress=progress
    )
    result.events = aggregates.events
    return result

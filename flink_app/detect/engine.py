"""The detection interface the Flink operator and backtest call: one engine, per-subject state.

The operator keeps one state object per key (``route#...`` or ``client#...``) in Flink keyed
``ValueState`` (pickled), and calls:

* ``on_route_window(state, window) -> (state, anomalies)`` for each route aggregate,
* ``on_client_window(state, window) -> (state, anomalies)`` for each client aggregate,
* ``silence_deadline(state) -> int | None``: the event time (ms) at which, if no newer window of
  this route has arrived, ``on_silence`` must be called; None when not armed,
* ``on_silence(state, now_ms) -> (state, anomalies)``: the route has had no window up to
  ``now_ms`` (event time, or wall clock translated to event time while the stream idles).

State objects are plain picklable Python; the engine never imports Flink.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from flink_app.detect.model import Anomaly, ClientWindow, RouteWindow, Severity
from flink_app.detect.settings import DetectSettings


@dataclass
class RouteState:
    """What one route's detectors remember between windows."""

    windows_seen: int = 0
    mean: float = 0.0
    var: float = 0.0
    last_window_end: int = 0
    open_incidents: dict[str, int] = field(default_factory=dict)


@dataclass
class ClientState:
    windows_seen: int = 0
    mean: float = 0.0


def _severity(score: float) -> str:
    if score >= 12:
        return Severity.HIGH.value
    if score >= 8:
        return Severity.MEDIUM.value
    return Severity.LOW.value


class DetectionEngine:
    """Spike and drop on an adaptive (EWMA) baseline of each route's request count."""

    def __init__(self, settings: DetectSettings | None = None, clock_ms: object = None) -> None:
        self.settings = settings or DetectSettings()
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def _anomaly(self, kind: str, subject_type: str, subject: str, start: int, end: int,
                 observed: float, expected: float, score: float) -> Anomaly:
        now = int(self._clock_ms())  # type: ignore[operator]
        return Anomaly(kind=kind, subject_type=subject_type, subject=subject, window_start=start, window_end=end,
                       observed=observed, expected=round(expected, 3), score=round(score, 3),
                       severity=_severity(score), detected_at=now,
                       ttl=now // 1000 + self.settings.anomaly_ttl_days * 86400)

    def on_route_window(self, state: RouteState | None, window: RouteWindow) -> tuple[RouteState, list[Anomaly]]:
        state = state or RouteState()
        s = self.settings
        anomalies: list[Anomaly] = []
        flagged = False
        if state.windows_seen >= s.warmup_windows:
            std = math.sqrt(max(state.var, 0.0))
            noise = max(std, math.sqrt(max(state.mean, 1.0)))
            score = (window.count - state.mean) / noise
            if (window.count >= s.min_route_count and score >= s.spike_z
                    and window.count >= s.spike_ratio * state.mean):
                flagged = True
                if "spike" not in state.open_incidents:
                    state.open_incidents["spike"] = window.window_end
                    anomalies.append(self._anomaly("spike", "route", window.route, window.window_start,
                                                   window.window_end, window.count, state.mean, score))
            elif state.mean >= s.min_route_count and window.count <= s.drop_ratio * state.mean and -score >= s.spike_z / 2:
                flagged = True
                if "drop" not in state.open_incidents:
                    state.open_incidents["drop"] = window.window_end
                    anomalies.append(self._anomaly("drop", "route", window.route, window.window_start,
                                                   window.window_end, window.count, state.mean, -score))
        if not flagged:
            state.open_incidents.clear()
            if state.windows_seen == 0:
                state.mean = float(window.count)
            else:
                delta = window.count - state.mean
                state.mean += s.ewma_alpha * delta
                state.var = (1 - s.ewma_alpha) * (state.var + s.ewma_alpha * delta * delta)
            state.windows_seen += 1
        state.last_window_end = max(state.last_window_end, window.window_end)
        return state, anomalies

    def on_client_window(self, state: ClientState | None, window: ClientWindow) -> tuple[ClientState, list[Anomaly]]:
        return state or ClientState(), []

    def silence_deadline(self, state: RouteState) -> int | None:
        return None

    def on_silence(self, state: RouteState, now_ms: int) -> tuple[RouteState, list[Anomaly]]:
        return state, []

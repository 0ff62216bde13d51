"""The detection interface the Flink operator and backtest call: one engine, per-subject state.

The operator keeps one state object per key (``route#...`` or ``client#...``) in Flink keyed
``ValueState`` (pickled), and calls:

* ``on_route_window(state, window) -> (state, anomalies)`` for each route aggregate,
* ``on_client_window(state, window) -> (state, anomalies)`` for each client aggregate,
* ``silence_deadline(state) -> int | None``: the event time (ms) at which, if no newer window of
  this key has arrived, ``on_silence`` must be called; None when not armed. For a route it is the
  silence deadline or the end of an incident's cool-down; for a client the end of a cool-down (a
  client that stops sending still gets its incident's ``end`` record),
* ``on_silence(state, now_ms) -> (state, anomalies)``: the key has had no window up to ``now_ms``
  (event time, or wall clock translated to event time while the stream idles).

Calling ``on_silence`` is optional for correctness of what is found: a deadline that passed is also
acted on when the key's next window arrives, with the same record (dated at the deadline), so a
timer that fires early, late or never (backtest at end of input) changes only whether the record
is written now or later. Calling ``on_silence`` before the deadline does nothing.

State objects are plain picklable Python; the engine never imports Flink.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flink_app.detect.alerts import Transition
from flink_app.detect.clients import ClientDetector, ClientState
from flink_app.detect.model import ClientWindow, RouteWindow
from flink_app.detect.routes import RouteDetector, RouteState
from flink_app.detect.settings import DetectSettings
from pulse_contract import Anomaly

__all__ = ["ClientState", "DetectionEngine", "RouteState"]

SubjectState = RouteState | ClientState


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class DetectionEngine:
    """Every route and client detector behind the operator's four calls."""

    def __init__(self, settings: DetectSettings | None = None, clock_ms: Callable[[], int] | None = None) -> None:
        self.settings = settings or DetectSettings()
        self._clock_ms = clock_ms or _wall_clock_ms
        self.routes = RouteDetector(self.settings)
        self.clients = ClientDetector(self.settings)

    def on_route_window(self, state: RouteState | None, window: RouteWindow) -> tuple[RouteState, list[Anomaly]]:
        state = state or RouteState(route=window.route)
        return state, self._records("route", window.route, self.routes.on_window(state, window))

    def on_client_window(self, state: ClientState | None, window: ClientWindow) -> tuple[ClientState, list[Anomaly]]:
        state = state or ClientState(client_ip=window.client_ip)
        return state, self._records("client", window.client_ip, self.clients.on_window(state, window))

    def silence_deadline(self, state: SubjectState | None) -> int | None:
        if isinstance(state, RouteState):
            return self.routes.next_deadline(state)
        if isinstance(state, ClientState):
            return self.clients.next_deadline(state)
        return None

    def on_silence(self, state: SubjectState | None, now_ms: int) -> tuple[SubjectState | None, list[Anomaly]]:
        if isinstance(state, RouteState):
            return state, self._records("route", state.route, self.routes.apply_due(state, now_ms, inclusive=True))
        if isinstance(state, ClientState):
            return state, self._records(
                "client", state.client_ip, self.clients.apply_due(state, now_ms, inclusive=True)
            )
        return state, []

    def _records(self, subject_type: str, subject: str, transitions: list[Transition]) -> list[Anomaly]:
        if not transitions:
            return []
        now = int(self._clock_ms())
        ttl = now // 1000 + self.settings.anomaly_ttl_days * 86400
        # Floats always (a count is observed as an int): the record reads the same from every path.
        return [
            Anomaly(
                kind=t.kind,
                subject_type=subject_type,
                subject=subject,
                window_start=t.window_start,
                window_end=t.window_end,
                observed=round(float(t.observed), 4),
                expected=round(float(t.expected), 4),
                score=round(float(t.score), 3),
                severity=t.severity,
                detected_at=now,
                ttl=ttl,
                phase=t.phase,
                kinds=",".join(t.kinds or (t.kind,)),
            )
            for t in transitions
        ]

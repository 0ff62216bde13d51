"""The one Python operator: window aggregates in, anomalies out, keyed by subject.

Rows of :data:`flink_app.stages.WINDOW_COLUMNS` arrive keyed by ``subject_type#subject``. For each
key the operator keeps the detection engine's state (pickled, in keyed ``ValueState``) and the
silence deadline the engine asked for, and calls :class:`flink_app.detect.engine.DetectionEngine`:

* ``on_route_window`` / ``on_client_window`` for every window;
* ``silence_deadline(state)`` after each route window (and after ``on_silence``) to arm timers;
* ``on_silence(state, now_ms)`` when a deadline passes with no newer window of that route.

A deadline passes in one of three ways, and each calls ``on_silence`` once:

1. a newer window of the route arrives whose end is after the deadline (the route had no window
   up to the deadline): silence is handled before that window, so the result does not depend on
   how far the watermark jumped at once;
2. the event-time timer at the deadline fires (the watermark passed it);
3. the whole stream idles, so the watermark stops and no event-time timer can fire: a
   processing-time timer estimates event time as the last watermark plus the wall time since
   it last moved, once it has stalled for the configured idle time.

At the end of a bounded input (backtest) the watermark jumps to ``Long.MAX_VALUE`` and fires
every pending timer; those are not silence, so they are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, TimeDomain
from pyflink.datastream.state import ValueStateDescriptor

from flink_app.detect.engine import DetectionEngine
from flink_app.detect.model import Anomaly, ClientWindow, RouteWindow
from flink_app.detect.settings import DetectSettings

LOG = logging.getLogger(__name__)

END_OF_INPUT_WATERMARK = 2**63 - 1  # Long.MAX_VALUE: a bounded source has finished
METRIC_GROUP = "kinesisanalytics"  # Managed Flink exports custom metrics of this group to CloudWatch

# The anomaly stream's columns (DESIGN.md's record plus `day`), in order, with SQL types.
ANOMALY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("pk", "STRING"),
    ("sk", "STRING"),
    ("kind", "STRING"),
    ("subject_type", "STRING"),
    ("subject", "STRING"),
    ("window_start", "BIGINT"),
    ("window_end", "BIGINT"),
    ("observed", "DOUBLE"),
    ("expected", "DOUBLE"),
    ("score", "DOUBLE"),
    ("severity", "STRING"),
    ("detected_at", "BIGINT"),
    ("ttl", "BIGINT"),
    ("day", "STRING"),
)
_PY_TYPES = {"STRING": Types.STRING(), "BIGINT": Types.LONG(), "DOUBLE": Types.DOUBLE()}
ANOMALY_TYPE_INFO = Types.ROW_NAMED([name for name, _ in ANOMALY_COLUMNS],
                                    [_PY_TYPES[sql_type] for _, sql_type in ANOMALY_COLUMNS])

_ROUTE_FIELDS = tuple(f.name for f in fields(RouteWindow) if f.name != "route")
_CLIENT_FIELDS = tuple(f.name for f in fields(ClientWindow) if f.name != "client_ip")


def subject_key(row: Row) -> str:
    """The key the operator is partitioned by: ``route#/users/{id}`` or ``client#10.0.0.1``."""
    return f"{row['subject_type']}#{row['subject']}"


def window_from_values(values: Mapping[str, Any]) -> RouteWindow | ClientWindow:
    """A row of the aggregate stream as the detectors' model object."""
    if values["subject_type"] == "route":
        return RouteWindow(route=values["subject"], **{name: values[name] for name in _ROUTE_FIELDS})
    if values["subject_type"] == "client":
        return ClientWindow(client_ip=values["subject"], **{name: values[name] for name in _CLIENT_FIELDS})
    raise ValueError(f"unknown subject_type {values['subject_type']!r}")


def anomaly_values(anomaly: Anomaly) -> tuple[Any, ...]:
    """An anomaly as the values of :data:`ANOMALY_COLUMNS`, in order and with their types."""
    record = anomaly.to_record()
    converters = {"STRING": str, "BIGINT": int, "DOUBLE": float}
    return tuple(converters[sql_type](record[name]) for name, sql_type in ANOMALY_COLUMNS)


@dataclass
class Step:
    """What one call into the engine left behind for a key."""

    state: Any
    anomalies: list[Anomaly]
    deadline: int | None


class SubjectDetection:
    """One key's detection, without Flink: the engine calls and the silence-deadline rules."""

    def __init__(self, engine: DetectionEngine) -> None:
        self.engine = engine

    def on_window(self, state: Any, window: RouteWindow | ClientWindow, armed: int | None) -> Step:
        anomalies: list[Anomaly] = []
        if isinstance(window, ClientWindow):
            state, found = self.engine.on_client_window(state, window)
            return Step(state, list(found), None)
        if state is not None and armed is not None and armed < window.window_end:
            state, found = self.engine.on_silence(state, armed)
            anomalies.extend(found)
        state, found = self.engine.on_route_window(state, window)
        anomalies.extend(found)
        return Step(state, anomalies, self.engine.silence_deadline(state))

    def on_deadline(self, state: Any, now_ms: int) -> Step:
        state, found = self.engine.on_silence(state, now_ms)
        return Step(state, list(found), self.engine.silence_deadline(state))


class DetectionFunction(KeyedProcessFunction):
    """Flink glue around :class:`SubjectDetection`: keyed state, timers, metrics."""

    def __init__(self, settings: DetectSettings, bounded: bool, stall_ms: int) -> None:
        self.settings = settings
        self.bounded = bounded
        self.stall_ms = stall_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        self.detection = SubjectDetection(DetectionEngine(self.settings))
        self.engine_state = runtime_context.get_state(
            ValueStateDescriptor("engine_state", Types.PICKLED_BYTE_ARRAY()))
        self.deadline = runtime_context.get_state(ValueStateDescriptor("silence_deadline", Types.LONG()))
        self.idle_timer = runtime_context.get_state(ValueStateDescriptor("idle_timer", Types.LONG()))
        metrics = runtime_context.get_metrics_group().add_group(METRIC_GROUP)
        self.windows_counter = metrics.counter("windowsEvaluated")
        self.anomalies_counter = metrics.counter("anomaliesDetected")
        self.silence_counter = metrics.counter("silenceChecks")
        # Where event time stood at which wall time: the base of the idle-stream estimate.
        self.clock_event_ms: int | None = None
        self.clock_wall_ms = 0

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        window = window_from_values(value.as_dict())
        self._observe(ctx, window.window_end)
        self.windows_counter.inc()
        armed = self.deadline.value() if isinstance(window, RouteWindow) else None
        step = self.detection.on_window(self.engine_state.value(), window, armed)
        yield from self._apply(step, ctx)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Row]:
        armed = self.deadline.value()
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            if armed != timestamp or ctx.timer_service().current_watermark() >= END_OF_INPUT_WATERMARK:
                return
            now_ms = timestamp
        else:
            self.idle_timer.clear()
            if armed is None or self.bounded:
                return
            self._observe(ctx, None)
            wall = ctx.timer_service().current_processing_time()
            stalled_for = wall - self.clock_wall_ms
            estimate = (self.clock_event_ms or armed) + stalled_for
            if stalled_for < self.stall_ms or estimate < armed:
                self._arm_idle_timer(ctx, wall + max(armed - estimate, self.stall_ms - stalled_for, 1000))
                return
            now_ms = estimate
        self.silence_counter.inc()
        yield from self._apply(self.detection.on_deadline(self.engine_state.value(), now_ms), ctx)

    def _apply(self, step: Step, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        self.engine_state.update(step.state)
        self._arm(ctx, step.deadline)
        for anomaly in step.anomalies:
            self.anomalies_counter.inc()
            yield Row(*anomaly_values(anomaly))

    def _arm(self, ctx: KeyedProcessFunction.Context, deadline: int | None) -> None:
        timers = ctx.timer_service()
        armed = self.deadline.value()
        if armed == deadline:
            return
        if armed is not None:
            timers.delete_event_time_timer(armed)
        if deadline is None:
            self.deadline.clear()
            return
        self.deadline.update(deadline)
        timers.register_event_time_timer(deadline)
        if not self.bounded:
            base = self.clock_event_ms if self.clock_event_ms is not None else deadline
            wall = timers.current_processing_time()
            self._arm_idle_timer(ctx, wall + max(deadline - base, 0) + self.stall_ms)

    def _arm_idle_timer(self, ctx: KeyedProcessFunction.Context, at_wall_ms: int) -> None:
        timers = ctx.timer_service()
        previous = self.idle_timer.value()
        if previous is not None:
            timers.delete_processing_time_timer(previous)
        self.idle_timer.update(at_wall_ms)
        timers.register_processing_time_timer(at_wall_ms)

    def _observe(self, ctx: KeyedProcessFunction.Context, window_end: int | None) -> None:
        """Note when event time last moved (watermark or newest window end), in wall time."""
        candidates = [ctx.timer_service().current_watermark() or -(2**63)]
        if window_end is not None:
            candidates.append(window_end)
        event_ms = max(candidates)
        if event_ms >= END_OF_INPUT_WATERMARK or event_ms < 0:
            return
        if self.clock_event_ms is None or event_ms > self.clock_event_ms:
            self.clock_event_ms = event_ms
            self.clock_wall_ms = ctx.timer_service().current_processing_time()

"""The one Python operator: window aggregates in, anomalies out, keyed by subject.

Rows of :data:`flink_app.stages.WINDOW_COLUMNS` arrive keyed by ``subject_type#subject``. For each
key the operator keeps one :class:`KeyState` (pickled, in keyed ``ValueState``; client keys' state
expires after ``pulse.job`` ``client.state.ttl.h`` without a window): the detection engine's state,
the windows not judged yet and its timers. The engine asks for a deadline after every call
(``silence_deadline``: a route's silence or the end of a cool-down, routes and clients alike). The
operator calls :class:`flink_app.detect.engine.DetectionEngine` exactly as
:mod:`flink_app.detect.backtest` does:

* a window is judged once the watermark has closed it (an event-time timer at ``window_end - 1``),
  in ``window_end`` order. A client's windows come through the window join's subtasks (partitioned
  by window), so they can arrive out of order; when the watermark passes ``window_end - 1`` every
  window of the key that ends by then has arrived (it travelled before that watermark);
* before a window, ``on_silence`` at a passed deadline (a newer window of the key ends after it);
* then ``on_silence(state, watermark)`` if the watermark passed the deadline: one call handles a
  chain of deadlines, the records dated at each;
* streaming only: when the whole stream idles, the watermark stops and no event-time timer fires; a
  processing-time timer then estimates event time as the last watermark plus the wall time since
  it last moved, once it has stalled for the configured idle time, and calls ``on_silence`` with it.

At the end of a bounded input (backtest) the watermark jumps to ``Long.MAX_VALUE``: the window
operators emit every window still open and every timer fires. Neither is time passing (the input
ended, the traffic did not), so nothing is done at that watermark: windows that only it closed are
not judged, and no deadline after the last regular watermark is acted on. Backtest emits a
watermark with every event that moves it (``pipeline.auto-watermark-interval`` 0, see
:mod:`flink_app.job`), so the last regular watermark is exactly the newest event time less the delay
and 1 ms, however the run is timed: the same rule as the pure-Python backtest.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pyflink.common import Row
from pyflink.common.time import Time
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, TimeDomain
from pyflink.datastream.state import StateTtlConfig, ValueStateDescriptor

from flink_app import metrics
from flink_app.anomaly_columns import ANOMALY_COLUMNS
from flink_app.detect.engine import DetectionEngine
from flink_app.detect.model import ClientWindow, RouteWindow
from flink_app.detect.settings import DetectSettings
from pulse_contract import Anomaly, SubjectType, subject_key

LOG = logging.getLogger(__name__)

END_OF_INPUT_WATERMARK = 2**63 - 1  # Long.MAX_VALUE: a bounded source has finished
ROUTE_KEY_PREFIX = subject_key(SubjectType.ROUTE, "")
SIDE_METRICS = {"rejected": metrics.REJECTED, "late": metrics.LATE}  # by the side rows' subject_type

_PY_TYPES = {"STRING": Types.STRING(), "BIGINT": Types.LONG(), "DOUBLE": Types.DOUBLE()}
ANOMALY_TYPE_INFO = Types.ROW_NAMED(
    [name for name, _ in ANOMALY_COLUMNS], [_PY_TYPES[sql_type] for _, sql_type in ANOMALY_COLUMNS]
)

_ROUTE_FIELDS = tuple(f.name for f in fields(RouteWindow) if f.name != "route")
_CLIENT_FIELDS = tuple(f.name for f in fields(ClientWindow) if f.name != "client_ip")


def _window_end(window: RouteWindow | ClientWindow) -> int:
    return window.window_end


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
    """What calls into the engine left behind for a key."""

    state: Any
    anomalies: list[Anomaly]
    deadline: int | None
    windows: int = 0  # windows judged
    silence_checks: int = 0  # on_silence calls


class SubjectDetection:
    """One key's detection, without Flink: the engine calls and the deadline rules."""

    def __init__(self, engine: DetectionEngine) -> None:
        self.engine = engine

    def on_window(self, state: Any, window: RouteWindow | ClientWindow, armed: int | None) -> Step:
        anomalies: list[Anomaly] = []
        checks = 0
        if state is not None and armed is not None and armed < window.window_end:
            state, found = self.engine.on_silence(state, armed)
            anomalies.extend(found)
            checks = 1
        if isinstance(window, RouteWindow):
            state, found = self.engine.on_route_window(state, window)
        else:
            state, found = self.engine.on_client_window(state, window)
        anomalies.extend(found)
        return Step(state, anomalies, self.engine.silence_deadline(state), 1, checks)

    def on_deadline(self, state: Any, now_ms: int) -> Step:
        state, found = self.engine.on_silence(state, now_ms)
        return Step(state, list(found), self.engine.silence_deadline(state), 0, 1)

    def advance(
        self, state: Any, pending: list[RouteWindow | ClientWindow], watermark: int
    ) -> tuple[Step, list[RouteWindow | ClientWindow]]:
        """The watermark closed ``pending``'s windows up to it (judged in ``window_end`` order), then the
        deadlines it passed. Returns the step and the windows still open."""
        step = Step(state, [], self.engine.silence_deadline(state) if state is not None else None)
        closed = 0
        for window in pending:
            if window.window_end - 1 > watermark:
                break
            step = self._then(step, self.on_window(step.state, window, step.deadline))
            closed += 1
        if step.state is not None and step.deadline is not None and step.deadline <= watermark:
            step = self._then(step, self.on_deadline(step.state, watermark))
        return step, pending[closed:]

    @staticmethod
    def _then(before: Step, after: Step) -> Step:
        return Step(
            after.state,
            before.anomalies + after.anomalies,
            after.deadline,
            before.windows + after.windows,
            before.silence_checks + after.silence_checks,
        )


def client_state_ttl(hours: float) -> StateTtlConfig:
    """Client keys' state expires ``hours`` after its last write (one per window of the client).

    An expired state may still be read until it is cleaned up (the same client, new or not, is
    judged the same way), which keeps the Python worker's state cache on.
    """
    return (
        StateTtlConfig.new_builder(Time.milliseconds(int(hours * 3_600_000)))
        .update_ttl_on_create_and_write()
        .return_expired_if_not_cleaned_up()
        .build()
    )


@dataclass
class KeyState:
    """Everything the operator keeps for one key, in one pickled ``ValueState`` (one read and one write
    per key and bundle, where separate states would cost one each)."""

    engine: Any = None  # the engine's RouteState / ClientState (None before the first judged window)
    pending: list[RouteWindow | ClientWindow] = field(default_factory=list)  # not closed yet, in end order
    wake: int | None = None  # the key's one event-time timer
    deadline: int | None = None  # streaming: the engine's deadline the idle-stream timer is armed for
    idle_timer: int | None = None  # streaming: that processing-time timer


class DetectionFunction(KeyedProcessFunction):
    """Flink glue around :class:`SubjectDetection`: keyed state, timers, metrics.

    Each key has at most one event-time timer (``wake``): the earliest of its first pending window's
    ``window_end - 1`` and the engine's deadline. Windows that arrive in order add no timer, and no
    superseded timer fires for nothing.
    """

    def __init__(
        self,
        settings: DetectSettings,
        bounded: bool,
        stall_ms: int,
        client_ttl_h: float = 24.0,
        sample_size: int = 20,
    ) -> None:
        self.settings = settings
        self.bounded = bounded
        self.stall_ms = stall_ms
        self.client_ttl_h = client_ttl_h
        self.sample_size = sample_size

    def open(self, runtime_context: RuntimeContext) -> None:
        self.detection = SubjectDetection(DetectionEngine(self.settings))
        self.route_keys = runtime_context.get_state(ValueStateDescriptor("route", Types.PICKLED_BYTE_ARRAY()))
        client = ValueStateDescriptor("client", Types.PICKLED_BYTE_ARRAY())
        client.enable_time_to_live(client_state_ttl(self.client_ttl_h))
        self.client_keys = runtime_context.get_state(client)
        group = runtime_context.get_metrics_group().add_group(metrics.METRIC_GROUP)
        self.windows_counter = group.counter(metrics.WINDOWS_EVALUATED)
        self.anomalies_counter = group.counter(metrics.ANOMALIES_DETECTED)
        self.silence_counter = group.counter(metrics.SILENCE_CHECKS)
        self.metrics = group
        self.side_counters: dict[tuple[str, str | None], Any] = {}
        self.side_rates = {
            name: group.meter(name + metrics.RATE_SUFFIX, time_span_in_seconds=metrics.RATE_WINDOW_S)
            for name in SIDE_METRICS.values()
        }
        self.samples_logged = 0
        # Where event time stood at which wall time: the base of the idle-stream estimate.
        self.clock_event_ms: int | None = None
        self.clock_wall_ms = 0

    def _handle(self, ctx: KeyedProcessFunction.Context) -> Any:
        return self.route_keys if ctx.get_current_key().startswith(ROUTE_KEY_PREFIX) else self.client_keys

    def _count_side_record(self, subject_type: str, reason: str, sample: str) -> None:
        """A rejected or late record: counted in total and per reason, a bounded sample logged."""
        name = SIDE_METRICS[subject_type]
        for group in (None, reason):
            counter = self.side_counters.get((name, group))
            if counter is None:
                parent = self.metrics if group is None else self.metrics.add_group("reason", group)
                counter = self.side_counters[(name, group)] = parent.counter(name)
            counter.inc()
        self.side_rates[name].mark_event()
        if self.samples_logged < self.sample_size:
            self.samples_logged += 1
            LOG.warning(
                "%s record (%s), sample %d/%d: %r", subject_type, reason, self.samples_logged, self.sample_size, sample
            )

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterable[Row]:
        values = value.as_dict()
        if values["subject_type"] in SIDE_METRICS:
            self._count_side_record(values["subject_type"], values["subject"], values["detail"])
            return
        window = window_from_values(values)
        handle = self._handle(ctx)
        key = handle.value() or KeyState()
        bisect.insort(key.pending, window, key=_window_end)
        if not self.bounded:
            self._observe(ctx, window.window_end)
        watermark = ctx.timer_service().current_watermark()
        if window.window_end - 1 <= watermark < END_OF_INPUT_WATERMARK:  # already closed (not expected)
            yield from self._advance(ctx, handle, key, watermark)
            return
        if key.wake is None or window.window_end - 1 < key.wake:  # the key's timer must come earlier
            self._set_wake(ctx, key, window.window_end - 1)
        handle.update(key)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Row]:
        handle = self._handle(ctx)
        key = handle.value()
        if key is None:  # expired (client TTL)
            return
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            if key.wake == timestamp:
                key.wake = None  # it fired
            watermark = ctx.timer_service().current_watermark()
            if watermark < END_OF_INPUT_WATERMARK:  # the end of a bounded input is not time passing
                yield from self._advance(ctx, handle, key, watermark)
            return
        key.idle_timer = None
        armed = key.deadline
        if armed is None or self.bounded:
            handle.update(key)
            return
        self._observe(ctx, None)
        wall = ctx.timer_service().current_processing_time()
        if self.clock_event_ms is None:
            # Restored from a checkpoint and nothing seen yet (no watermark, no window): there is no
            # base for an estimate, so wait a whole stall from now instead of guessing one.
            self.clock_wall_ms = wall
            self._arm_idle_timer(ctx, key, wall + self.stall_ms)
            handle.update(key)
            return
        stalled_for = wall - self.clock_wall_ms
        estimate = (self.clock_event_ms or armed) + stalled_for
        if stalled_for < self.stall_ms or estimate < armed or key.pending:
            # Not stalled long enough yet, or windows still wait for their watermark (it is on its way).
            self._arm_idle_timer(ctx, key, wall + max(armed - estimate, self.stall_ms - stalled_for, 1000))
            handle.update(key)
            return
        yield from self._apply(ctx, handle, key, self.detection.on_deadline(key.engine, estimate))

    def _advance(self, ctx: KeyedProcessFunction.Context, handle: Any, key: KeyState, watermark: int) -> Iterable[Row]:
        """Judge what ``watermark`` closed: the pending windows up to it in order, then the deadlines."""
        step, key.pending = self.detection.advance(key.engine, key.pending, watermark)
        yield from self._apply(ctx, handle, key, step)

    def _apply(self, ctx: KeyedProcessFunction.Context, handle: Any, key: KeyState, step: Step) -> Iterable[Row]:
        if step.windows or step.silence_checks:
            key.engine = step.state
        times = [t for t in (key.pending[0].window_end - 1 if key.pending else None, step.deadline) if t is not None]
        wake = min(times) if times else None
        if wake != key.wake:
            self._set_wake(ctx, key, wake)
        if not self.bounded:
            self._arm_idle(ctx, key, step.deadline)
        handle.update(key)
        self.windows_counter.inc(step.windows)
        self.silence_counter.inc(step.silence_checks)
        self.anomalies_counter.inc(len(step.anomalies))
        for anomaly in step.anomalies:
            yield Row(*anomaly_values(anomaly))

    @staticmethod
    def _set_wake(ctx: KeyedProcessFunction.Context, key: KeyState, wake: int | None) -> None:
        timers = ctx.timer_service()
        if key.wake is not None:
            timers.delete_event_time_timer(key.wake)
        if wake is not None:
            timers.register_event_time_timer(wake)
        key.wake = wake

    def _arm_idle(self, ctx: KeyedProcessFunction.Context, key: KeyState, deadline: int | None) -> None:
        """Streaming: a processing-time timer for the deadline, in case the whole stream idles."""
        if deadline == key.deadline:
            return
        key.deadline = deadline
        if deadline is not None:
            base = self.clock_event_ms if self.clock_event_ms is not None else deadline
            wall = ctx.timer_service().current_processing_time()
            self._arm_idle_timer(ctx, key, wall + max(deadline - base, 0) + self.stall_ms)

    @staticmethod
    def _arm_idle_timer(ctx: KeyedProcessFunction.Context, key: KeyState, at_wall_ms: int) -> None:
        timers = ctx.timer_service()
        if key.idle_timer is not None:
            timers.delete_processing_time_timer(key.idle_timer)
        key.idle_timer = at_wall_ms
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

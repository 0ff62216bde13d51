"""Route detectors: spike, drop, silence, error_surge, latency_surge on sliding (HOP) windows.

One :class:`RouteState` per route holds three baselines (request count, 5xx rate, log of the
latency), the open incidents, and what is needed to tell full windows from windows that only
partly cover a route's traffic (its first minute, or its first minute back after a gap).

Silence is the absence of windows, so it is decided on deadlines: if a route that carries at least
``silence.min.expected`` requests per window has no window ending at ``last_end + slide`` (plus
``silence.after.s``), a whole window passed without a request. The deadline is a function of the
state alone, and the record it produces is dated at the deadline, so the same silence is reported
whether the deadline is reached by a timer (``on_silence``) or discovered when the route's next
window arrives after it: streaming and backtest agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flink_app.detect.alerts import Alerts, Finding, Transition, excess_score
from flink_app.detect.baseline import EwmaBaseline, LearningPause, RateBaseline
from flink_app.detect.model import UNMATCHED_ROUTE, RouteWindow
from flink_app.detect.settings import DetectSettings

# The floor under the log of a latency (as in the SQL stage's LN(GREATEST(latency_ms, 0.001))).
MIN_LATENCY_MS = 0.001


@dataclass
class RouteState:
    """What one route's detectors remember between windows (picklable, kept in keyed state)."""

    route: str = ""
    count: EwmaBaseline = field(default_factory=EwmaBaseline)
    errors: RateBaseline = field(default_factory=RateBaseline)
    latency: EwmaBaseline = field(default_factory=EwmaBaseline)  # natural log of milliseconds
    count_pause: LearningPause = field(default_factory=LearningPause)
    errors_pause: LearningPause = field(default_factory=LearningPause)
    latency_pause: LearningPause = field(default_factory=LearningPause)
    alerts: Alerts = field(default_factory=Alerts)
    slide_ms: int = 0  # greatest common divisor of the gaps between window ends: the HOP slide
    last_end: int = 0  # window_end of the last window seen (0: none yet)
    full_from: int = 0  # windows starting before this only partly cover the route's current traffic
    silent: bool = False  # a silence deadline passed and no window has arrived since


def typical_latency_log(window: RouteWindow) -> float:
    """The log of the window's typical latency, robust to the odd multi-second request.

    The geometric mean without the slowest request, when the SQL stage provides ``latency_log_mean``:
    a multi-second request moves a geometric mean of n requests by its log ratio over n, which on a
    quiet fast route is a lot; trimming it leaves one at most that two outliers can move. Without
    ``latency_log_mean``, the arithmetic mean without the slowest request (one timeout cannot move
    it, two can, on a fast route).
    """
    n = window.count
    slowest = max(window.latency_max, MIN_LATENCY_MS)
    if n < 2:
        return math.log(slowest)
    if window.latency_log_mean is not None:
        return (window.latency_log_mean * n - math.log(slowest)) / (n - 1)
    trimmed = (window.latency_mean * n - window.latency_max) / (n - 1)
    return math.log(max(trimmed, MIN_LATENCY_MS))


class RouteDetector:
    """The route kinds; stateless itself, so one instance serves every key."""

    def __init__(self, settings: DetectSettings) -> None:
        self.s = settings
        self.cooldown_ms = int(settings.alert_cooldown_s * 1000)
        self.halflife_ms = settings.route_halflife_s * 1000
        self.relearn_ms = settings.relearn_s * 1000
        self.pause_ms = settings.learn_pause_s * 1000

    # --- deadlines ----------------------------------------------------------------------------------

    def ignored(self, route: str) -> bool:
        return route == UNMATCHED_ROUTE and not self.s.route_detect_unmatched

    def silence_deadline(self, state: RouteState) -> int | None:
        """When the next window must have arrived for this route not to be silent; None if not armed."""
        if (
            state.silent
            or state.slide_ms == 0
            or self.ignored(state.route)
            or state.count.samples < self.s.route_warmup_windows
            or self.expected_count(state, state.last_end) < self.s.silence_min_expected
        ):
            return None
        return state.last_end + state.slide_ms + int(self.s.silence_after_s * 1000)

    def next_deadline(self, state: RouteState) -> int | None:
        times = [t for t in (self.silence_deadline(state), state.alerts.next_close(self.cooldown_ms)) if t is not None]
        return min(times) if times else None

    def apply_due(self, state: RouteState, until: int, inclusive: bool) -> list[Transition]:
        """Act on every deadline before ``until`` (timers' ``<=``, a newer window's ``<``), in time order."""
        out: list[Transition] = []
        while (due := self.next_deadline(state)) is not None and (due <= until if inclusive else due < until):
            # Silence first: a silence incident cooling down at this very moment continues instead of
            # ending and opening again under the same key.
            if self.silence_deadline(state) == due:
                out.extend(self._go_silent(state, due))
            out.extend(state.alerts.close_due(due, self.cooldown_ms, inclusive=True))
        return out

    def _go_silent(self, state: RouteState, at: int) -> list[Transition]:
        out: list[Transition] = []
        if state.alerts.is_open("drop"):  # the drop was the outage's first minute: it ends as it turns silent
            out.append(state.alerts.end("drop", at))
        expected = self.expected_count(state, at)
        finding = Finding(
            "silence", 0.0, expected, excess_score(0.0, expected, expected - self.s.silence_min_expected), flagged=True
        )
        out.extend(state.alerts.observe(finding, state.last_end, at, self.s))
        state.alerts.open["silence"].held = True
        state.silent = True
        return out

    # --- windows ------------------------------------------------------------------------------------

    def on_window(self, state: RouteState, window: RouteWindow) -> list[Transition]:
        state.route = window.route
        if self.ignored(window.route):
            return []
        end = window.window_end
        out = self.apply_due(state, end, inclusive=False)
        if state.silent:  # traffic is back: the silence cools down from here
            state.silent = False
            silence = state.alerts.open.get("silence")
            if silence is not None:
                silence.held, silence.last_hot = False, end
        self._track_geometry(state, window)
        partial = window.window_start < state.full_from

        findings = self._findings(state, window, partial)
        for finding in findings:
            out.extend(state.alerts.observe(finding, window.window_start, end, self.s))
        self._learn(state, window, partial, {finding.kind: finding for finding in findings})
        state.last_end = max(state.last_end, end)
        return out

    def _track_geometry(self, state: RouteState, window: RouteWindow) -> None:
        gap = window.window_end - state.last_end if state.last_end else 0
        if gap > 0:
            state.slide_ms = math.gcd(state.slide_ms, gap)
        if not state.last_end:
            state.full_from = window.window_end  # the slide is not known yet: the first window is partial
        elif gap > state.slide_ms:
            # The slot before had no request, so this route's traffic starts within the last slide.
            state.full_from = window.window_end - state.slide_ms

    def expected_count(self, state: RouteState, at_ms: int) -> float:
        """The count the baseline expects for a window ending at ``at_ms``."""
        return state.count.mean

    def count_noise(self, baseline: EwmaBaseline, expected: float) -> float:
        """The count's spread: measured, but never below Poisson noise or a fraction of the expected."""
        return max(
            baseline.std, self.s.route_noise_poisson * math.sqrt(max(expected, 1.0)), self.s.route_noise_rel * expected
        )

    def _findings(self, state: RouteState, window: RouteWindow, partial: bool) -> list[Finding]:
        s = self.s
        findings: list[Finding] = []
        if state.count.samples >= s.route_warmup_windows:
            expected = self.expected_count(state, window.window_end)
            noise = self.count_noise(state.count, expected)
            threshold = max(s.spike_min_count, s.spike_ratio * expected, expected + s.spike_z * noise)
            findings.append(
                Finding(
                    "spike",
                    window.count,
                    expected,
                    excess_score(window.count, expected, threshold),
                    window.count >= threshold,
                )
            )
            if not partial and expected >= s.drop_min_expected:
                threshold = min(s.drop_ratio * expected, expected - s.drop_z * noise)
                findings.append(
                    Finding(
                        "drop",
                        window.count,
                        expected,
                        excess_score(window.count, expected, threshold),
                        window.count <= threshold,
                    )
                )
        if state.errors.samples >= s.route_warmup_windows and window.count > 0:
            expected = state.errors.rate
            base = max(expected, s.error_rate_floor)
            threshold = max(
                s.error_min_rate,
                s.error_ratio * expected,
                base + s.error_z * math.sqrt(base * (1 - base) / window.count),
            )
            observed = window.errors_5xx / window.count
            findings.append(
                Finding(
                    "error_surge",
                    observed,
                    expected,
                    excess_score(observed, expected, threshold),
                    observed >= threshold and window.errors_5xx >= s.error_min_count,
                )
            )
        if state.latency.samples >= s.route_warmup_windows and window.count >= s.latency_min_count:
            expected_log = state.latency.mean
            noise = max(state.latency.std, s.latency_noise_rel)
            threshold = max(expected_log + math.log(s.latency_ratio), expected_log + s.latency_z * noise)
            observed_log = typical_latency_log(window)
            score = excess_score(observed_log, expected_log, threshold)
            findings.append(
                Finding(
                    "latency_surge", math.exp(observed_log), math.exp(expected_log), score, observed_log >= threshold
                )
            )
        return findings

    def _may_learn(
        self, pause: LearningPause, state: RouteState, findings: dict[str, Finding], kinds: tuple[str, ...], at_ms: int
    ) -> bool:
        return pause.allows(
            state.alerts.suspicious(findings, kinds, self.s),
            state.alerts.any_open(kinds),
            at_ms,
            self.pause_ms,
            self.relearn_ms,
        )

    def _learn(self, state: RouteState, window: RouteWindow, partial: bool, findings: dict[str, Finding]) -> None:
        s, end = self.s, window.window_end
        if not partial and self._may_learn(state.count_pause, state, findings, ("spike", "drop"), end):
            noise = self.count_noise(state.count, self.expected_count(state, end))
            clip = s.route_clip_z * noise if state.count.samples else None
            state.count.update(float(window.count), end, self.halflife_ms, clip, spread=state.count_pause.calm)
        if window.count > 0 and self._may_learn(state.errors_pause, state, findings, ("error_surge",), end):
            state.errors.update(float(window.errors_5xx), float(window.count), end, self.halflife_ms)
        if window.count >= s.latency_min_count and self._may_learn(
            state.latency_pause, state, findings, ("latency_surge",), end
        ):
            noise = max(state.latency.std, s.latency_noise_rel)
            clip = s.route_clip_z * noise if state.latency.samples else None
            state.latency.update(
                typical_latency_log(window), end, self.halflife_ms, clip, spread=state.latency_pause.calm
            )

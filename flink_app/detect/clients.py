"""Client detectors: ip_burst, ip_scan, ip_auth_failures on tumbling windows per client IP.

Each client window carries the whole population's figures for the same window (number of clients,
mean and population standard deviation of their request counts, computed in SQL). The detectors
compare a client with the *other* clients (the client's own contribution is removed from the mean
and standard deviation, so one heavy client cannot hide itself by inflating them) and with its own
history. Every threshold is the largest of an absolute floor, a population-relative level and an
own-history level, so a busy hour raises the bar and a quiet client is not judged by absolutes.

Only *candidate* windows count (:class:`CandidateFloors`): a window in which some kind could reach
the clear level, i.e. at least ``alert.clear.score`` times that kind's absolute floor. Every other
window (nearly all of a long tail of visitors) cannot open, continue or escalate an incident, so it
is ignored altogether, and a client's own history is learned from its candidate windows only. The
SQL stage applies the same floors (:func:`flink_app.stages.client_candidate_condition`), so such
windows never cross into Python; the pure-Python backtest filters them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from flink_app.detect.alerts import Alerts, Finding, Transition, excess_score
from flink_app.detect.baseline import EwmaBaseline, LearningPause
from flink_app.detect.model import ClientWindow
from flink_app.detect.settings import DetectSettings


@dataclass
class ClientState:
    """One client's own history and open incidents (picklable, kept in keyed state)."""

    client_ip: str = ""
    count: EwmaBaseline = field(default_factory=EwmaBaseline)  # requests per window
    share: EwmaBaseline = field(default_factory=EwmaBaseline)  # its requests per request of all other clients
    scan: EwmaBaseline = field(default_factory=EwmaBaseline)  # unmatched paths or 404s per window
    auth: EwmaBaseline = field(default_factory=EwmaBaseline)  # 401/403 per window
    count_pause: LearningPause = field(default_factory=LearningPause)
    scan_pause: LearningPause = field(default_factory=LearningPause)
    auth_pause: LearningPause = field(default_factory=LearningPause)
    alerts: Alerts = field(default_factory=Alerts)
    last_end: int = 0
    size_ms: int = 0  # the window size


MINUTE_MS = 60_000


def floor_scale(size_ms: int) -> float:
    """How many times its setting a client count floor is for a window of ``size_ms``.

    ``burst.min.count``, ``scan.min.count`` and ``auth.min.count`` are per minute: a window of a minute
    or longer scales them with its size (a health monitor sends 450 requests per 30-minute window,
    15 a minute); a shorter window keeps them whole, so that a second's handful is never a burst.
    """
    return max(1.0, size_ms / MINUTE_MS)


@dataclass(frozen=True, slots=True)
class CandidateFloors:
    """The least a client window must hold for any kind to reach the clear level (whole requests)."""

    count: int  # requests (ip_burst)
    scans: int  # max(unmatched, not_found) (ip_scan)
    auth: int  # 401/403 (ip_auth_failures)

    @classmethod
    def from_settings(cls, s: DetectSettings, size_ms: int = MINUTE_MS) -> CandidateFloors:
        """The floors for client windows of ``size_ms`` (:func:`floor_scale`)."""
        # Every threshold is at least its absolute floor and above the expected level, so a score of
        # alert.clear.score needs at least that share of the floor: below it nothing can be suspicious.
        c = s.alert_clear_score * floor_scale(size_ms)
        return cls(math.ceil(c * s.burst_min_count), math.ceil(c * s.scan_min_count), math.ceil(c * s.auth_min_count))

    def admit(self, window: ClientWindow) -> bool:
        """Whether ``window`` is a candidate (the SQL stage sends only these)."""
        return (
            window.count >= self.count
            or max(window.unmatched, window.not_found) >= self.scans
            or window.auth_failures >= self.auth
        )


@dataclass(frozen=True, slots=True)
class Population:
    """The other clients of a window: their number, mean and standard deviation of request counts."""

    clients: int
    mean: float
    std: float


def others(window: ClientWindow) -> Population | None:
    """The population without this client (``pop_std_count`` is the population standard deviation)."""
    n = window.pop_clients
    if n < 2:
        return None
    total = n * window.pop_mean_count
    squares = n * (window.pop_std_count**2 + window.pop_mean_count**2)
    mean = max((total - window.count) / (n - 1), 0.0)
    var = max((squares - window.count**2) / (n - 1) - mean * mean, 0.0)
    return Population(n - 1, mean, math.sqrt(var))


class ClientDetector:
    """The client kinds; stateless itself, so one instance serves every key."""

    # When kinds open together, the incident is the more specific one (a scan's burst is a facet).
    PRECEDENCE = ("ip_scan", "ip_auth_failures", "ip_burst")

    def __init__(self, settings: DetectSettings) -> None:
        self.s = settings
        self._candidates: dict[int, CandidateFloors] = {}

    def admit(self, window: ClientWindow) -> bool:
        """Whether ``window`` is a candidate (:class:`CandidateFloors` for its size)."""
        size = window.window_end - window.window_start
        floors = self._candidates.get(size)
        if floors is None:
            floors = self._candidates[size] = CandidateFloors.from_settings(self.s, size)
        return floors.admit(window)

    def _ms(self, state: ClientState, name: str) -> float:
        return self.s.at_least_windows(name, state.size_ms)

    def next_deadline(self, state: ClientState) -> int | None:
        """When an open incident ends if the client sends nothing hot (it may send nothing at all)."""
        return state.alerts.next_close(int(self._ms(state, "alert_cooldown_s")))

    def apply_due(self, state: ClientState, until: int, inclusive: bool) -> list[Transition]:
        return state.alerts.close_due(until, int(self._ms(state, "alert_cooldown_s")), inclusive)

    def on_window(self, state: ClientState, window: ClientWindow) -> list[Transition]:
        """Judge and learn a candidate window; any other window is ignored (see the module's docstring)."""
        if not self.admit(window):
            return []
        state.client_ip = window.client_ip
        state.size_ms = window.window_end - window.window_start
        out = self.apply_due(state, window.window_end, inclusive=False)
        findings = sorted(self._findings(state, window), key=lambda f: self.PRECEDENCE.index(f.kind))
        out.extend(state.alerts.observe_window(findings, window.window_start, window.window_end, self.s))
        self._learn(state, window, {finding.kind: finding for finding in findings})
        state.last_end = max(state.last_end, window.window_end)
        return out

    def _findings(self, state: ClientState, window: ClientWindow) -> list[Finding]:
        s = self.s
        population = others(window)
        if population is not None and population.clients < s.client_pop_min_clients:
            population = None  # too few clients to say what is normal for one
        known = state.count.samples >= s.client_warmup_windows
        rest = window.pop_clients * window.pop_mean_count - window.count  # every other client's requests
        # A known client's usual level is its usual *share* of the traffic (relative to everybody else's):
        # when the whole site (or its favourite route) gets busier, so may it, without being a burst.
        own = max(state.count.mean, state.share.mean * rest) if known and state.share.samples else state.count.mean

        expected = own if known else (population.mean if population else 0.0)
        scale = floor_scale(state.size_ms)
        threshold = s.burst_min_count * scale
        if population:
            threshold = max(
                threshold, s.burst_pop_ratio * population.mean, population.mean + s.burst_pop_z * population.std
            )
        if known:
            threshold = max(threshold, s.burst_own_ratio * own)
        burst = Finding(
            "ip_burst",
            window.count,
            expected,
            excess_score(window.count, expected, threshold),
            window.count >= threshold,
        )

        scans = float(max(window.unmatched, window.not_found))
        scan = self._share_finding(
            "ip_scan",
            scans,
            window.count,
            state.scan if known else None,
            population,
            s.scan_min_count * scale,
            s.scan_pop_ratio,
            s.scan_own_ratio,
            s.scan_min_fraction,
        )
        auth = self._share_finding(
            "ip_auth_failures",
            float(window.auth_failures),
            window.count,
            state.auth if known else None,
            population,
            s.auth_min_count * scale,
            s.auth_pop_ratio,
            s.auth_own_ratio,
            s.auth_min_fraction,
        )
        return [burst, scan, auth]

    def _share_finding(
        self,
        kind: str,
        observed: float,
        count: int,
        own: EwmaBaseline | None,
        population: Population | None,
        min_count: float,
        pop_ratio: float,
        own_ratio: float,
        min_fraction: float,
    ) -> Finding:
        """A kind of failing request: many of them, compared with the population's and the client's own
        level, and most of what the client sends."""
        expected = own.mean if own is not None else 0.0
        threshold = min_count
        if population:
            threshold = max(threshold, pop_ratio * population.mean)
        if own is not None:
            threshold = max(threshold, own_ratio * own.mean)
        flagged = observed >= threshold and observed >= min_fraction * count
        return Finding(kind, observed, expected, excess_score(observed, expected, threshold), flagged)

    def _may_learn(
        self, pause: LearningPause, state: ClientState, findings: dict[str, Finding], kind: str, at_ms: int
    ) -> bool:
        return pause.allows(
            state.alerts.suspicious(findings, (kind,), self.s),
            state.alerts.any_open((kind,)),
            at_ms,
            self._ms(state, "learn_pause_s"),
            self._ms(state, "relearn_s"),
        )

    def _learn(self, state: ClientState, window: ClientWindow, findings: dict[str, Finding]) -> None:
        end = window.window_end
        halflife_ms = self._ms(state, "client_halflife_s")
        if self._may_learn(state.count_pause, state, findings, "ip_burst", end):
            state.count.update(float(window.count), end, halflife_ms, spread=state.count_pause.calm)
            rest = window.pop_clients * window.pop_mean_count - window.count
            if rest > 0.5:
                state.share.update(window.count / rest, end, halflife_ms, spread=False)
        if self._may_learn(state.scan_pause, state, findings, "ip_scan", end):
            state.scan.update(float(max(window.unmatched, window.not_found)), end, halflife_ms)
        if self._may_learn(state.auth_pause, state, findings, "ip_auth_failures", end):
            state.auth.update(float(window.auth_failures), end, halflife_ms)

"""Alert state per subject and kind: one incident, a bounded number of records.

A detector turns one window into a :class:`Finding` (observed, expected, the threshold it had to
cross, and whether every gate passed). :class:`Alerts` turns findings into records:

* ``open``: the first flagged window of an incident;
* ``escalate``: a later window whose severity is above every severity reported so far (at most
  twice: low -> medium -> high);
* ``end``: once the signal has stayed below the clear level (hysteresis: ``alert.clear.score``,
  below the flagging level 1.0) for ``alert.cooldown.s`` of event time. Windows flagged during the
  cool-down continue the same incident. The end record spans the incident and carries its peak.

So an incident yields few records, however long it lasts or however much it flaps.
The score is computed the same way for every kind (:func:`excess_score`).

**One incident per subject.** A kind flagged while the subject already has an open incident does
not open a second one: it joins it as a *facet* (a scanning client that also sends a burst is one
alert, ``ip_scan`` with ``ip_burst``). The incident's ``kind`` is the one that opened it (when
several open in the same window, the detector's order of findings decides: the more specific first);
its records carry ``kinds``, every kind shown so far. A kind joining writes an ``escalate`` record
(with that kind's observed, expected and score); the incident ends when none of its kinds has been
at or above the clear level for the cool-down. Each kind keeps its own state underneath (its
baseline's learning pauses while it is part of an incident).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flink_app.detect.settings import DetectSettings
from pulse_contract import SEVERITIES


def excess_score(observed: float, expected: float, threshold: float) -> float:
    """How far ``observed`` is from ``expected``, in units of the threshold's distance from it.

    1.0 means exactly at the alert threshold, 2.0 twice as far from normal as the threshold, 0.0
    normal; it works the same for increases (spike) and decreases (drop). Below 0 clamps to 0.
    """
    span = threshold - expected
    if span == 0:
        return 0.0
    return max((observed - expected) / span, 0.0)


def severity_rank(score: float, settings: DetectSettings) -> int:
    """0 low, 1 medium, 2 high: the same cut points for every kind."""
    if score >= settings.severity_high_score:
        return 2
    if score >= settings.severity_medium_score:
        return 1
    return 0


@dataclass(frozen=True, slots=True)
class Finding:
    """What one detector saw in one window."""

    kind: str
    observed: float
    expected: float
    score: float  # excess_score: >= 1 at or past the threshold
    flagged: bool  # every gate passed (threshold and volume guards)


@dataclass(frozen=True, slots=True)
class Transition:
    """A record to write: the engine turns it into an :class:`~flink_app.detect.model.Anomaly`."""

    phase: str
    kind: str
    window_start: int
    window_end: int
    observed: float
    expected: float
    score: float
    severity: str
    kinds: tuple[str, ...] = ()  # every kind of the incident so far, ``kind`` first


@dataclass
class Incident:
    """One open incident of one kind on one subject."""

    opened_start: int
    opened_end: int
    expected: float  # what the baseline expected when it opened
    peak_observed: float
    peak_score: float
    reported: int  # highest severity rank written so far
    last_hot: int  # window_end of the last window at or above the clear level
    held: bool = False  # no end while held (silence: until traffic is back)
    host: str = ""  # the kind whose incident this one is a facet of ("": it is the incident itself)
    kinds: list[str] = field(default_factory=list)  # an incident's kinds, its own first

    def close_at(self, cooldown_ms: int) -> int | None:
        return None if self.held else self.last_hot + cooldown_ms


@dataclass
class Alerts:
    """The open incidents of one subject, by kind."""

    open: dict[str, Incident] = field(default_factory=dict)

    def is_open(self, kind: str) -> bool:
        return kind in self.open

    def any_open(self, kinds: tuple[str, ...]) -> bool:
        return any(kind in self.open for kind in kinds)

    @staticmethod
    def suspicious(findings: dict[str, Finding], kinds: tuple[str, ...], settings: DetectSettings) -> bool:
        """Whether one of ``kinds`` scored at or past the clear level in this window."""
        return any(kind in findings and findings[kind].score >= settings.alert_clear_score for kind in kinds)

    def host(self) -> str | None:
        """The kind of the subject's open incident (None: nothing open)."""
        return next((kind for kind, incident in self.open.items() if not incident.host), None)

    def observe(
        self, finding: Finding, window_start: int, window_end: int, settings: DetectSettings
    ) -> list[Transition]:
        """Advance ``finding.kind``'s state by one window."""
        return self.observe_window([finding], window_start, window_end, settings)

    def observe_window(
        self, findings: list[Finding], window_start: int, window_end: int, settings: DetectSettings
    ) -> list[Transition]:
        """Advance every kind's state by one window; at most one record per incident and window.

        ``findings`` are in the detector's order of precedence: when several kinds open an incident
        in the same window, the first is its ``kind``.
        """
        opened: Finding | None = None  # the finding that opened the incident in this window
        joined: list[tuple[int, Finding]] = []  # kinds that joined the open incident
        escalated: list[tuple[int, Finding]] = []  # flagged windows of kinds already in it
        for finding in findings:
            incident = self.open.get(finding.kind)
            rank = severity_rank(finding.score, settings)
            if incident is None:
                if not finding.flagged:
                    continue
                host = self.host()
                self.open[finding.kind] = Incident(
                    opened_start=window_start,
                    opened_end=window_end,
                    expected=finding.expected,
                    peak_observed=finding.observed,
                    peak_score=finding.score,
                    reported=rank,
                    last_hot=window_end,
                    host=host or "",
                    kinds=[] if host else [finding.kind],
                )
                if host is None:
                    opened = finding
                else:
                    self.open[host].kinds.append(finding.kind)
                    joined.append((rank, finding))
                continue
            if finding.flagged or finding.score >= settings.alert_clear_score:
                incident.last_hot = max(incident.last_hot, window_end)
            if finding.flagged and finding.score > incident.peak_score:
                incident.peak_score, incident.peak_observed = finding.score, finding.observed
            if finding.flagged:
                escalated.append((rank, finding))
        host_kind = self.host()
        if host_kind is None:
            return []
        lead = self.open[host_kind]
        if opened is not None:
            lead.reported = max([lead.reported] + [rank for rank, _ in joined])
            return [self._record("open", host_kind, lead, opened, window_start, window_end)]
        higher = [(rank, finding) for rank, finding in escalated if rank > lead.reported]
        if not joined and not higher:
            return []
        lead.reported = max(rank for rank, _ in [(lead.reported, None), *joined, *higher])
        news = joined[0][1] if joined else max(higher, key=lambda item: item[0])[1]
        return [self._record("escalate", host_kind, lead, news, window_start, window_end)]

    @staticmethod
    def _record(
        phase: str, kind: str, host: Incident, finding: Finding, window_start: int, window_end: int
    ) -> Transition:
        return Transition(
            phase,
            kind,
            window_start,
            window_end,
            finding.observed,
            finding.expected,
            finding.score,
            SEVERITIES[host.reported],
            tuple(host.kinds),
        )

    def close_at(self, kind: str, cooldown_ms: int) -> int | None:
        """When ``kind``'s incident ends if nothing hot arrives: the last of its kinds' cool-downs."""
        members = [i for k, i in self.open.items() if k == kind or i.host == kind]
        times = [i.close_at(cooldown_ms) for i in members]
        return None if any(t is None for t in times) else max(t for t in times if t is not None)

    def next_close(self, cooldown_ms: int) -> int | None:
        """The earliest event time at which an open incident ends if nothing hot arrives."""
        host = self.host()
        return None if host is None else self.close_at(host, cooldown_ms)

    def close_due(self, until: int, cooldown_ms: int, inclusive: bool) -> list[Transition]:
        """End the incident if its cool-down has run out by ``until`` (``<`` or ``<=``)."""
        host = self.host()
        at = None if host is None else self.close_at(host, cooldown_ms)
        if host is not None and at is not None and (at <= until if inclusive else at < until):
            return [self.end(host, at)]
        return []

    def end(self, kind: str, at: int) -> Transition:
        """Close ``kind``'s incident (and its facets) at event time ``at``: the record spans it and carries
        its peak."""
        incident = self.open.pop(kind)
        for facet in [k for k, i in self.open.items() if i.host == kind]:
            del self.open[facet]
        return Transition(
            "end",
            kind,
            incident.opened_start,
            at,
            incident.peak_observed,
            incident.expected,
            incident.peak_score,
            SEVERITIES[incident.reported],
            tuple(incident.kinds),
        )

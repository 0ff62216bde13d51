"""Alert state per subject and kind: one incident, a bounded number of records.

A detector turns one window into a :class:`Finding` (observed, expected, the threshold it had to
cross, and whether every gate passed). :class:`Alerts` turns findings into records:

* ``open``: the first flagged window of an incident;
* ``escalate``: a later window whose severity is above every severity reported so far (at most
  twice: low -> medium -> high);
* ``end``: once the signal has stayed below the clear level (hysteresis: ``alert.clear.score``,
  below the flagging level 1.0) for ``alert.cooldown.s`` of event time. Windows flagged during the
  cool-down continue the same incident. The end record spans the incident and carries its peak.

So an incident yields at most four records, however long it lasts or however much it flaps.
The score is computed the same way for every kind (:func:`excess_score`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flink_app.detect.model import Severity
from flink_app.detect.settings import DetectSettings

SEVERITIES = (Severity.LOW.value, Severity.MEDIUM.value, Severity.HIGH.value)


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

    def observe(
        self, finding: Finding, window_start: int, window_end: int, settings: DetectSettings
    ) -> list[Transition]:
        """Advance ``finding.kind``'s state by one window."""
        incident = self.open.get(finding.kind)
        rank = severity_rank(finding.score, settings)
        if incident is None:
            if not finding.flagged:
                return []
            self.open[finding.kind] = Incident(
                opened_start=window_start,
                opened_end=window_end,
                expected=finding.expected,
                peak_observed=finding.observed,
                peak_score=finding.score,
                reported=rank,
                last_hot=window_end,
            )
            return [
                Transition(
                    "open",
                    finding.kind,
                    window_start,
                    window_end,
                    finding.observed,
                    finding.expected,
                    finding.score,
                    SEVERITIES[rank],
                )
            ]
        out: list[Transition] = []
        if finding.flagged or finding.score >= settings.alert_clear_score:
            incident.last_hot = max(incident.last_hot, window_end)
        if finding.flagged and finding.score > incident.peak_score:
            incident.peak_score, incident.peak_observed = finding.score, finding.observed
        if finding.flagged and rank > incident.reported:
            incident.reported = rank
            out.append(
                Transition(
                    "escalate",
                    finding.kind,
                    window_start,
                    window_end,
                    finding.observed,
                    finding.expected,
                    finding.score,
                    SEVERITIES[rank],
                )
            )
        return out

    def next_close(self, cooldown_ms: int) -> int | None:
        """The earliest event time at which an open incident ends if nothing hot arrives."""
        times = [t for incident in self.open.values() if (t := incident.close_at(cooldown_ms)) is not None]
        return min(times) if times else None

    def close_due(self, until: int, cooldown_ms: int, inclusive: bool) -> list[Transition]:
        """End every incident whose cool-down has run out by ``until`` (``<`` or ``<=``)."""
        out = []
        for kind in sorted(self.open):
            at = self.open[kind].close_at(cooldown_ms)
            if at is not None and (at <= until if inclusive else at < until):
                out.append(self.end(kind, at))
        return out

    def end(self, kind: str, at: int) -> Transition:
        """Close ``kind``'s incident at event time ``at``: the record spans it and carries its peak."""
        incident = self.open.pop(kind)
        return Transition(
            "end",
            kind,
            incident.opened_start,
            at,
            incident.peak_observed,
            incident.expected,
            incident.peak_score,
            SEVERITIES[incident.reported],
        )

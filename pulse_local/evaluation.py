"""Incident-level scoring of detected anomalies against injected labels.

Records become incidents by their ``phase`` (an ``open`` record starts one, ``end`` closes it). Then:

* a label is **found** when an incident on its subject writes an ``open`` or ``escalate`` record
  that shows the label's kind (``kind`` or one of ``kinds``: one incident per subject carries every
  kind it showed) between the injection's start and ``tolerance_s`` after its end (an incident
  still cooling down from an earlier anomaly continues, and escalates, rather than opening anew);
  the **delay** is that record's ``window_end`` minus the injection's start (event time);
* an incident is **explained** when it opens inside some injection (same tolerance) and is either
  on that injection's subject with the same or a related kind (an outage that shows as a ``drop``
  for its first minute before it is ``silence``), or on a route that the injected client traffic hit
  (credential stuffing does spike the login route);
* recall = found / labels; **precision** (incident precision) = incidents that were the first to
  find a label / incidents: a second alert for a cause already reported (a second incident for the
  same label, the side effects above) counts as false, as it costs the on-call engineer the same;
  ``precision_explained`` = explained / incidents charges only alerts that no label explains.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pulse_contract import CLIENT_KINDS, Anomaly
from pulse_local.traffic import Injection

RELATED_KINDS: dict[str, frozenset[str]] = {"drop": frozenset({"silence"}), "silence": frozenset({"drop"})}


@dataclass(frozen=True, slots=True)
class Incident:
    kind: str
    subject_type: str
    subject: str
    opened_ms: int  # window_end of its first record
    last_ms: int  # window_end of its last record
    severity: str
    records: int
    news_ms: tuple[int, ...] = ()  # window_end of its open and escalate records
    kinds: tuple[str, ...] = ()  # every kind it showed (``kind`` first)
    news_kinds: tuple[tuple[str, ...], ...] = ()  # the kinds each of news_ms showed


@dataclass
class Evaluation:
    labels: list[Injection]
    incidents: list[Incident]
    found: list[tuple[Injection, Incident, int]] = field(default_factory=list)  # label, incident, news at
    missed: list[Injection] = field(default_factory=list)
    unexplained: list[Incident] = field(default_factory=list)
    side_effects: list[Incident] = field(default_factory=list)  # explained, but found no label

    @property
    def recall(self) -> float:
        return len(self.found) / len(self.labels) if self.labels else 1.0

    @property
    def first_finders(self) -> int:
        """Incidents that were the first to find some label (one alert per cause)."""
        return len({id(incident) for _, incident, _ in self.found})

    @property
    def precision(self) -> float:
        """Incident precision: redundant alerts for a cause already reported count as false."""
        return self.first_finders / len(self.incidents) if self.incidents else 1.0

    @property
    def precision_explained(self) -> float:
        return 1.0 - len(self.unexplained) / len(self.incidents) if self.incidents else 1.0

    @property
    def delays_s(self) -> list[float]:
        return [(at - label.start_ms) / 1000 for label, _, at in self.found]

    @property
    def median_delay_s(self) -> float:
        return statistics.median(self.delays_s) if self.found else float("nan")


def incidents(anomalies: Iterable[Anomaly]) -> list[Incident]:
    """Group records into incidents by subject, kind and phase."""
    ordered = sorted(anomalies, key=lambda a: (a.subject_type, a.subject, a.kind, a.window_end, a.phase != "open"))
    out: list[Incident] = []
    current: dict[tuple[str, str, str], list[Anomaly]] = {}

    def close(key: tuple[str, str, str]) -> None:
        records = current.pop(key)
        ranks = {"low": 0, "medium": 1, "high": 2}
        worst = max(records, key=lambda r: ranks.get(r.severity, 0)).severity
        opened = (
            min(r.window_end for r in records if r.phase != "end")
            if any(r.phase != "end" for r in records)
            else records[0].window_end
        )
        news = [r for r in records if r.phase != "end"]
        kinds = tuple(dict.fromkeys(kind for r in records for kind in r.kind_list))
        out.append(
            Incident(
                key[2],
                key[0],
                key[1],
                opened,
                max(r.window_end for r in records),
                worst,
                len(records),
                tuple(r.window_end for r in news),
                kinds,
                tuple(r.kind_list for r in news),
            )
        )

    for record in ordered:
        key = (record.subject_type, record.subject, record.kind)
        if record.phase == "open" and key in current:
            close(key)
        current.setdefault(key, []).append(record)
        if record.phase == "end":
            close(key)
    for key in list(current):
        close(key)
    return sorted(out, key=lambda i: (i.opened_ms, i.subject, i.kind))


def side_effect_of(label: Injection, incident: Incident) -> bool:
    """A related kind on the label's subject, or a route the injected client traffic hit."""
    if incident.subject == label.subject and incident.kind in RELATED_KINDS.get(label.kind, ()):
        return True
    return incident.subject_type == "route" and label.kind in CLIENT_KINDS and incident.subject in label.routes


def evaluate(anomalies: Iterable[Anomaly], labels: Sequence[Injection], tolerance_s: float = 120) -> Evaluation:
    """Score ``anomalies`` (records of any phase) against the injected ``labels``."""
    found_incidents = incidents(anomalies)
    result = Evaluation(list(labels), found_incidents)
    tolerance = int(tolerance_s * 1000)

    def during(label: Injection, incident: Incident) -> bool:
        return label.start_ms <= incident.opened_ms <= label.end_ms + tolerance

    matched: set[int] = set()
    for label in labels:
        news = [
            (at, i)
            for i, incident in enumerate(found_incidents)
            if incident.subject == label.subject
            for at, kinds in zip(incident.news_ms, incident.news_kinds, strict=True)
            if label.kind in kinds and label.start_ms <= at <= label.end_ms + tolerance
        ]
        if news:
            at, first = min(news)
            result.found.append((label, found_incidents[first], at))
            matched.update(i for _, i in news)
        else:
            result.missed.append(label)
    for i, incident in enumerate(found_incidents):
        if i in matched:
            continue
        explained = any(during(label, incident) and side_effect_of(label, incident) for label in labels)
        (result.side_effects if explained else result.unexplained).append(incident)
    return result

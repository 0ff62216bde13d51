"""Scoring detections against labels, and the backtest's progress display and summary table."""

from __future__ import annotations

import io

from rich.console import Console

from flink_app.report import BacktestProgress, print_summary, summarize
from pulse_contract import Anomaly
from pulse_local.evaluation import evaluate, incidents
from pulse_local.traffic import Injection

MIN = 60_000


def record(
    kind: str, subject: str, end_min: float, phase: str = "open", severity: str = "low", subject_type: str = "route"
) -> Anomaly:
    end = int(end_min * MIN)
    return Anomaly(kind, subject_type, subject, end - MIN, end, 1.0, 1.0, 1.0, severity, 0, 0, phase)


def test_records_group_into_incidents_by_phase() -> None:
    found = incidents(
        [
            record("spike", "/a", 10),
            record("spike", "/a", 11, "escalate", "high"),
            record("spike", "/a", 14, "end"),
            record("spike", "/a", 30),
            record("drop", "/a", 10),
        ]
    )
    assert [(i.kind, i.opened_ms // MIN, i.last_ms // MIN, i.records, i.severity) for i in found] == [
        ("drop", 10, 10, 1, "low"),
        ("spike", 10, 14, 3, "high"),
        ("spike", 30, 30, 1, "low"),
    ]


def test_recall_precision_and_delay_at_incident_level() -> None:
    labels = [
        Injection("spike", "/a", 10 * MIN, 15 * MIN, 4.0, ("/a",)),
        Injection("silence", "/b", 20 * MIN, 25 * MIN, 0.0, ("/b",)),
        Injection("ip_auth_failures", "203.0.113.9", 40 * MIN, 45 * MIN, 100.0, ("/auth/login",)),
        Injection("error_surge", "/c", 50 * MIN, 55 * MIN, 0.3, ("/c",)),
    ]
    anomalies = [
        record("spike", "/a", 10.5),
        record("spike", "/a", 17, "end"),  # found, 30 s
        record("drop", "/b", 20.75),
        record("drop", "/b", 21.25, "end"),  # the outage's first minute
        record("silence", "/b", 21.25),  # found, 75 s
        record("ip_auth_failures", "203.0.113.9", 41, subject_type="client"),  # found, 60 s
        record("spike", "/auth/login", 41),  # the stuffing's side effect on the login route
        record("latency_surge", "/d", 33),  # nothing injected there: a false alarm
    ]
    result = evaluate(anomalies, labels)
    assert [label.kind for label in result.missed] == ["error_surge"]
    assert result.recall == 0.75
    assert sorted(result.delays_s) == [30, 60, 75] and result.median_delay_s == 60
    assert [(i.kind, i.subject) for i in result.unexplained] == [("latency_surge", "/d")]
    assert {(i.kind, i.subject) for i in result.side_effects} == {("drop", "/b"), ("spike", "/auth/login")}
    assert result.precision_explained == 1 - 1 / 6 and result.precision == 3 / 6  # side effects are redundant


def test_an_incident_that_opened_before_the_injection_finds_it_only_by_a_new_record() -> None:
    labels = [Injection("spike", "/a", 10 * MIN, 15 * MIN, 4.0, ("/a",))]
    quiet = evaluate([record("spike", "/a", 9), record("spike", "/a", 12, "end")], labels)
    assert quiet.recall == 0 and len(quiet.unexplained) == 1
    escalated = evaluate([record("spike", "/a", 9), record("spike", "/a", 11, "escalate", "high")], labels)
    assert escalated.recall == 1 and escalated.delays_s == [60] and escalated.unexplained == []


def test_the_summary_has_a_line_per_kind_and_subject_with_first_and_last_seen() -> None:
    anomalies = [
        record("spike", "/a", 10),
        record("spike", "/a", 12, "escalate", "high"),
        record("spike", "/a", 15, "end", "high"),
        record("spike", "/a", 40),
        record("ip_scan", "203.0.113.7", 20, subject_type="client", severity="medium"),
    ]
    rows = summarize(anomalies)
    assert [
        (r.kind, r.subject, r.incidents, r.records, r.worst, r.first_seen // MIN, r.last_seen // MIN) for r in rows
    ] == [("spike", "/a", 2, 4, "high", 10, 40), ("ip_scan", "203.0.113.7", 1, 1, "medium", 20, 20)]
    out = io.StringIO()
    print_summary(anomalies, Console(file=out, width=140, color_system=None))
    text = out.getvalue()
    assert "3 incidents, 5 records" in text and "203.0.113.7" in text and "1970-01-01 00:10:00" in text


def test_an_empty_backtest_says_so() -> None:
    out = io.StringIO()
    assert print_summary([], Console(file=out)) == []
    assert "none found" in out.getvalue()


def test_progress_counts_input_and_anomalies() -> None:
    out = io.StringIO()
    with BacktestProgress(total=10, console=Console(file=out, width=120, force_terminal=False)) as progress:
        report = progress.callback()
        report(4, 10)
        passed = list(progress.count([record("spike", "/a", 1), record("drop", "/b", 2)]))
        report(10, 10)
    assert len(passed) == 2 and (progress.done, progress.anomalies) == (10, 2)
    assert "10/10" in out.getvalue() and "2 anomalies" in out.getvalue()


def test_one_incident_with_several_kinds_finds_each_label_and_a_second_incident_is_redundant() -> None:
    client = "203.0.113.9"
    labels = [
        Injection("ip_scan", client, 10 * MIN, 15 * MIN, 100.0, ("UNMATCHED",)),
        Injection("ip_burst", client, 10 * MIN, 15 * MIN, 500.0, ("/items",)),
        Injection("spike", "/a", 30 * MIN, 35 * MIN, 4.0, ("/a",)),
    ]
    scan = record("ip_scan", client, 11, subject_type="client")
    grouped = [
        scan,
        Anomaly("ip_scan", "client", client, 11 * MIN, 12 * MIN, 1, 1, 1, "low", 0, 0, "escalate", "ip_scan,ip_burst"),
        record("spike", "/a", 31),
        record("spike", "/a", 33, "end"),
        record("spike", "/a", 34),  # the same spike again: a second alert for one cause
    ]
    result = evaluate(grouped, labels)
    assert result.recall == 1.0
    assert [i.kinds for i in incidents(grouped) if i.subject == client] == [("ip_scan", "ip_burst")]
    assert result.precision == 2 / 3 and result.precision_explained == 1.0

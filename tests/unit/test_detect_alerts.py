"""Alert state: one incident, a bounded number of records, the same score and severity everywhere."""

from __future__ import annotations

from dataclasses import replace

from flink_app.detect.alerts import Alerts, Finding, excess_score, severity_rank
from flink_app.detect.settings import DetectSettings
from tests.synthetic import SLIDE_MS, engine, opened, poisson_slides, route_windows, run_routes, slot_of

BUSY = 20.0
WARM = 120


def test_a_flapping_spike_is_one_incident_of_at_most_four_records() -> None:
    # given a spike that comes and goes every 30 seconds for ten minutes
    rates = [BUSY] * WARM + ([6 * BUSY] * 3 + [BUSY] * 3) * 10 + [BUSY] * 60
    anomalies = run_routes(engine(), route_windows(poisson_slides(rates)))
    # then one incident: open, at most two escalations, end
    phases = [a.phase for a in anomalies]
    assert phases[0] == "open" and phases[-1] == "end" and phases.count("open") == 1
    assert len(anomalies) <= 4 and {a.kind for a in anomalies} == {"spike"}


def test_an_incident_escalates_through_each_severity_once_then_ends_with_its_peak() -> None:
    # given a spike that grows from three to twelve times the traffic, a minute at each step
    rates = [BUSY] * WARM + [3 * BUSY] * 6 + [6 * BUSY] * 6 + [12 * BUSY] * 6 + [BUSY] * 60
    windows = route_windows(poisson_slides(rates))
    anomalies = run_routes(engine(), windows)
    assert [(a.phase, a.severity) for a in anomalies] == [
        ("open", "low"),
        ("escalate", "medium"),
        ("escalate", "high"),
        ("end", "high"),
    ]
    first, end = anomalies[0], anomalies[-1]
    # the end record spans the incident and carries its peak (of every window, reported or not)
    assert end.window_start == first.window_start
    assert end.observed == max(w.count for w in windows if first.window_end <= w.window_end <= end.window_end)
    assert end.score >= max(a.score for a in anomalies[:-1])
    # it ends a cool-down (120 s) after the last window at or above the clear level
    assert slot_of(end.window_end) - 120_000 / SLIDE_MS > WARM + 18


def test_spikes_closer_than_the_cool_down_are_one_incident_and_farther_ones_two() -> None:
    def spikes(gap_slides: int) -> int:
        rates = [BUSY] * WARM + [6 * BUSY] * 6 + [BUSY] * gap_slides + [6 * BUSY] * 6 + [BUSY] * 60
        return len(opened(run_routes(engine(), route_windows(poisson_slides(rates))), "spike"))

    assert spikes(gap_slides=6) == 1  # back to normal for one minute: the same incident
    assert spikes(gap_slides=30) == 2  # five minutes apart: two incidents


def test_records_are_the_same_on_replay_except_when_they_were_written() -> None:
    rates = [BUSY] * WARM + [6 * BUSY] * 12 + [0] * 30 + [BUSY] * 60
    windows = route_windows(poisson_slides(rates))
    first = run_routes(engine(), windows)
    later = run_routes(type(engine())(DetectSettings(), clock_ms=lambda: 1_800_000_000_000), windows)
    assert [(a.pk, a.sk) for a in first] == [(a.pk, a.sk) for a in later]
    assert [replace(a, detected_at=0, ttl=0) for a in first] == [replace(a, detected_at=0, ttl=0) for a in later]
    assert {kind for a in first for kind in a.kind_list} >= {"spike", "silence"}


def test_score_is_distance_past_expected_in_units_of_the_threshold_for_rises_and_falls() -> None:
    assert excess_score(observed=300, expected=100, threshold=250) == 200 / 150
    assert excess_score(observed=10, expected=100, threshold=40) == 1.5
    assert excess_score(observed=100, expected=100, threshold=250) == 0
    assert excess_score(observed=90, expected=100, threshold=250) == 0  # the wrong way is not an excess
    settings = DetectSettings()
    assert [severity_rank(s, settings) for s in (1.0, 1.99, 2.0, 3.99, 4.0, 50)] == [0, 0, 1, 1, 2, 2]


def test_a_window_in_the_hysteresis_band_keeps_an_incident_open() -> None:
    settings = DetectSettings()
    alerts = Alerts()
    cooldown = int(settings.alert_cooldown_s * 1000)
    alerts.observe(Finding("spike", 500, 100, 2.5, True), 0, 60_000, settings)
    # a window past the clear level but under the threshold: still hot
    alerts.observe(Finding("spike", 250, 100, 0.7, False), 10_000, 70_000, settings)
    assert alerts.next_close(cooldown) == 70_000 + cooldown
    # a window under the clear level: the cool-down runs from the last hot window
    alerts.observe(Finding("spike", 110, 100, 0.1, False), 20_000, 80_000, settings)
    assert alerts.next_close(cooldown) == 70_000 + cooldown
    assert alerts.close_due(70_000 + cooldown, cooldown, inclusive=False) == []
    [end] = alerts.close_due(70_000 + cooldown, cooldown, inclusive=True)
    assert (end.phase, end.window_start, end.window_end, end.observed) == ("end", 0, 70_000 + cooldown, 500)
    assert not alerts.open


def test_state_survives_pickling_between_windows_as_in_flink_value_state() -> None:
    import pickle

    rates = [BUSY] * WARM + [6 * BUSY] * 12 + [0] * 30 + [BUSY] * 60
    windows = route_windows(poisson_slides(rates))
    detector = engine()
    kept: bytes | None = None
    records = []
    for window in windows:
        state = pickle.loads(kept) if kept is not None else None
        deadline = detector.silence_deadline(state)
        if deadline is not None and deadline < window.window_end:
            state, found = detector.on_silence(state, deadline)
            records += found
        state, found = detector.on_route_window(state, window)
        records += found
        kept = pickle.dumps(state)
    assert records == run_routes(engine(), windows)
    assert len(kept or b"") < 2_000

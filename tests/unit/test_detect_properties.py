"""Properties of the detectors over generated series (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flink_app.detect.settings import DetectSettings
from pulse_contract import KINDS, Anomaly
from tests.synthetic import Slide, engine, route_windows, run_routes

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    count=st.integers(1, 1_000_000),
    errors_per_mille=st.integers(0, 1000),
    latency=st.floats(0.5, 30_000),
    slides=st.integers(40, 400),
)
def test_a_constant_series_never_alerts(count: int, errors_per_mille: int, latency: float, slides: int) -> None:
    slide = Slide(count, count * errors_per_mille // 1000, latency)
    assert run_routes(engine(), route_windows([slide] * slides)) == []


def flagged(anomalies: list[Anomaly]) -> list[tuple[str, str, int, str, float]]:
    return [(a.kind, a.phase, a.window_end, a.severity, a.score) for a in anomalies]


# Volumes where the route's own variability, not counting noise, sets the thresholds: the tail
# thresholds (negative binomial, variance m + phi * m**2) rightly judge 10 requests more leniently than
# 20, so below about a hundred per window a doubled route may flag a window earlier or later.
busy_series = st.lists(st.integers(1000, 5000), min_size=60, max_size=260).flatmap(
    lambda base: st.lists(st.sampled_from([1, 1, 1, 1, 0.3, 0.1, 3, 6]), min_size=len(base), max_size=len(base)).map(
        lambda factors: [max(1, int(b * f)) for b, f in zip(base, factors, strict=True)]
    )
)


# How far the scale may move a score: the lower tail's threshold is a gamma approximation within 2 % of
# the mean (flink_app/detect/tails.py), which is up to a tenth of the distance from the mean to the
# threshold that a score is measured in, and the negative binomial's Poisson share of the variance
# (m of m + phi * m**2) shrinks as a route grows. A window whose score lies that close to a level
# that decides whether, or how, it is reported (open 1, hold, the severities) may rightly come out
# on either side of it. (Found by this property: a drop scored 1.093 at one scale, 1.08 and 1.101
# at others, and under 1 at one.)
SCORE_TOLERANCE = 0.1


@FAST
@given(counts=busy_series, power=st.integers(1, 6))
def test_scaling_every_count_changes_nothing_that_is_flagged(counts: list[int], power: int) -> None:
    # given a busy route (well above every volume guard and Poisson floor) and the same route 2**power busier
    scale = 2**power
    small = run_routes(engine(), route_windows([Slide(c, c // 50) for c in counts]))
    large = run_routes(engine(), route_windows([Slide(c * scale, (c // 50) * scale) for c in counts]))
    # then the same windows are flagged with the same severities and scores, to within the tails'
    # approximation; a window flagged on one side only, or with another severity, scores that close
    # to a deciding level
    settings = DetectSettings()
    levels = (1.0, settings.route_hold_score, settings.severity_medium_score, settings.severity_high_score)

    def borderline(score: float) -> bool:
        return any(abs(score - level) <= SCORE_TOLERANCE * level for level in levels)

    records = {key: {(a.kind, a.phase, a.window_end): a for a in found} for key, found in (("s", small), ("l", large))}
    for key in records["s"].keys() | records["l"].keys():
        a, b = records["s"].get(key), records["l"].get(key)
        if a is None or b is None:
            only = a or b
            assert only is not None and borderline(only.score), f"{key} flagged at one scale only: {only}"
            continue
        assert a.score == pytest.approx(b.score, rel=SCORE_TOLERANCE), key
        assert a.severity == b.severity or borderline(a.score) or borderline(b.score), key
    # and nearly everything flagged is flagged at both scales
    assert len(records["s"].keys() & records["l"].keys()) >= 0.8 * max(len(records["s"]), len(records["l"])) - 1


@FAST
@given(
    counts=st.lists(st.sampled_from([0, 0, 2, 10, 20, 20, 20, 20, 40, 120]), min_size=50, max_size=400),
    errors=st.lists(st.integers(0, 10), min_size=50, max_size=400),
)
def test_every_incident_is_open_then_at_most_two_escalations_then_end_each_under_its_own_key(
    counts: list[int], errors: list[int]
) -> None:
    slides = [Slide(c, min(e, c), 50.0 * (1 + e)) for c, e in zip(counts, errors, strict=False)]
    detector = engine(route_warmup_windows=5, silence_min_expected=10)
    anomalies = run_routes(detector, route_windows(slides, tail=True))
    assert len({(a.pk, a.sk) for a in anomalies}) == len(anomalies), "two records under one key"
    by_kind: dict[str, list[Anomaly]] = defaultdict(list)
    for a in anomalies:
        by_kind[a.kind].append(a)
    for records in by_kind.values():
        incident: list[Anomaly] = []
        for record in records:
            if record.phase == "open":
                assert not incident, "an incident opened while another of the same kind was open"
            else:
                assert incident, f"{record.phase} without an open incident"
            incident.append(record)
            if record.phase == "end":
                joined = len(record.kind_list) - 1  # a kind joining the incident writes an escalate
                assert len(incident) <= 4 + joined
                ranks = [("low", "medium", "high").index(r.severity) for r in incident[:-1]]
                kinds = [len(r.kind_list) for r in incident[:-1]]
                assert all(
                    (r2 > r1) or (k2 > k1) for r1, r2, k1, k2 in zip(ranks, ranks[1:], kinds, kinds[1:], strict=False)
                ), "an escalation raises the severity or adds a kind"
                incident = []
        assert len(incident) <= 3 + len(KINDS)


@FAST
@given(counts=st.lists(st.sampled_from([0, 0, 0, 20, 20, 20, 30, 5]), min_size=50, max_size=400))
def test_timers_change_when_a_record_is_written_never_what_it_says(counts: list[int]) -> None:
    windows = route_windows([Slide(c) for c in counts] + [Slide(20)])
    detector_settings = {"route_warmup_windows": 5, "silence_min_expected": 10}
    by_timer = run_routes(engine(**detector_settings), windows, fire_timers=True)
    by_next_window = run_routes(engine(**detector_settings), windows, fire_timers=False)
    assert sorted(by_timer, key=lambda a: (a.sk, a.phase)) == sorted(by_next_window, key=lambda a: (a.sk, a.phase))

"""The labelled traffic generator: realistic schema-v1 events, deterministic per seed, labelled."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from pulse_contract import KINDS, UNMATCHED_ROUTE
from pulse_contract.request_event import FIELD_TYPES as FIELDS
from pulse_local.traffic import ROUTES, Injection, TrafficGenerator, TrafficSpec, labelled_traffic


@pytest.fixture(scope="module")
def hour() -> tuple[list[dict], list[Injection]]:
    return labelled_traffic(seed=11, duration_s=3600, per_kind=0, peak_rps=10.0)


def test_events_are_schema_v1_in_time_order(hour: tuple[list[dict], list[Injection]]) -> None:
    events, _ = hour
    assert all(set(e) == set(FIELDS) and all(isinstance(e[k], t) for k, t in FIELDS.items()) for e in events)
    assert all(e["v"] == 1 for e in events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert len({e["id"] for e in events}) == len(events)


def test_many_routes_with_filled_path_parameters(hour: tuple[list[dict], list[Injection]]) -> None:
    events, _ = hour
    routes = Counter(e["route"] for e in events)
    assert len(routes) >= 15 and UNMATCHED_ROUTE in routes
    templated = [e for e in events if "{" in e["route"] and e["route"] != UNMATCHED_ROUTE]
    assert templated and all("{" not in e["path"] and e["path"] != e["route"] for e in templated)
    assert {e["route"] for e in events} <= {r.template for r in ROUTES}


def test_a_long_tail_of_clients(hour: tuple[list[dict], list[Injection]]) -> None:
    events, _ = hour
    per_client = Counter(e["client_ip"] for e in events)
    assert len(per_client) > 1000
    top = per_client.most_common(1)[0][1]
    assert top < 0.1 * len(events)
    assert sorted(per_client.values())[len(per_client) // 2] <= 10  # the median client sends little


def test_the_same_seed_gives_the_same_traffic_and_another_seed_other_traffic() -> None:
    spec = TrafficSpec(seed=5, duration_s=600, peak_rps=5.0)
    assert list(TrafficGenerator(spec).events()) == list(TrafficGenerator(spec).events())
    other = list(TrafficGenerator(TrafficSpec(seed=6, duration_s=600, peak_rps=5.0)).events())
    assert other != list(TrafficGenerator(spec).events())


def test_the_daily_rhythm_is_quieter_at_night() -> None:
    def volume(hour: float) -> int:
        return sum(1 for _ in TrafficGenerator(TrafficSpec(seed=1, duration_s=600, start_phase=hour / 24)).events())

    assert volume(4) < 0.45 * volume(15)


def test_a_compressed_day_passes_through_night_and_day() -> None:
    generator = TrafficGenerator(TrafficSpec(seed=1, duration_s=3 * 3600, day_s=3 * 3600, start_phase=0.0))
    start = generator.spec.start_ms
    rates = [generator.expected_per_minute("/items", start + h * 900_000) for h in range(12)]
    assert min(rates) < 0.4 * max(rates)


def test_injections_change_only_their_subject_while_they_last() -> None:
    generator = TrafficGenerator(TrafficSpec(seed=3, duration_s=1200, peak_rps=8.0))
    start = generator.spec.start_ms
    injection = Injection("latency_surge", "/search", start + 300_000, start + 600_000, 4.0, ("/search",))

    def key(e: dict) -> tuple:
        return e["ts"], e["route"], e["client_ip"], e["status"], e["latency_ms"]

    plain = [key(e) for e in generator.events()]
    injected = [key(e) for e in generator.events([injection])]
    changed = set(plain) ^ set(injected)
    assert changed and all(
        route == "/search" and injection.start_ms <= ts < injection.end_ms for ts, route, *_ in changed
    )


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_injection_leaves_its_mark(kind: str) -> None:
    generator = TrafficGenerator(TrafficSpec(seed=4, duration_s=2400, peak_rps=10.0, start_phase=0.5))
    [label] = generator.plan(kinds=[kind], per_kind=1, warmup_s=1200, tail_s=600)
    events = list(generator.events([label]))
    if label.subject_type == "client":  # the injected requests: those the background does not have
        background = {e["id"] for e in generator.events()}
        events = [e for e in events if e["id"] not in background]
    during = [e for e in events if label.start_ms <= e["ts"] < label.end_ms]
    before = [e for e in events if label.start_ms - (label.end_ms - label.start_ms) <= e["ts"] < label.start_ms]
    mine = (
        (lambda e: e["client_ip"] == label.subject)
        if label.subject_type == "client"
        else (lambda e: e["route"] == label.subject)
    )
    now, then = [e for e in during if mine(e)], [e for e in before if mine(e)]
    if kind == "spike":
        assert len(now) > 2 * len(then)
    elif kind == "drop":
        assert 0 < len(now) < 0.3 * len(then)
    elif kind == "silence":
        assert now == [] and then
    elif kind == "error_surge":
        assert sum(e["status"] >= 500 for e in now) > 0.1 * len(now)
    elif kind == "latency_surge":
        assert (
            sorted(e["latency_ms"] for e in now)[len(now) // 2]
            > 2 * sorted(e["latency_ms"] for e in then)[len(then) // 2]
        )
    elif kind == "ip_burst":
        assert len(now) > 300 * (label.end_ms - label.start_ms) / 60_000
        # A scraper reads: the GET routes, each request as slow as that GET route's (several methods
        # share a template, e.g. GET and PUT /users/{user_id}).
        assert {e["method"] for e in now} == {"GET"}
        assert {e["route"] for e in now} == set(label.routes)
    elif kind == "ip_scan":
        assert all(e["status"] == 404 for e in now) and sum(e["route"] == UNMATCHED_ROUTE for e in now) > len(now) / 2
        assert {e["method"] for e in now} == {"GET"}  # probes read: GET /users/{user_id}, not its PUT
    else:
        assert all(e["route"] == "/auth/login" for e in now)
        assert sum(e["status"] in (401, 403) for e in now) > 0.8 * len(now)


def test_a_plan_labels_every_kind_after_the_warm_up_without_overlap() -> None:
    generator = TrafficGenerator(TrafficSpec(seed=9, duration_s=3 * 3600))
    labels = generator.plan(per_kind=2, warmup_s=1200, tail_s=600)
    start, end = generator.spec.start_ms, generator.spec.start_ms + 3 * 3600_000
    assert Counter(label.kind for label in labels) == dict.fromkeys(KINDS, 2)
    assert all(start + 1_200_000 <= label.start_ms < label.end_ms <= end - 600_000 for label in labels)
    ordered = sorted(labels, key=lambda label: label.start_ms)
    assert all(a.end_ms < b.start_ms for a, b in itertools.pairwise(ordered))
    assert Injection.from_label(labels[0].to_label()) == labels[0]


def _per_minute(events: list[dict], route: str) -> list[int]:
    counts = Counter(e["ts"] // 60_000 for e in events if e["route"] == route)
    return [counts.get(m, 0) for m in range(min(counts), max(counts) + 1)]


def test_over_dispersed_traffic_varies_more_than_poisson_and_bursts_reach_several_times_the_level() -> None:
    def dispersion_index(**spec: float) -> tuple[float, float]:
        events = list(
            TrafficGenerator(TrafficSpec(seed=2, duration_s=3600, start_phase=0.55, drift=0.0, **spec)).events()
        )
        counts = _per_minute(events, "/items/{item_id}")
        mean = sum(counts) / len(counts)
        return sum((c - mean) ** 2 for c in counts) / len(counts) / mean, max(counts) / mean

    plain, _ = dispersion_index()
    over, _ = dispersion_index(dispersion=0.05)
    _, burst_peak = dispersion_index(bursts_per_hour=6.0)
    assert plain < 2.0 < 5.0 < over  # Poisson: variance = mean; gamma factor: + 0.05 mean^2 (mean ~ 300)
    assert burst_peak > 1.6


def test_weekends_are_quieter_and_a_trend_grows_the_level() -> None:
    generator = TrafficGenerator(TrafficSpec(seed=1, duration_s=600, weekend=0.5, trend_per_day=0.1))
    monday = generator.spec.start_ms + 14 * 3600_000  # the spec starts on a Monday (2025-03-03)
    rate = lambda days: generator.expected_per_minute("/items", monday + days * 86_400_000)  # noqa: E731
    assert rate(5) == pytest.approx(0.5 * rate(7) * math.exp(-0.2))  # Saturday vs the next Monday
    assert rate(1) == pytest.approx(rate(0) * math.exp(0.1))


def test_level_shifts_last_until_the_end_each_on_its_own_route() -> None:
    generator = TrafficGenerator(TrafficSpec(seed=9, duration_s=6 * 3600))
    labels = generator.plan(kinds=("spike", "drop"), per_kind=2, warmup_s=3600, tail_s=3600, shift=True)
    assert len({label.subject for label in labels}) == 4
    assert all(label.end_ms == generator.spec.start_ms + 6 * 3600_000 for label in labels)
    with pytest.raises(ValueError):
        generator.plan(kinds=("silence",), per_kind=1, shift=True)


def test_a_spike_on_a_quiet_route_adds_its_requests_over_the_whole_interval() -> None:
    """Not only between the route's own requests of each minute: a quiet route has minutes without any."""
    generator = TrafficGenerator(TrafficSpec(seed=8, duration_s=1800, peak_rps=1.0, start_phase=0.5))
    start = generator.spec.start_ms
    injection = Injection("spike", "/admin/reports", start + 300_500, start + 900_250, 301.0, ("/admin/reports",))
    background = {e["id"] for e in generator.events()}
    added = [e for e in generator.events([injection]) if e["id"] not in background]
    assert all(e["route"] == "/admin/reports" and injection.start_ms <= e["ts"] < injection.end_ms for e in added)
    rate = generator.expected_per_minute("/admin/reports", start + 600_000) * 300  # extra requests per minute
    assert 5 < rate < 30  # while the route itself has about one request in ten minutes
    per_minute = Counter((e["ts"] - injection.start_ms) // 60_000 for e in added)
    assert all(per_minute[m] > 0 for m in range(10))  # every minute of the labelled interval, none missing
    assert abs(len(added) - rate * 9.9958) < 5 * math.sqrt(rate * 10)

"""Client detectors: bursts, scans and credential stuffing, judged against the population and the
client's own history."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest

from flink_app.detect.backtest import replay_windows
from flink_app.detect.clients import CandidateFloors, ClientState, others
from flink_app.detect.model import ClientWindow
from tests.synthetic import SIZE_MS, T0, clients_window, engine, opened, population, run_clients

ATTACKER = "203.0.113.66"


def minutes(n: int, seed: int = 1, **extra: dict[int, dict[str, object]]) -> list[list[ClientWindow]]:
    """``n`` minutes of a 400-client long tail; ``extra[minute]`` adds or overrides clients' figures."""
    out = []
    for minute in range(n):
        counts = population(400, seed=seed + minute)
        fields: dict[str, dict[str, int]] = {}
        for ip, figures in extra.get("at", {}).get(minute, {}).items():  # type: ignore[union-attr]
            counts[ip] = figures["count"]
            for name in ("unmatched", "not_found", "auth_failures"):
                if name in figures:
                    fields.setdefault(name, {})[ip] = figures[name]
        out.append(clients_window(counts, T0 + (minute + 1) * SIZE_MS, **fields))
    return out


def test_a_long_tail_of_clients_stays_quiet() -> None:
    assert run_clients(engine(), minutes(60)) == []


def test_a_new_address_bursting_far_above_the_population_is_found_at_once() -> None:
    # given a population of a few requests per client, and a new address sending 600 a minute
    traffic = minutes(20, at={m: {ATTACKER: {"count": 600}} for m in range(10, 15)})
    anomalies = run_clients(engine(), traffic)
    bursts = opened(anomalies, "ip_burst")
    assert [(a.subject, a.window_end) for a in bursts] == [(ATTACKER, T0 + 11 * SIZE_MS)]
    assert {a.kind for a in anomalies} == {"ip_burst"}
    # and the incident ends once the client has been gone for the cool-down
    assert [a.phase for a in anomalies] == ["open", "end"]
    assert anomalies[-1].window_start == T0 + 10 * SIZE_MS


def test_a_busy_client_is_judged_by_its_own_history() -> None:
    # given a client that has sent 150 a minute for ten minutes (an integration), then 400
    steady = {m: {ATTACKER: {"count": 150}} for m in range(10)} | {m: {ATTACKER: {"count": 400}} for m in range(10, 15)}
    # and a client that has sent 20 a minute, then the same 400
    small = {m: {ATTACKER: {"count": 20}} for m in range(10)} | {m: {ATTACKER: {"count": 400}} for m in range(10, 15)}
    # then 400 is not a burst for the first (under four times its own level), but is for the second
    assert run_clients(engine(), minutes(15, at=steady)) == []
    assert [a.kind for a in opened(run_clients(engine(), minutes(15, at=small)))] == ["ip_burst"]


def test_the_population_sets_the_bar_for_a_burst() -> None:
    # given the same new client at 300 a minute
    def window(pop_mean: float, pop_std: float) -> ClientWindow:
        n = 500
        return ClientWindow(ATTACKER, T0, T0 + SIZE_MS, 300, 3, 0, 0, 0, n, (pop_mean * (n - 1) + 300) / n, pop_std)

    detector = engine()
    # then it is a burst among clients of 3 +- 5 requests, but not among clients of 40 +- 30
    _, quiet_hour = detector.on_client_window(None, window(3.0, 15.0))
    _, busy_hour = detector.on_client_window(None, window(40.0, 40.0))
    assert [a.kind for a in quiet_hour] == ["ip_burst"]
    assert busy_hour == []


def test_a_path_scan_is_found_and_a_client_with_a_few_404s_is_not() -> None:
    scanner = {m: {ATTACKER: {"count": 90, "unmatched": 70, "not_found": 85}} for m in range(5, 9)}
    shopper = {m: {"198.51.99.1": {"count": 200, "not_found": 15}} for m in range(5, 9)}
    anomalies = run_clients(
        engine(), minutes(12, at=scanner | {m: scanner.get(m, {}) | shopper.get(m, {}) for m in range(5, 9)})
    )
    assert [(a.kind, a.subject, a.observed) for a in opened(anomalies)] == [("ip_scan", ATTACKER, 85.0)]


def test_credential_stuffing_is_found_and_a_forgetful_user_is_not() -> None:
    stuffer = {ATTACKER: {"count": 64, "auth_failures": 60}}
    forgetful = {"198.51.99.2": {"count": 5, "auth_failures": 4}}
    traffic = minutes(10, at={m: stuffer | forgetful for m in range(4, 7)})
    anomalies = run_clients(engine(), traffic)
    assert [(a.kind, a.subject) for a in opened(anomalies)] == [("ip_auth_failures", ATTACKER)]
    assert anomalies[0].score >= 2  # several times the threshold: not a borderline call


def test_a_client_alone_in_its_window_is_judged_by_absolute_floors_only() -> None:
    detector = engine()
    lonely = ClientWindow(ATTACKER, T0, T0 + SIZE_MS, 250, 1, 0, 0, 0, 1, 250.0, 0.0)
    _, found = detector.on_client_window(None, lonely)
    assert [a.kind for a in found] == ["ip_burst"]


@pytest.mark.parametrize("counts", [[5, 1, 1, 2, 300], [1, 1], [7, 7, 7, 7], [0, 3, 900, 12, 1, 1, 40]])
def test_the_others_figures_remove_the_client_exactly(counts: list[int]) -> None:
    # given the population figures of a window (population standard deviation), and one client's count
    n = len(counts)
    mean = sum(counts) / n
    std = math.sqrt(sum((c - mean) ** 2 for c in counts) / n)
    window = ClientWindow("x", T0, T0 + SIZE_MS, counts[-1], 1, 0, 0, 0, n, mean, std)
    # then removing it gives the figures of the others
    rest = counts[:-1]
    rest_mean = sum(rest) / len(rest)
    rest_std = math.sqrt(sum((c - rest_mean) ** 2 for c in rest) / len(rest))
    pop = others(window)
    assert pop is not None
    assert (pop.clients, pop.mean, pop.std) == (len(rest), pytest.approx(rest_mean), pytest.approx(rest_std, abs=1e-6))


def test_a_window_below_every_candidate_floor_changes_nothing() -> None:
    # given a client with some history, and the floors (clear level times each kind's floor)
    detector = engine()
    floors = CandidateFloors.from_settings(detector.settings)
    assert (floors.count, floors.scans, floors.auth) == (120, 10, 5)
    state, _ = detector.on_client_window(None, ClientWindow(ATTACKER, T0, T0 + SIZE_MS, 150, 3, 0, 0, 0, 50, 4.0, 20.0))
    before = copy.deepcopy(state)
    # when a window just below every floor arrives
    quiet = ClientWindow(ATTACKER, T0 + SIZE_MS, T0 + 2 * SIZE_MS, 119, 3, 9, 9, 4, 50, 4.0, 20.0)
    after, found = detector.on_client_window(state, quiet)
    # then it is not a candidate, and neither records nor history change
    assert not floors.admit(quiet)
    assert found == [] and after == before
    # while one more request of any kind makes it one
    for more in ({"count": 120}, {"unmatched": 10}, {"not_found": 10}, {"auth_failures": 5}):
        assert floors.admit(dataclasses.replace(quiet, **more)), more


def test_a_client_learns_its_own_level_from_its_candidate_windows_only() -> None:
    # given a client that alternates 150 (a candidate) and 20 (not) requests a minute
    traffic = minutes(12, at={m: {ATTACKER: {"count": 150 if m % 2 else 20}} for m in range(12)})
    detector = engine()
    result = replay_windows(
        detector, [], sorted((w for minute in traffic for w in minute), key=lambda w: (w.window_end, w.client_ip))
    )
    # then its own level is that of its candidate minutes (the 20s, never seen, do not pull it down)
    own = result.states[f"client#{ATTACKER}"]
    assert isinstance(own, ClientState)
    assert 1 <= own.count.samples <= 6
    assert own.count.mean == pytest.approx(150.0)


def test_client_count_floors_are_per_minute_of_a_longer_window() -> None:
    # given the default floors (240 requests, 20 scans, 10 auth failures a minute)
    detector = engine()
    minute = CandidateFloors.from_settings(detector.settings)
    half_hour = CandidateFloors.from_settings(detector.settings, 30 * 60_000)
    # then a 30-minute window needs 30 times as much to be a candidate, a 10-second one as much as a minute
    assert (half_hour.count, half_hour.scans, half_hour.auth) == (3600, 300, 150)
    assert CandidateFloors.from_settings(detector.settings, 10_000) == minute
    # and a health monitor's 450 requests in 30 minutes (15 a minute), first seen, is no burst
    size = 30 * 60_000
    monitor = ClientWindow("10.0.3.17", T0, T0 + size, 450, 1, 0, 0, 0, 300, 4.0, 26.0)
    assert detector.on_client_window(None, monitor)[1] == []
    # while 9 000 (300 a minute, above the floor of 7 200), from an address the others do not come near, is
    mean = (299 * 5 + 9000) / 300  # 299 others at 5 (std 20) and the attacker
    std = math.sqrt((299 * (20**2 + 5**2) + 9000**2) / 300 - mean**2)
    attacker = dataclasses.replace(monitor, client_ip=ATTACKER, count=9000, pop_mean_count=mean, pop_std_count=std)
    assert [a.kind for a in detector.on_client_window(None, attacker)[1]] == ["ip_burst"]

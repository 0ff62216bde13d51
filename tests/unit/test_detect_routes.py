"""Route detectors on synthetic HOP-window series: each kind is found, ordinary traffic stays quiet."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from flink_app.detect.backtest import replay_windows
from flink_app.detect.engine import DetectionEngine, RouteState
from flink_app.detect.model import RouteWindow
from flink_app.detect.routes import beyond_chance, client_burst
from flink_app.detect.settings import DetectSettings
from pulse_contract import ROUTE_KINDS, UNMATCHED_ROUTE
from tests.synthetic import (
    SLIDE_MS,
    T0,
    Slide,
    engine,
    opened,
    poisson_slides,
    route_windows,
    run_routes,
    slot_of,
)

BUSY = 20.0  # requests per 10-second slide: 120 per one-minute window
WARM = 120  # slides of normal traffic before anything happens (20 minutes)


def kinds_opened(anomalies: list) -> set[str]:
    return {a.kind for a in opened(anomalies)}


# --- each kind is found ------------------------------------------------------------------------


def test_a_spike_is_found_within_a_minute_and_nothing_else() -> None:
    # given a busy route that gets five times its traffic for three minutes
    slides = poisson_slides([BUSY] * WARM + [5 * BUSY] * 18 + [BUSY] * 60)
    # when the detectors see its windows
    anomalies = run_routes(engine(), route_windows(slides))
    # then one spike opens within a minute of the start (as soon as it is strong, or has lasted a window),
    # and it ends after the traffic is back
    spikes = opened(anomalies, "spike")
    assert kinds_opened(anomalies) == {"spike"}
    assert len(spikes) == 1 and WARM < slot_of(spikes[0].window_end) <= WARM + 6
    assert [a.phase for a in anomalies if a.kind == "spike"][-1] == "end"


def test_a_drop_is_found_and_is_not_mistaken_for_silence() -> None:
    # given a busy route whose traffic falls to a tenth for five minutes
    slides = poisson_slides([BUSY] * WARM + [BUSY / 10] * 30 + [BUSY] * 60)
    anomalies = run_routes(engine(), route_windows(slides))
    drops = opened(anomalies, "drop")
    assert kinds_opened(anomalies) == {"drop"}
    assert len(drops) == 1 and WARM < slot_of(drops[0].window_end) <= WARM + 6
    assert drops[0].observed < 0.4 * drops[0].expected


@pytest.mark.parametrize("fire_timers", [True, False], ids=["timer", "next-window"])
def test_a_silence_is_dated_at_its_deadline_whether_a_timer_or_the_next_window_finds_it(fire_timers: bool) -> None:
    # given a busy route that stops for five minutes and comes back
    slides = [Slide(int(BUSY))] * WARM + [Slide(0)] * 30 + [Slide(int(BUSY))] * 60
    # when the deadline is reached by a timer, or only discovered when the route's next window arrives
    anomalies = run_routes(engine(), route_windows(slides), fire_timers=fire_timers)
    # then the silence opens at the same deadline: the slot after the last window with a request. The
    # fading windows before it were a drop: the silence joins that incident (one alert for one outage)
    silences = [a for a in anomalies if "silence" in a.kind_list]
    assert [a.phase for a in silences] in (["open", "end"], ["escalate", "end"])
    assert {a.kind for a in anomalies} <= {"drop", "silence"} and [a.phase for a in anomalies].count("open") == 1
    last_window_slot = WARM + 5  # the window covering the last slide with traffic
    assert slot_of(silences[0].window_end) == last_window_slot + 1
    assert silences[0].observed == 0 and silences[0].expected == pytest.approx(6 * BUSY, rel=0.05)
    # and it ends a cool-down after the first window back; the ramp back up is no drop
    back = WARM + 30 + 1
    assert slot_of(silences[1].window_end) == back + 120_000 / SLIDE_MS
    assert not [a for a in opened(anomalies, "drop") if slot_of(a.window_end) > last_window_slot]


def test_silence_records_are_the_same_by_timer_and_by_next_window() -> None:
    slides = [Slide(int(BUSY))] * WARM + [Slide(0)] * 30 + [Slide(int(BUSY))] * 60
    windows = route_windows(slides)
    assert run_routes(engine(), windows, fire_timers=True) == run_routes(engine(), windows, fire_timers=False)


def test_an_error_surge_is_found_on_the_5xx_rate() -> None:
    # given a route with 0.2 % 5xx that fails 30 % of its requests for two minutes
    base = poisson_slides([BUSY] * WARM, errors=0.002)
    surge = poisson_slides([BUSY] * 12, seed=2, errors=0.3)
    after = poisson_slides([BUSY] * 60, seed=3, errors=0.002)
    anomalies = run_routes(engine(), route_windows(base + surge + after))
    surges = opened(anomalies, "error_surge")
    assert kinds_opened(anomalies) == {"error_surge"}
    assert len(surges) == 1 and WARM < slot_of(surges[0].window_end) <= WARM + 3
    assert surges[0].observed > 0.05 > surges[0].expected


def test_a_latency_surge_is_found_on_the_typical_latency() -> None:
    # given a route at 50 ms that slows down to 200 ms for two minutes
    base = poisson_slides([BUSY] * WARM, latency_ms=50, latency_sigma=0.1)
    slow = poisson_slides([BUSY] * 12, seed=2, latency_ms=200, latency_sigma=0.1)
    after = poisson_slides([BUSY] * 60, seed=3, latency_ms=50, latency_sigma=0.1)
    anomalies = run_routes(engine(), route_windows(base + slow + after))
    surges = opened(anomalies, "latency_surge")
    assert kinds_opened(anomalies) == {"latency_surge"}
    assert len(surges) == 1 and WARM < slot_of(surges[0].window_end) <= WARM + 4
    assert surges[0].expected == pytest.approx(50, rel=0.1)


def test_one_slow_request_in_a_window_is_not_a_latency_surge() -> None:
    # given a fast route where one request in a few minutes takes five seconds
    slides = [Slide(int(BUSY), latency_ms=20)] * (WARM + 60)
    windows = route_windows(slides)
    outlier_at = {WARM + 10, WARM + 40}

    def with_outlier(w: RouteWindow) -> RouteWindow:
        return dataclasses.replace(
            w,
            latency_max=5000.0,
            latency_mean=(w.latency_mean * (w.count - 1) + 5000) / w.count,
            latency_log_mean=(w.latency_log_mean * (w.count - 1) + math.log(5000)) / w.count,
        )

    windows = [with_outlier(w) if any(0 <= slot_of(w.window_end) - s < 6 for s in outlier_at) else w for w in windows]
    assert run_routes(engine(), windows) == []


# --- ordinary traffic stays quiet ----------------------------------------------------------------


def test_steady_traffic_stays_quiet_for_hours() -> None:
    slides = poisson_slides([BUSY] * 1080, errors=0.003, latency_sigma=0.1)
    assert run_routes(engine(), route_windows(slides)) == []


def test_noisy_traffic_stays_quiet() -> None:
    # given traffic whose rate wanders by +-25 % over minutes (log AR(1) noise)
    rng = np.random.default_rng(7)
    drift = [0.0]
    for _ in range(1079):
        drift.append(0.97 * drift[-1] + rng.normal(0, 0.25 * math.sqrt(1 - 0.97**2)))
    slides = poisson_slides([BUSY * math.exp(d) for d in drift], seed=8, errors=0.003, latency_sigma=0.15)
    assert run_routes(engine(), route_windows(slides)) == []


def test_slowly_trending_traffic_stays_quiet() -> None:
    # given traffic that quadruples over three hours, then halves again over three more
    rates = list(np.linspace(BUSY / 2, 2 * BUSY, 1080)) + list(np.linspace(2 * BUSY, BUSY, 1080))
    slides = poisson_slides(rates, errors=0.003, latency_sigma=0.1)
    assert run_routes(engine(), route_windows(slides)) == []


def test_a_daily_rhythm_stays_quiet_through_the_night_trough() -> None:
    # given a day (compressed to 12 h) from a night trough at 30 % to an afternoon peak and back
    phase = np.arange(4320) / 4320
    rates = BUSY * (0.3 + 0.7 * 0.5 * (1 - np.cos(2 * np.pi * phase)))
    slides = poisson_slides(rates, errors=0.003, latency_sigma=0.1)
    assert run_routes(engine(), route_windows(slides)) == []


def test_a_quiet_route_never_reports_a_drop_or_a_silence() -> None:
    # given a sparse route (two requests a minute on average): windows come and go
    slides = poisson_slides([1 / 3] * 2160, errors=0.01)
    windows = route_windows(slides)
    assert any(b.window_end - a.window_end > SLIDE_MS for a, b in itertools.pairwise(windows))
    anomalies = run_routes(engine(), windows)
    assert not {"drop", "silence"} & {a.kind for a in anomalies}


def test_the_unmatched_route_is_left_to_the_client_detectors() -> None:
    slides = poisson_slides([BUSY] * WARM + [8 * BUSY] * 12 + [BUSY] * 30)
    assert run_routes(engine(), route_windows(slides, route=UNMATCHED_ROUTE)) == []
    found = run_routes(engine(route_detect_unmatched=True), route_windows(slides, route=UNMATCHED_ROUTE))
    assert kinds_opened(found) == {"spike"}


# --- baselines --------------------------------------------------------------------------------------


def test_a_flagged_window_does_not_shift_the_baseline() -> None:
    # given a route warmed up on steady traffic
    detector = engine()
    state = None
    for window in route_windows(poisson_slides([BUSY] * WARM)):
        state, _ = detector.on_route_window(state, window)
    assert state is not None
    before = (state.count.mean, state.count.abs_dev, state.errors.rate, state.latency.mean)
    # when a window ten times as busy (and failing) arrives
    last = route_windows(poisson_slides([BUSY] * WARM))[-1]
    spike = dataclasses.replace(
        last,
        window_start=last.window_start + SLIDE_MS,
        window_end=last.window_end + SLIDE_MS,
        count=10 * last.count,
        errors_5xx=5 * last.count,
    )
    state, found = detector.on_route_window(state, spike)
    # then it is flagged (one incident: the errors, with the spike as a facet), and no baseline moved
    assert [a.kinds for a in found] == ["error_surge,spike"]
    assert (state.count.mean, state.count.abs_dev, state.errors.rate, state.latency.mean) == before


def test_a_level_that_lasts_becomes_the_new_normal() -> None:
    # given a route whose traffic triples for good
    slides = poisson_slides([BUSY] * WARM + [3 * BUSY] * 720)
    anomalies = run_routes(engine(), route_windows(slides))
    # then one spike incident, which ends once the baseline has relearned the level (relearn.s)
    spikes = [a for a in anomalies if a.kind == "spike"]
    assert [a.phase for a in spikes if a.phase != "escalate"] == ["open", "end"]
    assert slot_of(spikes[-1].window_end) - WARM < 720


def test_route_kinds_are_the_design_kinds() -> None:
    assert set(ROUTE_KINDS) == {"spike", "drop", "silence", "error_surge", "latency_surge"}
    assert T0 % SLIDE_MS == 0


# --- one cause, one alert; routine bursts; lasting shifts -------------------------------------


def test_a_spike_one_client_made_is_left_to_the_client_detectors() -> None:
    # given a busy route whose busiest client usually sends a tenth of its requests
    background = poisson_slides([BUSY] * WARM + [BUSY] * 18 + [BUSY] * 60)
    # when one client adds four times the route's traffic for three minutes
    scraped = [
        Slide(s.count + 4 * int(BUSY), client=4 * int(BUSY)) if WARM <= i < WARM + 18 else s
        for i, s in enumerate(background)
    ]
    # then the route reports nothing: its own traffic did not change (the client detectors see the client)
    assert run_routes(engine(), route_windows(scraped, top_share=0.1)) == []
    # while the same extra requests from the route's usual mix of clients are a spike
    crowd = [Slide(s.count + 4 * int(BUSY)) if WARM <= i < WARM + 18 else s for i, s in enumerate(background)]
    assert kinds_opened(run_routes(engine(), route_windows(crowd, top_share=0.1))) == {"spike"}
    # and without the column every spike is judged on the whole count
    assert kinds_opened(run_routes(engine(), route_windows(scraped))) == {"spike"}


def test_a_short_burst_that_is_not_strong_waits_and_a_lasting_one_is_found() -> None:
    # given a busy route; a 20-second burst at seven times its traffic (three times in one window, score < 1.6)
    burst = poisson_slides([BUSY] * WARM + [7 * BUSY] * 2 + [BUSY] * 60)
    assert run_routes(engine(), route_windows(burst)) == []
    # while three times its traffic for three minutes is found, once a window's length has passed
    lasting = poisson_slides([BUSY] * WARM + [3 * BUSY] * 18 + [BUSY] * 60)
    spikes = opened(run_routes(engine(), route_windows(lasting)), "spike")
    assert len(spikes) == 1 and WARM + 6 <= slot_of(spikes[0].window_end) <= WARM + 12
    # and with the hold off the burst is a spike
    assert kinds_opened(run_routes(engine(route_hold_score=0.0), route_windows(burst))) == {"spike"}


def test_a_lasting_shift_below_the_spike_ratio_is_reported_once_before_it_is_learned() -> None:
    # given a busy route whose traffic grows 2.2 times for good (below spike.ratio 2.5, score 0.8)
    slides = poisson_slides([BUSY] * WARM + [2.2 * BUSY] * 300)
    anomalies = run_routes(engine(), route_windows(slides))
    # then one spike opens when the learning pause (180 s) runs out, and it ends as the new normal
    spikes = opened(anomalies, "spike")
    assert kinds_opened(anomalies) == {"spike"}
    assert len(spikes) == 1 and WARM + 18 <= slot_of(spikes[0].window_end) <= WARM + 30
    assert [a.phase for a in anomalies][-1] == "end"


def route_state(detector: DetectionEngine, windows: list[RouteWindow]) -> RouteState:
    """The route's state after ``windows``."""
    (state,) = replay_windows(detector, windows, []).states.values()
    assert isinstance(state, RouteState)
    return state


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_onset_of_a_lasting_rise_that_dips_is_not_learned_as_a_routine_burst(seed: int) -> None:
    # given a busy route whose traffic rises 2.2 times for good, but in two steps: a first 40 seconds,
    # 40 seconds at 1.4 times (its windows fall under the clear level, not to the route's level), then for good
    slides = poisson_slides([BUSY] * WARM + [2.2 * BUSY] * 4 + [1.4 * BUSY] * 4 + [2.2 * BUSY] * 300, seed=seed)
    # then the rise is one excursion, reported once as a lasting shift, and no routine burst was learned
    anomalies = run_routes(engine(), route_windows(slides))
    spikes = opened(anomalies, "spike")
    assert kinds_opened(anomalies) == {"spike"}
    assert len(spikes) == 1 and WARM + 18 <= slot_of(spikes[0].window_end) <= WARM + 40
    assert route_state(engine(), route_windows(slides[: WARM + 12])).dispersion.peak == 0.0
    # while an excursion that ends at the clear level learns the first step as a routine ~2x burst, whose
    # envelope then hides the rise
    settled_at_clear = engine(route_settle_score=0.5)
    assert route_state(settled_at_clear, route_windows(slides[: WARM + 12])).dispersion.peak > 1.5


def test_a_routine_burst_that_falls_back_to_the_level_still_teaches_the_burst_envelope() -> None:
    # given a busy route with a 30-second burst at three times its traffic
    slides = poisson_slides([BUSY] * WARM + [3 * BUSY] * 3 + [BUSY] * 120)
    # then it is not reported, and the route learns that bursts about twice its level happen
    assert run_routes(engine(), route_windows(slides)) == []
    assert 1.5 < route_state(engine(), route_windows(slides)).dispersion.peak < 3.0


def test_a_drop_that_dips_back_over_the_clear_level_is_not_a_lasting_shift() -> None:
    # given a busy route that falls to 60 % for six minutes, back to 85 % for 20 seconds every minute
    # (its windows go under the clear level now and then): only a drop that stays past it is a shift
    dip = ([0.6 * BUSY] * 4 + [0.85 * BUSY] * 2) * 6
    slides = poisson_slides([BUSY] * WARM + dip + [BUSY] * 60, seed=3)
    assert "drop" not in kinds_opened(run_routes(engine(), route_windows(slides)))


def test_a_scrapers_burst_that_is_not_suspicious_is_not_learned_into_the_routes_level() -> None:
    # given a busy route whose busiest client usually sends a tenth of its requests, and one client that
    # adds 60 % of the route's traffic for six minutes (1.6x: under the clear level, nothing to report)
    background = poisson_slides([BUSY] * WARM + [BUSY] * 36 + [BUSY] * 6)
    extra = int(0.6 * BUSY)
    scraped = [Slide(s.count + extra, client=extra) if WARM <= i < WARM + 36 else s for i, s in enumerate(background)]
    before = route_state(engine(), route_windows(scraped[:WARM], top_share=0.1)).count.mean
    after = route_state(engine(), route_windows(scraped, top_share=0.1)).count.mean
    # then the level learned the route's own traffic, not the client's: a whole-count level would be ~20 % up
    assert abs(after / before - 1) < 0.05
    # while the same requests from the route's usual mix of clients are the route's traffic
    crowd = [Slide(s.count + extra) if WARM <= i < WARM + 36 else s for i, s in enumerate(background)]
    assert route_state(engine(), route_windows(crowd, top_share=0.1)).count.mean > 1.1 * before


def test_a_weak_burst_before_the_routes_bursts_are_known_is_held_like_a_routine_one() -> None:
    # given a busy route that bursts to three times its level for two minutes (score ~1.3: could be routine)
    # as soon as it is judged (30 windows), before its dispersion has learned from 60 (route.burst.warmup.windows)
    early = poisson_slides([BUSY] * 40 + [3 * BUSY] * 12 + [BUSY] * 100)
    # then nothing is reported: a routine burst may last up to learn.pause.s
    assert opened(run_routes(engine(), route_windows(early))) == []
    # while the same burst once the route has been watched for longer is a spike (its bursts are known:
    # none), as is a first burst that lasts longer than a routine one could
    later = poisson_slides([BUSY] * WARM + [3 * BUSY] * 12 + [BUSY] * 100)
    assert kinds_opened(run_routes(engine(), route_windows(later))) == {"spike"}
    lasting = poisson_slides([BUSY] * 40 + [3 * BUSY] * 30 + [BUSY] * 100)
    assert kinds_opened(run_routes(engine(), route_windows(lasting))) == {"spike"}
    # and where a route's bursts are taken as known once it is judged, the early burst is a spike too
    assert kinds_opened(run_routes(engine(route_burst_warmup_windows=30), route_windows(early))) == {"spike"}


def test_the_seasonal_profile_learns_each_window_once() -> None:
    # given 30 minutes of steady traffic within one hour: every full window is learned, the first six
    # (partial: the route's traffic starts within them) are not
    state = route_state(engine(), route_windows(poisson_slides([BUSY] * 180)))
    assert state.season.hour_n == 180 - 6


def test_a_busiest_client_above_its_share_by_chance_is_not_taken_out_of_the_level() -> None:
    # given a route whose busiest client usually sends a tenth of a window's requests
    state = RouteState(size_ms=60_000)
    state.top_share.update(10.0, 100.0, T0, 600_000.0)
    p = DetectSettings().window_p(state.size_ms)

    def window(count: int, top: int) -> RouteWindow:
        return RouteWindow("/cart", T0, T0 + 60_000, count, 0, 0, 50.0, 50.0, math.log(50.0), top)

    # then 7 of 23 is above twice its share (its latency is not the route's) but chance (P = 0.6 %): the
    # level learns the whole count
    assert client_burst(state, window(23, 7)) and not beyond_chance(state, window(23, 7), p)
    # while a scraper's 65 of 90 is no chance: the level learns the route's own count
    assert beyond_chance(state, window(90, 65), p)
    # and a window within twice the usual share is no client's burst at all
    assert not client_burst(state, window(23, 4)) and not beyond_chance(state, window(23, 4), p)

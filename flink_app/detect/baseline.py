"""Adaptive baselines: exponentially weighted mean and variance in event time, with bounded influence.

Why EWMA and not a robust median/MAD window or a seasonal profile (docs/detection.md has the long
form): the state must be tiny (it lives in Flink keyed state, pickled, per route and per client),
updated in O(1) per window, and useful minutes after a route first appears. A seasonal profile needs
days of history per route before it knows anything; a median/MAD over a ring of windows costs a
buffer per key and, on overlapping HOP windows, its "robustness" is mostly spent on the overlap.
An EWMA with a half-life of ten minutes follows the daily rhythm (which moves a few percent per ten
minutes) and the two weaknesses of a plain EWMA are closed explicitly:

* contamination: the detectors never feed a flagged window, and every update is clipped to
  ``clip`` (Huber), so the first, not yet flagged, windows of an anomaly move it only a little;
* a cold start: the weight of a sample is at least ``1 / (samples + 1)``, so the first windows give
  a plain running mean and spread instead of a spread that starts at zero and alarms on noise.

The spread is an exponentially weighted mean *absolute* deviation (scaled to a standard deviation
for normal noise) over the samples within ``clip`` of the mean: an excursion that was not flagged
(a client's burst spread over a route's normal traffic) moves the mean a little but does not widen
the spread, which would blind the detectors for the next half hour. (Truncating normal noise at
2.5 standard deviations biases the spread by 2 %.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# A long gap (a route that was away) must not let one sample replace the whole history.
MAX_ALPHA = 0.5
# E|X - mu| = sigma * sqrt(2 / pi) for normal noise: the factor from mean absolute deviation to sigma.
MAD_TO_STD = math.sqrt(math.pi / 2)


def halflife_alpha(dt_ms: float, halflife_ms: float) -> float:
    """Weight of a new sample ``dt_ms`` after the previous one, for a half-life in the same unit."""
    if dt_ms <= 0:
        return 0.0
    return 1.0 - 0.5 ** (dt_ms / halflife_ms)


@dataclass
class EwmaBaseline:
    """Exponentially weighted mean and spread of one signal, updated in event time."""

    mean: float = 0.0
    abs_dev: float = 0.0  # exponentially weighted mean absolute deviation from the mean
    samples: int = 0
    last_ms: int = 0

    @property
    def std(self) -> float:
        """The spread as a standard deviation (exact for normal noise)."""
        return self.abs_dev * MAD_TO_STD

    def update(
        self, value: float, at_ms: int, halflife_ms: float, clip: float | None = None, spread: bool = True
    ) -> None:
        """Learn ``value`` observed at ``at_ms``.

        ``clip`` bounds how far one sample can pull the mean (and samples beyond it do not feed the
        spread); ``spread=False`` moves the mean only (a level change is not noise).
        """
        if self.samples == 0:
            self.mean, self.abs_dev = value, 0.0
        else:
            alpha = halflife_alpha(at_ms - self.last_ms, halflife_ms)
            alpha = min(max(alpha, 1.0 / (self.samples + 1)), MAX_ALPHA)
            delta = value - self.mean
            outlier = clip is not None and abs(delta) > clip
            if clip is not None:
                delta = max(-clip, min(clip, delta))
            self.mean += alpha * delta
            if spread and not outlier:
                self.abs_dev += alpha * (abs(delta) - self.abs_dev)
        self.samples += 1
        self.last_ms = max(self.last_ms, at_ms)


@dataclass
class RateBaseline:
    """A ratio of two exponentially weighted sums (e.g. 5xx per request), weighted by volume.

    A window of one request with one 5xx must not count as a 100 % error rate: the rate is the
    weighted number of errors over the weighted number of requests.
    """

    numerator: float = 0.0
    denominator: float = 0.0
    samples: int = 0
    last_ms: int = 0

    @property
    def rate(self) -> float:
        return self.numerator / self.denominator if self.denominator > 0 else 0.0

    def update(self, numerator: float, denominator: float, at_ms: int, halflife_ms: float) -> None:
        if self.samples == 0:
            self.numerator, self.denominator = numerator, denominator
        else:
            alpha = halflife_alpha(at_ms - self.last_ms, halflife_ms)
            alpha = min(max(alpha, 1.0 / (self.samples + 1)), MAX_ALPHA)
            self.numerator += alpha * (numerator - self.numerator)
            self.denominator += alpha * (denominator - self.denominator)
        self.samples += 1
        self.last_ms = max(self.last_ms, at_ms)


@dataclass
class LearningPause:
    """Keeps a baseline from learning windows that look anomalous, for a bounded time.

    A window is *suspicious* when it is past a detector's clear level (halfway to its threshold by
    default) without an open incident: possibly the first windows of an anomaly that has not crossed
    its threshold yet (a HOP window sees a change gradually). Those are skipped for at most
    ``pause_ms``; a slow legitimate trend looks the same and must not freeze the baseline. Windows of
    an open incident are skipped for at most ``relearn_ms``: a level that lasts that long is the new
    normal. Learning resumes at once with the first normal window. The spread learns only from
    normal windows (:attr:`calm`): a shift of level, once learned, is not noise.
    """

    since: int | None = None

    @property
    def calm(self) -> bool:
        """The last window passed to :meth:`allows` was normal."""
        return self.since is None

    def allows(self, suspicious: bool, incident: bool, at_ms: int, pause_ms: float, relearn_ms: float) -> bool:
        if not (suspicious or incident):
            self.since = None
            return True
        if self.since is None:
            self.since = at_ms
        return at_ms - self.since >= (relearn_ms if incident else pause_ms)


# An excursion that scored this high (twice the threshold's distance) is not a routine burst.
ROUTINE_SCORE = 2.0


@dataclass
class Dispersion:
    """A count's over-dispersion above and below its expected level, learned per route.

    A window's count ``x`` against its expected ``m`` is negative binomial with variance
    ``m + phi * m**2``: ``phi`` is 0 for Poisson traffic and grows with burstiness. Each side is
    learned from its own windows (a bursty route's upper tail is much wider than its lower one):
    ``up`` is the exponentially weighted mean of ``2 * ((x - m)**2 - m) / m**2`` over the windows where
    ``x > m`` (and 0 elsewhere), ``down`` likewise below; the factor 2 makes each a variance as if both
    sides were like it. The deviation is capped at ``cap * m`` so one enormous window (an attack that
    was not flagged yet) teaches "bursts this big happen" only to that bounded extent.
    """

    up: float = 0.0
    down: float = 0.0
    samples: int = 0
    last_ms: int = 0
    # The windows of the current excursion (suspicious or flagged), learned only if it proves short.
    pending: list[tuple[float, float, int]] = field(default_factory=list)
    since: int | None = None  # window_end of the excursion's first window
    top_score: float = 0.0  # the excursion's highest score
    score_sum: float = 0.0  # the sum of its windows' scores (with ``windows``: their mean)
    windows: int = 0
    peak: float = 0.0  # the largest count / expected of a routine burst, decaying with the half-life
    peak_ms: int = 0
    span: float = 0.0  # the longest routine burst (ms, first to last window of its excursion), decaying
    span_ms: int = 0

    def burst_peak(self, at_ms: int, halflife_ms: float) -> float:
        """The routine-burst envelope at ``at_ms``: the largest ratio of a short excursion, decaying."""
        return self.peak * 0.5 ** (max(at_ms - self.peak_ms, 0) / halflife_ms)

    def burst_span(self, at_ms: int, halflife_ms: float) -> float:
        """How long (ms, first to last window of its excursion) a routine burst lasted, at most, decaying."""
        return self.span * 0.5 ** (max(at_ms - self.span_ms, 0) / halflife_ms)

    def observe(
        self,
        x: float,
        m: float,
        at_ms: int,
        hot: bool,
        score: float,
        short_ms: float,
        halflife_ms: float,
        cap: float,
        peak_halflife_ms: float,
    ) -> None:
        """Learn one full window. Normal windows count at once; the windows of an excursion (a run of
        ``hot`` windows: at or past the clear level of spike or drop) wait until it ends, and count
        only if it was routine: it lasted at most ``short_ms`` and its highest ``score`` stayed below
        :data:`ROUTINE_SCORE` (a low-severity alert at most). Such bursts are what a bursty route's
        thresholds must allow for, their height (:meth:`burst_peak`) and their length
        (:meth:`burst_span`); an incident, a client's attack on the route, or a burst far beyond the
        threshold is not."""
        if hot:
            if self.since is None:
                self.since, self.top_score, self.score_sum, self.windows = at_ms, 0.0, 0.0, 0
            self.top_score = max(self.top_score, score)
            self.score_sum += score
            self.windows += 1
            if at_ms - self.since <= short_ms:
                self.pending.append((x, m, at_ms))
            else:
                self.pending = []
            return
        routine = self.top_score < ROUTINE_SCORE
        if self.since is not None and self.pending and self.pending[-1][2] - self.since <= short_ms and routine:
            for args in self.pending:
                self.update(*args, halflife_ms, cap)
            ratio = max(px / pm for px, pm, _ in self.pending if pm > 0)
            peak = self.burst_peak(at_ms, peak_halflife_ms)
            if ratio > peak:
                self.peak, self.peak_ms = ratio, at_ms
            span = self.pending[-1][2] - self.since
            if span > self.burst_span(at_ms, peak_halflife_ms):
                self.span, self.span_ms = float(span), at_ms
        self.pending, self.since = [], None
        self.update(x, m, at_ms, halflife_ms, cap)

    def mean_score(self, score: float) -> float:
        """The mean score of the current excursion's windows and one more window's ``score``."""
        return (self.score_sum + score) / (self.windows + 1)

    def update(self, x: float, m: float, at_ms: int, halflife_ms: float, cap: float) -> None:
        if m <= 0:
            return
        alpha = (
            1.0
            if self.samples == 0
            else max(halflife_alpha(at_ms - self.last_ms, halflife_ms), 1.0 / (self.samples + 1))
        )
        deviation = max(-cap * m, min(cap * m, x - m))
        excess = 2.0 * (deviation * deviation - m) / (m * m)
        self.up += alpha * ((excess if x > m else 0.0) - self.up)
        self.down += alpha * ((excess if x < m else 0.0) - self.down)
        self.samples += 1
        self.last_ms = max(self.last_ms, at_ms)

    def phi(self, upper: bool, floor: float) -> float:
        return max(self.up if upper else self.down, floor)


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass
class SeasonalProfile:
    """A route's daily and weekly shape: what share of its level to expect at a time of day and week.

    24 hourly means (UTC) of the count per window and 7 daily means, each an average over the
    windows of one visit (an hour, a day) folded into an exponentially weighted mean across visits
    (``halflife_days``; the first visits are plain means). :meth:`factor` is the shape at a time,
    interpolated linearly between hour centres and divided by the mean, so it averages 1: the
    route's level (an EWMA of count / factor) carries the volume, the profile only the shape.

    Stages: 0 until every hour has been seen on ``min_days`` days (factor 1: today's behaviour);
    1 daily shape, times the weekly shape of the weekdays seen ``min_weeks`` times (:meth:`weekly`: the
    others at the seen ones' mean); 2 once every weekday has been (the factor is the same, the whole
    week is known). The daily means are learned from counts divided by the daily shape, so a partial
    day counts; a newly learned day rescales the level (:meth:`roll`).

    State: 31 floats, 31 small ints and 6 numbers; pickled, about 700 bytes per route.
    """

    hours: list[float] = field(default_factory=lambda: [0.0] * 24)
    hour_visits: list[int] = field(default_factory=lambda: [0] * 24)
    days: list[float] = field(default_factory=lambda: [0.0] * 7)
    day_visits: list[int] = field(default_factory=lambda: [0] * 7)
    hour_at: int = -1  # the hour (since the epoch) being accumulated
    hour_sum: float = 0.0
    hour_n: int = 0
    day_at: int = -1
    day_sum: float = 0.0
    day_n: int = 0

    def stage(self, min_days: int, min_weeks: int) -> int:
        if min(self.hour_visits) < min_days:
            return 0
        return 2 if min(self.day_visits) >= min_weeks else 1

    def daily(self, at_ms: int) -> float:
        """The daily shape at ``at_ms``: the hourly means interpolated between hour centres, over their mean."""
        mean = sum(self.hours) / 24
        if mean <= 0:
            return 1.0
        position = (at_ms % DAY_MS) / HOUR_MS - 0.5  # hour centres at h + 0.5
        low = math.floor(position)
        share = position - low
        return ((1 - share) * self.hours[low % 24] + share * self.hours[(low + 1) % 24]) / mean

    def weekly(self, at_ms: int, min_weeks: int) -> float:
        """The weekday's level over the weekdays' mean. A weekday seen fewer than ``min_weeks`` times is
        taken at the mean of those seen (so the seen ones are used from the first, and the mean over
        the week stays that of the seen ones); 1 while none is."""
        seen = [mean for mean, visits in zip(self.days, self.day_visits, strict=True) if visits >= min_weeks]
        if not seen:
            return 1.0
        week_mean = sum(seen) / len(seen)
        day = weekday(at_ms)
        if week_mean <= 0 or self.day_visits[day] < min_weeks:
            return 1.0
        return self.days[day] / week_mean

    def factor(self, at_ms: int, stage: int, min_weeks: int = 1) -> float:
        if stage == 0:
            return 1.0
        return max(self.daily(at_ms) * self.weekly(at_ms, min_weeks), 1e-3)

    def roll(self, at_ms: int, halflife_days: float, min_weeks: int = 1) -> float:
        """Fold the hour and the day that ended before ``at_ms`` (a window's middle) into their means.

        Returns by how much the level should be multiplied: a newly learned day changes every weekday's
        factor (its own from the seen days' mean to its mean, the others' through the mean); the level
        is rescaled so that the day just learned keeps the count it was expected at (the level learned
        from its windows). Without it, a weekend seen at the average level carries its half level into
        Monday, where it looks like a spike (`weekly`, tuning seed 1).
        """
        hour, day = at_ms // HOUR_MS, at_ms // DAY_MS
        if hour != self.hour_at:
            if self.hour_n:
                bucket = self.hour_at % 24
                self._fold(self.hours, self.hour_visits, bucket, self.hour_sum / self.hour_n, halflife_days)
            self.hour_at, self.hour_sum, self.hour_n = hour, 0.0, 0
        ratio = 1.0
        if day != self.day_at:
            if self.day_n:
                learned = self.day_at * DAY_MS
                before = self.weekly(learned, min_weeks)
                self._fold(self.days, self.day_visits, weekday(learned), self.day_sum / self.day_n, halflife_days)
                after = self.weekly(learned, min_weeks)
                if after > 0:
                    ratio = before / after
            self.day_at, self.day_sum, self.day_n = day, 0.0, 0
        return ratio

    def learn(self, value: float, at_ms: int, stage: int, halflife_days: float, min_weeks: int = 1) -> None:
        """Add one window's count (at its middle, ``at_ms``); a finished hour or day is folded in."""
        self.roll(at_ms, halflife_days, min_weeks)
        week = self.weekly(at_ms, min_weeks) if stage >= 1 else 1.0
        self.hour_sum += value / max(week, 1e-3)  # the daily shape without the weekday's level
        self.hour_n += 1
        if stage >= 1:  # the weekday's level without the daily shape
            self.day_sum += value / max(self.daily(at_ms), 1e-3)
            self.day_n += 1

    @staticmethod
    def _fold(means: list[float], visits: list[int], bucket: int, value: float, halflife_days: float) -> None:
        alpha = max(1.0 - 0.5 ** (1.0 / halflife_days), 1.0 / (visits[bucket] + 1))
        means[bucket] += alpha * (value - means[bucket])
        visits[bucket] += 1


def weekday(at_ms: int) -> int:
    """0 = Monday (UTC); the epoch was a Thursday."""
    return (at_ms // DAY_MS + 3) % 7

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
from dataclasses import dataclass

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

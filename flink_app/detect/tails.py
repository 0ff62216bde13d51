"""Tail probabilities of counts: the thresholds that keep chance clusters from alerting.

A detector that flags a window when its count is "many standard deviations" above normal has a
false-alarm rate that depends on the volume: at 0.5 requests per window, six requests are 7.8
Poisson standard deviations away yet happen once in 70 000 windows, and at three requests it is
once in 70. These functions answer the question the other way round: *which count is so extreme
that it happens by chance in at most a share ``p`` of windows?*

* :func:`count_upper` / :func:`count_lower`: the request count of a window, negative binomial with
  mean ``m`` and variance ``m + phi * m**2`` (``phi`` = 0 is Poisson). ``phi`` is the route's learned
  over-dispersion (bursty traffic has a wide upper tail);
* :func:`binomial_upper`: failures among ``n`` requests with a usual failure rate ``q``.

Where the distribution is narrow (standard deviation up to :data:`EXACT_SD` counts: quiet routes,
where chance clusters matter) each sums the probability mass function from the threshold outwards
with its term ratios (to a relative precision of 1e-3), starting from a Cornish-Fisher guess and
stepping to the integer. Wider distributions are smooth on the scale of one count: there the
threshold is the quantile of the gamma distribution with the same mean and variance, by Wilson and
Hilferty's cube-root normal approximation: within 5 % of the exact count on the upper tail (erring
high, towards fewer alerts) and within 2 % of the mean on the lower tail. A route's
expected count moves a little with every window, so callers round it to :func:`significant` digits
and the results are cached: the thresholds are integers, and the rounding moves them only where the
tail crosses ``p`` within that 0.1 %.
"""

from __future__ import annotations

import math
from functools import lru_cache

# Stop summing a tail once the rest (bounded by a geometric series) is below this share of the sum.
_PRECISION = 1e-3
_MAX_TERMS = 100_000
EXACT_SD = 30.0


def normal_quantile(p: float) -> float:
    """z with P(Z >= z) = p for a standard normal Z (Acklam's rational approximation, |error| < 1.2e-9)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    a = (
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.357751867269,
        -30.66479806614716,
        2.506628277459239,
    )
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
    c = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
         2.938163982698783)  # fmt: skip
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    q = 1.0 - p  # the lower-tail probability of the quantile we want
    if q < 0.02425:
        t = math.sqrt(-2 * math.log(q))
        return (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / (
            (((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1
        )
    if q > 1 - 0.02425:
        t = math.sqrt(-2 * math.log(1 - q))
        return -(((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / (
            (((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1
        )
    t = q - 0.5
    r = t * t
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * t
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )


def significant(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (the cache key of a threshold)."""
    return float(f"{x:.{digits}g}")


class _Counts:
    """A discrete distribution on 0, 1, 2, ... given by its log pmf and the ratio pmf(k+1)/pmf(k)."""

    def log_pmf(self, k: int) -> float:
        raise NotImplementedError

    def ratio(self, k: int) -> float:
        raise NotImplementedError

    def upper_tail(self, k: int) -> float:
        """P(X >= k), summed from k upwards (the terms fall off geometrically past the mode)."""
        if k <= 0:
            return 1.0
        term = math.exp(self.log_pmf(k))
        total, j = term, k
        while j - k < _MAX_TERMS:
            ratio = self.ratio(j)
            term *= ratio
            j += 1
            total += term
            # Past the mode the ratios fall, so the rest is below term * ratio / (1 - ratio).
            if ratio < 1 and term * ratio <= _PRECISION * total * (1 - ratio):
                break
        return total

    def lower_tail(self, k: int) -> float:
        """P(X <= k), summed from k downwards."""
        if k < 0:
            return 0.0
        term = math.exp(self.log_pmf(k))
        total, j = term, k
        while j > 0:
            ratio = self.ratio(j - 1)
            if ratio <= 0:
                break
            term /= ratio
            j -= 1
            total += term
            back = self.ratio(j - 1) if j > 0 else 0.0
            if back > 1 and term / back <= _PRECISION * total * (1 - 1 / back):
                break
        return total


class _NegativeBinomial(_Counts):
    def __init__(self, mean: float, phi: float) -> None:
        self.mean, self.phi = mean, phi
        if phi > 0:
            self.r = 1.0 / phi
            self.log_q = math.log(self.r / (self.r + mean))  # log of the "success" probability
            self.log_1q = math.log(mean / (self.r + mean))
            self.base = self.r * self.log_q - math.lgamma(self.r)

    def log_pmf(self, k: int) -> float:
        if self.phi <= 0:
            return -self.mean + k * math.log(self.mean) - math.lgamma(k + 1)
        return self.base + math.lgamma(k + self.r) - math.lgamma(k + 1) + k * self.log_1q

    def ratio(self, k: int) -> float:
        if self.phi <= 0:
            return self.mean / (k + 1)
        return (k + self.r) / (k + 1) * math.exp(self.log_1q)


class _Binomial(_Counts):
    def __init__(self, n: int, q: float) -> None:
        self.n, self.q = n, q
        self.log_q, self.log_1q = math.log(q), math.log1p(-q)

    def log_pmf(self, k: int) -> float:
        n = self.n
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * self.log_q + (n - k) * self.log_1q

    def ratio(self, k: int) -> float:
        return (self.n - k) / (k + 1) * self.q / (1 - self.q) if k < self.n else 0.0


def _smallest_upper(dist: _Counts, guess: float, p: float, top: int | None = None) -> int:
    """The smallest k >= 1 with P(X >= k) <= p; ``top + 1`` if even ``top`` (the largest possible) is too likely.

    Steps from the guess by adding or removing one term at a time, then sums the tail afresh where it
    stopped (a long walk accumulates the sum's rounding) until the walk stays put.
    """
    k = max(1, math.ceil(guess))
    if top is not None:
        k = min(k, top)
    for _ in range(8):
        start, tail = k, dist.upper_tail(k)
        if tail <= p:  # step down while the count below is still rare enough
            while k > 1:
                below = tail + math.exp(dist.log_pmf(k - 1))
                if below > p:
                    break
                k, tail = k - 1, below
        else:  # step up
            while tail > p:
                if top is not None and k >= top:
                    return top + 1
                tail -= math.exp(dist.log_pmf(k))
                k += 1
        if k == start:
            return k
    return k


def _largest_lower(dist: _Counts, guess: float, p: float) -> int:
    """The largest k >= 0 with P(X <= k) <= p (the caller checked that k = 0 qualifies)."""
    k = max(0, math.floor(guess))
    for _ in range(8):
        start, tail = k, dist.lower_tail(k)
        if tail > p:  # step down
            while tail > p and k > 0:
                tail -= math.exp(dist.log_pmf(k))
                k -= 1
        else:  # step up while still rare enough
            while (above := tail + math.exp(dist.log_pmf(k + 1))) <= p:
                k, tail = k + 1, above
        if k == start:
            return k
    return k


def _gamma_quantile(mean: float, var: float, z: float) -> float:
    """Wilson-Hilferty: the gamma (mean, var) quantile at standard normal quantile ``z``."""
    shape, scale = mean * mean / var, var / mean
    c = 1.0 / (9.0 * shape)
    return shape * scale * max(1.0 - c + z * math.sqrt(c), 0.0) ** 3


@lru_cache(maxsize=16_384)
def count_upper(mean: float, phi: float, p: float) -> int:
    """The smallest count k with P(X >= k) <= p, X negative binomial (mean, mean + phi * mean**2)."""
    if mean <= 0:
        return 1
    sd = math.sqrt(mean + phi * mean * mean)
    z = normal_quantile(p)
    skew = (1 + 2 * phi * mean) / sd  # the negative binomial's skewness: Cornish-Fisher's first term
    guess = mean + sd * (z + skew * (z * z - 1) / 6)
    if sd > EXACT_SD:
        return math.ceil(_gamma_quantile(mean, sd * sd, z))
    return _smallest_upper(_NegativeBinomial(mean, phi), guess, p)


@lru_cache(maxsize=16_384)
def count_lower(mean: float, phi: float, p: float) -> int:
    """The largest count k with P(X <= k) <= p; -1 when even an empty window is that likely."""
    if mean <= 0:
        return -1
    sd = math.sqrt(mean + phi * mean * mean)
    z = normal_quantile(p)
    skew = (1 + 2 * phi * mean) / sd
    guess = mean - sd * (z - skew * (z * z - 1) / 6)
    dist = _NegativeBinomial(mean, phi)
    if math.exp(dist.log_pmf(0)) > p:  # an empty window is not rare enough: nothing is
        return -1
    if sd > EXACT_SD:
        return max(math.floor(_gamma_quantile(mean, sd * sd, -z)), 0)
    return _largest_lower(dist, guess, p)


@lru_cache(maxsize=16_384)
def binomial_upper(n: int, q: float, p: float) -> int:
    """The smallest k with P(X >= k) <= p, X binomial(n, q); ``n + 1`` if no count of ``n`` is that rare."""
    if n <= 0:
        return 1
    q = min(max(q, 1e-12), 1 - 1e-12)
    mean, sd = n * q, math.sqrt(n * q * (1 - q))
    z = normal_quantile(p)
    guess = mean + sd * (z + (1 - 2 * q) / sd * (z * z - 1) / 6) + 0.5
    if sd > EXACT_SD:
        return min(math.ceil(guess), n + 1)
    return _smallest_upper(_Binomial(n, q), guess, p, top=n)

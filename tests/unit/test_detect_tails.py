"""Tail-probability thresholds against brute-force sums of the probability mass function."""

from __future__ import annotations

import math

import pytest

from flink_app.detect.tails import EXACT_SD, binomial_upper, count_lower, count_upper, normal_quantile


def nb_pmf(k: int, mean: float, phi: float) -> float:
    if phi == 0:
        return math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))
    r = 1 / phi
    return math.exp(
        math.lgamma(k + r)
        - math.lgamma(r)
        - math.lgamma(k + 1)
        + r * math.log(r / (r + mean))
        + k * math.log(mean / (r + mean))
    )


def quantiles(mean: float, phi: float, p: float) -> tuple[int, int]:
    """The exact thresholds by one pass over the cumulative distribution."""
    cdf, k, lower_k = 0.0, 0, -1
    while True:
        cdf += nb_pmf(k, mean, phi)
        if cdf <= p:
            lower_k = k
        if 1.0 - cdf <= p:
            return k + 1, lower_k
        k += 1


def upper(k: int, mean: float, phi: float) -> float:
    return 1.0 - sum(nb_pmf(j, mean, phi) for j in range(k))


def lower(k: int, mean: float, phi: float) -> float:
    return sum(nb_pmf(j, mean, phi) for j in range(k + 1))


@pytest.mark.parametrize("mean", [0.05, 0.5, 3.0, 40.0, 300.0, 2500.0])
@pytest.mark.parametrize("phi", [0.0, 0.02, 0.3])
@pytest.mark.parametrize("p", [1e-2, 1e-5])
def test_count_thresholds_are_the_exact_integer_quantiles(mean: float, phi: float, p: float) -> None:
    if math.sqrt(mean + phi * mean * mean) > EXACT_SD:  # wide: the gamma approximation
        exact_upper, exact_lower = quantiles(mean, phi, p)
        assert count_upper(mean, phi, p) == pytest.approx(exact_upper, rel=0.05)
        assert count_lower(mean, phi, p) == pytest.approx(exact_lower, abs=0.02 * mean)
        return
    k = count_upper(mean, phi, p)
    assert upper(k, mean, phi) <= p * (1 + 1e-3) and (k == 1 or upper(k - 1, mean, phi) > p)
    j = count_lower(mean, phi, p)
    if j >= 0:
        assert lower(j, mean, phi) <= p * (1 + 1e-3) and lower(j + 1, mean, phi) > p
    else:
        assert nb_pmf(0, mean, phi) > p


def test_chance_clusters_on_a_quiet_route_are_not_extreme_but_a_real_surge_is() -> None:
    # Half a request per window: 3 or more happen once in 70 windows, 6 or more once in 70 000.
    assert count_upper(0.5, 0.0, 1e-3) == 5 and count_upper(0.5, 0.0, 1e-4) == 6 and count_upper(0.5, 0.0, 1e-5) == 7
    # Over-dispersion widens the upper tail: a bursty route needs a far larger count.
    assert count_upper(300, 0.0, 1e-5) < 400 < count_upper(300, 0.3, 1e-5)
    assert count_lower(300, 0.0, 1e-5) > 200 and count_lower(3, 0.0, 1e-5) == -1


def test_binomial_threshold_is_exact_and_capped_by_the_number_of_requests() -> None:
    def tail(k: int, n: int, q: float) -> float:
        log = lambda j: math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)  # noqa: E731
        return sum(math.exp(log(j) + j * math.log(q) + (n - j) * math.log1p(-q)) for j in range(k, n + 1))

    for n, q in [(120, 0.005), (10, 0.002), (2000, 0.01), (40, 0.3)]:
        k = binomial_upper(n, q, 1e-5)
        assert k == n + 1 or (tail(k, n, q) <= 1e-5 * (1 + 1e-6) and tail(k - 1, n, q) > 1e-5)
    assert binomial_upper(120, 0.005, 1e-5) == 7  # six 500s among 120 requests is chance, at this budget
    assert binomial_upper(3, 0.1, 1e-5) == 4  # three requests cannot be significant


def test_normal_quantile() -> None:
    assert normal_quantile(0.5) == pytest.approx(0.0, abs=1e-9)
    assert normal_quantile(0.025) == pytest.approx(1.959964, abs=1e-6)
    assert normal_quantile(1e-5) == pytest.approx(4.264891, abs=1e-6)
    assert normal_quantile(0.9) == pytest.approx(-1.281552, abs=1e-6)

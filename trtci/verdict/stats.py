"""Robust statistics for regression verdicts: pure numpy, seeded, fast.

Latency samples are skewed and carry outliers (a context switch, a GC pause), so everything here works on
medians and ranks: a bootstrap interval of the ratio of two medians, Mann-Whitney U, median and MAD, and the
run-to-run noise of a series estimated from its history. docs/statistics.md explains how compare uses them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD * this estimates the standard deviation of normal data


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at `confidence`."""

    estimate: float
    low: float
    high: float
    confidence: float


@dataclass(frozen=True)
class MannWhitney:
    """Mann-Whitney U of `a` against `b`, normal approximation with tie correction."""

    u: float  # U of a: the number of (a, b) pairs with a > b, ties counting one half
    z: float  # standardized U; > 0 means a tends to be larger
    p_value: float  # two-sided
    effect: float  # U / (n_a * n_b): the probability that an a exceeds a b (0.5 = no shift)


def clean_samples(samples: Sequence[float] | np.ndarray, what: str = "samples") -> np.ndarray:
    """The samples as a float64 array; raises ValueError when any is NaN, infinite, zero or negative."""
    values = np.asarray(samples, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"{what}: no values")
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} of {values.size} values are NaN, infinite, zero or negative")
    return values


def mad(values: Sequence[float] | np.ndarray) -> float:
    """Median absolute deviation from the median, scaled to estimate a normal standard deviation."""
    array = np.asarray(values, dtype=np.float64)
    return float(MAD_TO_SIGMA * np.median(np.abs(array - np.median(array))))


def robust_cv(values: Sequence[float] | np.ndarray) -> float:
    """Scaled MAD over median: a coefficient of variation that a few outliers do not move."""
    array = np.asarray(values, dtype=np.float64)
    return mad(array) / float(np.median(array))


def bootstrap_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`resamples` bootstrap replicates of the median of `samples`, exact and O(resamples) for any size.

    The median of n draws with replacement from the sorted samples x is x[floor(n * U_(m))], where U_(m) is the
    m-th order statistic of n uniforms, distributed Beta(m, n - m + 1); for an even n the next order statistic
    is U_(m) + (1 - U_(m)) * Beta(1, n - m). So no resample is ever materialized.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = x.size
    if n == 1:
        return np.full(resamples, x[0])
    m = (n + 1) // 2
    lower = rng.beta(m, n - m + 1, size=resamples)
    low_index = np.minimum((lower * n).astype(np.int64), n - 1)
    if n % 2:
        return x[low_index]
    upper = lower + (1.0 - lower) * rng.beta(1, n - m, size=resamples)
    high_index = np.minimum((upper * n).astype(np.int64), n - 1)
    return (x[low_index] + x[high_index]) / 2.0


def median_ratio_interval(
    current: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of median(current) / median(baseline). Samples must be positive and finite."""
    a = clean_samples(current, "current samples")
    b = clean_samples(baseline, "baseline samples")
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(a, resamples, rng) / bootstrap_medians(b, resamples, rng)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return Interval(float(np.median(a) / np.median(b)), float(low), float(high), confidence)


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, values.size])
    average = first + (counts + 1) / 2.0
    ranks = np.empty(values.size)
    ranks[order] = average[group]
    return ranks


def mann_whitney(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> MannWhitney:
    """Mann-Whitney U test of a against b (normal approximation, tie-corrected variance, no continuity term)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney needs at least one value on each side")
    pooled = np.concatenate([x, y])
    ranks = rank_average(pooled)
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    _, counts = np.unique(pooled, return_counts=True)
    tie_term = float((counts**3 - counts).sum())
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return MannWhitney(u=u, z=0.0, p_value=1.0, effect=u / (n1 * n2))
    z = (u - n1 * n2 / 2.0) / math.sqrt(variance)
    return MannWhitney(u=u, z=z, p_value=math.erfc(abs(z) / math.sqrt(2.0)), effect=u / (n1 * n2))


def run_noise(medians: Sequence[float] | np.ndarray) -> float | None:
    """Run-to-run noise of a series: the relative standard deviation of one run's median, from history.

    Two robust estimates of the spread of log medians, the smaller kept: successive differences (scaled MAD
    / sqrt 2), which a step change in the history (a real regression merged earlier) does not inflate, and
    the scaled MAD around the median, which a few busy-runner outlier runs (up to half) do not inflate. With
    three of ten runs slowed, the outliers make most successive differences large; with a step, half the
    runs sit away from the median; each estimate covers the other's weakness. None with fewer than three
    runs: two runs cannot tell noise from a change.
    """
    values = np.asarray([v for v in medians if v is not None and math.isfinite(v) and v > 0], dtype=np.float64)
    if values.size < 3:
        return None
    logs = np.log(values)
    by_steps = MAD_TO_SIGMA * float(np.median(np.abs(np.diff(logs)))) / math.sqrt(2.0)
    by_level = mad(logs)
    return min(by_steps, by_level)


def classify(ratio: float, low: float, high: float, threshold: float) -> str:
    """The verdict of a ratio (above 1 is slower) and its interval [low, high] at the smallest change that matters,
    `threshold` (docs/statistics.md): regression, improvement, unchanged or inconclusive.

    Clearing 1 (not 1 + t) is what catches a change of exactly t: the interval only needs to be narrower than
    about t / 2. The floor of 1 + t / 2 on the ratio keeps a tiny but precisely measured change from failing the
    gate.
    """
    floor, bound = 1.0 + threshold / 2.0, 1.0 + threshold
    if low > 1.0 and ratio >= floor:
        return "regression"
    if high < 1.0 and ratio <= 1.0 / floor:
        return "improvement"
    if low >= 1.0 / bound and high <= bound:
        return "unchanged"
    return "inconclusive"


def normal_quantile(confidence: float) -> float:
    """z such that a standard normal falls within ±z with probability `confidence` (Acklam-free bisection)."""
    target = 1.0 - confidence
    low, high = 0.0, 40.0
    for _ in range(100):
        middle = (low + high) / 2.0
        if math.erfc(middle / math.sqrt(2.0)) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def accuracy_delta_interval(
    correct_a: Sequence[bool] | np.ndarray,
    correct_b: Sequence[bool] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(delta, low, high): accuracy(b) - accuracy(a) with a paired bootstrap interval over validation samples.

    `correct_a[i]` and `correct_b[i]` say whether each precision got sample i right; pairing by sample removes
    the variance of which samples happen to be hard. Only the four counts of (a, b) outcomes matter, so the
    bootstrap draws them from a multinomial instead of resampling indices. Each discordant cell gets half a
    sample more (Agresti and Min's adjustment for paired proportions): resampling the bare counts never draws a
    change in a direction not seen, so 0 of 64 samples changed would claim "no change within 0 points" and 5
    losses with no gain in 1,000 samples a certain drop (McNemar: p = 0.06). The delta itself is as observed.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.size != b.size or a.size == 0:
        raise ValueError(f"need the same, non-zero number of samples on both sides, got {a.size} and {b.size}")
    n = a.size
    only_b = int((b & ~a).sum())
    only_a = int((a & ~b).sum())
    rng = np.random.default_rng(seed)
    gained, lost = (only_b + 0.5) / (n + 1), (only_a + 0.5) / (n + 1)
    draws = rng.multinomial(n, [gained, lost, 1.0 - gained - lost], size=resamples)
    deltas = (draws[:, 0] - draws[:, 1]) / n
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return (only_b - only_a) / n, float(low), float(high)

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

from trtci.verdict.stats import (
    accuracy_delta_interval,
    bootstrap_medians,
    clean_samples,
    mad,
    mann_whitney,
    median_ratio_interval,
    normal_quantile,
    rank_average,
    robust_cv,
    run_noise,
)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 51])
def test_bootstrap_medians_match_resampling_by_brute_force(n):
    rng = np.random.default_rng(n)
    x = rng.lognormal(0.0, 0.3, n)
    fast = bootstrap_medians(x, 40_000, np.random.default_rng(1))
    brute = np.median(x[rng.integers(0, n, (40_000, n))], axis=1)
    for value in np.unique(brute):
        # the same distribution: equal CDFs up to sampling error of 40k draws
        assert np.mean(fast <= value) == pytest.approx(np.mean(brute <= value), abs=0.015)
    assert set(np.unique(fast)) <= set(np.unique(np.r_[x, (x[:, None] + x[None, :]).ravel() / 2]))


def test_median_ratio_interval_covers_the_true_ratio_and_is_fast():
    rng = np.random.default_rng(3)
    base = rng.lognormal(0.0, 0.1, 20_000)
    slow = rng.lognormal(math.log(1.05), 0.1, 20_000)
    started = time.perf_counter()
    interval = median_ratio_interval(slow, base, resamples=2000)
    assert time.perf_counter() - started < 0.5
    assert interval.low < 1.05 < interval.high
    assert interval.low < interval.estimate < interval.high
    assert interval.high - interval.low < 0.01


def test_median_ratio_interval_coverage_is_near_nominal():
    rng = np.random.default_rng(4)
    covered = 0
    for trial in range(200):
        a = rng.lognormal(math.log(1.10), 0.2, 201)
        b = rng.lognormal(0.0, 0.2, 201)
        interval = median_ratio_interval(a, b, resamples=1000, seed=trial)
        covered += interval.low <= 1.10 <= interval.high
    assert 0.88 <= covered / 200 <= 0.99


def test_median_ratio_interval_is_seeded():
    a, b = [1.0, 1.2, 0.9, 1.1], [1.0, 1.05, 0.95]
    assert median_ratio_interval(a, b, seed=5) == median_ratio_interval(a, b, seed=5)


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [1.0, 0.0], [1.0, -2.0], [float("inf")], []])
def test_nan_zero_negative_and_empty_samples_are_refused(bad):
    with pytest.raises(ValueError, match="samples"):
        clean_samples(bad)
    with pytest.raises(ValueError):
        median_ratio_interval(bad, [1.0])


def test_rank_average_gives_ties_their_mean_rank():
    assert rank_average(np.array([10.0, 20.0, 10.0, 30.0, 20.0])).tolist() == [1.5, 3.5, 1.5, 5.0, 3.5]


def test_mann_whitney_counts_pairs_and_ties():
    a, b = [1.0, 2.0, 2.0, 5.0], [2.0, 3.0, 4.0]
    pairs = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in a for y in b)
    result = mann_whitney(a, b)
    assert result.u == pairs and result.effect == pairs / 12


def test_mann_whitney_variance_is_the_exact_permutation_variance_with_ties():
    a, b = [1.0, 2.0, 2.0], [2.0, 3.0, 3.0, 1.0]
    pooled = a + b
    us = []
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        us.append(sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in x for q in y))
    expected_z = (mann_whitney(a, b).u - np.mean(us)) / np.std(us)
    assert mann_whitney(a, b).z == pytest.approx(expected_z)


def test_mann_whitney_separated_samples_are_significant_and_identical_ones_are_not():
    rng = np.random.default_rng(0)
    shifted = mann_whitney(rng.normal(1.1, 0.1, 300), rng.normal(1.0, 0.1, 300))
    assert shifted.z > 5 and shifted.p_value < 1e-6
    assert mann_whitney([1.0, 1.0], [1.0, 1.0]).p_value == 1.0


def test_mad_and_robust_cv_ignore_outliers():
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 0.5, 5000)
    assert mad(values) == pytest.approx(0.5, rel=0.05)
    with_outliers = np.r_[values, [1e6] * 50]
    assert robust_cv(with_outliers) == pytest.approx(0.05, rel=0.07)


def test_run_noise_estimates_run_to_run_spread_even_across_a_step():
    rng = np.random.default_rng(2)
    medians = 7.7 * np.exp(rng.normal(0.0, 0.04, 300))
    assert run_noise(medians) == pytest.approx(0.04, rel=0.15)
    stepped = np.r_[medians[:150], medians[150:] * 1.5]
    assert run_noise(stepped) == pytest.approx(0.04, rel=0.15)
    busy = medians.copy()
    busy[::4] *= 1.3  # every fourth run on a busy runner: half the successive differences see one of them
    steps_only = 1.4826 * np.median(np.abs(np.diff(np.log(busy)))) / np.sqrt(2)
    assert steps_only > 3 * 0.04 and run_noise(busy) < 2 * 0.04  # steps alone would triple it
    assert run_noise([1.0, 1.1]) is None
    assert run_noise([1.0, float("nan"), 1.2, 0.0]) is None


def test_normal_quantile():
    assert normal_quantile(0.95) == pytest.approx(1.959964, abs=1e-5)
    assert normal_quantile(0.99) == pytest.approx(2.575829, abs=1e-5)


def test_accuracy_delta_interval_is_paired():
    rng = np.random.default_rng(5)
    a = rng.random(2000) < 0.9
    b = a.copy()
    flip = rng.choice(2000, 40, replace=False)
    b[flip] = False  # b loses 40 samples a got right (maybe some a got wrong too)
    delta, low, high = accuracy_delta_interval(a, b)
    assert delta == pytest.approx((b.sum() - a.sum()) / 2000)
    assert low <= delta <= high < 0  # a sure loss: paired, the interval excludes 0
    same_delta, same_low, same_high = accuracy_delta_interval(a, a)
    assert same_delta == 0 and -0.005 < same_low <= 0 <= same_high < 0.005  # 2000 unchanged samples: narrow
    with pytest.raises(ValueError):
        accuracy_delta_interval(a, b[:10])


def test_accuracy_delta_interval_does_not_claim_certainty_from_empty_cells():
    # resampling bare counts gives [0, 0] when no sample changed, at any sample count, and a sure loss from five
    # losses and no gain; with half a sample added to each discordant cell neither happens
    same = np.ones(64, dtype=bool)
    _, low, high = accuracy_delta_interval(same, same)
    assert low < -0.01 and high > 0.01  # 64 samples cannot show "within one point"
    a = np.ones(1000, dtype=bool)
    b = a.copy()
    b[:5] = False  # McNemar's exact p = 0.0625: not a sure loss at 98%
    delta, low, high = accuracy_delta_interval(a, b, confidence=0.98)
    assert delta == pytest.approx(-0.005) and low < delta and high >= 0
    b[:12] = False  # 12 losses, no gain: p = 0.0005
    assert accuracy_delta_interval(a, b, confidence=0.98)[2] < 0

"""Interleaved A/B measurement: a paired ratio B / A with an interval whose error rate holds at every look.

Machine drift (another job on the runner, CPU clocks, thermal state) moves A and B alike when they alternate in
short rounds, so the ratio of each round's times cancels it. Four choices make the ratio hold on fast models too:

- Rounds long enough to time: a round times `calls` calls of A as one block, then as many of B (B first every
  other round). `calls` is chosen in a warm-up of doubling blocks so that a block lasts `round_s` (5 ms): one
  call of a 10 us model is below the grain of the timer and of the scheduler, a block of 500 is not.
- Pairs: two consecutive rounds (A B, then B A) form one pair, log((B1 + B2) / (A1 + A2)), so going first or
  second favours neither side.
- A distribution-free interval: the median of the pairs' log ratios with its sign-test interval (binomial order
  statistics). It assumes independent pairs and nothing about their spread, which a few rounds under-estimate:
  an estimated spread is what let a 16-round A/A test claim an 8.6% change.
- A planned size and few looks: after a pilot of `min_rounds` the spread of the pilot plans how many pairs make
  the interval narrower than `min_effect`; the interval is looked at only when that many are timed (or the
  budget is spent), and rounds stop at the first look whose interval is narrow enough or already settles the
  verdict at `threshold` (wholly beyond the change that matters, or wholly within the threshold: no more
  precision can change it; with a threshold the pairs at most double between looks, so a settled verdict is
  seen soon after it is there). Look j spends
  alpha * 6 / (pi^2 (j + 1)^2) of the error rate, a sum that stays below alpha however many looks there are
  (Bonferroni), so stopping at the first look that is narrow enough or decides keeps the error rate within
  1 - `confidence`. An interval still too wide plans again and goes on while the budget lasts: no round ceiling
  cuts it short.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trtci.verdict.stats import MAD_TO_SIGMA, normal_quantile

ROUND_S = 0.005  # seconds a block of calls should last: long against the timer and a scheduler tick's jitter
LOOK_GROWTH = 1.25  # pairs grow at least this much between two looks
PLAN_MARGIN = 1.3  # pairs planned over the estimate: a pilot's spread is itself uncertain
MAX_CALLS = 1 << 20  # calls per block at most: a call that takes no measurable time still ends the warm-up
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2.0)  # a median's standard error over a mean's, for normal data


@dataclass
class ABResult:
    """B against A: ratio > 1 means B is slower. `resolution`: the smallest change the interval could show."""

    ratio: float  # exp(median of the pairs' log ratios (B1 + B2) / (A1 + A2))
    low: float
    high: float
    rounds: int  # rounds timed: each is a block of A and a block of B; two rounds make a pair
    elapsed_s: float
    resolution: float  # half the interval's relative width: changes above it would have been seen
    converged: bool  # the interval got narrower than min_effect, or settled the verdict, before the budget ran out
    confidence: float = 0.95  # of [low, high], after the correction for the looks taken
    round_ratios: list[float] = field(default_factory=list)  # per round: block of B / block of A
    calls_per_round: int = 1  # calls of each side in one round's block
    looks: int = 1  # times the interval was computed to decide whether to stop


def ab_test(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    *,
    round_iterations: int | None = None,
    min_rounds: int = 20,
    max_rounds: int | None = None,
    time_budget_s: float = 60.0,
    min_effect: float = 0.05,
    confidence: float = 0.95,
    round_s: float = ROUND_S,
    threshold: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ABResult:
    """Time A and B in alternating rounds until the ratio's interval is narrower than `min_effect` (total
    relative width), or settles the verdict at `threshold` (where given: `settled`), or `time_budget_s` is spent,
    or `max_rounds` (no limit by default) are timed.

    `round_iterations` fixes the calls per round; by default a warm-up chooses them so a block lasts `round_s`.
    At least `min_rounds` rounds are timed (rounded up to whole pairs); they are the pilot that plans the rest.
    """
    if (round_iterations is not None and round_iterations < 1) or min_rounds < 2:
        raise ValueError("need round_iterations >= 1 and min_rounds >= 2")
    if max_rounds is not None and max_rounds < min_rounds:
        raise ValueError("need max_rounds >= min_rounds")
    calls = round_iterations or _calls_per_round(run_a, run_b, round_s, clock)
    pilot = (min_rounds + 1) // 2
    limit = max_rounds // 2 if max_rounds is not None else None
    alpha = 1.0 - confidence
    started = clock()
    ratios: list[float] = []
    pairs: list[float] = []
    looks = 0
    target = pilot
    while True:
        while len(pairs) < target and (limit is None or len(pairs) < limit):
            pairs.append(_pair(run_a, run_b, calls, clock, ratios))
            if len(pairs) >= pilot and clock() - started >= time_budget_s:
                break
        level = 1.0 - alpha * 6.0 / (math.pi**2 * (looks + 1) ** 2)
        looks += 1
        ratio, low, high = median_interval(pairs, level)
        narrow = low > 0 and high / low - 1.0 < min_effect
        converged = narrow or (threshold is not None and low > 0 and settled(low, high, threshold))
        out_of_time = clock() - started >= time_budget_s or (limit is not None and len(pairs) >= limit)
        if converged or out_of_time:
            return ABResult(
                ratio=ratio,
                low=low,
                high=high,
                rounds=len(ratios),
                elapsed_s=clock() - started,
                resolution=(high / low - 1.0) / 2.0 if low > 0 else math.inf,
                converged=converged,
                confidence=level,
                round_ratios=ratios,
                calls_per_round=calls,
                looks=looks,
            )
        # at least a quarter more pairs per look: each look costs error rate, so looks must be few
        planned = _planned_pairs(pairs, min_effect, alpha, looks)
        if threshold is not None:
            planned = min(planned, 2 * len(pairs))
        target = max(math.ceil(len(pairs) * LOOK_GROWTH), planned)


def settled(low: float, high: float, threshold: float) -> bool:
    """Whether the interval alone settles the verdict at `threshold`, so more rounds cannot change it: wholly above
    1 + threshold / 2 or below its inverse (a change that matters, wherever the median falls), or wholly within
    [1 / (1 + threshold), 1 + threshold] (unchanged). An interval that merely clears 1 does not: its median is
    still too uncertain to tell a change that matters from one that does not (and two sessions of one file can
    differ by a few percent: memory placement), so rounds go on until the interval is narrow."""
    floor, bound = 1.0 + threshold / 2.0, 1.0 + threshold
    return low > floor or high < 1.0 / floor or (low >= 1.0 / bound and high <= bound)


def _calls_per_round(
    run_a: Callable[[], object], run_b: Callable[[], object], round_s: float, clock: Callable[[], float]
) -> int:
    """Calls per block so that each side's block lasts at least `round_s`: one warm-up call each (first calls
    allocate and compile), then blocks of 1, 2, 4, ... calls until both last that long by `clock`. Timing whole
    blocks, never single calls, also works with a clock coarser than one call."""
    run_a()
    run_b()
    calls = 1
    while calls < MAX_CALLS:
        if min(_block(run_a, calls, clock), _block(run_b, calls, clock)) >= round_s:
            return calls
        calls *= 2
    return calls


def _pair(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    calls: int,
    clock: Callable[[], float],
    ratios: list[float],
) -> float:
    """Two rounds, A B then B A; appends each round's B / A to `ratios`, returns log((B1 + B2) / (A1 + A2))."""
    a1, b1 = _block(run_a, calls, clock), _block(run_b, calls, clock)
    b2, a2 = _block(run_b, calls, clock), _block(run_a, calls, clock)
    ratios.extend([b1 / a1 if a1 > 0 else math.inf, b2 / a2 if a2 > 0 else math.inf])
    if a1 + a2 <= 0 or b1 + b2 <= 0:
        return 0.0  # a clock too coarse to see either side: no evidence either way
    return math.log((b1 + b2) / (a1 + a2))


def _block(fn: Callable[[], object], calls: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(calls):
        fn()
    return clock() - start


def median_interval(logs: list[float], confidence: float) -> tuple[float, float, float]:
    """(exp median, low, high): the median of `logs` and its distribution-free interval at `confidence`.

    The sign-test interval [x_(k), x_(n+1-k)] of the sorted values covers the median with probability at least
    `confidence` for independent values from any continuous distribution; k is the largest with
    P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2. Too few values for that give (median, 0, inf).
    """
    x = np.sort(np.asarray(logs, dtype=np.float64))
    center = math.exp(float(np.median(x))) if x.size else 1.0
    k = _order_statistic(x.size, (1.0 - confidence) / 2.0)
    if k < 1:
        return center, 0.0, math.inf
    return center, math.exp(float(x[k - 1])), math.exp(float(x[x.size - k]))


def _order_statistic(n: int, tail: float) -> int:
    """The largest k with P(Binomial(n, 1/2) <= k - 1) <= tail; 0 when even k = 1 is too much."""
    if n > 400:  # normal approximation with continuity correction; exact sums below
        return max(0, math.floor((n - normal_quantile(1.0 - 2.0 * tail) * math.sqrt(n)) / 2.0))
    log_half = n * math.log(0.5)
    cumulative = 0.0
    for k in range(n + 1):
        cumulative += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + log_half)
        if cumulative > tail:
            return k  # P(<= k) exceeds the tail, P(<= k - 1) did not
    return n


def _planned_pairs(pairs: list[float], min_effect: float, alpha: float, looks: int) -> int:
    """Pairs for an interval narrower than `min_effect` at the next look's level, from the spread so far."""
    x = np.asarray(pairs, dtype=np.float64)
    spread = MAD_TO_SIGMA * float(np.median(np.abs(x - np.median(x))))
    if spread <= 0:
        return len(pairs) * 2
    z = normal_quantile(1.0 - alpha * 6.0 / (math.pi**2 * (looks + 1) ** 2))
    half = math.log1p(min_effect) / 2.0
    needed = (z * MEDIAN_EFFICIENCY * spread / half) ** 2
    return min(math.ceil(PLAN_MARGIN * needed), len(pairs) * 8)

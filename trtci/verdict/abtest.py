"""Interleaved A/B measurement: A B A B ... rounds, a paired ratio with an interval, adaptive length.

Machine drift (another job on the runner, CPU clocks, thermal state) moves A and B alike when they alternate
in short rounds, so the ratio of each round's medians cancels it. Rounds continue until the interval of the
ratio is narrower than `min_effect` or the time budget is spent; the result says what it could resolve.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trtci.verdict.stats import MAD_TO_SIGMA, normal_quantile


@dataclass
class ABResult:
    """B against A: ratio > 1 means B is slower. `resolution`: the smallest change the interval could show."""

    ratio: float  # median of the per-round ratios median(B) / median(A)
    low: float
    high: float
    rounds: int
    elapsed_s: float
    resolution: float  # half the interval's relative width: changes above it would have been seen
    converged: bool  # the interval got narrower than min_effect before the budget ran out
    confidence: float = 0.95  # of [low, high]
    round_ratios: list[float] = field(default_factory=list)


def ab_test(
    run_a: Callable[[], object],
    run_b: Callable[[], object],
    *,
    round_iterations: int = 10,
    min_rounds: int = 10,
    max_rounds: int = 1000,
    time_budget_s: float = 60.0,
    min_effect: float = 0.05,
    confidence: float = 0.95,
    clock: Callable[[], float] = time.perf_counter,
) -> ABResult:
    """Alternate rounds of `round_iterations` timed calls of A then B (B then A every other round).

    Stops after `min_rounds` once the interval of the ratio is narrower than `min_effect` (total width), or
    at `max_rounds`, or when `time_budget_s` is spent. Each call is timed with `clock` around it.
    """
    if round_iterations < 1 or min_rounds < 2 or max_rounds < min_rounds:
        raise ValueError("need round_iterations >= 1 and 2 <= min_rounds <= max_rounds")
    run_a()
    run_b()  # one warm-up call each: first calls allocate and compile
    started = clock()
    ratios: list[float] = []
    while True:
        order = (run_a, run_b) if len(ratios) % 2 == 0 else (run_b, run_a)
        first, second = (_round(fn, round_iterations, clock) for fn in order)
        a, b = (first, second) if order[0] is run_a else (second, first)
        ratios.append(b / a)
        elapsed = clock() - started
        ratio, low, high = _interval(ratios, confidence)
        converged = len(ratios) >= min_rounds and low > 0 and high / low - 1.0 < min_effect
        if converged or len(ratios) >= max_rounds or elapsed >= time_budget_s:
            return ABResult(
                ratio=ratio,
                low=low,
                high=high,
                rounds=len(ratios),
                elapsed_s=elapsed,
                resolution=(high / low - 1.0) / 2.0 if low > 0 else math.inf,
                converged=converged,
                confidence=confidence,
                round_ratios=ratios,
            )


def _round(fn: Callable[[], object], iterations: int, clock: Callable[[], float]) -> float:
    times = []
    for _ in range(iterations):
        start = clock()
        fn()
        times.append(clock() - start)
    return float(np.median(times))


def _interval(ratios: list[float], confidence: float) -> tuple[float, float, float]:
    """Median of the per-round ratios and its interval: a robust standard error of the mean of log ratios."""
    logs = np.log(np.asarray(ratios))
    center = float(np.median(logs))
    if logs.size < 2:
        return math.exp(center), 0.0, math.inf  # one round: no spread, no interval
    spread = MAD_TO_SIGMA * float(np.median(np.abs(logs - center)))
    # 1.253 = sqrt(pi / 2): a median of n values is that much less precise than their mean
    half = normal_quantile(confidence) * 1.253 * spread / math.sqrt(logs.size)
    return math.exp(center), math.exp(center - half), math.exp(center + half)

"""Compare each series of a run with its latest result on the base branch, by median latency.

A median more than `threshold` slower than the baseline's is a regression; more than the same factor faster,
an improvement (1 / (1 + threshold), so +10% and its inverse are equally far from 1). Every Comparison
carries the numbers and a one-line reason, so a report never recomputes the verdict.
"""

from __future__ import annotations

import math

from trtci.config import CompareSettings
from trtci.results import Comparison, RunResult, SeriesResult
from trtci.store import Baseline, Store

METRIC = "latency_median_ms"


def compare(
    run: RunResult, store: Store, settings: CompareSettings, *, base_branch: str | None = None
) -> list[Comparison]:
    """One Comparison per series that was benchmarked or failed, in the run's series order.

    The baseline branch is `base_branch`, else the run's base branch (a pull request's target), else the
    run's own branch; the run itself is never its own baseline.
    """
    branch = base_branch or run.context.base_branch or run.context.branch
    comparisons = []
    for series in run.series:
        if series.error is None and series.bench is None:
            continue
        baseline = store.baseline(series.key.id, branch, exclude_run=run.context.run_id) if branch is not None else None
        comparisons.append(_compare_series(series, baseline, branch, settings.threshold))
    return comparisons


def _compare_series(
    series: SeriesResult, baseline: Baseline | None, branch: str | None, threshold: float
) -> Comparison:
    comparison = Comparison(
        series_id=series.key.id,
        label=series.key.label,
        verdict="new",
        metric=METRIC,
        current=series.bench.stats.median if series.bench is not None else None,
        baseline=baseline.median_ms if baseline is not None else None,
        ratio=None,
        threshold=threshold,
        baseline_run=baseline.run_id if baseline is not None else None,
        baseline_commit=baseline.commit if baseline is not None else None,
    )
    if series.error is not None:
        comparison.verdict = "missing"
        comparison.reason = f"no result: {series.error}"
        return comparison
    current = comparison.current
    assert current is not None  # only benchmarked series get here
    if baseline is None:
        where = f"on {branch}" if branch else "(no base branch known: pass --base-branch)"
        comparison.reason = f"median {_ms(current)} ms; no earlier result {where}"
        return comparison
    if not (baseline.median_ms > 0 and math.isfinite(current) and current > 0):
        comparison.verdict = "inconclusive"
        comparison.reason = f"median {_ms(current)} ms vs {_ms(baseline.median_ms)} ms: cannot form a ratio"
        return comparison
    ratio = current / baseline.median_ms
    comparison.ratio = ratio
    if ratio > 1 + threshold:
        comparison.verdict = "regression"
    elif ratio < 1 / (1 + threshold):
        comparison.verdict = "improvement"
    else:
        comparison.verdict = "unchanged"
    origin = f"{branch}@{baseline.commit[:7]}" if baseline.commit else f"{branch} (run {baseline.run_id[:8]})"
    comparison.reason = (
        f"median {_ms(current)} ms vs {_ms(baseline.median_ms)} ms on {origin} "
        f"({(ratio - 1) * 100:+.1f}%, threshold {threshold * 100:g}%)"
    )
    return comparison


def _ms(value: float) -> str:
    """Three significant digits without an exponent: 1.23, 12.3, 123, 1234, 0.0123."""
    if not math.isfinite(value) or value <= 0:
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"

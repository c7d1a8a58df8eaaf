"""Compare each series of a run with the base branch, with an interval, not a bare ratio.

Each series is first attributed: what changed since the base (trtci.verdict.attribution). Identical inputs are
never a regression (a move against history is machine drift); a changed model or build settings is judged by an
interleaved A/B against the merge-base's build where the pipeline made one (trtci.pipeline.merge_base); an
environment change is judged against the base series' history with the machine's speed accounted for
(trtci.verdict.machine), under its own policy (trtci.verdict.policy). The history rule:

The baseline is the median of the per-run medians of the last `window` base runs at or before the PR's
merge-base. The ratio current / baseline gets an interval: the bootstrap interval of the median ratio of this
run's raw samples against the latest base run's (within-run noise), widened in log space by the run-to-run
noise the history shows (runner drift). With `t` the threshold, the smallest change that matters (a change of
that size must be caught with 95% probability, no change flagged with at most 1%):

- regression: the whole interval is above 1 and the ratio is at least 1 + t / 2;
- improvement: the whole interval is below 1 and the ratio is at most 1 / (1 + t / 2);
- unchanged: the interval lies within [1 / (1 + t), 1 + t];  inconclusive: anything else (noise too high);
- new: no base history for this series (or only of another provenance: never judged against it);
- missing: a base series this run did not measure, or measured with an error;
- acknowledged: a regression accepted with a reason (`compare.acknowledge` or the PR label
  `trtci:accept-regression`); it keeps its numbers and passes the gate.

docs/statistics.md explains the method and its measured false-alarm rate.
"""

from __future__ import annotations

import math

import numpy as np

from trtci.config import CompareSettings
from trtci.results import MEDIAN, Comparison, Metric, RunResult, SeriesKey, SeriesResult
from trtci.store.database import Store
from trtci.store.queries import (
    Cutoff,
    HistoryPoint,
    base_verdicts,
    canary_history,
    cutoff,
    history,
    latest_base_series,
)
from trtci.verdict.abtest import ABResult
from trtci.verdict.attributed import (
    HISTORY_ONLY_BACKEND,
    BaseFacts,
    base_regressed,
    environment,
    environment_points,
    hold_history_verdicts,
    identical,
    noisy_reasons,
)
from trtci.verdict.attribution import ENVIRONMENT, NOTHING, provenance
from trtci.verdict.machine import judge_canary
from trtci.verdict.policy import acknowledge, policy_for, settings_for
from trtci.verdict.stats import Interval, classify, mann_whitney, median_ratio_interval, normal_quantile, run_noise

NOISE_RUNS = 3  # base runs stats.run_noise needs to estimate run-to-run noise


def compare(
    run: RunResult,
    store: Store,
    settings: CompareSettings,
    *,
    base_branch: str | None = None,
    metric: Metric = MEDIAN,
) -> list[Comparison]:
    """One Comparison per series benchmarked or failed, in run order, then one per base series not measured.
    Each is judged on `metric` (the median latency unless an ingest asks for another), the right way up: lower
    is better for a latency, higher for a throughput.

    The baseline branch is `base_branch`, else the run's base branch (a pull request's target), else the
    run's own branch; the run itself is never its own baseline. Each series is first attributed (what changed
    since the base's latest run: trtci.verdict.attribution), unless `settings.attribute` is off; the run's
    canaries are judged against the base's (their judgement is filled in).
    """
    branch = base_branch or run.context.base_branch or run.context.branch
    exclude = run.context.run_id
    until = cutoff(store, branch, run.context.merge_base) if branch is not None else Cutoff(None, None, "")
    base_run, base_keys = (
        latest_base_series(store, branch, until=until, exclude_run=exclude) if branch is not None else (None, [])
    )
    facts = BaseFacts.load(store, run, base_run, base_keys)
    _judge_canaries(run, facts, store, settings, branch, until)
    post_merge = branch is not None and branch == run.context.branch
    comparisons = []
    for series in run.series:
        if series.error is None and series.bench is None:
            continue
        own = settings_for(series.key, settings)
        comparison, kind = _compare_one(series, facts, store, settings, branch, until, metric)
        comparison.policy = policy_for(kind, post_merge, settings)
        if branch is not None and not post_merge:
            found = base_verdicts(store, series.key.label, branch, until=until, exclude_run=exclude, window=own.window)
            comparison.base_regressed = base_regressed(found)
        comparison.alert = settings.alert
        if until.note:
            comparison.reason = f"{comparison.reason}; {until.note}"
        acknowledge(comparison, (series.key.label, series.key.id), settings, run.context.labels)
        comparisons.append(comparison)
    noisy = noisy_reasons(run.canaries, comparisons)
    if noisy:
        hold_history_verdicts(comparisons, noisy)
    comparisons.extend(_missing(run, base_run, base_keys, settings.threshold, metric))
    return comparisons


def _compare_one(
    series: SeriesResult,
    facts: BaseFacts,
    store: Store,
    settings: CompareSettings,
    branch: str | None,
    until: Cutoff,
    metric: Metric,
) -> tuple[Comparison, str | None]:
    """One series against the base and the kind of its change (None: not attributed): attributed, then judged
    the way its kind of change is (trtci.verdict.attribution)."""
    own = settings_for(series.key, settings)
    base_key = facts.match(series.key)
    other = base_key if base_key != series.key else None
    judge = settings.attribute and base_key is not None and series.key.backend != HISTORY_ONLY_BACKEND
    attribution = facts.attribute(series.key, base_key) if judge and base_key is not None else None
    history_key = base_key if attribution is not None and attribution.kind == ENVIRONMENT else series.key
    assert history_key is not None
    run_id = facts.run.context.run_id
    points = (
        history(store, history_key.id, branch, until=until, exclude_run=run_id, window=own.window, metric=metric)
        if branch is not None
        else []
    )
    index = None
    if attribution is not None and attribution.kind == ENVIRONMENT and branch is not None:
        points, index = environment_points(store, facts, series.key, points, branch, until, metric)
    comparison = compare_series(series, points, branch, own, other, metric)
    if attribution is None:
        return comparison, None
    comparison.changed = list(attribution.changes)
    if attribution.kind == NOTHING:
        identical(comparison, branch)
    elif attribution.kind == ENVIRONMENT:
        environment(comparison, attribution, index)
    return comparison, attribution.kind


def _judge_canaries(
    run: RunResult, facts: BaseFacts, store: Store, settings: CompareSettings, branch: str | None, until: Cutoff
) -> None:
    for canary in run.canaries:
        device = facts.device(canary.device_id)
        medians = (
            canary_history(
                store, canary, device, branch, until=until, exclude_run=run.context.run_id, window=settings.window
            )
            if branch is not None and device is not None
            else {}
        )
        judge_canary(canary, list(medians.values()), settings, branch)


def decide(
    ratio: float, within: Interval | None, noise: float | None, history_runs: int, settings: CompareSettings
) -> tuple[str, list[float], float]:
    """(verdict, [low, high], resolution) for a ratio, its within-run interval and the history's noise.

    The interval's log half-widths are the within-run ones and the noise term added in quadrature. The noise
    term counts both sides: this run's median (noise) and the baseline, a median of `history_runs` medians
    (noise * sqrt(pi / 2 / history_runs)). The resolution is the smallest slowdown that would have been flagged
    had it been measured with this interval: max(upper end of the interval around 1, 1 + threshold / 2) - 1.
    """
    z = normal_quantile(settings.confidence)
    below = math.log(within.estimate / within.low) if within is not None else 0.0
    above = math.log(within.high / within.estimate) if within is not None else 0.0
    if noise is not None:
        spread = z * noise * math.sqrt(1.0 + math.pi / 2.0 / max(history_runs, 1))
        below, above = math.hypot(below, spread), math.hypot(above, spread)
    low, high = ratio * math.exp(-below), ratio * math.exp(above)
    floor = 1.0 + settings.threshold / 2.0
    return classify(ratio, low, high, settings.threshold), [low, high], max(math.exp(below), floor) - 1.0


def decide_ab(result: ABResult, threshold: float) -> str:
    """The verdict of an interleaved A/B test (B against A) under the same rule as `decide`."""
    within = Interval(result.ratio, result.low, result.high, result.confidence)
    return decide(result.ratio, within, None, 0, CompareSettings(threshold=threshold))[0]


def compare_series(
    series: SeriesResult,
    points: list[HistoryPoint],
    branch: str | None,
    settings: CompareSettings,
    other: SeriesKey | None = None,
    metric: Metric = MEDIAN,
) -> Comparison:
    """One series against its base history (newest first): the verdict with its numbers and a reason.

    The numbers (current, baseline, ratio, interval) are the metric's own; the verdict is reached on its cost (the
    metric, or its reciprocal where higher is better), so a ratio of costs above 1 is always the worse way. Only
    the median has a within-run interval (a bootstrap of the raw samples); another metric is one value per run,
    judged against the history's noise."""
    values = [p.value for p in points]
    baseline = float(np.median(values)) if values else None
    latest = points[0] if points else None
    comparison = Comparison(
        series_id=series.key.id,
        label=series.key.label,
        verdict="new",
        metric=metric.column,
        current=getattr(series.bench.stats, metric.field) if series.bench is not None else None,
        baseline=baseline,
        ratio=None,
        threshold=settings.threshold,
        baseline_run=latest.run_id if latest is not None else None,
        baseline_commit=latest.commit if latest is not None else None,
        history_runs=len(points),
    )
    if series.error is not None:
        comparison.verdict = "missing"
        comparison.reason = f"no result: {series.error}"
        return comparison
    current = comparison.current
    assert current is not None and series.bench is not None  # only benchmarked series get here
    if not math.isfinite(current):  # e.g. a percentile of a file without raw samples
        comparison.verdict = "inconclusive"
        comparison.reason = f"this result records no {metric.name}: judge it on another metric"
        return comparison
    if baseline is None or latest is None:
        comparison.reason = f"{_value(metric, current)}; " + _no_baseline_reason(branch, series.key, other)
        return comparison
    if not (baseline > 0 and current > 0):
        comparison.verdict = "inconclusive"
        comparison.reason = f"{_value(metric, current)} vs {_value(metric, baseline, named=False)}: cannot form a ratio"
        return comparison
    ratio = current / baseline
    within = _within_run(series.bench.samples_ms, latest.samples_ms, settings) if metric == MEDIAN else None
    noise = run_noise(values[::-1])  # None below NOISE_RUNS base runs
    cost = 1.0 / ratio if metric.higher_is_better else ratio
    verdict, interval, resolution = decide(cost, within, noise, len(points), settings)
    if metric.higher_is_better:
        interval = [1.0 / interval[1], 1.0 / interval[0]]
    if len(points) < settings.min_history and verdict in ("regression", "improvement"):
        # A within-run interval says nothing about drift between runs, which on a shared runner is often larger
        # than the change (seen here: one model's median 22, 35 and 15 us in three runs of the same code).
        verdict = "inconclusive"
    comparison.ratio, comparison.verdict, comparison.interval = ratio, verdict, interval
    comparison.noise, comparison.resolution = noise, resolution
    comparison.method = "bootstrap" if within is not None else "medians" if metric == MEDIAN else "values"
    comparison.method += "+history" if noise is not None else ""
    if within is not None:
        comparison.p_value = mann_whitney(series.bench.samples_ms, latest.samples_ms).p_value
    comparison.reason = _reason(comparison, branch, latest, settings, metric)
    return comparison


def _within_run(current: list[float], base: list[float], settings: CompareSettings) -> Interval | None:
    """Bootstrap interval of the median ratio of two runs' samples; None when either has no usable samples."""
    try:
        return median_ratio_interval(
            current, base, confidence=settings.confidence, resamples=settings.resamples, seed=len(current)
        )
    except ValueError:
        return None


def _reason(
    comparison: Comparison, branch: str | None, latest: HistoryPoint, settings: CompareSettings, metric: Metric
) -> str:
    assert comparison.ratio is not None and comparison.interval is not None and comparison.current is not None
    assert comparison.baseline is not None and comparison.resolution is not None
    origin = f"{branch}@{latest.commit[:7]}" if latest.commit else f"{branch} (run {latest.run_id[:8]})"
    runs = comparison.history_runs
    over = f" (median of {runs} runs)" if runs > 1 else ""
    low, high = comparison.interval
    text = (
        f"{_value(metric, comparison.current)} vs {_value(metric, comparison.baseline, named=False)} on {origin}{over} "
        f"({(comparison.ratio - 1) * 100:+.1f}%, interval {(low - 1) * 100:+.1f}%..{(high - 1) * 100:+.1f}%, "
        f"threshold {settings.threshold * 100:g}%)"
    )
    if comparison.noise is None:
        text += f"; run-to-run noise unknown ({runs} base runs, {NOISE_RUNS} needed): within-run only"
        if runs < settings.min_history and comparison.verdict == "inconclusive":
            return text + (
                "; a change cannot be told from drift between runs yet: it is judged once the base branch has "
                f"{settings.min_history} runs, or now with interleaved A/B (trtci ab)"
            )
    if comparison.verdict == "inconclusive":
        noise = f"noise {comparison.noise * 100:.1f}% on this runner" if comparison.noise is not None else "noisy"
        text += (
            f"; {noise}: only changes above {comparison.resolution * 100:.0f}% are visible; "
            "measure longer (bench.duration_s) or interleave A and B (trtci ab)"
        )
    return text


def _no_baseline_reason(branch: str | None, key: SeriesKey, other: SeriesKey | None) -> str:
    if branch is None:
        return "no earlier result (no base branch known: pass --base-branch)"
    if other is None:
        return f"no earlier result on {branch}"
    differs = [
        what
        for what, field in (("model file", "model_hash"), ("device", "device_id"), ("options", "options_hash"))
        if getattr(key, field) != getattr(other, field)
    ]
    return f"baseline on {branch} measured with another {'/'.join(differs)}: not compared"


def _missing(
    run: RunResult, base_run: str | None, base_keys: list[SeriesKey], threshold: float, metric: Metric
) -> list[Comparison]:
    """Base series on this run's devices that this run neither measured nor replaced by another provenance."""
    measured = {provenance(s.key) for s in run.series}
    devices = {s.key.device_id for s in run.series}
    missing = []
    for key in base_keys:
        if key.device_id not in devices or provenance(key) in measured:
            continue
        missing.append(
            Comparison(
                series_id=key.id,
                label=key.label,
                verdict="missing",
                metric=metric.column,
                current=None,
                baseline=None,
                ratio=None,
                threshold=threshold,
                baseline_run=base_run,
                reason="measured on the base branch, not in this run",
            )
        )
    return missing


def _value(metric: Metric, value: float, *, named: bool = True) -> str:
    """'median 1.23 ms', 'throughput 812 inferences/s'; without the name: '1.23 ms'."""
    return f"{metric.name} {_ms(value)} {metric.unit}" if named else f"{_ms(value)} {metric.unit}"


def _ms(value: float) -> str:
    """Three significant digits without an exponent: 1.23, 12.3, 123, 1234, 0.0123."""
    if not math.isfinite(value) or value <= 0:
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"

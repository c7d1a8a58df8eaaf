"""Judge each precision's top-1 against the base branch's, paired by validation sample.

Latency drifts with the runner; accuracy on a fixed validation set does not, so one base run is the baseline: the
newest base run at or before the PR's merge-base that checked the same variant (model name, precision,
quantization, backend) on the same device, else on any device (the reason then says so). Every accuracy check
stores one bit per sample (top-1 right against the labels, or without labels equal to FP32's top-1), so the change
is the difference of two hit vectors over the same samples with a paired bootstrap interval, and the sampling
noise of which samples happen to be hard cancels. With `t` the threshold (`compare.accuracy_threshold`, absolute:
0.01 is one percentage point):

- regression: the whole interval is below 0 and the drop is at least t / 2;
- improvement: the whole interval is above 0 and the gain is at least t / 2;
- unchanged: the interval lies within [-t, t];  inconclusive: anything else (too few validation samples);
- new: no base check of this variant with per-sample hits of the same metric on the same validation set (checks
  on another set, or from before trtci kept hits, cannot be paired);
- acknowledged: a regression accepted like a latency regression (compare.acknowledge names the variant, one of its
  series or its id; or the PR label trtci:accept-regression).

The FP32 reference without labels is skipped: it agrees with itself on every sample by definition.
"""

from __future__ import annotations

from trtci.config import CompareSettings
from trtci.results import AccuracyChange, AccuracyResult, RunResult, SeriesKey
from trtci.store.database import Store
from trtci.store.queries import BaseAccuracy, cutoff, latest_accuracy
from trtci.verdict.accuracy import unpack_hits
from trtci.verdict.policy import acknowledge
from trtci.verdict.stats import accuracy_delta_interval

SEED = 0  # the same hits give the same interval in every run
REFERENCE_BACKEND = "onnxruntime"  # where FP32 outputs come from: its FP32 is the reference itself


def compare_accuracy(
    run: RunResult, store: Store, settings: CompareSettings, *, base_branch: str | None = None
) -> list[AccuracyChange]:
    """One AccuracyChange per variant of the run whose accuracy check stored per-sample hits, in run order."""
    branch = base_branch or run.context.base_branch or run.context.branch
    if branch is None:
        return []
    until = cutoff(store, branch, run.context.merge_base)
    variants: dict[tuple, tuple[AccuracyResult, list[SeriesKey]]] = {}  # the check and every series sharing it
    for series in run.series:
        key, accuracy = series.key, series.accuracy
        if accuracy is None or not accuracy.hits:
            continue
        if accuracy.hits_metric == "top1_agreement" and key.precision == "fp32" and key.backend == REFERENCE_BACKEND:
            continue
        variants.setdefault(key.variant, (accuracy, []))[1].append(key)
    changes = []
    for accuracy, keys in variants.values():
        key = keys[0]
        base = latest_accuracy(store, key, accuracy, branch, until=until, exclude_run=run.context.run_id)
        change = judge(key, accuracy, base, branch, settings)
        if until.note:
            change.reason = f"{change.reason}; {until.note}"
        names = [key.variant_label, *(k.label for k in keys), *(k.id for k in keys)]
        acknowledge(change, names, settings, run.context.labels)
        changes.append(change)
    return changes


def judge(
    key: SeriesKey, accuracy: AccuracyResult, base: BaseAccuracy | None, branch: str, settings: CompareSettings
) -> AccuracyChange:
    """The verdict of one variant's hits against a base run's, with its numbers and a reason."""
    hits = unpack_hits(accuracy.hits, accuracy.samples)
    assert hits is not None  # written by accuracy.validate for exactly `samples` samples
    what = "top-1" if accuracy.hits_metric == "top1" else "top-1 agreement with FP32"
    change = AccuracyChange(
        series_id=key.id,
        label=key.variant_label,
        verdict="new",
        metric=accuracy.hits_metric,
        current=float(hits.mean()),
        baseline=None,
        delta=None,
        interval=None,
        threshold=settings.accuracy_threshold,
        samples=accuracy.samples,
    )
    base_hits = unpack_hits(base.hits, base.samples) if base is not None else None
    if base is None or base_hits is None or base_hits.size != hits.size:
        change.reason = (
            f"{what} {change.current:.2%}; no earlier check of this variant on {branch} kept per-sample results "
            "on this validation set"
        )
        return change
    change.baseline_run, change.baseline_commit = base.run_id, base.commit
    delta, low, high = accuracy_delta_interval(
        base_hits, hits, confidence=settings.confidence, resamples=settings.resamples, seed=SEED
    )
    t = settings.accuracy_threshold
    if high < 0 and delta <= -t / 2:
        verdict = "regression"
    elif low > 0 and delta >= t / 2:
        verdict = "improvement"
    elif low >= -t and high <= t:
        verdict = "unchanged"
    else:
        verdict = "inconclusive"
    change.verdict, change.delta, change.interval = verdict, delta, [low, high]
    change.baseline = float(base_hits.mean())
    origin = f"{branch}@{base.commit[:7]}" if base.commit else f"{branch} (run {base.run_id[:8]})"
    flipped = int((hits != base_hits).sum())
    change.reason = (
        f"{what} {change.current:.2%} vs {change.baseline:.2%} on {origin} ({delta * 100:+.2f} pt, interval "
        f"{low * 100:+.2f}..{high * 100:+.2f} pt, threshold {t * 100:g} pt); {flipped} of {accuracy.samples} samples "
        "changed"
    )
    if base.device_id != key.device_id:
        change.reason += "; the base result was measured on another device"
    if verdict == "inconclusive":
        change.reason += (
            f": {accuracy.samples} validation samples cannot tell a change of {t * 100:g} pt from none; "
            "give more validation samples (validation.max_samples) or raise compare.accuracy_threshold"
        )
    return change

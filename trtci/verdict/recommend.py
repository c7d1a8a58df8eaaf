"""Precision advice: per model, device, backend and batch, the fastest precision that passes its accuracy gate.

A lower precision is advised only when it passed its accuracy check against FP32 and is faster than FP32 by
more than MIN_GAIN with confidence: the 95% bootstrap interval of its speedup (FP32's median latency over its
own, same run, same device) lies wholly above 1 + MIN_GAIN. A smaller gain is not worth a precision change:
it is within what a busy runner moves between runs. An INT8 variant that failed accuracy but whose root cause
found nodes to keep in float counts with that mixed model's own A/B-timed speedup (at the batch it was timed
at). When nothing qualifies the advice is FP32, and the reason names what each lower precision lacked:
accuracy, speed, or an accuracy check at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from trtci.results import RunResult, SeriesResult
from trtci.verdict.stats import median_ratio_interval

CONFIDENCE = 0.95
MIN_GAIN = 0.05


@dataclass(frozen=True)
class Recommendation:
    """The precision to ship for one model on one device, backend and batch, and why."""

    model: str
    device_id: str
    device: str | None
    backend: str
    batch: int
    precision: str  # fp32 | fp16 | int8
    quantization: str = ""  # the Q/DQ scheme for int8
    nodes_to_exclude: list[str] = field(default_factory=list)  # nodes kept in float (calibration.nodes_to_exclude)
    speedup_vs_fp32: float | None = None  # FP32's median latency over this one's; None for FP32 itself
    interval: list[float] | None = None  # [low, high] of that speedup, 95%
    series_id: str | None = None  # the advised series; None for FP32 advice without an FP32 series id
    reason: str = ""

    @property
    def label(self) -> str:
        """'int8 (onnxruntime)', 'fp16', 'int8 (tensorrt) with 2 nodes in float'."""
        text = f"{self.precision} ({self.quantization})" if self.quantization else self.precision
        if self.nodes_to_exclude:
            text += f" with {len(self.nodes_to_exclude)} node{'s' if len(self.nodes_to_exclude) != 1 else ''} in float"
        return text


@dataclass
class _Candidate:
    series: SeriesResult
    speedup: float
    interval: list[float]
    nodes: list[str]


def recommend(run: RunResult) -> list[Recommendation]:
    """One Recommendation per model, device, backend and batch whose FP32 series was benchmarked, in run order."""
    names = {d.id: d.name for d in run.devices}
    groups: dict[tuple, list[SeriesResult]] = {}
    for series in run.series:
        key = series.key
        groups.setdefault((key.model, key.model_hash, key.device_id, key.backend, key.batch), []).append(series)
    largest: dict[tuple, int] = {}
    for series in run.series:
        largest[series.key.variant] = max(largest.get(series.key.variant, 0), series.key.batch)
    advice = []
    for members in groups.values():
        fp32 = next((s for s in members if s.key.precision == "fp32" and s.bench is not None), None)
        if fp32 is None:
            continue
        candidates, notes = [], []
        for series in members:
            if series.key.precision == "fp32":
                continue
            found, note = _candidate(series, fp32, largest[series.key.variant])
            notes.append(note)
            if found is not None:
                candidates.append(found)
        advice.append(_advice(fp32, candidates, notes, names.get(fp32.key.device_id)))
    return advice


def _candidate(series: SeriesResult, fp32: SeriesResult, timed_batch: int) -> tuple[_Candidate | None, str]:
    """The series as a candidate, or None; and a few words on it for the reason."""
    name = _name(series)
    if series.error is not None:
        return None, f"{name} did not run"
    accuracy = series.accuracy
    if accuracy is None:
        return None, f"{name} has no accuracy check (add validation data)"
    if not accuracy.passed:
        cause = accuracy.root_cause
        if cause is None or not cause.passed or cause.speedup_interval is None or series.key.batch != timed_batch:
            return None, f"{name} fails accuracy"
        assert cause.speedup_vs_fp32 is not None
        found = _Candidate(series, cause.speedup_vs_fp32, list(cause.speedup_interval), list(cause.nodes_to_exclude))
        return _if_faster(found, f"{name} with {len(cause.nodes_to_exclude)} nodes in float")
    if series.bench is None or fp32.bench is None:
        return None, f"{name} was not timed here"
    try:
        ratio = median_ratio_interval(series.bench.samples_ms, fp32.bench.samples_ms, confidence=CONFIDENCE)
    except ValueError:  # no usable samples (an imported result): no interval, no claim
        return None, f"{name} has no latency samples to compare"
    found = _Candidate(series, 1.0 / ratio.estimate, [1.0 / ratio.high, 1.0 / ratio.low], [])
    return _if_faster(found, name)


def _if_faster(found: _Candidate, name: str) -> tuple[_Candidate | None, str]:
    low, high = found.interval
    if low > 1.0 + MIN_GAIN:
        return found, f"{name} {found.speedup:.2f}x"
    if high < 1.0:
        return None, f"{name} slower ({found.speedup:.2f}x)"
    return None, f"{name} not {MIN_GAIN:.0%} faster with confidence ({found.speedup:.2f}x, {low:.2f}x..{high:.2f}x)"


def _advice(fp32: SeriesResult, candidates: list[_Candidate], notes: list[str], device: str | None) -> Recommendation:
    key = fp32.key
    fp32_advice = Recommendation(key.model, key.device_id, device, key.backend, key.batch, "fp32", series_id=key.id)
    if not candidates:
        why = "; ".join(notes) if notes else "no lower precision was run"
        return replace(fp32_advice, reason=f"FP32: {why}")
    best = max(candidates, key=lambda c: c.speedup)
    low, high = best.interval
    accuracy = best.series.accuracy
    assert accuracy is not None
    passed = "passes accuracy" if accuracy.passed else "passes accuracy with those nodes in float"
    reason = f"{_name(best.series)} {passed}, {best.speedup:.2f}x FP32's speed ({low:.2f}x..{high:.2f}x)"
    others = [n for n in notes if not n.startswith(_name(best.series) + " ")]
    if others:
        reason += f"; {'; '.join(others)}"
    return replace(
        fp32_advice,
        precision=best.series.key.precision,
        quantization=best.series.key.quantization,
        nodes_to_exclude=best.nodes,
        speedup_vs_fp32=best.speedup,
        interval=best.interval,
        series_id=best.series.key.id,
        reason=reason,
    )


def _name(series: SeriesResult) -> str:
    key = series.key
    return f"{key.precision}({key.quantization})" if key.quantization else key.precision

"""Lower precisions against FP32 in the same run: how much faster each is, and which ones are not faster at all.

Both compare medians measured in one run, so they need no history. A precision slower than FP32 is a finding the
report points out and the gate counts, never a failure: it is a reason to drop that precision, not a regression.
"""

from __future__ import annotations

from dataclasses import dataclass

from trtci.results import RunResult, SeriesResult


def _fp32_partner_key(series: SeriesResult) -> tuple:
    key = series.key
    return (key.model, key.model_hash, key.batch, key.backend, key.device_id)


def speedups_vs_fp32(run: RunResult) -> dict[str, float]:
    """For each benchmarked series with a benchmarked FP32 series of the same model, batch, backend and device:
    FP32's median latency over this series' median. Above 1 is faster than FP32, below 1 slower."""
    fp32_median: dict[tuple, float] = {}
    for s in run.series:
        if s.key.precision == "fp32" and s.bench is not None:
            fp32_median.setdefault(_fp32_partner_key(s), s.bench.stats.median)
    speedups = {}
    for s in run.series:
        reference = fp32_median.get(_fp32_partner_key(s))
        if s.bench is None or reference is None or s.bench.stats.median <= 0:
            continue
        speedups[s.key.id] = reference / s.bench.stats.median
    return speedups


@dataclass(frozen=True)
class SlowerThanFp32:
    """A lower precision whose median latency is above FP32's at the same model, batch, backend and device."""

    series: SeriesResult
    speedup: float  # FP32 median / this median, below 1
    median_ms: float
    fp32_median_ms: float


def slower_than_fp32(run: RunResult) -> list[SlowerThanFp32]:
    """The lower-precision series of this run that ran slower than their FP32 counterpart, in run order."""
    speedups = speedups_vs_fp32(run)
    found = []
    for s in run.series:
        speedup = speedups.get(s.key.id)
        if s.key.precision == "fp32" or s.bench is None or speedup is None or speedup >= 1:
            continue
        median = s.bench.stats.median
        found.append(SlowerThanFp32(series=s, speedup=speedup, median_ms=median, fp32_median_ms=median * speedup))
    return found


# The framework each backend is set against when both measured the same model on the same device: TensorRT's
# speedup over ONNX Runtime on the GPU, or over ONNX Runtime on the CPU where that is the only framework there.
FRAMEWORKS = ("onnxruntime-cuda", "onnxruntime")


@dataclass(frozen=True)
class CrossBackend:
    """One backend against the framework on the same device model, model file, precision and batch, in one run."""

    model: str
    precision: str
    batch: int
    device: str  # the device's name: a TensorRT and an ONNX Runtime series on one GPU have different device ids
    backend: str
    framework: str
    median_ms: float
    framework_median_ms: float

    @property
    def speedup(self) -> float:
        """The framework's median over this backend's: above 1, this backend is faster."""
        return self.framework_median_ms / self.median_ms


def cross_backend(run: RunResult) -> list[CrossBackend]:
    """Every benchmarked series set against the framework that measured the same model file, precision and batch on
    a device of the same kind and name in this run (the first of FRAMEWORKS present), in run order."""
    names = {d.id: (d.kind, d.name) for d in run.devices}
    medians: dict[tuple, dict[str, float]] = {}
    for s in run.series:
        if s.bench is None or s.bench.stats.median <= 0:
            continue
        group = (s.key.model, s.key.model_hash, s.key.precision, s.key.batch, names.get(s.key.device_id))
        medians.setdefault(group, {}).setdefault(s.key.backend, s.bench.stats.median)
    found = []
    for (model, _, precision, batch, device), by_backend in medians.items():
        framework = next((name for name in FRAMEWORKS if name in by_backend), None)
        if framework is None or device is None:
            continue
        for backend, median in by_backend.items():
            if backend != framework:
                found.append(
                    CrossBackend(model, precision, batch, device[1], backend, framework, median, by_backend[framework])
                )
    return found

"""Plain result objects passed between stages: bench -> validate -> store -> compare -> render.

Every object here is a dataclass of plain values (str, int, float, bool, list, dict), so it serializes to JSON
with `dataclasses.asdict` and can be rebuilt from a database row. Verdict objects answer pass/fail through
`__bool__` and carry the numbers that led to the verdict, so a report never recomputes a decision.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes, read in chunks so large models do not fill memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-able value, independent of dict order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class DeviceInfo:
    """What a result was measured on. `id` is a hash of the fields that change performance."""

    kind: str  # "cpu" or "gpu"
    name: str  # CPU model name or GPU name, e.g. "AMD EPYC" or "NVIDIA H100 80GB HBM3"
    details: dict[str, Any] = field(default_factory=dict)  # ISA flags, cores, driver, CUDA, ORT version...

    @cached_property
    def id(self) -> str:
        return stable_hash({"kind": self.kind, "name": self.name, "details": self.details})


@dataclass(frozen=True)
class SeriesKey:
    """Identity of one measured series: results with equal keys are comparable across runs."""

    model: str  # the model's name in the config (file stem without a config)
    model_hash: str  # sha256 of the FP32 ONNX file
    precision: str  # fp32 | fp16 | int8
    batch: int
    backend: str  # "onnxruntime", "tensorrt", "tensorrt-rtx"
    device_id: str  # DeviceInfo.id
    quantization: str = ""  # for int8: the Q/DQ scheme, "onnxruntime" (U8S8) or "tensorrt" (S8S8 symmetric)
    options_hash: str = ""  # hash of what else changes the numbers: calibration data, build and session options

    @cached_property
    def id(self) -> str:  # cached: compare and the store look series up by id many times per run
        return stable_hash(asdict(self))

    @property
    def label(self) -> str:
        """Short human name, e.g. 'digits int8(tensorrt) b8 onnxruntime'."""
        return f"{self.model} {self._precision} b{self.batch} {self.backend}"

    @property
    def variant(self) -> tuple[str, str, str, str, str]:
        """What every batch of one accuracy check shares: model, precision, quantization, backend, device."""
        return (self.model, self.precision, self.quantization, self.backend, self.device_id)

    @property
    def variant_label(self) -> str:
        """The label without the batch, e.g. 'digits int8(tensorrt) onnxruntime': every batch of a variant shares
        one accuracy check."""
        return f"{self.model} {self._precision} {self.backend}"

    @property
    def _precision(self) -> str:
        return f"{self.precision}({self.quantization})" if self.quantization else self.precision


@dataclass
class LatencyStats:
    """trtexec-style latency statistics in milliseconds over the timed iterations."""

    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cv: float  # coefficient of variation, std / mean
    iterations: int
    throughput: float  # inferences per second: batch * iterations / timed wall seconds
    unstable: bool  # spread and cv above the configured limit (trtexec warns when its CV is above 2.5%)
    # Robust spread: scaled MAD over the median, a coefficient of variation that a few scheduler outliers do not
    # move (the CV of a series whose p99 is twice its median can read 1000%). None where there are no samples.
    spread: float | None = None


@dataclass(frozen=True)
class Metric:
    """A number a series is judged on, and which way is better."""

    name: str  # as users pick it: --metric median
    column: str  # its column in the benchmarks table, and Comparison.metric
    field: str  # its LatencyStats attribute
    unit: str
    higher_is_better: bool


MEDIAN = Metric("median", "latency_median_ms", "median", "ms", higher_is_better=False)
P99 = Metric("p99", "latency_p99_ms", "p99", "ms", higher_is_better=False)
THROUGHPUT = Metric("throughput", "throughput", "throughput", "inferences/s", higher_is_better=True)
METRICS = {m.name: m for m in (MEDIAN, P99, THROUGHPUT)}


def metric_of(column: str) -> Metric:
    """The metric whose column is `column` (Comparison.metric); the median latency for any other."""
    return next((m for m in METRICS.values() if m.column == column), MEDIAN)


@dataclass
class BenchResult:
    stats: LatencyStats
    samples_ms: list[float]  # raw per-iteration latencies, in the order measured
    warmup_ms: float  # warm-up time actually spent
    duration_s: float  # timed wall time actually spent
    timer: str  # "host" (perf_counter around each call) or "cuda-event"
    extra: dict[str, Any] = field(default_factory=dict)  # GPU compute/H2D/D2H/enqueue stats, telemetry...


@dataclass
class OutputMetrics:
    """Agreement of one output tensor with the FP32 reference over the validation set."""

    name: str
    cosine: float  # mean over samples of the cosine similarity of flattened outputs
    sqnr_db: float  # 10*log10(|ref|^2 / |ref - out|^2), over the whole set; inf when identical
    max_abs_err: float
    max_rel_err: float
    top1_agreement: float | None  # for class-score outputs ([N, C], C > 1): argmax agreement, else None
    nonfinite: int  # count of NaN/Inf values in the output


@dataclass
class NodeSensitivity:
    """One node's share of an INT8 accuracy loss: the final outputs with only its tensor quantized."""

    node: str  # ONNX node name
    op_type: str
    tensor: str  # the quantized tensor charged to it: an activation it computes, or a weight it reads
    sqnr_db: float  # the outputs against FP32 with only this tensor in INT8: lower is worse
    local_sqnr_db: float  # the tensor against its float value, in the full INT8 model
    ratio: float | None = None  # with labels: top-1 / FP32 top-1 with only this tensor in INT8


@dataclass
class RootCause:
    """Why an INT8 variant fails its accuracy gate, and the fewest nodes kept in float that make it pass
    (calibration.nodes_to_exclude). `bool(root_cause)` is whether such a set was found."""

    ranking: list[NodeSensitivity] = field(default_factory=list)  # most harmful first
    nodes_to_exclude: list[str] = field(default_factory=list)  # the passing set, or the last one tried
    passed: bool = False  # the INT8 model with nodes_to_exclude in float passes the gate
    ratio: float | None = None  # that model's top-1 / FP32 top-1 (with labels)
    sqnr_db: float | None = None  # its worst output's SQNR against FP32
    reasons: list[str] = field(default_factory=list)  # why it still fails, when it does
    speedup_vs_fp32: float | None = None  # FP32's latency over its own, where it was timed (A/B rounds)
    speedup_interval: list[float] | None = None  # [low, high]: 95% interval of that speedup
    trials: int = 0  # quantizations the search ran
    note: str = ""  # what limited the search or the timing

    def __bool__(self) -> bool:
        return self.passed


@dataclass
class AccuracyResult:
    """Accuracy of one precision against the FP32 baseline. `bool(result)` is the verdict."""

    passed: bool
    reasons: list[str]  # why it failed, one line each; empty when passed
    samples: int
    outputs: list[OutputMetrics] = field(default_factory=list)
    top1: float | None = None  # with labels: this precision's top-1 accuracy
    top5: float | None = None
    reference_top1: float | None = None  # with labels: FP32's top-1 accuracy
    reference_top5: float | None = None
    ratio: float | None = None  # top1 / reference_top1
    thresholds: dict[str, float | None] = field(default_factory=dict)  # None: a non-finite value, as stored
    # With labels: top1 - reference_top1 and its 95% paired bootstrap interval over the validation samples.
    # Shown beside the ratio; the gate stays the ratio.
    delta: float | None = None
    delta_low: float | None = None
    delta_high: float | None = None
    # Per validation sample, one bit: top-1 equal to the label ("top1") or, without labels, to FP32's top-1 on the
    # first class-score output ("top1_agreement"). Base64 of numpy.packbits; "" when no output holds class scores.
    # With the validation set's hash, this lets a later run judge its own accuracy against this one, paired by sample.
    hits: str = ""
    hits_metric: str = ""
    validation_hash: str = ""
    # A failing INT8 variant's diagnosis (trtci.pipeline.root_cause); None otherwise. Kept in run files, not in
    # the database.
    root_cause: RootCause | None = None

    def __bool__(self) -> bool:
        return self.passed


@dataclass
class SeriesResult:
    """Everything measured for one series in one run. `error` is set when the series failed and others went on."""

    key: SeriesKey
    bench: BenchResult | None = None
    accuracy: AccuracyResult | None = None
    build: dict[str, Any] | None = None  # build facts: build time, engine size, layer and Q/DQ counts...
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and (self.accuracy is None or self.accuracy.passed)


# "acknowledged": a regression accepted with a reason (compare.acknowledge or a PR label); it passes the gate.
VERDICTS = ("regression", "acknowledged", "improvement", "unchanged", "new", "inconclusive", "missing")


@dataclass
class Comparison:
    """A series of this run against its baseline. `bool(comparison)` is False for a regression."""

    series_id: str
    label: str
    verdict: str  # one of VERDICTS
    metric: str  # a Metric's column: "latency_median_ms", "latency_p99_ms" or "throughput"
    current: float | None
    baseline: float | None
    ratio: float | None  # current / baseline; > 1 is slower for latency, faster for throughput
    threshold: float  # relative change that counts, e.g. 0.10
    baseline_run: str | None = None  # run id of the baseline
    baseline_commit: str | None = None
    reason: str = ""
    interval: list[float] | None = None  # [low, high] of the ratio, within-run interval widened by history noise
    noise: float | None = None  # run-to-run relative noise of one run's median, from the base history
    resolution: float | None = None  # smallest relative slowdown this comparison could have flagged
    method: str = ""  # how the verdict was reached, e.g. "bootstrap+history"
    p_value: float | None = None  # Mann-Whitney U of this run's samples against the latest base run's
    history_runs: int = 0  # base runs the baseline is the median of
    confirmed: bool | None = None  # None: not re-measured; else whether a re-measurement held the regression
    acknowledgement: str = ""  # for "acknowledged": who accepted the regression and why
    # What changed since the base for this series (trtci.verdict.attribution): [] nothing, None not attributed
    # (no base series to tell, or attribution turned off); e.g. ["model"], ["onnxruntime 1.17.0 -> 1.18.0"].
    changed: list[str] | None = None
    policy: str = "fail"  # "fail": a regression fails the gate; "warn": reported, it passes (docs/statistics.md)
    machine: float | None = None  # machine speed index the ratio was divided by (canary now / base), if any
    machine_drift: bool = False  # identical inputs measured beyond the noise against history: the machine moved
    base_regressed: str = ""  # where the base branch itself stepped up on this series ("since commit X")
    rounds: int | None = None  # interleaved A/B: rounds timed (a block of A and one of B each)
    calls_per_round: int | None = None  # interleaved A/B: calls of each side in one round's block
    alert: str = "worse"  # "either": an improvement beyond the threshold is flagged too (compare.alert)

    @property
    def worse(self) -> bool:
        """The ratio moved the way that is worse for its metric: slower, or lower throughput."""
        if self.ratio is None:
            return False
        return self.ratio < 1 if metric_of(self.metric).higher_is_better else self.ratio > 1

    @property
    def flagged(self) -> bool:
        """A change the gate counts: a regression, or with alert "either" an improvement too."""
        return self.verdict == "regression" or (self.verdict == "improvement" and self.alert == "either")

    def __bool__(self) -> bool:
        """False when this comparison fails the gate: flagged under the "fail" policy."""
        return not (self.flagged and self.policy == "fail")


@dataclass
class AccuracyChange:
    """A precision's top-1 against the base branch's on the same validation samples. False for a regression.

    One per model variant (precision, quantization, backend, device): every batch of a variant shares its accuracy.
    """

    series_id: str  # the variant's first series in this run
    label: str  # the variant without its batch, e.g. 'digits int8(onnxruntime) onnxruntime'
    verdict: str  # one of VERDICTS
    metric: str  # "top1" (against the labels) or "top1_agreement" (against this run's FP32)
    current: float | None
    baseline: float | None
    delta: float | None  # current - baseline, in accuracy units (0.01 is one percentage point)
    interval: list[float] | None  # [low, high] of delta: paired bootstrap over the validation samples
    threshold: float  # absolute change that counts (compare.accuracy_threshold)
    samples: int
    baseline_run: str | None = None
    baseline_commit: str | None = None
    reason: str = ""
    acknowledgement: str = ""

    def __bool__(self) -> bool:
        return self.verdict != "regression"


@dataclass
class Canary:
    """A fixed reference workload timed at the start and end of a run on one backend and device: the machine's
    speed, so history comparisons can tell a slower machine from a slower model (trtci.verdict.machine)."""

    backend: str
    device_id: str
    start_ms: float  # median latency of the canary at the start of the run
    end_ms: float  # and at its end
    spread: float  # robust relative spread of its calls: IQR / median
    iterations: int
    version: int = 1  # of the canary workload: only canaries of one version are compared
    baseline_ms: float | None = None  # median of the base runs' canaries on this backend and device model
    history_runs: int = 0
    noise: float | None = None  # run-to-run noise of the canary on the base branch
    ratio: float | None = None  # this run's canary (mean of start and end, geometric) over the baseline
    moved: bool = False  # moved more than the noise: history comparisons of this run cannot fail the gate
    reason: str = ""

    @property
    def median_ms(self) -> float:
        """The run's canary: the geometric mean of its start and end."""
        return float((self.start_ms * self.end_ms) ** 0.5)


@dataclass
class RunContext:
    """Where and why a run happened: from GITHUB_* variables in Actions, else from git."""

    run_id: str
    started_at: str  # ISO 8601 UTC
    commit: str | None = None
    branch: str | None = None
    base_branch: str | None = None
    pr_number: int | None = None
    event: str | None = None
    repository: str | None = None
    run_url: str | None = None
    merge_base: str | None = None
    finished_at: str | None = None
    labels: list[str] = field(default_factory=list)  # the pull request's labels when the run started


@dataclass
class RunResult:
    """One whole run: what was measured, how it compares, and which of its results failed, each by its own
    verdict. `bool(run)` is True when none did; the merge gate, which counts these failures under --fail-on,
    is trtci.verdict.gate."""

    context: RunContext
    devices: list[DeviceInfo]
    series: list[SeriesResult]
    comparisons: list[Comparison] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    accuracy_changes: list[AccuracyChange] = field(default_factory=list)
    canaries: list[Canary] = field(default_factory=list)

    @property
    def accuracy_failures(self) -> list[SeriesResult]:
        """Series that failed their accuracy check or did not run."""
        return [s for s in self.series if not s.passed]

    @property
    def regressions(self) -> list[Comparison]:
        """Regressions that fail the gate (their policy is "fail")."""
        return [c for c in self.comparisons if not c and c.verdict == "regression"]

    @property
    def flagged_improvements(self) -> list[Comparison]:
        """Improvements beyond the threshold that fail the gate (`compare.alert: either`)."""
        return [c for c in self.comparisons if not c and c.verdict == "improvement"]

    @property
    def warned(self) -> list[Comparison]:
        """Flagged changes their policy only reports: post-merge runs, environment changes (docs/statistics.md)."""
        return [c for c in self.comparisons if c.flagged and c]

    @property
    def accuracy_regressions(self) -> list[AccuracyChange]:
        return [c for c in self.accuracy_changes if not c]

    @property
    def passed(self) -> bool:
        return not self.accuracy_failures and all(self.comparisons) and not self.accuracy_regressions

    def __bool__(self) -> bool:
        return self.passed

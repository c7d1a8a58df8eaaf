"""The run as JSON for machines, and the plain derivations the report shares with it.

`summary_dict` is the format documented in docs/json-summary.md: one object a later job, a dashboard or `jq`
can read. Raw latency samples are not in it; they stay in the results database.

The derivations here only combine verdicts the earlier stages already made (each series' accuracy verdict and
its comparison with the base branch) and compare medians measured in the same run, so the JSON summary, the
markdown report and the console table all say the same thing.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trtci import __version__
from trtci.errors import ConfigError
from trtci.results import AccuracyChange, Comparison, RunResult, SeriesResult

SCHEMA_VERSION = 1

# Each series' verdict, worst first. "error" and "fail-accuracy" and "regression" fail the gate; "acknowledged"
# is a regression accepted with a reason and passes.
SERIES_VERDICTS = (
    "error",
    "fail-accuracy",
    "accuracy-regression",
    "regression",
    "acknowledged",
    "inconclusive",
    "improvement",
    "unchanged",
    "new",
    "pass",
)
FAILING_VERDICTS = ("error", "fail-accuracy", "accuracy-regression", "regression")

LATENCY_KEYS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")


def series_verdict(
    series: SeriesResult, comparison: Comparison | None, accuracy_change: AccuracyChange | None = None
) -> str:
    """One word for a series, combining its error, accuracy verdict, accuracy change and comparison
    (docs/json-summary.md).

    An error outranks an accuracy failure, which outranks an accuracy regression against the base branch, which
    outranks the comparison's verdict; a series with none of these is "pass".
    """
    if series.error is not None:
        return "error"
    if series.accuracy is not None and not series.accuracy.passed:
        return "fail-accuracy"
    if accuracy_change is not None and accuracy_change.verdict == "regression":
        return "accuracy-regression"
    if comparison is not None:
        return comparison.verdict
    return "pass"


def comparisons_by_series(run: RunResult) -> dict[str, Comparison]:
    """The run's comparisons keyed by series id (the last one wins if a series was compared twice)."""
    return {c.series_id: c for c in run.comparisons}


def accuracy_changes_by_series(run: RunResult) -> dict[str, AccuracyChange]:
    """Each series' accuracy change: the one of its variant (every batch shares one accuracy check)."""
    keys = {s.key.id: s.key for s in run.series}
    by_variant = {keys[c.series_id].variant: c for c in run.accuracy_changes if c.series_id in keys}
    return {s.key.id: by_variant[s.key.variant] for s in run.series if s.key.variant in by_variant}


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


@dataclass(frozen=True)
class RunVerdict:
    """The gate's verdict with the counts behind it. `bool(verdict)` is `run.passed`."""

    passed: bool
    series: int
    devices: int
    regressions: int
    acknowledged: int  # regressions accepted with a reason (compare.acknowledge or a PR label): they pass
    accuracy_failures: int  # series whose accuracy check failed (errors are counted apart)
    errors: int
    improvements: int
    new: int
    missing: int  # series on the base branch that this run did not measure
    slower_than_fp32: int
    accuracy_regressions: int = 0  # variants whose top-1 fell against the base branch's (not acknowledged)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def words(self) -> str:
        """'pass', or what failed: '2 regressions, 1 accuracy failure, 1 error'."""
        if self.passed:
            return "pass"
        counts = [
            (self.regressions, "regression", "regressions"),
            (self.accuracy_regressions, "accuracy regression", "accuracy regressions"),
            (self.accuracy_failures, "accuracy failure", "accuracy failures"),
            (self.errors, "error", "errors"),
        ]
        return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts if n)


def run_verdict(run: RunResult) -> RunVerdict:
    """Count what the run's verdicts say; `passed` is the run's own verdict, never recomputed."""
    verdicts = [c.verdict for c in run.comparisons]
    return RunVerdict(
        passed=run.passed,
        series=len(run.series),
        devices=len({s.key.device_id for s in run.series} | {d.id for d in run.devices}),
        regressions=len(run.regressions),
        acknowledged=verdicts.count("acknowledged"),
        accuracy_failures=sum(1 for s in run.series if s.error is None and not s.passed),
        errors=sum(1 for s in run.series if s.error is not None),
        improvements=verdicts.count("improvement"),
        new=verdicts.count("new"),
        missing=verdicts.count("missing"),
        slower_than_fp32=len(slower_than_fp32(run)),
        accuracy_regressions=len(run.accuracy_regressions),
    )


def json_safe(value: Any) -> Any:
    """`value` with only JSON types and finite numbers: inf and nan become None, tuples lists, other objects
    their str(). Dict keys become strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


def _result(
    series: SeriesResult,
    comparison: Comparison | None,
    change: AccuracyChange | None,
    device_names: dict,
    speedups: dict,
) -> dict:
    key = series.key
    bench = series.bench
    stats = bench.stats if bench is not None else None
    return {
        "series_id": key.id,
        "label": key.label,
        "model": key.model,
        "model_hash": key.model_hash,
        "precision": key.precision,
        "quantization": key.quantization or None,
        "batch": key.batch,
        "backend": key.backend,
        "device": device_names.get(key.device_id),
        "device_id": key.device_id,
        "options_hash": key.options_hash,
        "latency_ms": {k: getattr(stats, k) for k in LATENCY_KEYS} if stats is not None else None,
        "throughput": stats.throughput if stats is not None else None,
        "cv": stats.cv if stats is not None else None,
        "unstable": stats.unstable if stats is not None else None,
        "iterations": stats.iterations if stats is not None else None,
        "timer": bench.timer if bench is not None else None,
        "bench_extra": bench.extra if bench is not None else None,
        "speedup_vs_fp32": speedups.get(key.id),
        "accuracy": _accuracy(series),
        "comparison": comparison.verdict if comparison is not None else None,
        "accuracy_change": change.verdict if change is not None else None,
        "verdict": series_verdict(series, comparison, change),
        "error": series.error,
        "build": series.build,
    }


def _accuracy(series: SeriesResult) -> dict | None:
    """The accuracy check without its per-sample hits: like raw latency samples, those stay in the database."""
    if series.accuracy is None:
        return None
    return {k: v for k, v in asdict(series.accuracy).items() if k != "hits"}


def summary_dict(run: RunResult) -> dict:
    """The run as a JSON-able dict (schema 1, docs/json-summary.md) with finite numbers only: inf/nan -> None."""
    comparisons = comparisons_by_series(run)
    changes = accuracy_changes_by_series(run)
    device_names = {d.id: d.name for d in run.devices}
    speedups = speedups_vs_fp32(run)
    verdict = run_verdict(run)
    summary = {
        "trtci_version": __version__,
        "schema": SCHEMA_VERSION,
        "run": asdict(run.context),
        "passed": run.passed,
        "counts": {k: v for k, v in asdict(verdict).items() if k != "passed"},
        "devices": [{"id": d.id, "kind": d.kind, "name": d.name, "details": d.details} for d in run.devices],
        "results": [
            _result(s, comparisons.get(s.key.id), changes.get(s.key.id), device_names, speedups) for s in run.series
        ],
        "comparisons": [asdict(c) for c in run.comparisons],
        "accuracy_changes": [asdict(c) for c in run.accuracy_changes],
        "warnings": list(run.warnings),
    }
    return json_safe(summary)


def write_summary(run: RunResult, path: Path) -> None:
    """Write `summary_dict(run)` as JSON to `path`, atomically: readers see the old file or the whole new one.

    Creates missing parent directories. Raises ConfigError naming `path` when it cannot be written.
    """
    path = Path(path)
    text = json.dumps(summary_dict(run), indent=2, allow_nan=False) + "\n"
    temp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8"
        ) as temp:
            temp_name = temp.name
            # mkstemp creates 0600; a summary is meant to be read by other users and jobs.
            os.fchmod(temp.fileno(), 0o644)
            temp.write(text)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except OSError as e:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
        reason = e.strerror or str(e)
        raise ConfigError(f"{path}: cannot write the JSON summary ({reason}); pass a writable file path") from e

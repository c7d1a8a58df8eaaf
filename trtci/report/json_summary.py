"""The run as JSON for machines: the JSON summary.

`summary_dict` is the format documented in docs/json-summary.md: one object a later job, a dashboard or `jq`
can read. Raw latency samples are not in it; they stay in the results database. Its verdicts (`passed`,
`counts`, each result's `verdict`) are the gate's (trtci.verdict.gate), so the JSON summary, the markdown
report and the console table all say the same thing.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trtci import __version__
from trtci.errors import ConfigError
from trtci.results import AccuracyChange, Comparison, RunResult, SeriesResult
from trtci.verdict.gate import accuracy_changes_by_series, comparisons_by_series, judge
from trtci.verdict.recommend import recommend
from trtci.verdict.speedup import cross_backend, speedups_vs_fp32

SCHEMA_VERSION = 1

LATENCY_KEYS = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")


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
    verdict: str,
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
        "spread": stats.spread if stats is not None else None,
        "unstable": stats.unstable if stats is not None else None,
        "iterations": stats.iterations if stats is not None else None,
        "timer": bench.timer if bench is not None else None,
        "bench_extra": bench.extra if bench is not None else None,
        "speedup_vs_fp32": speedups.get(key.id),
        "accuracy": _accuracy(series),
        "comparison": comparison.verdict if comparison is not None else None,
        "accuracy_change": change.verdict if change is not None else None,
        "verdict": verdict,
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
    verdict = judge(run)
    summary = {
        "trtci_version": __version__,
        "schema": SCHEMA_VERSION,
        "run": asdict(run.context),
        "passed": verdict.passed,
        "counts": verdict.counts,
        "devices": [{"id": d.id, "kind": d.kind, "name": d.name, "details": d.details} for d in run.devices],
        "results": [
            _result(s, comparisons.get(s.key.id), changes.get(s.key.id), label, device_names, speedups)
            for s, label in zip(run.series, verdict.labels)
        ],
        "comparisons": [asdict(c) for c in run.comparisons],
        "accuracy_changes": [asdict(c) for c in run.accuracy_changes],
        "recommendation": [{**asdict(r), "label": r.label} for r in recommend(run)],
        "cross_backend": [{**asdict(c), "speedup": c.speedup} for c in cross_backend(run)],
        "warnings": list(run.warnings),
        "canaries": [asdict(c) for c in run.canaries],
    }
    return json_safe(summary)


def write_summary(run: RunResult, path: Path, more: Mapping[str, Any] | None = None) -> None:
    """Write `summary_dict(run)`, then `more`'s keys (`trtci merge` adds its legs), as JSON to `path`,
    atomically: readers see the old file or the whole new one.

    Creates missing parent directories. Raises ConfigError naming `path` when it cannot be written.
    """
    path = Path(path)
    data = {**summary_dict(run), **json_safe(dict(more or {}))}
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
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

"""A RunResult as table rows and back: the INSERTs that record a run and the SELECTs that rebuild it.

Store.record_run and Store.load_run call these inside the store's transaction and connection; the tables and
columns are documented in docs/schema.md.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import asdict, fields
from typing import Any

import sqlite_utils

from trtci import __version__
from trtci.errors import StoreError
from trtci.results import (
    AccuracyChange,
    AccuracyResult,
    BenchResult,
    Canary,
    Comparison,
    DeviceInfo,
    LatencyStats,
    OutputMetrics,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
)
from trtci.store.samples import decode_stored_samples, encode_for_store

# LatencyStats field -> benchmarks column. Times carry their unit in the column name.
LATENCY_COLUMNS = {
    "min": "latency_min_ms",
    "mean": "latency_mean_ms",
    "median": "latency_median_ms",
    "p90": "latency_p90_ms",
    "p95": "latency_p95_ms",
    "p99": "latency_p99_ms",
    "max": "latency_max_ms",
    "std": "latency_std_ms",
    "cv": "cv",
    "iterations": "iterations",
    "throughput": "throughput",
    "unstable": "unstable",
    "spread": "spread",  # m004
}

_ACCURACY_EXTRA_COLUMNS = ("delta", "delta_low", "delta_high", "hits", "hits_metric", "validation_hash")  # m003

_COMPARISON_COLUMNS = (
    "series_id",
    "label",
    "verdict",
    "metric",
    "current",
    "baseline",
    "ratio",
    "threshold",
    "baseline_run",
    "baseline_commit",
    "reason",
)

_ACCURACY_CHANGE_COLUMNS = tuple(f.name for f in fields(AccuracyChange) if f.name != "interval")
_CANARY_FIELDS = tuple(f.name for f in fields(Canary) if f.name != "moved")  # m004: one column each


def insert_run(conn: sqlite3.Connection, run: RunResult) -> None:
    """INSERT every row of `run`; the caller holds the transaction that makes them land together."""
    context = run.context
    _insert(
        conn,
        "runs",
        {
            "id": context.run_id,
            "commit": context.commit,
            "branch": context.branch,
            "base_branch": context.base_branch,
            "pr_number": context.pr_number,
            "event": context.event,
            "repository": context.repository,
            "run_url": context.run_url,
            "merge_base": context.merge_base,
            "started_at": context.started_at,
            "finished_at": context.finished_at,
            "trtci_version": __version__,
            "passed": run.passed,
            "warnings": _json(run.warnings),
        },
    )
    for position, device in enumerate(run.devices):
        _insert(
            conn,
            "devices",
            {"id": device.id, "kind": device.kind, "name": device.name, "details": _json(device.details)},
            or_ignore=True,
        )
        _insert(
            conn,
            "run_devices",
            {"run_id": context.run_id, "device_id": device.id, "position": position},
            or_ignore=True,
        )
    for position, series in enumerate(run.series):
        _insert_series(conn, context.run_id, series, position)
    for comparison in run.comparisons:
        _insert(
            conn,
            "comparisons",
            {
                "run_id": context.run_id,
                "series_id": comparison.series_id,
                "label": comparison.label,
                "verdict": comparison.verdict,
                "metric": comparison.metric,
                "current": comparison.current,
                "baseline": comparison.baseline,
                "ratio": comparison.ratio,
                "threshold": comparison.threshold,
                "baseline_run": comparison.baseline_run,
                "baseline_commit": comparison.baseline_commit,
                "reason": comparison.reason,
                "extra": _json(_comparison_extra(comparison)),
            },
        )
    for change in run.accuracy_changes:
        row = {name: getattr(change, name) for name in _ACCURACY_CHANGE_COLUMNS}
        low, high = change.interval if change.interval is not None else (None, None)
        _insert(conn, "accuracy_changes", {"run_id": context.run_id, **row, "delta_low": low, "delta_high": high})
    for canary in run.canaries:  # m004
        _insert(conn, "canaries", {"run_id": context.run_id, **asdict(canary), "median_ms": canary.median_ms})


def _insert_series(conn: sqlite3.Connection, run_id: str, series: SeriesResult, position: int) -> None:
    key = series.key
    _insert(
        conn,
        "series",
        {
            "id": key.id,
            "model": key.model,
            "model_hash": key.model_hash,
            "precision": key.precision,
            "quantization": key.quantization,
            "batch": key.batch,
            "backend": key.backend,
            "device_id": key.device_id,
            "options_hash": key.options_hash,
        },
        or_ignore=True,
    )
    ids = {"run_id": run_id, "series_id": key.id}
    _insert(conn, "run_series", {**ids, "position": position})
    if series.bench is not None:
        bench = series.bench
        stats = {column: getattr(bench.stats, field) for field, column in LATENCY_COLUMNS.items()}
        blob, encoding = encode_for_store(bench.samples_ms)
        _insert(
            conn,
            "benchmarks",
            {
                **ids,
                **stats,
                "warmup_ms": bench.warmup_ms,
                "duration_s": bench.duration_s,
                "timer": bench.timer,
                "samples_ms": blob,
                "samples_encoding": encoding,
                "samples_count": len(bench.samples_ms),
                "extra": _json(bench.extra),
            },
        )
    if series.accuracy is not None:
        accuracy = series.accuracy
        _insert(
            conn,
            "accuracy",
            {
                **ids,
                "passed": accuracy.passed,
                "reasons": _json(accuracy.reasons),
                "samples": accuracy.samples,
                "top1": accuracy.top1,
                "top5": accuracy.top5,
                "reference_top1": accuracy.reference_top1,
                "reference_top5": accuracy.reference_top5,
                "ratio": accuracy.ratio,
                "thresholds": _json(accuracy.thresholds),
                **{name: getattr(accuracy, name) for name in _ACCURACY_EXTRA_COLUMNS},
            },
        )
        for output in accuracy.outputs:
            _insert(
                conn,
                "accuracy_outputs",
                {
                    **ids,
                    "name": output.name,
                    "cosine": output.cosine,
                    "sqnr_db": output.sqnr_db if math.isfinite(output.sqnr_db) else None,
                    "max_abs_err": output.max_abs_err,
                    "max_rel_err": output.max_rel_err,
                    "top1_agreement": output.top1_agreement,
                    "nonfinite": output.nonfinite,
                },
            )
    if series.build is not None:
        _insert(conn, "builds", {**ids, "facts": _json(series.build)})
    if series.error is not None:
        _insert(conn, "series_errors", {**ids, "error": series.error})


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any], *, or_ignore: bool = False) -> None:
    # Plain INSERTs on the connection, so the one transaction of record_run holds every row.
    columns = ", ".join(f'"{name}"' for name in row)
    placeholders = ", ".join("?" for _ in row)
    verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
    conn.execute(f"{verb} INTO {table} ({columns}) VALUES ({placeholders})", list(row.values()))


def load_run(db: sqlite_utils.Database, run_id: str) -> RunResult | None:
    """The run as `insert_run` got it, rebuilt from the tables; None when there is no such run."""
    row = db.execute("SELECT * FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        return None
    run_row = dict(zip(_columns(db, "runs"), row))
    columns = {f.name: "id" if f.name == "run_id" else f.name for f in fields(RunContext)}
    # A run's PR labels are not stored: what they decided is in its comparisons (verdict, acknowledgement).
    context = RunContext(**{name: run_row[column] for name, column in columns.items() if column in run_row})
    devices = [
        DeviceInfo(kind=d["kind"], name=d["name"], details=json_column(d["details"], dict, "devices.details"))
        for d in db.query(
            """SELECT devices.* FROM run_devices JOIN devices ON devices.id = run_devices.device_id
               WHERE run_devices.run_id = ? ORDER BY run_devices.position, run_devices.rowid""",
            [run_id],
        )
    ]
    series = [
        _load_series(db, run_id, key_row)
        for key_row in db.query(
            """SELECT series.* FROM run_series JOIN series ON series.id = run_series.series_id
           WHERE run_series.run_id = ? ORDER BY run_series.position, run_series.rowid""",
            [run_id],
        )
    ]
    comparisons = [
        Comparison(
            **{name: c[name] for name in _COMPARISON_COLUMNS},
            **{
                k: v
                for k, v in json_column(c["extra"], dict, "comparisons.extra").items()
                if k in _comparison_extra_fields()
            },
        )
        for c in db.query("SELECT * FROM comparisons WHERE run_id = ? ORDER BY rowid", [run_id])
    ]
    accuracy_changes = [
        AccuracyChange(
            **{name: row[name] for name in _ACCURACY_CHANGE_COLUMNS},
            interval=[row["delta_low"], row["delta_high"]] if row["delta_low"] is not None else None,
        )
        for row in db.query("SELECT * FROM accuracy_changes WHERE run_id = ? ORDER BY rowid", [run_id])
    ]
    canaries = [
        Canary(**{name: row[name] for name in _CANARY_FIELDS}, moved=bool(row["moved"]))
        for row in db.query("SELECT * FROM canaries WHERE run_id = ? ORDER BY rowid", [run_id])
    ]
    return RunResult(
        context=context,
        devices=devices,
        series=series,
        comparisons=comparisons,
        warnings=json_column(run_row["warnings"], list, "runs.warnings"),
        accuracy_changes=accuracy_changes,
        canaries=canaries,
    )


def _load_series(db: sqlite_utils.Database, run_id: str, key_row: dict[str, Any]) -> SeriesResult:
    key = SeriesKey(**{f.name: key_row[f.name] for f in fields(SeriesKey)})
    ids = [run_id, key_row["id"]]  # the stored id: rows are keyed by it even if hashing ever changes
    where = "WHERE run_id = ? AND series_id = ?"
    result = SeriesResult(key=key)
    for b in db.query(f"SELECT * FROM benchmarks {where}", ids):
        stats = LatencyStats(**{name: b[column] for name, column in LATENCY_COLUMNS.items()})
        stats.unstable = bool(stats.unstable)
        result.bench = BenchResult(
            stats=stats,
            samples_ms=decode_stored_samples(b["samples_ms"], b["samples_encoding"]),
            warmup_ms=b["warmup_ms"],
            duration_s=b["duration_s"],
            timer=b["timer"],
            extra=json_column(b["extra"], dict, "benchmarks.extra"),
        )
    for a in db.query(f"SELECT * FROM accuracy {where}", ids):
        outputs = [
            OutputMetrics(
                name=o["name"],
                cosine=o["cosine"],
                sqnr_db=o["sqnr_db"] if o["sqnr_db"] is not None else math.inf,
                max_abs_err=o["max_abs_err"],
                max_rel_err=o["max_rel_err"],
                top1_agreement=o["top1_agreement"],
                nonfinite=o["nonfinite"],
            )
            for o in db.query(f"SELECT * FROM accuracy_outputs {where} ORDER BY rowid", ids)
        ]
        result.accuracy = AccuracyResult(
            passed=bool(a["passed"]),
            reasons=json_column(a["reasons"], list, "accuracy.reasons"),
            samples=a["samples"],
            outputs=outputs,
            top1=a["top1"],
            top5=a["top5"],
            reference_top1=a["reference_top1"],
            reference_top5=a["reference_top5"],
            ratio=a["ratio"],
            thresholds=json_column(a["thresholds"], dict, "accuracy.thresholds"),
            **{name: a[name] for name in _ACCURACY_EXTRA_COLUMNS},
        )
    for build in db.query(f"SELECT facts FROM builds {where}", ids):
        result.build = json_column(build["facts"], dict, "builds.facts")
    for error in db.query(f"SELECT error FROM series_errors {where}", ids):
        result.error = error["error"]
    return result


def json_column(value: Any, kind: type, column: str) -> Any:
    """A JSON column's value, which must be a `kind` (list or dict). Raises StoreError naming the column when the
    text is not that: someone edited the file by hand, or it is damaged."""
    try:
        data = json.loads(value)
    except (TypeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, kind):
        raise StoreError(f"column {column} is damaged (not a JSON {kind.__name__}); restore the database from a copy")
    return data


def _columns(db: sqlite_utils.Database, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _comparison_extra_fields() -> set[str]:
    return {f.name for f in fields(Comparison)} - set(_COMPARISON_COLUMNS)


def _comparison_extra(comparison: Comparison) -> dict[str, Any]:
    """Comparison fields without a column of their own (added after m001), kept as JSON in `extra`."""
    data = asdict(comparison)
    return {name: data[name] for name in sorted(_comparison_extra_fields())}


def _json(value: Any) -> str:
    """Compact JSON that SQLite's JSON functions accept: Infinity and NaN are not JSON, so they become null."""
    return json.dumps(_finite(value), sort_keys=True, separators=(",", ":"), default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value

"""The results database: one SQLite file that every run appends to, documented in docs/schema.md.

The schema is owned by named migrations (`m001_initial`, ...) recorded in `_trtci_migrations`, the way
simonw/llm migrates its logs database: opening a file applies whatever this version knows and the file lacks.
A run is written in one transaction, so a failed or interrupted write leaves no row of that run behind.
"""

from __future__ import annotations

import datetime
import json
import math
import sqlite3
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from trtci import __version__
from trtci.errors import StoreError
from trtci.results import (
    AccuracyChange,
    AccuracyResult,
    BenchResult,
    Comparison,
    DeviceInfo,
    LatencyStats,
    OutputMetrics,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
)

MIGRATIONS_TABLE = "_trtci_migrations"

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
}

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register a schema step. Steps run once each, in the order they are defined; never rename one."""
    MIGRATIONS.append(fn)
    return fn


def _execute_all(db: sqlite_utils.Database, statements: tuple[str, ...]) -> None:
    for statement in statements:
        db.execute(statement)


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    _execute_all(db, _M001_STATEMENTS)


_M001_STATEMENTS = (
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        "commit" TEXT,
        branch TEXT,
        base_branch TEXT,
        pr_number INTEGER,
        event TEXT,
        repository TEXT,
        run_url TEXT,
        merge_base TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        trtci_version TEXT NOT NULL,
        passed INTEGER NOT NULL,
        warnings TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX idx_runs_branch_started_at ON runs (branch, started_at)",
    """CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        details TEXT NOT NULL
    )""",
    """CREATE TABLE series (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        model_hash TEXT NOT NULL,
        precision TEXT NOT NULL,
        quantization TEXT NOT NULL,
        batch INTEGER NOT NULL,
        backend TEXT NOT NULL,
        device_id TEXT NOT NULL REFERENCES devices (id),
        options_hash TEXT NOT NULL
    )""",
    """CREATE TABLE benchmarks (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        latency_min_ms REAL,
        latency_mean_ms REAL,
        latency_median_ms REAL,
        latency_p90_ms REAL,
        latency_p95_ms REAL,
        latency_p99_ms REAL,
        latency_max_ms REAL,
        latency_std_ms REAL,
        cv REAL,
        iterations INTEGER NOT NULL,
        throughput REAL,
        unstable INTEGER NOT NULL,
        warmup_ms REAL,
        duration_s REAL,
        timer TEXT NOT NULL,
        samples_ms BLOB NOT NULL,
        extra TEXT NOT NULL,
        PRIMARY KEY (run_id, series_id)
    )""",
    "CREATE INDEX idx_benchmarks_series_run ON benchmarks (series_id, run_id)",
    """CREATE TABLE accuracy (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        passed INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        samples INTEGER NOT NULL,
        top1 REAL,
        top5 REAL,
        reference_top1 REAL,
        reference_top5 REAL,
        ratio REAL,
        thresholds TEXT NOT NULL,
        PRIMARY KEY (run_id, series_id)
    )""",
    """CREATE TABLE accuracy_outputs (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        name TEXT NOT NULL,
        cosine REAL,
        sqnr_db REAL,
        max_abs_err REAL,
        max_rel_err REAL,
        top1_agreement REAL,
        nonfinite INTEGER NOT NULL,
        PRIMARY KEY (run_id, series_id, name)
    )""",
    """CREATE TABLE builds (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        facts TEXT NOT NULL,
        PRIMARY KEY (run_id, series_id)
    )""",
    """CREATE TABLE series_errors (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        error TEXT NOT NULL,
        PRIMARY KEY (run_id, series_id)
    )""",
    """CREATE TABLE comparisons (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        label TEXT NOT NULL,
        verdict TEXT NOT NULL,
        metric TEXT NOT NULL,
        current REAL,
        baseline REAL,
        ratio REAL,
        threshold REAL NOT NULL,
        baseline_run TEXT REFERENCES runs (id),
        baseline_commit TEXT,
        reason TEXT NOT NULL,
        PRIMARY KEY (run_id, series_id)
    )""",
)


@migration
def m002_compact_samples_and_run_members(db: sqlite_utils.Database) -> None:
    _execute_all(db, _M002_STATEMENTS)


_M002_STATEMENTS = (
    # Rows written before m002 hold float32 samples; the column says how to read each row's blob.
    "ALTER TABLE benchmarks ADD COLUMN samples_encoding TEXT NOT NULL DEFAULT 'float32'",
    "ALTER TABLE benchmarks ADD COLUMN samples_kept TEXT NOT NULL DEFAULT 'all'",
    "ALTER TABLE benchmarks ADD COLUMN samples_count INTEGER",
    "ALTER TABLE comparisons ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'",
    """CREATE TABLE run_series (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        position INTEGER,
        PRIMARY KEY (run_id, series_id)
    )""",
    """CREATE TABLE run_devices (
        run_id TEXT NOT NULL REFERENCES runs (id),
        device_id TEXT NOT NULL REFERENCES devices (id),
        position INTEGER,
        PRIMARY KEY (run_id, device_id)
    )""",
    """INSERT OR IGNORE INTO run_series (run_id, series_id)
        SELECT run_id, series_id FROM benchmarks UNION SELECT run_id, series_id FROM accuracy
        UNION SELECT run_id, series_id FROM builds UNION SELECT run_id, series_id FROM series_errors""",
    """INSERT OR IGNORE INTO run_devices (run_id, device_id)
        SELECT DISTINCT run_series.run_id, series.device_id
        FROM run_series JOIN series ON series.id = run_series.series_id""",
    "CREATE INDEX idx_runs_started_at ON runs (started_at)",
)


@migration
def m003_accuracy_hits_and_changes(db: sqlite_utils.Database) -> None:
    _execute_all(db, _M003_STATEMENTS)


_M003_STATEMENTS = (
    # The accuracy delta vs FP32 with its interval, and one bit per validation sample (accuracy.pack_hits), so a
    # later run can judge its accuracy against this one, paired by sample, on the same validation set.
    "ALTER TABLE accuracy ADD COLUMN delta REAL",
    "ALTER TABLE accuracy ADD COLUMN delta_low REAL",
    "ALTER TABLE accuracy ADD COLUMN delta_high REAL",
    "ALTER TABLE accuracy ADD COLUMN hits TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE accuracy ADD COLUMN hits_metric TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE accuracy ADD COLUMN validation_hash TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE accuracy_changes (
        run_id TEXT NOT NULL REFERENCES runs (id),
        series_id TEXT NOT NULL REFERENCES series (id),
        label TEXT NOT NULL,
        verdict TEXT NOT NULL,
        metric TEXT NOT NULL,
        current REAL,
        baseline REAL,
        delta REAL,
        delta_low REAL,
        delta_high REAL,
        threshold REAL NOT NULL,
        samples INTEGER NOT NULL,
        baseline_run TEXT REFERENCES runs (id),
        baseline_commit TEXT,
        reason TEXT NOT NULL,
        acknowledgement TEXT NOT NULL,
        PRIMARY KEY (run_id, series_id)
    )""",
)


def encode_samples(samples_ms: list[float]) -> bytes:
    """Samples as float32 little-endian, 4 bytes each: about a fifth of their JSON size, ~7 significant digits."""
    return struct.pack(f"<{len(samples_ms)}f", *samples_ms)


def decode_samples(blob: bytes) -> list[float]:
    """The inverse of `encode_samples`."""
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


SAMPLES_FLOAT32 = "float32"
SAMPLES_TICKS = "ticks1"
_TICKS_HEADER = struct.Struct("<2sbBIq")  # magic, tick exponent (tick = 10**exp ms), width, count, base tick
_TICKS_MAGIC = b"tq"
_FINEST_TICK_EXP = -4  # 0.1 microsecond: finer than any timer trtci reads


def encode_samples_ticks(samples_ms: list[float]) -> bytes:
    """Samples in measured order as integer ticks, at most 1/10,000 of the median and never finer than 0.1 us.

    Ticks are stored as offsets from the smallest one, split into byte planes and deflated: noise in the low
    byte, near-constant high bytes. 10,000 samples with 2% noise take about 14 KB instead of 40 KB as float32.
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        return _TICKS_HEADER.pack(_TICKS_MAGIC, _FINEST_TICK_EXP, 1, 0, 0)
    median = float(np.median(values))
    exponent = max(_FINEST_TICK_EXP, math.floor(math.log10(median * 1e-4))) if median > 0 else _FINEST_TICK_EXP
    ticks = np.round(values / 10.0**exponent).astype(np.int64)
    base = int(ticks.min())
    offsets = ticks - base
    width = next(w for w in (1, 2, 4, 8) if int(offsets.max()) < 256**w)
    planes = offsets.astype(f"<u{width}").view(np.uint8).reshape(-1, width).T.tobytes()
    return _TICKS_HEADER.pack(_TICKS_MAGIC, exponent, width, values.size, base) + zlib.compress(planes, 6)


def decode_samples_ticks(blob: bytes) -> list[float]:
    """The inverse of `encode_samples_ticks`, to the tick (half a tick at most from what was measured)."""
    magic, exponent, width, count, base = _TICKS_HEADER.unpack_from(blob)
    if magic != _TICKS_MAGIC:
        raise StoreError("latency samples in an unknown encoding; upgrade trtci")
    if count == 0:
        return []
    planes = np.frombuffer(zlib.decompress(blob[_TICKS_HEADER.size :]), dtype=np.uint8).reshape(width, count)
    offsets = planes.T.copy().view(f"<u{width}").reshape(count).astype(np.int64)
    return ((offsets + base) * 10.0**exponent).tolist()


def _encode_for_store(samples_ms: list[float]) -> tuple[bytes, str]:
    """The compact encoding when every sample is a finite non-negative time, else float32 (kept exact)."""
    if all(math.isfinite(x) and x >= 0 for x in samples_ms):
        return encode_samples_ticks(samples_ms), SAMPLES_TICKS
    return encode_samples(samples_ms), SAMPLES_FLOAT32


def decode_stored_samples(blob: bytes, encoding: str) -> list[float]:
    """Samples of a `benchmarks` row, given its `samples_encoding` column."""
    if encoding == SAMPLES_FLOAT32:
        return decode_samples(blob)
    if encoding == SAMPLES_TICKS:
        return decode_samples_ticks(blob)
    raise StoreError(f"latency samples in unknown encoding {encoding!r}: written by a newer trtci; upgrade trtci")


def quantile_sketch(samples_ms: list[float], points: int) -> list[float]:
    """`points` evenly spaced quantiles (min and max included) of the samples: what thinning keeps of old runs."""
    if len(samples_ms) <= points:
        return sorted(samples_ms)
    return np.quantile(np.asarray(samples_ms, dtype=np.float64), np.linspace(0.0, 1.0, points)).tolist()


class Store:
    """A results database, opened or created at `path` (":memory:" for a throwaway one) and migrated."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.db = _connect(self.path)
        try:
            _migrate(self.db, self.path)
        except BaseException:
            self.db.close()
            raise

    def record_run(self, run: RunResult) -> None:
        """Write a whole run in one transaction: either every row of it lands, or none does."""
        run_id = run.context.run_id
        try:
            with _transaction(self.db.conn):
                if self.db.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone():
                    raise StoreError(f"{self.path}: run {run_id} is already recorded; each run needs a new run id")
                self._insert_run(run)
        except sqlite3.Error as e:
            raise StoreError(
                f"{self.path}: cannot record run {run_id} ({e}); check that the file is writable, "
                "the disk has space and no other process holds a write lock"
            ) from e

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest `limit` runs, newest first, as rows of the `runs` table."""
        rows = self.db.query("SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?", [limit])
        return [{**row, "passed": bool(row["passed"]), "warnings": json.loads(row["warnings"])} for row in rows]

    def has_run(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone() is not None

    def import_run(self, run: RunResult) -> bool:
        """Record `run` unless its id is already here (history pull, fan-in). True when it was recorded."""
        if self.has_run(run.context.run_id):
            return False
        self.record_run(run)
        return True

    def load_run(self, run_id: str) -> RunResult:
        """The run as `record_run` got it, rebuilt from the tables, raw samples included.

        What the database cannot hold comes back in its stored form: samples to the tick (or the quantile sketch
        of a thinned run), an infinite or NaN number inside JSON as None, a non-finite SQNR as inf.
        """
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no run {run_id}; list the runs with `trtci db runs`")
        run_row = dict(zip(_columns(self.db, "runs"), row))
        columns = {f.name: "id" if f.name == "run_id" else f.name for f in fields(RunContext)}
        # A run's PR labels are not stored: what they decided is in its comparisons (verdict, acknowledgement).
        context = RunContext(**{name: run_row[column] for name, column in columns.items() if column in run_row})
        devices = [
            DeviceInfo(kind=d["kind"], name=d["name"], details=json.loads(d["details"]))
            for d in self.db.query(
                """SELECT devices.* FROM run_devices JOIN devices ON devices.id = run_devices.device_id
                   WHERE run_devices.run_id = ? ORDER BY run_devices.position, run_devices.rowid""",
                [run_id],
            )
        ]
        series = [
            self._load_series(run_id, key_row)
            for key_row in self.db.query(
                """SELECT series.* FROM run_series JOIN series ON series.id = run_series.series_id
               WHERE run_series.run_id = ? ORDER BY run_series.position, run_series.rowid""",
                [run_id],
            )
        ]
        comparisons = [
            Comparison(
                **{name: c[name] for name in _COMPARISON_COLUMNS},
                **{k: v for k, v in json.loads(c["extra"]).items() if k in _comparison_extra_fields()},
            )
            for c in self.db.query("SELECT * FROM comparisons WHERE run_id = ? ORDER BY rowid", [run_id])
        ]
        accuracy_changes = [
            AccuracyChange(
                **{name: row[name] for name in _ACCURACY_CHANGE_COLUMNS},
                interval=[row["delta_low"], row["delta_high"]] if row["delta_low"] is not None else None,
            )
            for row in self.db.query("SELECT * FROM accuracy_changes WHERE run_id = ? ORDER BY rowid", [run_id])
        ]
        return RunResult(
            context=context,
            devices=devices,
            series=series,
            comparisons=comparisons,
            warnings=json.loads(run_row["warnings"]),
            accuracy_changes=accuracy_changes,
        )

    def series_history(
        self, series_id: str, branch: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The benchmarks of one series, oldest first (the latest `limit` of them), on `branch` or on any.

        Each dict has run_id, commit, branch, started_at, the LATENCY_COLUMNS, accuracy (top1, cosine: the
        lowest output cosine, accuracy_passed) and the stored comparison (verdict, ratio) of that run.
        """
        return self.history(series_ids=[series_id], branch=branch, limit=limit).get(series_id, [])

    def history(
        self, *, series_ids: list[str] | None = None, branch: str | None = None, limit: int | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """`series_history` of many series in one query: series id -> its points, oldest first."""
        where, params = ["(:branch IS NULL OR runs.branch = :branch)"], {"branch": branch, "limit": limit}
        if series_ids is not None:
            where.append("b.series_id IN (SELECT value FROM json_each(:ids))")
            params["ids"] = json.dumps(series_ids)
        # The latest `limit` per series, picked in SQL: the dashboard of a long history reads only what it draws.
        latest = f"""SELECT b.run_id, b.series_id FROM (
                SELECT b.run_id, b.series_id, row_number() OVER (
                    PARTITION BY b.series_id ORDER BY runs.started_at DESC, runs.rowid DESC) AS age
                FROM benchmarks AS b JOIN runs ON runs.id = b.run_id WHERE {" AND ".join(where)}) AS b
            WHERE :limit IS NULL OR b.age <= :limit"""
        rows = self.db.query(
            f"""SELECT b.series_id, runs.id AS run_id, runs."commit" AS "commit", runs.branch, runs.started_at,
                       {", ".join(f"b.{column}" for column in LATENCY_COLUMNS.values())},
                       a.top1, a.passed AS accuracy_passed,
                       (SELECT min(o.cosine) FROM accuracy_outputs AS o
                        WHERE o.run_id = b.run_id AND o.series_id = b.series_id) AS cosine,
                       c.verdict, c.ratio
                FROM benchmarks AS b JOIN runs ON runs.id = b.run_id
                LEFT JOIN accuracy AS a ON a.run_id = b.run_id AND a.series_id = b.series_id
                LEFT JOIN comparisons AS c ON c.run_id = b.run_id AND c.series_id = b.series_id
                WHERE (b.run_id, b.series_id) IN ({latest})
                ORDER BY b.series_id, runs.started_at, runs.rowid""",
            params,
        )
        history: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            row["unstable"] = bool(row["unstable"])
            if row["accuracy_passed"] is not None:
                row["accuracy_passed"] = bool(row["accuracy_passed"])
            history.setdefault(row.pop("series_id"), []).append(row)
        return history

    def series(self) -> list[dict[str, Any]]:
        """Every series with its device name, label fields, result count and latest run time."""
        return list(
            self.db.query(
                """SELECT series.*, devices.name AS device, devices.kind AS device_kind,
                          count(b.run_id) AS results, max(runs.started_at) AS latest
                   FROM series JOIN devices ON devices.id = series.device_id
                   LEFT JOIN benchmarks AS b ON b.series_id = series.id LEFT JOIN runs ON runs.id = b.run_id
                   GROUP BY series.id ORDER BY series.model, devices.name, series.precision, series.batch"""
            )
        )

    def delete_results(self, pairs: list[tuple[str, str]]) -> int:
        """Delete the results of these (run id, series id) pairs, then the runs left with no result.

        A comparison elsewhere whose baseline was a deleted run keeps its numbers and commit, not the link.
        Returns the number of runs deleted.
        """
        per_series = (
            "accuracy_outputs",
            "accuracy",
            "benchmarks",
            "builds",
            "series_errors",
            "comparisons",
            "accuracy_changes",
            "run_series",
        )
        with _transaction(self.db.conn):
            for table in per_series:
                self.db.conn.executemany(f"DELETE FROM {table} WHERE run_id = ? AND series_id = ?", pairs)
            touched = sorted({run_id for run_id, _ in pairs})
            empty = [
                run_id
                for run_id in touched
                if self.db.execute("SELECT 1 FROM run_series WHERE run_id = ? LIMIT 1", [run_id]).fetchone() is None
            ]
            for run_id in empty:
                for table in ("comparisons", "accuracy_changes"):
                    self.db.conn.execute(f"UPDATE {table} SET baseline_run = NULL WHERE baseline_run = ?", [run_id])
                for table in per_series + ("run_devices",):
                    self.db.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
                self.db.conn.execute("DELETE FROM runs WHERE id = ?", [run_id])
        return len(empty)

    def thin_samples(self, pairs: list[tuple[str, str]], points: int) -> int:
        """Replace the raw samples of these results by `points` quantiles. Returns how many were thinned."""
        thinned = 0
        with _transaction(self.db.conn):
            for run_id, series_id in pairs:
                row = self.db.execute(
                    """SELECT samples_ms, samples_encoding FROM benchmarks
                       WHERE run_id = ? AND series_id = ? AND samples_kept = 'all'""",
                    [run_id, series_id],
                ).fetchone()
                if row is None:
                    continue
                samples = decode_stored_samples(row[0], row[1])
                if len(samples) <= points:
                    continue
                blob, encoding = _encode_for_store(quantile_sketch(samples, points))
                self.db.conn.execute(
                    """UPDATE benchmarks SET samples_ms = ?, samples_encoding = ?, samples_kept = 'quantiles'
                       WHERE run_id = ? AND series_id = ?""",
                    [blob, encoding, run_id, series_id],
                )
                thinned += 1
        return thinned

    def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system."""
        self.db.execute("VACUUM")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _insert_run(self, run: RunResult) -> None:
        context = run.context
        self._insert(
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
            self._insert(
                "devices",
                {"id": device.id, "kind": device.kind, "name": device.name, "details": _json(device.details)},
                or_ignore=True,
            )
            self._insert(
                "run_devices", {"run_id": context.run_id, "device_id": device.id, "position": position}, or_ignore=True
            )
        for position, series in enumerate(run.series):
            self._insert_series(context.run_id, series, position)
        for comparison in run.comparisons:
            self._insert(
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
            self._insert("accuracy_changes", {"run_id": context.run_id, **row, "delta_low": low, "delta_high": high})

    def _insert_series(self, run_id: str, series: SeriesResult, position: int) -> None:
        key = series.key
        self._insert(
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
        self._insert("run_series", {**ids, "position": position})
        if series.bench is not None:
            bench = series.bench
            stats = {column: getattr(bench.stats, field) for field, column in LATENCY_COLUMNS.items()}
            blob, encoding = _encode_for_store(bench.samples_ms)
            self._insert(
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
            self._insert(
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
                self._insert(
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
            self._insert("builds", {**ids, "facts": _json(series.build)})
        if series.error is not None:
            self._insert("series_errors", {**ids, "error": series.error})

    def _load_series(self, run_id: str, key_row: dict[str, Any]) -> SeriesResult:
        key = SeriesKey(**{f.name: key_row[f.name] for f in fields(SeriesKey)})
        ids = [run_id, key_row["id"]]  # the stored id: rows are keyed by it even if hashing ever changes
        where = "WHERE run_id = ? AND series_id = ?"
        result = SeriesResult(key=key)
        for b in self.db.query(f"SELECT * FROM benchmarks {where}", ids):
            stats = LatencyStats(**{name: b[column] for name, column in LATENCY_COLUMNS.items()})
            stats.unstable = bool(stats.unstable)
            result.bench = BenchResult(
                stats=stats,
                samples_ms=decode_stored_samples(b["samples_ms"], b["samples_encoding"]),
                warmup_ms=b["warmup_ms"],
                duration_s=b["duration_s"],
                timer=b["timer"],
                extra=json.loads(b["extra"]),
            )
        for a in self.db.query(f"SELECT * FROM accuracy {where}", ids):
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
                for o in self.db.query(f"SELECT * FROM accuracy_outputs {where} ORDER BY rowid", ids)
            ]
            result.accuracy = AccuracyResult(
                passed=bool(a["passed"]),
                reasons=json.loads(a["reasons"]),
                samples=a["samples"],
                outputs=outputs,
                top1=a["top1"],
                top5=a["top5"],
                reference_top1=a["reference_top1"],
                reference_top5=a["reference_top5"],
                ratio=a["ratio"],
                thresholds=json.loads(a["thresholds"]),
                **{name: a[name] for name in _ACCURACY_EXTRA_COLUMNS},
            )
        for build in self.db.query(f"SELECT facts FROM builds {where}", ids):
            result.build = json.loads(build["facts"])
        for error in self.db.query(f"SELECT error FROM series_errors {where}", ids):
            result.error = error["error"]
        return result

    def _insert(self, table: str, row: dict[str, Any], *, or_ignore: bool = False) -> None:
        # Plain INSERTs on the connection, so the one transaction of record_run holds every row.
        columns = ", ".join(f'"{name}"' for name in row)
        placeholders = ", ".join("?" for _ in row)
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        self.db.conn.execute(f"{verb} INTO {table} ({columns}) VALUES ({placeholders})", list(row.values()))


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


def _comparison_extra_fields() -> set[str]:
    return {f.name for f in fields(Comparison)} - set(_COMPARISON_COLUMNS)


def _comparison_extra(comparison: Comparison) -> dict[str, Any]:
    """Comparison fields without a column of their own (added after m001), kept as JSON in `extra`."""
    data = asdict(comparison)
    return {name: data[name] for name in sorted(_comparison_extra_fields())}


def _columns(db: sqlite_utils.Database, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing trtci database: for queries and exports that must change nothing."""
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"{path}: no such database; pass the --db path your runs wrote")
    try:
        conn = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True)
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: not a SQLite database ({e}); pass the --db path your runs wrote") from e
    if MIGRATIONS_TABLE not in names:
        conn.close()
        raise StoreError(f"{path}: a SQLite database that trtci did not create (no {MIGRATIONS_TABLE} table)")
    return conn


def _connect(path: str) -> sqlite_utils.Database:
    """Open the file, refusing paths that cannot hold a database and files that are not SQLite."""
    if path != ":memory:":
        parent = Path(path).absolute().parent
        if not parent.is_dir():
            raise StoreError(f"{path}: {parent} is not an existing directory; create it or choose another path")
    try:
        db = sqlite_utils.Database(path)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the database ({e}); check the directory is writable") from e
    try:
        db.execute("PRAGMA foreign_keys = ON")
        # Reading the schema is the first access to the file: this is where a non-SQLite file fails.
        db.table_names()
    except sqlite3.DatabaseError as e:
        db.close()
        raise StoreError(
            f"{path}: not a SQLite database ({e}); point --db at a trtci results file or a new path"
        ) from e
    return db


def _migrate(db: sqlite_utils.Database, path: str) -> None:
    """Apply the migrations the file lacks; refuse files that belong to someone else or to a newer trtci."""
    tables = db.table_names()
    if tables and MIGRATIONS_TABLE not in tables:
        raise StoreError(
            f"{path}: a SQLite database that trtci did not create (no {MIGRATIONS_TABLE} table); "
            "choose a new path for trtci results"
        )
    if not _pending(db, path):
        return
    try:
        # IMMEDIATE takes the write lock first, so two processes opening a new file cannot both migrate it.
        with _transaction(db.conn, "IMMEDIATE"):
            db.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at TEXT)")
            for fn in _pending(db, path):
                fn(db)
                db.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                    [fn.__name__, datetime.datetime.now(datetime.timezone.utc).isoformat()],
                )
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot create or upgrade the database ({e}); check the file is writable") from e


def _pending(db: sqlite_utils.Database, path: str) -> list[Migration]:
    applied: set[str] = set()
    if MIGRATIONS_TABLE in db.table_names():
        applied = {row[0] for row in db.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    unknown = applied - {fn.__name__ for fn in MIGRATIONS}
    if unknown:
        raise StoreError(
            f"{path}: written by a newer trtci (unknown migration {', '.join(sorted(unknown))}); "
            f"upgrade trtci (this is {__version__}): pip install -U trtci"
        )
    return [fn for fn in MIGRATIONS if fn.__name__ not in applied]


@contextmanager
def _transaction(conn: sqlite3.Connection, mode: str = "DEFERRED") -> Iterator[None]:
    """Commit everything inside the block, or roll all of it back on any exception, Ctrl-C included."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (busy, disk full) can leave the transaction open; a RAISE(ROLLBACK) has closed it.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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

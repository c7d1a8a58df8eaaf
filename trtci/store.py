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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from trtci import __version__
from trtci.errors import StoreError
from trtci.results import LatencyStats, RunResult, SeriesResult

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


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    for statement in _M001_STATEMENTS:
        db.execute(statement)


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


@dataclass
class Baseline:
    """The benchmark a series is compared against: its latest result on a branch."""

    run_id: str
    commit: str | None
    started_at: str
    median_ms: float
    stats: LatencyStats


def encode_samples(samples_ms: list[float]) -> bytes:
    """Samples as float32 little-endian, 4 bytes each: about a fifth of their JSON size, ~7 significant digits."""
    return struct.pack(f"<{len(samples_ms)}f", *samples_ms)


def decode_samples(blob: bytes) -> list[float]:
    """The inverse of `encode_samples`."""
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


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

    def baseline(self, series_id: str, branch: str, *, exclude_run: str | None = None) -> Baseline | None:
        """The latest benchmark of `series_id` in a run on `branch` (by start time), skipping `exclude_run`."""
        row = self.db.execute(
            f"""SELECT runs.id AS run_id, runs."commit" AS "commit", runs.started_at AS started_at,
                       {", ".join(f"b.{column}" for column in LATENCY_COLUMNS.values())}
                FROM runs JOIN benchmarks AS b ON b.run_id = runs.id
                WHERE b.series_id = ? AND runs.branch = ? AND runs.id IS NOT ?
                ORDER BY runs.started_at DESC, runs.rowid DESC
                LIMIT 1""",
            [series_id, branch, exclude_run],
        ).fetchone()
        if row is None:
            return None
        run_id, commit, started_at, *values = row
        stats = LatencyStats(**dict(zip(LATENCY_COLUMNS, values)))
        stats.iterations = int(stats.iterations)
        stats.unstable = bool(stats.unstable)
        return Baseline(run_id=run_id, commit=commit, started_at=started_at, median_ms=stats.median, stats=stats)

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest `limit` runs, newest first, as rows of the `runs` table."""
        rows = self.db.query("SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?", [limit])
        return [{**row, "passed": bool(row["passed"]), "warnings": json.loads(row["warnings"])} for row in rows]

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
        for device in run.devices:
            self._insert(
                "devices",
                {"id": device.id, "kind": device.kind, "name": device.name, "details": _json(device.details)},
                or_ignore=True,
            )
        for series in run.series:
            self._insert_series(context.run_id, series)
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
                },
            )

    def _insert_series(self, run_id: str, series: SeriesResult) -> None:
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
        if series.bench is not None:
            bench = series.bench
            stats = {column: getattr(bench.stats, field) for field, column in LATENCY_COLUMNS.items()}
            self._insert(
                "benchmarks",
                {
                    **ids,
                    **stats,
                    "warmup_ms": bench.warmup_ms,
                    "duration_s": bench.duration_s,
                    "timer": bench.timer,
                    "samples_ms": encode_samples(bench.samples_ms),
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

    def _insert(self, table: str, row: dict[str, Any], *, or_ignore: bool = False) -> None:
        # Plain INSERTs on the connection, so the one transaction of record_run holds every row.
        columns = ", ".join(f'"{name}"' for name in row)
        placeholders = ", ".join("?" for _ in row)
        verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
        self.db.conn.execute(f"{verb} INTO {table} ({columns}) VALUES ({placeholders})", list(row.values()))


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

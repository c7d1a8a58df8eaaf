"""The schema, as named migrations (`m001_initial`, ...) recorded in `_trtci_migrations`, and their runner.

The way simonw/llm migrates its logs database: opening a file applies whatever this version knows and the file
lacks, in one transaction. Each step runs once; never rename or change one, append a new one (docs/schema.md).
"""

from __future__ import annotations

import datetime
import functools
import sqlite3
from collections.abc import Callable

import sqlite_utils

from trtci import __version__
from trtci.errors import StoreError
from trtci.store.connection import transaction

MIGRATIONS_TABLE = "_trtci_migrations"

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


@migration
def m004_canaries(db: sqlite_utils.Database) -> None:
    _execute_all(db, _M004_STATEMENTS)


_M004_STATEMENTS = (
    # The machine's speed: a fixed reference workload timed at the start and end of each run, per backend and
    # device, with its judgement against the base branch's (trtci.verdict.machine). A run's canaries go with it.
    """CREATE TABLE canaries (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        backend TEXT NOT NULL,
        device_id TEXT NOT NULL REFERENCES devices (id),
        version INTEGER NOT NULL,
        start_ms REAL NOT NULL,
        end_ms REAL NOT NULL,
        median_ms REAL NOT NULL,
        spread REAL NOT NULL,
        iterations INTEGER NOT NULL,
        baseline_ms REAL,
        history_runs INTEGER NOT NULL,
        noise REAL,
        ratio REAL,
        moved INTEGER NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (run_id, backend, device_id)
    )""",
    "CREATE INDEX idx_canaries_backend_device ON canaries (backend, device_id)",
    # The robust spread of each benchmark's samples (scaled MAD over the median); NULL in rows written before.
    "ALTER TABLE benchmarks ADD COLUMN spread REAL",
)


def migrate(db: sqlite_utils.Database, path: str) -> None:
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
        with transaction(db.conn, "IMMEDIATE"):
            db.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at TEXT)")
            for fn in _pending(db, path):
                fn(db)
                db.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                    [fn.__name__, datetime.datetime.now(datetime.timezone.utc).isoformat()],
                )
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot create or upgrade the database ({e}); check the file is writable") from e


def missing_schema(db: sqlite_utils.Database) -> list[str]:
    """The tables and `table.column`s that these migrations create and `db` lacks: none for a sound file."""
    have = _schema(db)
    missing = []
    for table, columns in _expected_schema().items():
        if table not in have:
            missing.append(f"table {table}")
        else:
            missing.extend(f"column {table}.{column}" for column in columns if column not in have[table])
    return missing


@functools.cache
def _expected_schema() -> dict[str, list[str]]:
    """The schema every migration together makes, read from a fresh in-memory database (a single source)."""
    fresh = sqlite_utils.Database(memory=True)
    migrate(fresh, ":memory:")
    try:
        return _schema(fresh)
    finally:
        fresh.close()


def _schema(db: sqlite_utils.Database) -> dict[str, list[str]]:
    return {name: [row[1] for row in db.execute(f'PRAGMA table_info("{name}")')] for name in db.table_names()}


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

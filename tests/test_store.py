from __future__ import annotations

import dataclasses
import sqlite3

import pytest
import sqlite_utils

import trtci.store
from trtci.errors import StoreError
from trtci.results import (
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
from trtci.store import LATENCY_COLUMNS, MIGRATIONS_TABLE, Store, decode_samples

RUN_TABLES = ("benchmarks", "accuracy", "accuracy_outputs", "builds", "series_errors", "comparisons")
CPU = DeviceInfo(kind="cpu", name="Test CPU", details={"cores": 2, "isa": ["avx2"]})


def stats(median: float, iterations: int = 5) -> LatencyStats:
    return LatencyStats(
        min=median * 0.9,
        mean=median * 1.01,
        median=median,
        p90=median * 1.1,
        p95=median * 1.2,
        p99=median * 1.3,
        max=median * 1.5,
        std=median * 0.02,
        cv=0.02,
        iterations=iterations,
        throughput=1000.0 / median,
        unstable=False,
    )


def key(model: str = "digits", precision: str = "fp32", device: DeviceInfo = CPU) -> SeriesKey:
    return SeriesKey(
        model=model, model_hash="ab" * 32, precision=precision, batch=1, backend="onnxruntime", device_id=device.id
    )


def bench(median: float, iterations: int = 5) -> BenchResult:
    samples = [median * (1 + 0.01 * i) for i in range(iterations)]
    return BenchResult(
        stats=stats(median, iterations), samples_ms=samples, warmup_ms=200.0, duration_s=0.5, timer="host"
    )


def make_run(
    run_id: str,
    series: list[SeriesResult],
    *,
    branch: str = "main",
    started_at: str = "2026-11-27T08:00:00Z",
    devices: list[DeviceInfo] | None = None,
) -> RunResult:
    context = RunContext(run_id=run_id, started_at=started_at, commit=f"{run_id}c0ffee", branch=branch)
    return RunResult(context=context, devices=devices or [CPU], series=series)


def full_series() -> list[SeriesResult]:
    """One series of each shape: benchmarked with accuracy and build facts, and failed."""
    accuracy = AccuracyResult(
        passed=False,
        reasons=["top-1 ratio 0.95 < 0.99"],
        samples=64,
        outputs=[
            OutputMetrics("logits", 0.999, float("inf"), 0.0, 0.0, 1.0, 0),
            OutputMetrics("probs", 0.98, 31.5, 0.2, 0.5, None, 0),
        ],
        top1=0.9,
        reference_top1=0.95,
        ratio=0.9 / 0.95,
        thresholds={"min_ratio": 0.99, "min_sqnr_db": float("inf")},
    )
    return [
        SeriesResult(key=key(precision="int8"), bench=bench(1.5), accuracy=accuracy, build={"size": 1234}),
        SeriesResult(key=key(precision="fp16"), error="BackendError: unsupported op Foo"),
    ]


def rows_of_run(store: Store, run_id: str) -> dict[str, int]:
    counts = {
        table: store.db.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id]).fetchone()[0]
        for table in RUN_TABLES
    }
    counts["runs"] = store.db.execute("SELECT count(*) FROM runs WHERE id = ?", [run_id]).fetchone()[0]
    return counts


def test_fresh_file_is_migrated_with_foreign_keys_on(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store:
        tables = set(store.db.table_names())
        assert {"runs", "devices", "series", *RUN_TABLES, MIGRATIONS_TABLE} <= tables
        assert [row["name"] for row in store.db[MIGRATIONS_TABLE].rows] == ["m001_initial"]
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.IntegrityError):
            store.db.conn.execute("INSERT INTO builds (run_id, series_id, facts) VALUES ('nope', 'nope', '{}')")


def test_reopening_is_idempotent_and_keeps_runs(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store:
        store.record_run(make_run("r1", full_series()))
    with Store(path) as store:
        assert store.db.execute(f"SELECT count(*) FROM {MIGRATIONS_TABLE}").fetchone()[0] == 1
        assert [run["id"] for run in store.runs()] == ["r1"]


def test_a_later_migration_is_applied_once(tmp_path, monkeypatch):
    path = tmp_path / "results.db"
    Store(path).close()
    calls = []

    def m002_add_note(db):
        calls.append(1)
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    monkeypatch.setattr(trtci.store, "MIGRATIONS", [*trtci.store.MIGRATIONS, m002_add_note])
    Store(path).close()
    with Store(path) as store:
        assert "note" in store.db["runs"].columns_dict
        assert [row["name"] for row in store.db[MIGRATIONS_TABLE].rows] == ["m001_initial", "m002_add_note"]
    assert calls == [1]


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "results.db"

    def m002_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        db.execute("SELECT no_such_function()")

    monkeypatch.setattr(trtci.store, "MIGRATIONS", [*trtci.store.MIGRATIONS, m002_broken])
    with pytest.raises(StoreError, match="cannot create or upgrade"):
        Store(path)
    assert sqlite_utils.Database(path).table_names() == []


def test_database_from_a_newer_trtci_is_refused_unchanged(tmp_path):
    path = tmp_path / "results.db"
    Store(path).close()
    db = sqlite_utils.Database(path)
    db[MIGRATIONS_TABLE].insert({"name": "m099_from_the_future", "applied_at": "2030-01-01"})
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"newer trtci.*m099_from_the_future.*upgrade"):
        Store(path)
    assert path.read_bytes() == before


def test_file_that_is_not_sqlite_is_refused_unchanged(tmp_path):
    path = tmp_path / "results.db"
    path.write_bytes(b"name,latency\nresnet,1.5\n" * 200)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.db"]


def test_sqlite_file_of_another_program_is_refused_unchanged(tmp_path):
    path = tmp_path / "other.db"
    db = sqlite_utils.Database(path)
    db["notes"].insert({"text": "mine"})
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="trtci did not create"):
        Store(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("where", ["missing", "file", "unwritable"])
def test_path_that_cannot_hold_a_database(tmp_path, where):
    (tmp_path / "a-file").write_text("x")
    path = {
        "missing": tmp_path / "no" / "such" / "results.db",
        "file": tmp_path / "a-file" / "results.db",
        # /proc refuses new files even to root, so this holds whoever runs the tests.
        "unwritable": "/proc/trtci-results.db",
    }[where]
    with pytest.raises(StoreError, match="directory"):
        Store(path)


def test_record_run_writes_every_table(tmp_path):
    run = make_run("r1", full_series())
    run.comparisons = [
        Comparison(
            run.series[0].key.id,
            "digits int8",
            "new",
            "latency_median_ms",
            1.5,
            None,
            None,
            0.1,
            reason="no earlier result on main",
        )
    ]
    with Store(tmp_path / "results.db") as store:
        store.record_run(run)
        assert rows_of_run(store, "r1") == {
            "runs": 1,
            "benchmarks": 1,
            "accuracy": 1,
            "accuracy_outputs": 2,
            "builds": 1,
            "series_errors": 1,
            "comparisons": 1,
        }
        saved = store.runs()[0]
        assert saved["commit"] == "r1c0ffee" and saved["branch"] == "main"
        assert saved["passed"] is False  # the int8 accuracy failed
        assert saved["trtci_version"] == trtci.__version__
        assert store.db.execute("SELECT count(*) FROM series").fetchone()[0] == 2
        device = store.db["devices"].get(CPU.id)
        assert device["name"] == "Test CPU" and '"cores":2' in device["details"]
        errors = list(store.db["series_errors"].rows)
        assert errors[0]["error"] == "BackendError: unsupported op Foo"
        assert list(store.db["comparisons"].rows)[0]["verdict"] == "new"
        thresholds = store.db.execute("SELECT json_extract(thresholds, '$.min_sqnr_db') FROM accuracy").fetchone()
        assert thresholds == (None,)


def test_benchmark_columns_hold_every_latency_field_and_samples(tmp_path):
    assert set(LATENCY_COLUMNS) == {f.name for f in dataclasses.fields(LatencyStats)}
    run = make_run("r1", full_series())
    original = run.series[0].bench
    with Store(tmp_path / "results.db") as store:
        store.record_run(run)
        row = next(store.db["benchmarks"].rows)
    for field, column in LATENCY_COLUMNS.items():
        assert row[column] == getattr(original.stats, field), column
    assert len(row["samples_ms"]) == 4 * len(original.samples_ms)
    assert decode_samples(row["samples_ms"]) == pytest.approx(original.samples_ms, rel=1e-6)
    assert row["timer"] == "host" and row["warmup_ms"] == 200.0


def test_infinite_sqnr_is_stored_as_null(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.record_run(make_run("r1", full_series()))
        sqnr = dict(store.db.execute("SELECT name, sqnr_db FROM accuracy_outputs").fetchall())
    assert sqnr == {"logits": None, "probs": 31.5}


def test_recording_a_run_twice_is_refused(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.record_run(make_run("r1", full_series()))
        with pytest.raises(StoreError, match="run r1 is already recorded"):
            store.record_run(make_run("r1", full_series()))
        assert rows_of_run(store, "r1")["benchmarks"] == 1


def two_new_series(second_iterations: int = 5) -> list[SeriesResult]:
    gpu = DeviceInfo(kind="gpu", name="Only In Run Two")
    second = bench(2.0)
    second.stats.iterations = second_iterations
    return [
        SeriesResult(key=key("first", device=gpu), bench=bench(1.0), build={"size": 1}),
        SeriesResult(key=key("second", device=gpu), bench=second),
    ]


def assert_only_run_one(store: Store) -> None:
    assert rows_of_run(store, "r2") == dict.fromkeys(("runs", *RUN_TABLES), 0)
    assert store.db.execute("SELECT count(*) FROM devices").fetchone()[0] == 1
    assert store.db.execute("SELECT count(*) FROM series").fetchone()[0] == 2
    assert rows_of_run(store, "r1")["benchmarks"] == 1
    assert [run["id"] for run in store.runs()] == ["r1"]


def test_a_write_failing_midway_leaves_no_row_of_that_run(tmp_path):
    with Store(tmp_path / "results.db") as store:
        store.record_run(make_run("r1", full_series()))
        store.db.execute(
            """CREATE TRIGGER fail_second_benchmark BEFORE INSERT ON benchmarks
               WHEN (SELECT count(*) FROM benchmarks WHERE run_id = NEW.run_id) >= 1
               BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"""
        )
        run = make_run("r2", two_new_series(), devices=[DeviceInfo(kind="gpu", name="Only In Run Two")])
        with pytest.raises(StoreError, match="disk on fire"):
            store.record_run(run)
        assert_only_run_one(store)
        store.db.execute("DROP TRIGGER fail_second_benchmark")
        store.record_run(run)
        assert rows_of_run(store, "r2")["benchmarks"] == 2


def test_a_value_sqlite_cannot_bind_leaves_no_row_of_that_run(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store:
        store.record_run(make_run("r1", full_series()))
        run = make_run(
            "r2", two_new_series(second_iterations=2**64), devices=[DeviceInfo(kind="gpu", name="Only In Run Two")]
        )
        with pytest.raises(OverflowError):
            store.record_run(run)
        assert_only_run_one(store)
    with Store(path) as store:
        assert_only_run_one(store)


def test_baseline_is_the_latest_run_on_the_branch(tmp_path):
    series_key = key()
    with Store(tmp_path / "results.db") as store:
        # Recorded out of order: the start time decides, not the insertion order.
        store.record_run(make_run("newest", [SeriesResult(series_key, bench(1.0))], started_at="2026-11-27T10:00:00Z"))
        store.record_run(make_run("oldest", [SeriesResult(series_key, bench(3.0))], started_at="2026-11-27T08:00:00Z"))
        store.record_run(make_run("middle", [SeriesResult(series_key, bench(2.0))], started_at="2026-11-27T09:00:00Z"))
        store.record_run(
            make_run("pr", [SeriesResult(series_key, bench(9.0))], branch="feature", started_at="2026-11-27T11:00:00Z")
        )
        baseline = store.baseline(series_key.id, "main")
        assert (baseline.run_id, baseline.commit, baseline.median_ms) == ("newest", "newestc0ffee", 1.0)
        assert baseline.started_at == "2026-11-27T10:00:00Z"
        assert baseline.stats == stats(1.0)
        assert store.baseline(series_key.id, "main", exclude_run="newest").run_id == "middle"
        assert store.baseline(series_key.id, "feature").median_ms == 9.0
        assert store.baseline(series_key.id, "release") is None
        assert store.baseline(key(precision="fp16").id, "main") is None


def test_baseline_lookup_searches_indexes_instead_of_scanning(tmp_path):
    with Store(tmp_path / "results.db") as store:
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        store.baseline("some-series", "main", exclude_run="r0")
        store.db.conn.set_trace_callback(None)
        plan = [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {statements[-1]}")]
    assert plan and all(step.startswith("SEARCH") for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_runs_are_listed_newest_first(tmp_path):
    with Store(":memory:") as store:
        for hour in (8, 10, 9):
            store.record_run(make_run(f"r{hour}", [], started_at=f"2026-11-27T{hour:02d}:00:00Z"))
        assert [run["id"] for run in store.runs()] == ["r10", "r9", "r8"]
        assert [run["id"] for run in store.runs(limit=2)] == ["r10", "r9"]

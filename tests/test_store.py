from __future__ import annotations

import dataclasses
import datetime
import sqlite3

import numpy as np
import pydantic
import pytest
import sqlite_utils

import trtci.store.migrations
from tests.recorded_runs import CPU, RUN_TABLES, bench, full_run, full_series, history_store, key, make_run
from trtci.config import HistorySettings
from trtci.errors import StoreError
from trtci.results import (
    Comparison,
    DeviceInfo,
    LatencyStats,
    SeriesResult,
)
from trtci.store.database import Store
from trtci.store.migrations import MIGRATIONS, MIGRATIONS_TABLE
from trtci.store.queries import Cutoff, history
from trtci.store.retention import apply_retention
from trtci.store.rows import LATENCY_COLUMNS
from trtci.store.samples import decode_samples_ticks, decode_stored_samples, encode_samples, encode_samples_ticks


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
        assert [row["name"] for row in store.db[MIGRATIONS_TABLE].rows] == [fn.__name__ for fn in MIGRATIONS]
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        with pytest.raises(sqlite3.IntegrityError):
            store.db.conn.execute("INSERT INTO builds (run_id, series_id, facts) VALUES ('nope', 'nope', '{}')")


def test_reopening_is_idempotent_and_keeps_runs(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store:
        store.record_run(make_run("r1", full_series()))
    with Store(path) as store:
        assert store.db.execute(f"SELECT count(*) FROM {MIGRATIONS_TABLE}").fetchone()[0] == len(MIGRATIONS)
        assert [run["id"] for run in store.runs()] == ["r1"]


def test_a_later_migration_is_applied_once(tmp_path, monkeypatch):
    path = tmp_path / "results.db"
    Store(path).close()
    calls = []

    def m999_add_note(db):
        calls.append(1)
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT")

    monkeypatch.setattr(trtci.store.migrations, "MIGRATIONS", [*trtci.store.migrations.MIGRATIONS, m999_add_note])
    Store(path).close()
    with Store(path) as store:
        assert "note" in store.db["runs"].columns_dict
        assert [row["name"] for row in store.db[MIGRATIONS_TABLE].rows] == [
            *(fn.__name__ for fn in MIGRATIONS),
            "m999_add_note",
        ]
    assert calls == [1]


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "results.db"

    def m002_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        db.execute("SELECT no_such_function()")

    monkeypatch.setattr(trtci.store.migrations, "MIGRATIONS", [*trtci.store.migrations.MIGRATIONS, m002_broken])
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
    assert row["samples_encoding"] == "ticks1" and row["samples_count"] == len(original.samples_ms)
    assert decode_stored_samples(row["samples_ms"], "ticks1") == pytest.approx(original.samples_ms, abs=0.5e-4)
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


def test_compare_history_lookup_searches_indexes_instead_of_scanning(tmp_path):
    with Store(tmp_path / "results.db") as store:
        statements: list[str] = []
        store.db.conn.set_trace_callback(statements.append)
        history(store, "some-series", "main", until=Cutoff(None, None, ""), exclude_run="r0", window=10)
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


def noisy_samples(count: int, median: float, cv: float, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return (median * (1 + cv * rng.standard_normal(count))).clip(median * 0.5).tolist()


def test_ticks_encoding_keeps_order_and_values_to_the_tick():
    samples = noisy_samples(10_000, 1.0, 0.02)
    blob = encode_samples_ticks(samples)
    decoded = decode_samples_ticks(blob)
    assert len(decoded) == len(samples)
    # 1 ms median: the tick is 0.1 us = 1e-4 ms, so every value is within half a tick, order kept.
    assert max(abs(a - b) for a, b in zip(decoded, samples)) <= 0.5e-4 + 1e-12
    assert len(blob) < 20_000 < 4 * len(samples)


def test_ticks_encoding_scales_its_tick_with_the_latency():
    samples = noisy_samples(2_000, 250.0, 0.03, seed=1)
    decoded = decode_samples_ticks(encode_samples_ticks(samples))
    assert max(abs(a - b) / b for a, b in zip(decoded, samples)) < 1e-4
    assert decode_samples_ticks(encode_samples_ticks([])) == []


def test_non_finite_samples_are_stored_exactly_as_float32(tmp_path):
    run = make_run("r1", [SeriesResult(key=key(), bench=bench(1.0))])
    run.series[0].bench.samples_ms = [1.0, float("inf"), 2.0]
    with Store(tmp_path / "results.db") as store:
        store.record_run(run)
        row = next(store.db["benchmarks"].rows)
        assert row["samples_encoding"] == "float32"
        assert store.load_run("r1").series[0].bench.samples_ms == [1.0, float("inf"), 2.0]




def test_load_run_rebuilds_what_record_run_wrote(tmp_path):
    run = full_run()
    with Store(tmp_path / "results.db") as store:
        store.record_run(run)
    with Store(tmp_path / "results.db") as store:
        loaded = store.load_run("r1")
    for original, again in zip(run.series, loaded.series):
        if original.bench is not None:
            assert again.bench.samples_ms == pytest.approx(original.bench.samples_ms, abs=0.5e-4)
            again.bench.samples_ms = original.bench.samples_ms
    # The one lossy field is handled above; JSON turns the infinite threshold into None.
    run.series[0].accuracy.thresholds["min_sqnr_db"] = None
    assert loaded == run


def test_load_run_of_an_unknown_id_says_how_to_list_runs(tmp_path):
    with Store(tmp_path / "results.db") as store, pytest.raises(StoreError, match="trtci db runs"):
        store.load_run("nope")


def test_import_run_records_once(tmp_path):
    with Store(tmp_path / "results.db") as store:
        assert store.import_run(full_run()) is True
        assert store.import_run(full_run()) is False
        assert len(store.runs()) == 1


def test_a_database_written_before_m002_reads_its_float32_samples(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    run = full_run()
    monkeypatch.setattr(trtci.store.migrations, "MIGRATIONS", trtci.store.migrations.MIGRATIONS[:1])
    old = sqlite_utils.Database(path)
    trtci.store.migrations.migrate(old, str(path))
    old.conn.execute("PRAGMA foreign_keys = ON")
    for statement, values in (
        ("INSERT INTO runs (id, started_at, trtci_version, passed) VALUES (?, ?, '0.1', 1)", ["old", "2026-01-01"]),
        ("INSERT INTO devices VALUES (?, 'cpu', 'Test CPU', '{}')", [CPU.id]),
        (
            "INSERT INTO series VALUES (?, 'digits', 'h', 'fp32', '', 1, 'onnxruntime', ?, '')",
            ["s1", CPU.id],
        ),
        (
            "INSERT INTO benchmarks (run_id, series_id, iterations, unstable, timer, samples_ms, extra) "
            "VALUES ('old', 's1', 3, 0, 'host', ?, '{}')",
            [encode_samples([1.25, 1.5, 1.75])],
        ),
    ):
        old.conn.execute(statement, values)
    old.conn.commit()
    old.close()
    monkeypatch.undo()
    with Store(path) as store:
        assert store.load_run("old").series[0].bench.samples_ms == [1.25, 1.5, 1.75]
        store.record_run(run)
        assert len(store.load_run("r1").series) == len(run.series)




def test_series_history_is_oldest_first_with_verdicts(tmp_path):
    with history_store(tmp_path) as store:
        points = store.series_history(key().id)
        assert [p["run_id"] for p in points] == [f"r{i}" for i in range(6)]
        assert [p["latency_median_ms"] for p in points] == [1.0 + i for i in range(6)]
        assert points[4]["verdict"] == "regression" and points[0]["commit"] == "r0c0ffee"
        assert [p["run_id"] for p in store.series_history(key().id, branch="main")] == ["r0", "r2", "r4"]
        assert [p["run_id"] for p in store.series_history(key().id, limit=2)] == ["r4", "r5"]
        assert store.series_history("unknown") == []


def test_retention_keeps_the_newest_runs_and_thins_older_samples(tmp_path):
    with history_store(tmp_path) as store:
        for i in range(6):
            store.db.execute(
                "UPDATE benchmarks SET samples_ms = ?, samples_encoding = 'ticks1' WHERE run_id = ?",
                [encode_samples_ticks(noisy_samples(1000, 1.0, 0.02, seed=i)), f"r{i}"],
            )
        store.db.conn.commit()
        settings = HistorySettings(keep_runs=4, full_samples_runs=2, sketch_points=11)
        report = apply_retention(store, settings)
        assert (report.results_deleted, report.runs_deleted, report.results_thinned) == (2, 2, 2)
        assert [p["run_id"] for p in store.series_history(key().id)] == ["r2", "r3", "r4", "r5"]
        kept = {r["run_id"]: r for r in store.db.query("SELECT run_id, samples_kept FROM benchmarks")}
        assert [kept[r]["samples_kept"] for r in ("r2", "r3", "r4", "r5")] == ["quantiles"] * 2 + ["all"] * 2
        sketch = store.load_run("r2").series[0].bench.samples_ms
        original = noisy_samples(1000, 1.0, 0.02, seed=2)
        assert len(sketch) == 11
        assert sketch[0] == pytest.approx(min(original), abs=1e-4)
        assert sketch[5] == pytest.approx(float(np.median(original)), abs=1e-4)
        assert report.bytes_after < report.bytes_before
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_retention_keeps_young_runs_beyond_the_count(tmp_path):
    with history_store(tmp_path) as store:
        now = datetime.datetime(2026, 11, 16, 12, tzinfo=datetime.timezone.utc)
        report = apply_retention(store, HistorySettings(keep_runs=1, keep_days=3.0), now=now, vacuum=False)
        assert [p["run_id"] for p in store.series_history(key().id)] == ["r4", "r5"]
        assert report.runs_deleted == 4


def test_retention_settings_refuse_unknown_keys():
    with pytest.raises(pydantic.ValidationError):
        HistorySettings.model_validate({"keep_run": 3})

"""The store under faults: another process's lock (at start, mid-run, at the end), a read-only or damaged file,
damaged columns and sample blobs, samples no encoding could give back. Nothing measured is lost, and every
failure is one line that says what to do."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.locks import lock_held
from tests.recorded_runs import CPU, bench, full_run, key, make_run
from trtci.errors import StoreError
from trtci.results import SeriesResult
from trtci.store.connection import DatabaseLocked
from trtci.store.database import Store
from trtci.store.runfile import read_runfile

ROOT = Path(__file__).resolve().parent.parent




def recorded_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM runs")}
    finally:
        conn.close()


def test_a_lock_held_at_start_is_waited_for_then_named_as_a_lock(tmp_path):
    path = tmp_path / "results.db"
    Store(path).close()
    with lock_held(path, "EXCLUSIVE"):
        with pytest.raises(DatabaseLocked) as error:
            Store(path, timeout_s=0.3)
    message = str(error.value)
    assert "another process held the database's lock" in message and "TRTCI_DB_TIMEOUT" in message
    assert "not a SQLite database" not in message and "\n" not in message


def test_a_writer_waits_for_another_writers_lock(tmp_path):
    path = tmp_path / "results.db"
    with Store(path) as store, lock_held(path, seconds=1.5):
        store.record_run(make_run("r1", [SeriesResult(key=key(), bench=bench(1.0))]))
    assert recorded_ids(path) == {"r1"}


def test_a_lock_timeout_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "results.db"
    Store(path).close()
    monkeypatch.setenv("TRTCI_DB_TIMEOUT", "0.2")
    with Store(path) as store, lock_held(path):
        with pytest.raises(DatabaseLocked, match="over 0.2 s"):
            store.record_run(make_run("r1", [SeriesResult(key=key(), bench=bench(1.0))]))
    monkeypatch.setenv("TRTCI_DB_TIMEOUT", "forever")
    with pytest.raises(StoreError, match="TRTCI_DB_TIMEOUT='forever'"):
        Store(path)


def test_a_run_that_cannot_be_recorded_is_kept_beside_the_database(tmp_path):
    path = tmp_path / "results.db"
    run = full_run("r1")
    with Store(path, timeout_s=0.2) as store, lock_held(path):
        with pytest.raises(DatabaseLocked) as error:
            store.record_run(run)
        line = store.keep_unrecorded(run, error.value)
    kept = next(tmp_path.glob("*.trtci.json.gz"))
    assert f"run r1 was NOT recorded in {path}" in line and str(kept) in line and "\n" not in line
    assert f"trtci db import {kept} --db {path}" in line
    back = read_runfile(kept)
    assert back.context == run.context and [s.key for s in back.series] == [s.key for s in run.series]


def tiny_config(root: Path, database: Path):
    from models import mlp_classifier

    from trtci.config import parse_config

    model = mlp_classifier(root / "mlp.onnx")
    return parse_config(
        {
            "models": [{"path": str(model), "precisions": ["fp32"], "batch_sizes": [1]}],
            "bench": {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5},
            "database": str(database),
            "cache_dir": str(root / "cache"),
            "summary_json": None,
        },
        "test",
        root,
    )


class LockWhileBenchmarking:
    """Progress that has another process take the database's lock when the first benchmark starts: a lock
    taken mid-run, at a moment the test controls."""

    def __init__(self, path: Path, mode: str):
        self.path, self.mode = path, mode
        self.stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def task(self, description: str):
        if "benchmarking" in description and not self.stack._exit_callbacks:
            self.stack.enter_context(lock_held(self.path, self.mode))
        yield lambda fraction: None


def test_a_lock_taken_mid_run_keeps_the_run_and_says_how_to_import_it(tmp_path, monkeypatch):
    from trtci.context.run import run_context
    from trtci.pipeline import run as pipeline

    database = tmp_path / "db" / "results.db"
    config = tiny_config(tmp_path, database)
    monkeypatch.setenv("TRTCI_DB_TIMEOUT", "0.5")
    progress = LockWhileBenchmarking(database, "IMMEDIATE")
    with progress.stack:
        result = pipeline.run(config, run_context(overrides={"branch": "main", "commit": "a" * 40}), progress)
    kept = next(database.parent.glob("*.trtci.json.gz"))
    assert any(f"was NOT recorded in {database}" in w and str(kept) in w for w in result.warnings)
    assert recorded_ids(database) == set()
    from trtci.cli.history import db

    done = CliRunner().invoke(db, ["import", str(kept), "--db", str(database)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert recorded_ids(database) == {result.context.run_id}


def test_a_lock_that_blocks_reading_history_mid_run_keeps_the_measurements(tmp_path, monkeypatch):
    from trtci.context.run import run_context
    from trtci.pipeline import run as pipeline

    database = tmp_path / "results.db"
    config = tiny_config(tmp_path, database)
    monkeypatch.setenv("TRTCI_DB_TIMEOUT", "0.5")
    progress = LockWhileBenchmarking(database, "EXCLUSIVE")
    with progress.stack, pytest.raises(StoreError) as error:
        pipeline.run(config, run_context(overrides={"branch": "main", "commit": "a" * 40}), progress)
    kept = next(tmp_path.glob("*.trtci.json.gz"))
    assert "was NOT recorded" in str(error.value) and str(kept) in str(error.value)
    assert read_runfile(kept).series[0].bench is not None


def test_a_damaged_database_fails_before_any_work(tmp_path):
    from trtci.context.run import run_context
    from trtci.pipeline import run as pipeline

    database = tmp_path / "results.db"
    with Store(database) as store:
        store.db.execute("DROP TABLE accuracy_changes")
    config = tiny_config(tmp_path, database)
    with pytest.raises(StoreError, match="damaged trtci database \\(table accuracy_changes is missing\\)"):
        pipeline.run(config, run_context(overrides={"branch": "main", "commit": "a" * 40}))
    assert not (tmp_path / "cache").exists()  # nothing was prepared


def test_a_missing_column_is_named(tmp_path):
    database = tmp_path / "results.db"
    with Store(database) as store:
        store.db.execute("ALTER TABLE runs DROP COLUMN warnings")
        with pytest.raises(StoreError, match="column runs.warnings is missing"):
            store.check_writable()


def test_the_write_check_changes_no_byte(tmp_path):
    database = tmp_path / "results.db"
    with Store(database) as store:
        store.record_run(full_run("r1"))
    before = database.read_bytes()
    with Store(database) as store:
        store.check_writable()
    assert database.read_bytes() == before


def as_unprivileged(command: list[str]) -> list[str]:
    """`command` run so that file permissions hold: root keeps its uid (the interpreter lives in root's home)
    but loses the capabilities that override permissions."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): permissions cannot be enforced")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", *command]


def test_a_read_only_database_is_refused_before_any_work(tmp_path):
    import yaml
    from models import mlp_classifier

    database = tmp_path / "results.db"
    Store(database).close()
    database.chmod(0o444)
    config = tmp_path / "trtci.yml"
    model = mlp_classifier(tmp_path / "mlp.onnx")
    config.write_text(
        yaml.safe_dump(
            {
                "models": [{"path": str(model), "precisions": ["fp32"], "batch_sizes": [1]}],
                "bench": {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5},
                "database": str(database),
                "cache_dir": str(tmp_path / "cache"),
            }
        )
    )
    done = subprocess.run(
        as_unprivileged([sys.executable, "-m", "trtci.cli", "run", "--config", str(config)]),
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, "GITHUB_ACTIONS": ""},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{database}: cannot write to the database" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "cache").exists()  # refused before anything was prepared


def test_a_damaged_warnings_column_is_one_line_naming_it(tmp_path):
    from trtci.cli.history import history

    database = tmp_path / "results.db"
    with Store(database) as store:
        store.record_run(full_run("r1"))
        store.db.execute("UPDATE runs SET warnings = '[not json'")
        with pytest.raises(StoreError, match="column runs.warnings is damaged"):
            store.runs()
        with pytest.raises(StoreError, match=f"{database}: run r1: column runs.warnings is damaged"):
            store.load_run("r1")
    done = CliRunner().invoke(history, ["push", "--db", str(database), "--repo-dir", str(tmp_path)])
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert "column runs.warnings is damaged" in done.output


@pytest.mark.parametrize("blob", [b"tq\x00", b"tq\xfc\x01\x05\x00\x00\x00" + b"\x00" * 8 + b"not zlib", b"abc"])
def test_damaged_sample_blobs_are_store_errors(tmp_path, blob):
    database = tmp_path / "results.db"
    with Store(database) as store:
        store.record_run(full_run("r1"))
        encoding = "float32" if blob == b"abc" else "ticks1"
        store.db.execute("UPDATE benchmarks SET samples_ms = ?, samples_encoding = ?", [blob, encoding])
        with pytest.raises(StoreError, match="damaged latency samples"):
            store.load_run("r1")


def test_an_outlier_beyond_integer_ticks_reads_back_as_measured(tmp_path):
    samples = [1.0, 1.1, 0.9, 1.0e15, 1.05]
    series = SeriesResult(key=key(), bench=bench(1.0))
    series.bench.samples_ms = samples
    with Store(tmp_path / "results.db") as store:
        store.record_run(make_run("r1", [series]))
        back = store.load_run("r1").series[0].bench.samples_ms
    assert back == pytest.approx(samples, rel=1e-7)
    assert min(back) > 0


def test_a_sample_no_encoding_holds_is_refused(tmp_path):
    series = SeriesResult(key=key(), bench=bench(1.0))
    series.bench.samples_ms = [1.0, 1e39]
    with Store(tmp_path / "results.db") as store:
        with pytest.raises(StoreError, match="cannot be stored"):
            store.record_run(make_run("r1", [series]))
        assert store.runs() == []


def test_non_finite_samples_still_read_back(tmp_path):
    series = SeriesResult(key=key(), bench=bench(1.0))
    series.bench.samples_ms = [1.0, math.inf]
    with Store(tmp_path / "results.db") as store:
        store.record_run(make_run("r1", [series], devices=[CPU]))
        assert store.load_run("r1").series[0].bench.samples_ms == [1.0, math.inf]


def test_db_import_judges_each_file_alone(tmp_path):
    from trtci.cli.history import db
    from trtci.store.runfile import write_runfile

    good = write_runfile(full_run("r1"), tmp_path / "files")
    bad = tmp_path / "files" / "bad.trtci.json.gz"
    bad.write_bytes(b"not gzip")
    database = tmp_path / "results.db"
    done = CliRunner().invoke(db, ["import", str(bad), str(good), "--db", str(database)])
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert f"refused: {bad}" in done.output and "imported 1 runs" in done.output
    assert recorded_ids(database) == {"r1"}
    again = CliRunner().invoke(db, ["import", str(good), "--db", str(database)])
    assert again.exit_code == 0 and "imported 0 runs" in again.output and "1 already there" in again.output


def test_json_of_the_kept_warning_is_plain(tmp_path):
    """The kept-run line is one JSON-safe string (it goes into the JSON summary's warnings)."""
    path = tmp_path / "results.db"
    with Store(path) as store:
        line = store.keep_unrecorded(full_run("r1"), StoreError(f"{path}: locked"))
    assert json.loads(json.dumps(line)) == line and line.count("\n") == 0

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys

import pytest

from tests.cli_runner import trtci
from tests.git_repos import clone, data_files
from tests.recorded_runs import full_run, history_store
from trtci.store.database import Store


@pytest.fixture
def db(tmp_path):
    history_store(tmp_path).close()
    return tmp_path / "results.db"


def test_db_runs_lists_newest_first_as_json(monkeypatch, capsys, db):
    code, out, _ = trtci(monkeypatch, capsys, "db", "runs", "--db", str(db), "--json", "--limit", "3")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["r5", "r4", "r3"]


def test_db_series_counts_results(monkeypatch, capsys, db):
    code, out, _ = trtci(monkeypatch, capsys, "db", "series", "--db", str(db), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["model"], r["results"]) for r in rows] == [("digits", 6)]


def test_db_export_table_as_csv_and_query_as_json(monkeypatch, capsys, db, tmp_path):
    out_csv = tmp_path / "bench.csv"
    code, _, _ = trtci(
        monkeypatch, capsys, "db", "export", "--db", str(db), "--table", "benchmarks", "-o", str(out_csv)
    )
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert code == 0 and len(rows) == 6 and float(rows[0]["latency_median_ms"]) == 1.0
    sql = "select run_id, verdict from comparisons where verdict = 'regression'"
    code, out, _ = trtci(monkeypatch, capsys, "db", "export", "--db", str(db), "--format", "json", "--sql", sql)
    assert code == 0 and json.loads(out) == [{"run_id": "r4", "verdict": "regression"}]


def test_db_export_is_read_only(monkeypatch, capsys, db):
    before = db.read_bytes()
    code, _, err = trtci(monkeypatch, capsys, "db", "export", "--db", str(db), "--sql", "delete from comparisons")
    assert code == 2 and "read-only" in err
    assert db.read_bytes() == before


def test_db_export_unknown_table_lists_the_tables(monkeypatch, capsys, db):
    code, _, err = trtci(monkeypatch, capsys, "db", "export", "--db", str(db), "--table", "nope")
    assert code == 2 and "benchmarks" in err


@pytest.mark.parametrize("content", [b"not a database at all" * 100, None])
def test_corrupt_or_foreign_database_is_refused_unchanged(monkeypatch, capsys, tmp_path, content):
    path = tmp_path / "results.db"
    if content is None:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (x)")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    for args in (["db", "runs"], ["dashboard", "-o", str(tmp_path / "d.html")], ["history", "pull"], ["db", "prune"]):
        code, _, err = trtci(monkeypatch, capsys, *args, "--db", str(path))
        assert code == 2, args
        assert "not a SQLite database" in err or "did not create" in err, args
        assert path.read_bytes() == before
    assert not (tmp_path / "d.html").exists()


def test_missing_database_is_an_input_error(monkeypatch, capsys, tmp_path):
    code, _, err = trtci(monkeypatch, capsys, "db", "runs", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no such database" in err


def test_db_prune_reports_what_it_did(monkeypatch, capsys, db):
    code, out, _ = trtci(monkeypatch, capsys, "db", "prune", "--db", str(db), "--keep-runs", "2")
    assert code == 0 and out.startswith("deleted 4 results (4 runs)")
    with Store(db) as store:
        assert [r["id"] for r in store.runs()] == ["r5", "r4"]


def test_history_push_and_pull_through_the_cli(monkeypatch, capsys, origin, tmp_path):  # noqa: F811
    work = clone(origin, tmp_path / "work")
    with Store(tmp_path / "ci.db") as store:
        store.record_run(full_run("r1"))
    code, out, _ = trtci(
        monkeypatch,
        capsys,
        "history",
        "push",
        "--repo-dir",
        str(work),
        "--db",
        str(tmp_path / "ci.db"),
        "--out-dir",
        str(tmp_path / "kept"),
    )
    assert code == 0 and "pushed runs/2026-11/" in out
    assert len(data_files(origin)) == 1
    code, out, _ = trtci(
        monkeypatch, capsys, "history", "pull", "--repo-dir", str(work), "--db", str(tmp_path / "new.db")
    )
    assert code == 0 and out.startswith("imported 1 runs")


def test_history_push_that_keeps_failing_exits_5(monkeypatch, capsys, origin, tmp_path):  # noqa: F811
    work = clone(origin, tmp_path / "work")
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    with Store(tmp_path / "ci.db") as store:
        store.record_run(full_run("r1"))
    code, _, err = trtci(
        monkeypatch,
        capsys,
        "history",
        "push",
        "--repo-dir",
        str(work),
        "--db",
        str(tmp_path / "ci.db"),
        "--out-dir",
        str(tmp_path / "kept"),
        "--attempts",
        "2",
    )
    kept = list((tmp_path / "kept").iterdir())
    assert code == 5 and len(kept) == 1 and str(kept[0]) in err and "trtci history push --file" in err


def test_commands_have_help():
    for args in (["history", "push"], ["history", "pull"], ["db", "export"], ["db", "prune"], ["dashboard"]):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from trtci.cli import cli; cli()",
                *args,
                "--help",
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and "Usage" in done.stdout, args


@pytest.mark.parametrize(
    "sql",
    [
        "VACUUM INTO '{out}'",
        "ATTACH '{out}' AS other",
        "select * from pragma_table_info('runs') where 0; VACUUM INTO '{out}'",
        "PRAGMA user_version = 7",
    ],
)
def test_db_export_writes_no_file_either(monkeypatch, capsys, db, tmp_path, sql):
    out = tmp_path / "copy.db"
    before = db.read_bytes()
    code, _, err = trtci(monkeypatch, capsys, "db", "export", "--db", str(db), "--sql", sql.format(out=out))
    assert code == 2 and "read-only" in err and err.count("\n") == 1
    assert not out.exists() and db.read_bytes() == before


def test_db_export_still_runs_any_select(monkeypatch, capsys, db):
    sql = "with recursive n(i) as (select 1 union all select i + 1 from n where i < 3) select count(*) as c, " \
          "max(json_extract(warnings, '$[0]')) as w from n, runs"  # fmt: skip
    code, out, _ = trtci(monkeypatch, capsys, "db", "export", "--db", str(db), "--format", "json", "--sql", sql)
    assert code == 0 and json.loads(out)[0]["c"] == 18


def test_db_runs_waits_for_a_writer_then_names_the_lock(monkeypatch, capsys, db):
    from tests.locks import lock_held

    monkeypatch.setenv("TRTCI_DB_TIMEOUT", "0.3")
    with lock_held(db, "EXCLUSIVE"):
        code, _, err = trtci(monkeypatch, capsys, "db", "runs", "--db", str(db))
    assert code == 2 and "another process held the database's lock" in err and "not a SQLite" not in err

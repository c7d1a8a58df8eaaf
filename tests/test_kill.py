"""kill -9 at random moments of `trtci run` and of `trtci history pull`, 20 times each: the database must pass
SQLite's integrity check after every kill and hold every run recorded before it (a run is one transaction, and
SQLite's journal rolls back one that was cut short)."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from models import mlp_classifier

from tests.git_repos import clone, git
from tests.recorded_runs import bench, key, make_run
from trtci.results import SeriesResult
from trtci.store.database import Store
from trtci.store.runfile import read_runfile, write_runfile

ROOT = Path(__file__).resolve().parent.parent
KILLS = 20


def trtci(cwd: Path, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "GITHUB_ACTIONS": "",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "trtci.cli", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def finished(process: subprocess.Popen) -> float:
    """Wait for a run to end on its own; its wall time."""
    start = time.monotonic()
    _, err = process.communicate(timeout=300)
    assert process.returncode in (0, 1, 2), err.decode()
    return time.monotonic() - start


def sound_runs(path: Path) -> set[str]:
    """The run ids in the database, after checking it: integrity, foreign keys, and no run without its series."""
    conn = sqlite3.connect(path, timeout=30)  # the first connection rolls back a journal a killed writer left
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        hollow = conn.execute("SELECT id FROM runs WHERE id NOT IN (SELECT run_id FROM run_series)").fetchall()
        assert hollow == []
        return {row[0] for row in conn.execute("SELECT id FROM runs")}
    finally:
        conn.close()


def kill_at_random(rng: random.Random, cwd: Path, args: tuple[str, ...], database: Path, span: float,
                   start: Path | None = None) -> None:  # fmt: skip
    """KILLS times: start the command, kill -9 it at a random moment of `span` seconds, check the database.
    With `start`, each time begins from a copy of that database (so that every kill can cut an import short)."""
    for _ in range(KILLS):
        if start is not None:
            shutil.copy(start, database)
        before = sound_runs(database)
        process = trtci(cwd, *args)
        time.sleep(rng.uniform(0.0, span))
        process.kill()
        process.wait()
        after = sound_runs(database)
        assert before <= after, f"runs lost: {sorted(before - after)}"


@pytest.mark.slow
def test_kill_9_during_trtci_run(tmp_path):
    config = tmp_path / "trtci.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [{"path": str(mlp_classifier(tmp_path / "mlp.onnx")), "precisions": ["fp32", "fp16"],
                            "batch_sizes": [1, 4]}],
                "bench": {"warmup_ms": 0, "duration_s": 0.03, "min_iterations": 5},
                "database": "results.db",
                "cache_dir": "cache",
                "summary_json": None,
                "report": None,
            }
        )
    )  # fmt: skip
    args = ("run", "--config", str(config), "--branch", "main")
    span = finished(trtci(tmp_path, *args)) * 1.2  # the first run prepares the cache; later ones are like this
    database = tmp_path / "results.db"
    assert len(sound_runs(database)) == 1
    kill_at_random(random.Random(20261127), tmp_path, args, database, span)
    finished(trtci(tmp_path, *args))
    assert len(sound_runs(database)) >= 2


@pytest.mark.slow
def test_kill_9_during_history_pull(tmp_path, origin):  # noqa: F811
    work = clone(origin, tmp_path / "work")
    files = tmp_path / "files"
    for day in range(1, 29):
        series = [SeriesResult(key=key(model=f"m{i}"), bench=bench(1.0 + i / 10, iterations=2000)) for i in range(6)]
        write_runfile(make_run(f"r{day:02d}", series, started_at=f"2026-11-{day:02d}T08:00:00Z"), files)
    for path in sorted(files.iterdir()):  # one commit with every run file, as pushes would have made them
        blob = git(work, "hash-object", "-w", str(path))
        git(work, "update-index", "--add", "--cacheinfo", f"100644,{blob},runs/2026-11/{path.name}")
    tree = git(work, "write-tree")
    commit = git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", tree, "-m", "runs")
    git(work, "push", "-q", "origin", f"{commit}:refs/heads/trtci-data")
    reader = clone(origin, tmp_path / "reader")
    start = tmp_path / "start.db"
    with Store(start) as store:  # runs recorded before: every kill must leave them
        for path in sorted(files.iterdir())[:3]:
            store.record_run(read_runfile(path))
    database = tmp_path / "results.db"
    args = ("history", "pull", "--db", "results.db", "--repo-dir", str(reader))
    shutil.copy(start, database)
    span = finished(trtci(tmp_path, *args)) * 1.1
    kill_at_random(random.Random(11), tmp_path, args, database, span, start)
    finished(trtci(tmp_path, *args))
    assert sound_runs(database) == {f"r{day:02d}" for day in range(1, 29)}

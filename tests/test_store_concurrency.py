"""Many writers, one database: 8 processes record 50 runs each through the Store API while another process
holds the write lock for 10 s in the middle. Every run must be recorded and the file must pass SQLite's
integrity check: writers wait (busy timeout, BEGIN IMMEDIATE) instead of failing with "database is locked"."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trtci.store.database import Store

ROOT = Path(__file__).resolve().parent.parent
WRITERS, RUNS_EACH, LOCK_S = 8, 50, 10.0

WRITER = textwrap.dedent(
    """
    import sys
    from trtci.results import BenchResult, DeviceInfo, LatencyStats, RunContext, RunResult, SeriesKey, SeriesResult
    from trtci.store.database import Store

    path, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    device = DeviceInfo(kind="cpu", name=f"writer {writer % 3}")
    for i in range(count):
        key = SeriesKey(model=f"m{i % 4}", model_hash="ab" * 32, precision="fp32", batch=1,
                        backend="onnxruntime", device_id=device.id)
        samples = [1.0 + 0.001 * ((i * 7 + j) % 13) for j in range(200)]
        stats = LatencyStats(min=1.0, mean=1.006, median=1.006, p90=1.01, p95=1.011, p99=1.012, max=1.012,
                             std=0.003, cv=0.003, iterations=200, throughput=994.0, unstable=False)
        bench = BenchResult(stats=stats, samples_ms=samples, warmup_ms=0.0, duration_s=0.2, timer="host")
        context = RunContext(run_id=f"w{writer}-{i}", started_at=f"2026-11-27T08:{writer:02d}:{i:02d}Z",
                             branch="main")
        run = RunResult(context=context, devices=[device], series=[SeriesResult(key=key, bench=bench)])
        with Store(path) as store:  # a new connection per run, as separate CLI invocations have
            store.record_run(run)
    print("done", flush=True)
    """
)

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
    while True:  # spin rather than wait with SQLite's sleeping busy handler: eight writers would always win
        try:
            conn.execute("BEGIN EXCLUSIVE")  # blocks readers and writers alike
            break
        except sqlite3.OperationalError:
            pass
    print(conn.execute("SELECT count(*) FROM runs").fetchone()[0], flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
    """
)


def count_runs(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=60)
    try:
        return conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.slow
def test_eight_writers_and_a_long_lock_lose_no_run(tmp_path):
    path = tmp_path / "shared.db"
    Store(path).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(w), str(RUNS_EACH)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for w in range(WRITERS)
    ]
    try:
        deadline = time.monotonic() + 120
        while count_runs(path) < WRITERS * RUNS_EACH // 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = subprocess.run(
            [sys.executable, "-c", HOLDER, str(path), str(LOCK_S)], capture_output=True, text=True, timeout=120
        )
        assert holder.returncode == 0, holder.stderr
        at_lock = int(holder.stdout)
        results = [writer.communicate(timeout=300) for writer in writers]
    finally:
        for writer in writers:
            writer.kill()
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0 and out.strip() == "done", err
    assert 0 < at_lock < WRITERS * RUNS_EACH  # the lock was taken while the writers were writing
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        ids = {row[0] for row in conn.execute("SELECT id FROM runs")}
        assert ids == {f"w{w}-{i}" for w in range(WRITERS) for i in range(RUNS_EACH)}
        assert conn.execute("SELECT count(*) FROM benchmarks").fetchone()[0] == WRITERS * RUNS_EACH
    finally:
        conn.close()

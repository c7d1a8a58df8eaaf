"""Cold run vs warm re-run of the bundled example: do the caches make a re-run cheap?

Runs `trtci run --config examples/digits/trtci.yml` as a user would (a fresh process each time) into a temporary
copy of the example: once with empty caches (cold), then several times with caches hit (warm). Prints the wall
time of each, the time spent outside the timed benchmark loops (what caches can save), and as the last line:

  warm_rerun: cold_s=<a> warm_s=<b> speedup=<a/b> cold_overhead_s=<c> warm_overhead_s=<d>
              overhead_speedup=<c/d> machine=<cpu>   (one line)

Run from the repository root: python -m benchmarks.warm_rerun
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trtci.context.host import cpu_info

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
WARM_RUNS = 3


def run_once(workdir: Path) -> tuple[float, float]:
    """Wall seconds of one `trtci run`, and the seconds of it spent in timed benchmark loops and warm-ups."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trtci.cli", "run", "--config", str(workdir / "trtci.yml")],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"trtci run failed ({done.returncode}):\n{done.stderr}")
    with sqlite3.connect(workdir / "results" / "trtci.db") as db:
        (measured,) = db.execute(
            "select sum(duration_s + warmup_ms / 1000.0) from benchmarks"
            " where run_id = (select id from runs order by rowid desc limit 1)"
        ).fetchone()
    return wall, measured


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "digits"
        shutil.copytree(EXAMPLE, workdir, ignore=shutil.ignore_patterns("results", ".trtci-cache"))
        cold, cold_measured = run_once(workdir)
        warm_runs = [run_once(workdir) for _ in range(WARM_RUNS)]
    warm = statistics.median(w for w, _ in warm_runs)
    warm_measured = statistics.median(m for _, m in warm_runs)
    cold_overhead = cold - cold_measured
    warm_overhead = warm - warm_measured
    print(f"{'run':<8} {'wall s':>8} {'benchmarking s':>15} {'everything else s':>18}")
    print(f"{'cold':<8} {cold:>8.2f} {cold_measured:>15.2f} {cold_overhead:>18.2f}")
    for i, (wall, measured) in enumerate(warm_runs, 1):
        print(f"{f'warm {i}':<8} {wall:>8.2f} {measured:>15.2f} {wall - measured:>18.2f}")
    cpu = cpu_info()
    print(
        f"warm_rerun: cold_s={cold:.2f} warm_s={warm:.2f} speedup={cold / warm:.2f} "
        f"cold_overhead_s={cold_overhead:.2f} warm_overhead_s={warm_overhead:.2f} "
        f"overhead_speedup={cold_overhead / warm_overhead:.2f} machine={cpu['name']}, {cpu['logical_cores']} cores"
    )


if __name__ == "__main__":
    main()

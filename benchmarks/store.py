"""The results store at scale: baseline lookup, dashboard generation and bytes on disk per result.

Builds a database of 100,000 results: 100 series (25 models x 2 devices x 2 precisions) over 1,000 runs on main.
As retention leaves it (`trtci db prune` defaults), the newest 20 results of each series hold 10,000 raw samples
and older ones a 201-point quantile sketch. Then it times:
- baseline lookup plus comparison (trtci.verdict.latency.compare) of a new 100-series run: target < 200 ms;
- `trtci dashboard` generation of the whole database (the latest 200 runs per series): target < 5 s;
and measures the bytes on disk of one result with its 10,000 raw samples (a fresh database of full results;
target < 20 KB). Last line:

  store: lookup_100_series_ms=<x> dashboard_s=<y> kb_per_series_run=<z>

Run from the repository root: python -m benchmarks.store
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from trtci.config import CompareSettings
from trtci.report.dashboard import write_dashboard
from trtci.results import BenchResult, DeviceInfo, LatencyStats, RunContext, RunResult, SeriesKey, SeriesResult
from trtci.store import queries as baseline
from trtci.store.database import Store
from trtci.verdict.changepoints import change_points
from trtci.verdict.latency import compare

RUNS, FULL_RUNS, SAMPLES, SKETCH = 1000, 20, 10_000, 201
DEVICES = [DeviceInfo("gpu", "NVIDIA H100 80GB HBM3", {"driver": "575"}), DeviceInfo("gpu", "NVIDIA L4", {})]
KEYS = [
    SeriesKey(f"model{m:02d}", f"{m:064x}", precision, 1, "tensorrt", device.id)
    for m in range(25)
    for device in DEVICES
    for precision in ("fp16", "int8")
]


def series(key: SeriesKey, run: int, rng: np.random.Generator, count: int) -> SeriesResult:
    median = (0.5 + int(key.model_hash[-2:], 16) / 10) * (1.15 if run > RUNS // 2 and key.precision == "int8" else 1)
    samples = median * (1 + 0.02 * rng.standard_normal(count)).clip(0.5)
    if count == SKETCH:
        samples = np.sort(samples)  # what a quantile sketch looks like
    p50, p90, p95, p99 = (float(v) for v in np.percentile(samples, [50, 90, 95, 99]))
    stats = LatencyStats(
        min=float(samples.min()),
        mean=float(samples.mean()),
        median=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        max=float(samples.max()),
        std=float(samples.std()),
        cv=float(samples.std() / samples.mean()),
        iterations=SAMPLES,
        throughput=1000 / float(samples.mean()),
        unstable=False,
    )
    return SeriesResult(key=key, bench=BenchResult(stats, samples.tolist(), 200.0, 3.0, "cuda-event"))


def make_run(run: int, rng: np.random.Generator, count: int) -> RunResult:
    context = RunContext(
        f"run{run:05d}",
        f"2026-{1 + run // 100:02d}-{1 + run % 28:02d}T{run % 24:02d}:00:00Z",
        commit=f"{run:040x}",
        branch="main",
    )
    return RunResult(context, DEVICES, [series(key, run, rng, count) for key in KEYS])


def build(path: Path) -> None:
    rng = np.random.default_rng(0)
    with Store(path) as store:
        for run in range(RUNS):
            store.record_run(make_run(run, rng, SAMPLES if run >= RUNS - FULL_RUNS else SKETCH))


def kb_per_full_result(directory: Path) -> float:
    """KB on disk per result that keeps all 10,000 raw samples: 5 runs of 100 series in a fresh file."""
    path = directory / "full.db"
    rng = np.random.default_rng(1)
    with Store(path) as store:
        for run in range(5):
            store.record_run(make_run(run, rng, SAMPLES))
        store.vacuum()
    return os.path.getsize(path) / 1024 / (5 * len(KEYS))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="trtci-store-bench-") as tmp:
        path = Path(tmp) / "results.db"
        start = time.perf_counter()
        build(path)
        with Store(path) as store:
            results = store.db.execute("SELECT count(*) FROM benchmarks").fetchone()[0]
            print(
                f"built {results} results in {time.perf_counter() - start:.1f} s: "
                f"{os.path.getsize(path) / 1024 / results:.2f} KB per result on average"
            )
            new = make_run(RUNS, np.random.default_rng(2), 100)
            settings = CompareSettings()
            times = []
            for _ in range(7):
                start = time.perf_counter()
                comparisons = compare(new, store, settings)
                times.append(time.perf_counter() - start)
            assert sum(c.baseline is not None for c in comparisons) == len(KEYS)
            lookup_ms = statistics.median(times) * 1000
            start = time.perf_counter()
            until = baseline.cutoff(store, "main", None)
            for key in KEYS:
                baseline.history(
                    store, key.id, "main", until=until, exclude_run=new.context.run_id, window=settings.window
                )
            print(f"of which the history queries of 100 series: {(time.perf_counter() - start) * 1000:.1f} ms")
            start = time.perf_counter()
            drawn = write_dashboard(store, Path(tmp) / "dashboard.html")
            dashboard_s = time.perf_counter() - start
            print(f"dashboard of {drawn} series: {os.path.getsize(Path(tmp) / 'dashboard.html') / 1e6:.1f} MB")
            history = store.history(limit=200)
            start = time.perf_counter()
            for points in history.values():
                change_points([p["latency_median_ms"] for p in points])
            print(f"of which change points: {time.perf_counter() - start:.2f} s")
        kb = kb_per_full_result(Path(tmp))
    print(f"store: lookup_100_series_ms={lookup_ms:.1f} dashboard_s={dashboard_s:.2f} kb_per_series_run={kb:.1f}")


if __name__ == "__main__":
    main()

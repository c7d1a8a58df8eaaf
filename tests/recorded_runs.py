"""Minimal runs and filled databases for the store, history, dashboard and fault tests."""

from __future__ import annotations

from pathlib import Path

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
from trtci.store.database import Store
from trtci.store.runfile import write_runfile

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


def full_run(run_id: str = "r1") -> RunResult:
    second = DeviceInfo(kind="gpu", name="Test GPU", details={"driver": "575"})
    series = [
        *full_series(),
        SeriesResult(key=key(model="other", device=second), bench=bench(3.0, iterations=500), build={"layers": 3}),
    ]
    series[0].bench.extra = {"gpu_compute_ms": {"median": 1.2}}
    run = make_run(run_id, series, devices=[CPU, second])
    run.context.pr_number, run.context.finished_at, run.context.base_branch = 7, "2026-11-27T08:01:00Z", "main"
    run.warnings = ["cv above 2.5%"]
    run.comparisons = [
        Comparison(
            series[0].key.id,
            series[0].key.label,
            "regression",
            "latency_median_ms",
            1.5,
            1.2,
            1.25,
            0.1,
            reason="slower",
        ),
        Comparison(series[1].key.id, series[1].key.label, "missing", "latency_median_ms", None, None, None, 0.1),
    ]
    return run


def history_store(tmp_path, runs: int = 6) -> Store:
    store = Store(tmp_path / "results.db")
    for i in range(runs):
        branch = "main" if i % 2 == 0 else "pr"
        run = make_run(
            f"r{i}",
            [SeriesResult(key=key(), bench=bench(1.0 + i))],
            branch=branch,
            started_at=f"2026-11-{10 + i:02d}T08:00:00Z",
        )
        run.comparisons = [
            Comparison(
                key().id,
                key().label,
                "regression" if i == 4 else "unchanged",
                "latency_median_ms",
                1.0 + i,
                1.0,
                1.0 + i,
                0.1,
            )
        ]
        store.record_run(run)
    return store



def run_file(tmp_path: Path, run_id: str, day: int = 1) -> Path:
    run = make_run(
        run_id, [SeriesResult(key=key(), bench=bench(1.0 + day / 10))], started_at=f"2026-11-{day:02d}T08:00:00Z"
    )
    return write_runfile(run, tmp_path / f"out-{run_id}")


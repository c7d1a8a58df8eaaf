"""Hand-built runs with every verdict, device and failure the report, the JSON summary and the GitHub side render."""

from __future__ import annotations

import dataclasses

from trtci.results import (
    AccuracyChange,
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

CPU = DeviceInfo("cpu", "AMD EPYC 7B13", {"cores": 2, "isa": ["avx2", "avx512_vnni"], "onnxruntime": "1.32.0"})


GPU = DeviceInfo("gpu", "NVIDIA H100 80GB HBM3", {"driver": "570.86", "cuda": "12.8", "compute_capability": "9.0"})


def bench(median: float, batch: int, cv: float = 0.01) -> BenchResult:
    mean = median * 1.01
    stats = LatencyStats(
        min=median * 0.9,
        mean=mean,
        median=median,
        p90=median * 1.1,
        p95=median * 1.15,
        p99=median * 1.3,
        max=median * 1.6,
        std=cv * mean,
        cv=cv,
        iterations=1000,
        throughput=batch * 1000 / median,
        unstable=cv > 0.025,
    )
    return BenchResult(stats=stats, samples_ms=[median] * 5, warmup_ms=200.0, duration_s=3.0, timer="host")


def output(cosine: float, sqnr_db: float, top1: float | None = None, max_abs: float = 0.01) -> OutputMetrics:
    return OutputMetrics("logits", cosine, sqnr_db, max_abs, max_abs * 10, top1, 0)


def key(model: str, precision: str, batch: int, backend: str, device: DeviceInfo, quantization: str = ""):
    return SeriesKey(model, "ab" * 8, precision, batch, backend, device.id, quantization)


def compared(series: SeriesResult, verdict: str, ratio: float | None, reason: str = "") -> Comparison:
    current = series.bench.stats.median if series.bench else None
    baseline = current / ratio if current is not None and ratio else None
    return Comparison(
        series.key.id,
        series.key.label,
        verdict,
        "latency_median_ms",
        current,
        baseline,
        ratio,
        0.10,
        baseline_run="1234567000-1",
        baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
        reason=reason,
    )


def sample_run() -> RunResult:
    """Two devices; fp32/fp16/int8 series; a regression, an accuracy failure, a new series, an error, a missing
    series, an improvement, an unstable series, an infinite SQNR, two lower precisions slower than FP32, and an
    accuracy regression against the base branch."""
    cpu_fp32 = SeriesResult(key("digits", "fp32", 8, "onnxruntime", CPU), bench=bench(1.0, 8))
    cpu_fp16 = SeriesResult(
        key("digits", "fp16", 8, "onnxruntime", CPU),
        bench=bench(1.19, 8),
        accuracy=AccuracyResult(True, [], 512, [output(0.999991, 62.3, 1.0, 1e-5)], thresholds={"min_cosine": 0.99}),
    )
    cpu_int8_ort = SeriesResult(
        key("digits", "int8", 8, "onnxruntime", CPU, "onnxruntime"),
        bench=bench(0.37, 8),
        accuracy=AccuracyResult(
            True,
            [],
            512,
            [output(0.9987, 31.4, 0.996)],
            top1=0.952,
            reference_top1=0.954,
            ratio=0.952 / 0.954,
            top5=0.998,
            reference_top5=0.998,
            delta=0.952 - 0.954,
            delta_low=-0.0078,
            delta_high=0.0039,
        ),
        build={"quantize_s": 1.83, "qdq_nodes": 42, "model_bytes": 1234567},
    )
    cpu_int8_trt = SeriesResult(
        key("digits", "int8", 8, "onnxruntime", CPU, "tensorrt"),
        bench=bench(1.25, 8),
        accuracy=AccuracyResult(
            False,
            ["cosine 0.912 < 0.99 on output 'logits'", "SQNR 11.2 dB < 20 dB on output 'logits'"],
            512,
            [output(0.912, 11.2, 0.81, 0.4)],
        ),
    )
    gpu_fp32 = SeriesResult(key("resnet18", "fp32", 1, "tensorrt", GPU), bench=bench(0.95, 1))
    gpu_fp16 = SeriesResult(
        key("resnet18", "fp16", 1, "tensorrt", GPU),
        bench=bench(0.41, 1, cv=0.041),
        accuracy=AccuracyResult(True, [], 256, [output(1.0, float("inf"), 1.0, 0.0)]),
        build={"build_s": 12.4, "engine_bytes": 23456789, "layers": 53},
    )
    gpu_int8 = SeriesResult(
        key("resnet18", "int8", 1, "tensorrt", GPU, "tensorrt"),
        error="TensorRT could not parse node 'Conv_12': INT8 Q/DQ scale is not a constant; re-run prepare",
    )
    missing_key = key("resnet18", "int8", 8, "tensorrt", GPU, "tensorrt")
    comparisons = [
        compared(cpu_fp32, "unchanged", 1.012),
        compared(cpu_fp16, "unchanged", 0.985),
        compared(cpu_int8_ort, "regression", 1.218, "above the threshold in 3 of 3 runs"),
        compared(cpu_int8_trt, "new", None, "no baseline for this series"),
        compared(gpu_fp32, "improvement", 0.85),
        compared(gpu_fp16, "inconclusive", 1.06, "unstable: CV 4.1% above 2.5%"),
        Comparison(
            missing_key.id,
            missing_key.label,
            "missing",
            "latency_median_ms",
            None,
            0.2,
            None,
            0.10,
            baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
        ),
    ]
    context = RunContext(
        run_id="1234567890-1",
        started_at="2025-06-01T12:00:00Z",
        commit="0123456789abcdef0123456789abcdef01234567",
        branch="feature/faster-int8",
        base_branch="main",
        pr_number=42,
        event="pull_request",
        repository="acme/vision",
        run_url="https://github.com/acme/vision/actions/runs/1234567890",
        merge_base="fedcba9876543210fedcba9876543210fedcba98",
        finished_at="2025-06-01T12:04:31Z",
    )
    accuracy_changes = [
        AccuracyChange(
            cpu_fp16.key.id,
            cpu_fp16.key.variant_label,
            "regression",
            "top1_agreement",
            0.971,
            0.998,
            -0.027,
            [-0.0431, -0.0137],
            0.01,
            512,
            baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
            reason=(
                "top-1 agreement with FP32 97.10% vs 99.80% on main@fedcba9 (-2.70 pt, interval -4.31..-1.37 pt, "
                "threshold 1 pt); 14 of 512 samples changed"
            ),
        ),
        AccuracyChange(
            cpu_int8_ort.key.id,
            cpu_int8_ort.key.variant_label,
            "unchanged",
            "top1",
            0.952,
            0.952,
            0.0,
            [-0.0039, 0.0039],
            0.01,
            512,
            baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
            reason="top-1 95.20% vs 95.20% on main@fedcba9 (+0.00 pt, interval -0.39..+0.39 pt, threshold 1 pt)",
        ),
    ]
    return RunResult(
        context=context,
        devices=[CPU, GPU],
        series=[cpu_fp32, cpu_fp16, cpu_int8_ort, cpu_int8_trt, gpu_fp32, gpu_fp16, gpu_int8],
        comparisons=comparisons,
        warnings=["GPU clocks were not locked: latency may vary between runs (lock them with nvidia-smi -lgc)"],
        accuracy_changes=accuracy_changes,
    )


def passing_run() -> RunResult:
    """The sample run with only the series that pass, and no comparisons."""
    run = sample_run()
    kept = [s for s in run.series if s.passed]
    return RunResult(run.context, run.devices, kept)


def acknowledged_run() -> RunResult:
    """The sample run with its regression accepted in trtci.yml."""
    run = sample_run()
    run.comparisons = [
        dataclasses.replace(c, verdict="acknowledged", acknowledgement="acknowledged in trtci.yml: new #12 head")
        if c.verdict == "regression"
        else c
        for c in run.comparisons
    ]
    return run


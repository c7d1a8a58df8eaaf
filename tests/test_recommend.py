"""Precision advice per model, device, backend and batch: the fastest precision that passes accuracy, with its
speedup over FP32 and an interval; FP32 when nothing lower is both faster and accurate."""

from __future__ import annotations

import numpy as np
import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tests.sample_runs import CPU, GPU, output
from trtci.report.json_summary import summary_dict
from trtci.report.markdown import FILTERS, _default_template_dir
from trtci.results import (
    AccuracyResult,
    BenchResult,
    LatencyStats,
    RootCause,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
)
from trtci.verdict.recommend import recommend


def timed(median: float, spread: float = 0.02, seed: int = 0) -> BenchResult:
    samples = list(np.random.default_rng(seed).normal(median, spread * median, 400).clip(median * 0.5))
    stats = LatencyStats(median, median, median, median, median, median, median, 0.0, spread, 400, 1.0, False)
    return BenchResult(stats=stats, samples_ms=samples, warmup_ms=1.0, duration_s=1.0, timer="host")


def accuracy(passed: bool, cause: RootCause | None = None) -> AccuracyResult:
    return AccuracyResult(passed=passed, reasons=[], samples=100, outputs=[output(0.999, 40.0)], root_cause=cause)


def series(precision: str, batch: int, median: float | None, passed: bool | None = True, quantization="", device=CPU,
           cause: RootCause | None = None, seed: int = 0) -> SeriesResult:  # fmt: skip
    key = SeriesKey("resnet", "ab" * 8, precision, batch, "onnxruntime", device.id, quantization)
    checked = None if passed is None else accuracy(passed, cause)
    return SeriesResult(key, bench=timed(median, seed=seed) if median is not None else None, accuracy=checked)


def run_of(*members: SeriesResult) -> RunResult:
    return RunResult(RunContext("r", "2026-01-01T00:00:00Z"), devices=[CPU, GPU], series=list(members))


def test_the_fastest_accurate_precision_wins_with_its_speedup_and_interval():
    (advice,) = recommend(
        run_of(
            series("fp32", 8, 10.0, None),
            series("fp16", 8, 6.0, seed=1),
            series("int8", 8, 4.0, quantization="onnxruntime", seed=2),
            series("int8", 8, None, quantization="tensorrt"),  # validated only: not timed here
        )
    )
    assert (advice.precision, advice.quantization, advice.batch, advice.device) == ("int8", "onnxruntime", 8, CPU.name)
    assert advice.speedup_vs_fp32 == pytest_approx(2.5)
    assert advice.interval[0] > 2.3 and advice.interval[1] < 2.7
    assert advice.label == "int8 (onnxruntime)"
    assert advice.reason.startswith("int8(onnxruntime) passes accuracy, 2.50x FP32's speed (")
    assert "fp16 1.67x" in advice.reason and "int8(tensorrt) was not timed here" in advice.reason


def pytest_approx(value: float):
    return pytest.approx(value, rel=0.02)


def test_fp32_when_nothing_lower_is_both_faster_and_accurate():
    (advice,) = recommend(
        run_of(
            series("fp32", 1, 1.0, None),
            series("fp16", 1, 1.5, seed=1),  # slower
            series("int8", 1, 0.5, passed=False, quantization="onnxruntime", seed=2),  # fast, inaccurate
            series("int8", 1, 0.9, passed=None, quantization="tensorrt", seed=3),  # never checked
        )
    )
    assert (advice.precision, advice.speedup_vs_fp32, advice.nodes_to_exclude) == ("fp32", None, [])
    assert advice.reason == (
        "FP32: fp16 slower (0.67x); int8(onnxruntime) fails accuracy; "
        "int8(tensorrt) has no accuracy check (add validation data)"
    )


def test_a_speedup_inside_the_noise_is_not_advice():
    (advice,) = recommend(run_of(series("fp32", 1, 1.0, None), series("fp16", 1, 0.98, seed=1)))
    assert advice.precision == "fp32" and "fp16 not 5% faster with confidence (1.02x, " in advice.reason


def test_a_failing_int8_counts_with_the_nodes_its_root_cause_keeps_in_float():
    cause = RootCause(
        nodes_to_exclude=["conv2", "conv3"], passed=True, speedup_vs_fp32=1.8, speedup_interval=[1.7, 1.9]
    )
    members = [
        series("fp32", 1, 1.0, None),
        series("fp32", 8, 8.0, None),
        series("int8", 1, 0.5, passed=False, quantization="onnxruntime", cause=cause, seed=1),
        series("int8", 8, 4.0, passed=False, quantization="onnxruntime", cause=cause, seed=2),
    ]
    small, large = recommend(run_of(*members))
    assert small.batch == 1 and small.precision == "fp32"  # the mixed model was timed at the largest batch only
    assert (large.precision, large.nodes_to_exclude, large.speedup_vs_fp32) == ("int8", ["conv2", "conv3"], 1.8)
    assert large.label == "int8 (onnxruntime) with 2 nodes in float"
    assert "passes accuracy with those nodes in float, 1.80x" in large.reason


def test_advice_is_per_device_and_needs_a_timed_fp32():
    gpu_fp16 = series("fp16", 4, 2.0, device=GPU, seed=1)
    advice = recommend(
        run_of(
            series("fp32", 4, 5.0, None),
            series("fp16", 4, 6.0, seed=2),
            series("fp32", 4, 4.0, None, device=GPU),
            gpu_fp16,
            series("fp16", 2, 1.0, seed=3),
        )  # fmt: skip
    )
    assert [(a.device, a.precision) for a in advice] == [(CPU.name, "fp32"), (GPU.name, "fp16")]
    assert advice[1].series_id == gpu_fp16.key.id


def test_the_json_summary_carries_the_advice():
    summary = summary_dict(run_of(series("fp32", 8, 10.0, None), series("fp16", 8, 5.0, seed=1)))
    (entry,) = summary["recommendation"]
    assert entry["precision"] == "fp16" and entry["label"] == "fp16" and entry["batch"] == 8
    assert entry["speedup_vs_fp32"] == pytest_approx(2.0) and len(entry["interval"]) == 2


def test_the_advice_partial_renders_a_table_with_the_reason():
    env = Environment(
        loader=FileSystemLoader(str(_default_template_dir())), undefined=StrictUndefined, trim_blocks=True,
        lstrip_blocks=True,
    )  # fmt: skip
    env.filters.update(FILTERS)
    advice = recommend(run_of(series("fp32", 8, 10.0, None), series("fp16", 8, 5.0, seed=1)))
    text = env.get_template("_advice.md.j2").render(recommendation=advice)
    assert "### Precision to ship" in text
    assert "| resnet | AMD EPYC 7B13 | onnxruntime | 8 | **fp16** | 2.0" in text
    assert env.get_template("_advice.md.j2").render(recommendation=[]).strip() == ""

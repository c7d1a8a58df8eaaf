"""trtexec-style statistics on scripted samples, and the host timing loop on real calls."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from trtci.backends import measure
from trtci.backends.measure import collect, latency_stats, measure_host, percentile
from trtci.backends.onnxruntime import OnnxRuntimeSession, brief
from trtci.config import BenchSettings
from trtci.errors import BackendError


def test_percentile_follows_trtexec_index_rule():
    ten = [float(v) for v in range(1, 11)]
    # trtexec in float32: exclude = int((1 - 0.9f) * 10) = int(1.0000002) = 1 -> sorted[8].
    assert percentile(ten, 90) == 9.0
    hundred = [float(v) for v in range(1, 101)]
    # exclude = int((1 - 0.99f) * 100) = int(0.99999) = 0 -> sorted[99], the maximum, as trtexec reports.
    assert percentile(hundred, 99) == 100.0
    # exclude = int(0.05 * 100) = 5 -> sorted[94].
    assert percentile(hundred, 95) == 95.0


def test_percentile_is_clamped_to_the_samples():
    samples = [1.0, 2.0, 3.0]
    assert percentile(samples, 100) == 3.0
    assert percentile(samples, 0) == 1.0  # sorted[3 - 1 - 3] clamps to the first sample
    assert percentile([7.0], 50) == 7.0
    with pytest.raises(ValueError):
        percentile(samples, 101)


def test_latency_stats_on_scripted_samples():
    samples = [4.0, 1.0, 3.0, 2.0]
    stats = latency_stats(samples, batch=8, wall_s=0.02, max_cv=0.5)
    assert (stats.min, stats.max, stats.median, stats.mean) == (1.0, 4.0, 2.5, 2.5)
    assert stats.std == pytest.approx(statistics.pstdev(samples))
    assert stats.cv == pytest.approx(statistics.pstdev(samples) / 2.5)
    assert stats.iterations == 4
    assert stats.throughput == pytest.approx(8 * 4 / 0.02)
    assert stats.p99 == 4.0
    assert not stats.unstable


def test_unstable_when_cv_exceeds_the_limit():
    steady = [10.0] * 50 + [10.2] * 50  # cv about 1%
    noisy = [10.0] * 50 + [11.0] * 50  # cv about 4.8%
    assert not latency_stats(steady, batch=1, wall_s=1.0, max_cv=0.025).unstable
    assert latency_stats(noisy, batch=1, wall_s=1.0, max_cv=0.025).unstable


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, -0.5], [math.inf]])
def test_bad_samples_are_backend_errors(bad):
    with pytest.raises(BackendError, match="timer returned"):
        latency_stats(bad, batch=1, wall_s=1.0, max_cv=0.025)


def test_collect_keeps_what_the_backend_timed():
    settings = BenchSettings(max_cv=0.01)
    result = collect(
        [2.0, 2.1, 1.9],
        batch=4,
        wall_s=0.5,
        warmup_ms=200.0,
        settings=settings,
        timer="cuda-event",
        extra={"gpu_compute_ms": 1.5},
    )
    assert result.timer == "cuda-event"
    assert result.duration_s == 0.5
    assert result.extra == {"gpu_compute_ms": 1.5}
    assert result.samples_ms == [2.0, 2.1, 1.9]
    assert result.stats.throughput == pytest.approx(4 * 3 / 0.5)
    assert result.stats.unstable  # cv about 4%, limit 1%


def test_measure_host_runs_at_least_min_iterations_and_the_duration():
    calls = []
    settings = BenchSettings(warmup_ms=0, duration_s=0.05, min_iterations=25)
    result = measure_host(lambda: calls.append(1), settings, batch=2)
    assert result.stats.iterations >= 25
    assert result.duration_s >= 0.05
    assert len(calls) >= result.stats.iterations + 1  # at least one warm-up call
    assert len(result.samples_ms) == result.stats.iterations
    assert result.timer == "host"
    assert result.stats.throughput == pytest.approx(2 * result.stats.iterations / result.duration_s)


def test_measure_host_keeps_going_until_min_iterations():
    settings = BenchSettings(warmup_ms=0, duration_s=1e-6, min_iterations=40)
    result = measure_host(lambda: time.sleep(0.0005), settings, batch=1)
    assert result.stats.iterations == 40


def test_measure_host_times_only_the_call_and_warms_up_by_time():
    seen = []

    def slow_progress(fraction: float) -> None:
        seen.append(fraction)
        time.sleep(0.03)  # must not show up in the per-call latencies

    settings = BenchSettings(warmup_ms=50, duration_s=0.35, min_iterations=5)
    result = measure_host(lambda: time.sleep(0.002), settings, batch=1, progress=slow_progress)
    assert result.warmup_ms >= 50
    assert min(result.samples_ms) >= 2.0
    assert statistics.median(result.samples_ms) < 25.0
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    assert 2 <= len(seen) <= 0.35 / 0.1 + 2  # about ten a second, plus the final 1.0


def tiny_onnx_session() -> ort.InferenceSession:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [16, 16], np.eye(16, dtype=np.float32).ravel())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "tiny", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_measure_host_on_an_onnxruntime_session():
    session = tiny_onnx_session()
    feeds = {"x": np.ones((4, 16), dtype=np.float32)}
    settings = BenchSettings(warmup_ms=10, duration_s=0.1, min_iterations=10)
    result = measure_host(lambda: session.run(None, feeds), settings, batch=4)
    stats = result.stats
    assert stats.min <= stats.median <= stats.p90 <= stats.p95 <= stats.p99 <= stats.max
    assert stats.min > 0
    assert sum(result.samples_ms) / 1e3 <= result.duration_s


def test_a_fast_call_timed_for_long_stops_at_the_sample_limit(monkeypatch):
    monkeypatch.setattr(measure, "MAX_SAMPLES", 5_000)
    settings = BenchSettings(warmup_ms=0, duration_s=3600, min_iterations=10)
    started = time.perf_counter()
    result = measure_host(lambda: None, settings, batch=1)
    assert time.perf_counter() - started < 60  # not the hour asked for
    assert result.stats.iterations == 5_000 and result.extra == {"stopped_by": "sample limit"}


def test_a_slow_call_asked_for_many_iterations_stops_at_the_time_limit(monkeypatch):
    monkeypatch.setattr(measure, "MAX_TIMED_S", 0.2)
    settings = BenchSettings(warmup_ms=0, duration_s=0.05, min_iterations=1_000_000)
    result = measure_host(lambda: time.sleep(0.01), settings, batch=1)
    assert 0.2 <= result.duration_s < 5 and result.stats.iterations < 100
    assert result.extra == {"stopped_by": "time limit"}


def test_a_benchmark_within_its_bounds_says_nothing_about_them():
    result = measure_host(lambda: None, BenchSettings(warmup_ms=0, duration_s=0.01, min_iterations=3), batch=1)
    assert result.extra == {}


def _model_of_opset(path, opset: int):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_an_onnxruntime_load_error_is_short_and_keeps_what_it_expected(tmp_path):
    path = _model_of_opset(tmp_path / "future.onnx", 99)
    with pytest.raises(BackendError) as caught:
        OnnxRuntimeSession(path, threads=1)
    message = str(caught.value)
    whole = str(caught.value.__cause__)  # `trtci --debug` prints the chain, this included
    assert len(whole) > 500 and "onnxruntime::" in whole
    assert message.startswith("onnxruntime cannot load future.onnx: ")
    assert len(message) <= len("onnxruntime cannot load future.onnx: ") + 100
    assert "[ONNXRuntimeError]" not in message and "onnxruntime::" not in message and "model_load_utils" not in message
    assert "is till opset" in message  # the end, where it says what it supports


@pytest.mark.parametrize(
    "text, short",
    [
        (
            "[ONNXRuntimeError] : 1 : FAIL : Deserialize tensor w failed.tensorprotoutils.cc:2201 "
            "GetExtDataFromTensorProto External initializer: w offset: 0 size to read: 36 given file_length: 2",
            "Deserialize tensor w failed. GetExtDataFromTensorProto External initializer: w offset: 0 size to read: "
            "36 given file_length: 2",
        ),
        (
            "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Reshape node. Status "
            "Message: /src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:91 onnxruntime::ReshapeHelper::"
            "ReshapeHelper(const onnxruntime::TensorShape&, bool) input_shape_size == requested_shape_size was false.",
            "Non-zero status code returned while running Reshape node. Status Message: input_shape_size == "
            "requested_shape_size was false.",
        ),
        ("", "RuntimeError"),
    ],
    ids=["location", "location-and-signature", "empty"],
)
def test_brief_drops_what_only_onnxruntime_developers_read(text, short):
    assert brief(RuntimeError(text), limit=200) == short


def test_brief_is_bounded_in_length_and_time_whatever_the_message():
    for text in ("x" * 10_000_000, "a/" * 1_000_000, "a.cc:1 " * 100_000, "f::g(" * 100_000):
        started = time.perf_counter()
        short = brief(RuntimeError(text))
        assert len(short) <= 100 and time.perf_counter() - started < 2
def test_a_few_scheduler_outliers_inflate_the_cv_not_the_robust_spread():
    """The bundled example's rows read "CV 1155.3% unstable": a handful of preempted calls dominate the std."""
    samples = [0.010] * 990 + [1.0] * 10  # 1% of the calls preempted for a millisecond
    stats = latency_stats(samples, batch=1, wall_s=1.0, max_cv=0.025)
    assert stats.cv > 4.0  # what trtexec would report (495%), kept in the details
    assert stats.spread == 0.0 and not stats.unstable

"""CUDA timing: trtexec's metrics and warnings on scripted samples; the real loop, graphs and memory on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from trtci.backends.cuda_timing import (
    DeviceBuffer,
    PinnedArray,
    Stream,
    TimingRun,
    check,
    cudart,
    gpu_count,
    gpu_properties,
    metrics,
    time_enqueue,
    to_bench_result,
)
from trtci.config import BenchSettings
from trtci.errors import BackendError, BackendUnavailable


def _gpu_reason() -> str | None:
    try:
        return None if gpu_count() > 0 else "CUDA sees no GPU"
    except BackendUnavailable as e:
        return str(e)


NO_GPU = _gpu_reason()
gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"needs an NVIDIA GPU: {NO_GPU}")
SETTINGS = BenchSettings(warmup_ms=20, duration_s=0.2, min_iterations=10)


def _run(compute: list[float], enqueue: list[float], h2d: list[float] | None = None) -> TimingRun:
    h2d = h2d or []
    latency = [c + t for c, t in zip(compute, h2d)] if h2d else compute
    return TimingRun(latency, compute, enqueue, h2d_ms=h2d, d2h_ms=list(h2d), wall_s=sum(latency) / 1e3)


def test_metrics_follow_trtexec_statistics():
    rng = np.random.default_rng(0)
    compute = list(1.0 + 0.001 * rng.standard_normal(200))
    summary = metrics(_run(compute, [0.01] * 200), batch=4, settings=SETTINGS)
    stats = summary["stats"]["gpu_compute"]
    ordered = sorted(compute)
    assert stats["median"] == pytest.approx(float(np.median(compute)))
    assert stats["p99"] in compute and stats["p95"] <= stats["p99"] <= ordered[-1] == stats["max"]
    assert stats["cv"] == pytest.approx(np.std(compute) / np.mean(compute))
    assert summary["throughput_qps"] == pytest.approx(200 / (sum(compute) / 1e3))
    assert summary["transfers_included"] is False and "h2d" not in summary["stats"]
    assert summary["warnings"] == []


def test_warnings_for_unstable_compute_enqueue_bound_and_transfer_bound():
    compute = [1.0, 3.0] * 50
    summary = metrics(_run(compute, [1.9] * 100, h2d=[2.0] * 100), batch=1, settings=SETTINGS)
    text = " | ".join(summary["warnings"])
    assert "unstable" in text
    assert "enqueue time" in text
    assert "data transfers" in text
    assert summary["stats"]["latency"]["median"] == pytest.approx(float(np.median(compute)) + 2.0)


def test_bench_result_uses_latencies_and_carries_the_metrics():
    result = to_bench_result(_run([2.0, 1.0, 3.0] * 5, [0.1] * 15), batch=8, settings=SETTINGS, extra={"k": 1})
    assert result.timer == "cuda-event"
    assert result.samples_ms[:3] == [2.0, 1.0, 3.0]
    assert result.stats.median == 2.0
    assert result.extra["k"] == 1 and "gpu_compute" in result.extra["trtexec"]["stats"]


def test_cuda_errors_are_typed_with_the_fix():
    rt = cudart()
    with pytest.raises(BackendUnavailable, match="trtci doctor"):
        check((rt.cudaError_t.cudaErrorInsufficientDriver,), "cudaGetDeviceCount")
    with pytest.raises(BackendError, match="out of device memory"):
        check((rt.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc of 9 GiB for input x")
    assert check((rt.cudaError_t.cudaSuccess, 7), "cudaGetDeviceCount") == 7


@pytest.mark.gpu
@gpu
def test_properties_of_a_real_gpu():
    props = gpu_properties(0)
    assert props.name and props.memory_bytes > 0
    major, minor = props.compute.split(".")
    assert int(major) >= 5 and minor.isdigit()


@pytest.mark.gpu
@gpu
def test_real_copy_is_timed_through_a_cuda_graph_and_round_trips():
    rt = cudart()
    nbytes = 32 * 2**20
    host_in, host_out = PinnedArray((nbytes,), np.dtype(np.uint8)), PinnedArray((nbytes,), np.dtype(np.uint8))
    host_in.array[:] = np.random.default_rng(1).integers(0, 255, nbytes, dtype=np.uint8)
    src, dst = DeviceBuffer(nbytes), DeviceBuffer(nbytes)
    kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    try:
        with Stream() as stream:

            def copy(s: int) -> None:
                check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, kind, s), "copy")

            run = time_enqueue(
                copy,
                SETTINGS,
                stream.handle,
                h2d=lambda s: src.upload(host_in.array, s),
                d2h=lambda s: dst.download(host_out.array, s),
            )
        assert run.cuda_graph is True, run.graph_note
        assert len(run.latency_ms) >= SETTINGS.min_iterations
        assert all(c > 0 for c in run.compute_ms)
        assert all(lat >= c for lat, c in zip(run.latency_ms, run.compute_ms))
        assert np.array_equal(host_in.array, host_out.array)
    finally:
        for buffer in (src, dst, host_in, host_out):
            buffer.free()


@pytest.mark.gpu
@gpu
def test_uncapturable_enqueue_falls_back_to_plain_enqueues():
    rt = cudart()
    buffer = DeviceBuffer(2**20)
    try:
        with Stream() as stream:

            def sync_inside(s: int) -> None:
                check(rt.cudaMemsetAsync(buffer.ptr, 1, buffer.nbytes, s), "memset")
                check(rt.cudaStreamSynchronize(s), "sync")

            run = time_enqueue(sync_inside, SETTINGS, stream.handle)
        assert run.cuda_graph is False
        assert "capture failed" in run.graph_note
        assert len(run.compute_ms) >= SETTINGS.min_iterations
    finally:
        buffer.free()


@pytest.mark.gpu
@gpu
def test_out_of_device_memory_is_a_backend_error():
    with pytest.raises(BackendError, match="out of device memory"):
        DeviceBuffer(1 << 50, "a 1 PiB tensor")

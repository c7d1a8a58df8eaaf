"""Time real CUDA work through trtci's TensorRT timing path, with no TensorRT: the loop, graphs, NVML.

    PYTHONUNBUFFERED=1 python benchmarks/gpu_timing.py [--seconds 2] [--megabytes 256]

Workloads, each an `enqueue(stream)` like an engine's execute_async_v3:
  copy          a device-to-device cudaMemcpyAsync of --megabytes, captured in a CUDA graph
  copy-plain    the same with CUDA graphs off
  copy-io       the same with 16 MiB host-to-device and device-to-host copies from pinned memory included
  sync-capture  a copy followed by a stream synchronize, which cannot be captured: shows the graph fallback
  matmul        a bf16 8192^3 PyTorch matmul on the same stream (only where PyTorch with CUDA is installed)
Prints trtexec's table (min/mean/median/p90/p95/p99/max/CV per quantity), throughput, the warnings trtexec
would print, and NVML telemetry sampled around each workload.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from trtci.backends.cuda_timing import (
    DeviceBuffer,
    Enqueue,
    PinnedArray,
    Stream,
    check,
    cudart,
    gpu_properties,
    metrics,
    time_enqueue,
)
from trtci.backends.telemetry import TelemetrySampler
from trtci.config import BenchSettings

ROWS = (("Latency", "latency"), ("Enqueue", "enqueue"), ("H2D", "h2d"), ("GPU Compute", "gpu_compute"), ("D2H", "d2h"))


def print_table(name: str, summary: dict[str, Any], telemetry: dict[str, Any], work: Callable[[float], str]) -> None:
    transfers = "included" if summary["transfers_included"] else "excluded"
    print(f"\n=== {name}: {summary['graph_note']}; transfers {transfers}")
    print(f"{'':12} {'min':>9} {'mean':>9} {'median':>9} {'p90':>9} {'p95':>9} {'p99':>9} {'max':>9} {'CV':>7}  (ms)")
    for label, key in ROWS:
        s = summary["stats"].get(key)
        if s is None:
            continue
        values = " ".join(f"{s[k]:9.4f}" for k in ("min", "mean", "median", "p90", "p95", "p99", "max"))
        print(f"{label:12} {values} {s['cv']:7.2%}")
    compute = summary["stats"]["gpu_compute"]
    qps, iterations = summary["throughput_qps"], compute["iterations"]
    print(f"Throughput: {qps:.1f} qps over {iterations} iterations; {work(compute['median'])}")
    for warning in summary["warnings"]:
        print(f"[W] {warning}")
    if telemetry.get("available"):
        sm, mem, temp, power = (
            telemetry[k] or {} for k in ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "power_w")
        )
        print(
            f"NVML ({telemetry['samples']} samples over {telemetry['duration_s']:.1f} s): SM clock "
            f"{sm.get('min', 0):.0f}-{sm.get('max', 0):.0f} MHz, memory clock {mem.get('max', 0):.0f} MHz, "
            f"temperature {temp.get('min', 0):.0f}-{temp.get('max', 0):.0f} C, power {power.get('mean', 0):.0f} W mean "
            f"/ {power.get('max', 0):.0f} W max, reasons {telemetry['reasons'] or 'none'}, "
            f"throttled {telemetry['throttled']}"
        )
    else:
        print(f"NVML: {telemetry.get('reason')}")


def measure(
    name: str,
    enqueue: Enqueue,
    stream: Stream,
    settings: BenchSettings,
    work: Callable[[float], str],
    **kwargs: Any,
) -> None:
    with TelemetrySampler(interval_s=0.05) as sampler:
        run = time_enqueue(enqueue, settings, stream.handle, **kwargs)
    print_table(name, metrics(run, 1, settings), sampler.summary, work)


def copy_workloads(stream: Stream, settings: BenchSettings, megabytes: int) -> None:
    rt = cudart()
    nbytes = megabytes * 2**20
    src, dst = DeviceBuffer(nbytes, "the copy source"), DeviceBuffer(nbytes, "the copy destination")
    d2d = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice

    def copy(s: int) -> None:
        check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, nbytes, d2d, s), "cudaMemcpyAsync D2D")

    def bandwidth(median_ms: float) -> str:
        return f"{2 * nbytes / (median_ms / 1e3) / 1e12:.2f} TB/s (bytes read + written, median)"

    measure("copy", copy, stream, settings, bandwidth)
    measure("copy-plain", copy, stream, settings, bandwidth, cuda_graph=False)

    io_bytes = 16 * 2**20
    host_in, host_out = PinnedArray((io_bytes,), np.dtype(np.uint8)), PinnedArray((io_bytes,), np.dtype(np.uint8))
    host_in.array[:] = np.arange(io_bytes, dtype=np.uint64).astype(np.uint8)
    inp, out = DeviceBuffer(io_bytes, "the input"), DeviceBuffer(io_bytes, "the output")
    try:
        measure(
            "copy-io",
            copy,
            stream,
            settings,
            bandwidth,
            h2d=lambda s: inp.upload(host_in.array, s),
            d2h=lambda s: out.download(host_out.array, s),
        )
        check(rt.cudaMemcpy(out.ptr, inp.ptr, io_bytes, d2d), "cudaMemcpy")
        out.download(host_out.array, stream.handle)
        stream.synchronize()
        print(f"copy-io round trip intact: {bool(np.array_equal(host_in.array, host_out.array))}")

        def copy_then_sync(s: int) -> None:
            copy(s)
            check(rt.cudaStreamSynchronize(s), "cudaStreamSynchronize")

        measure("sync-capture", copy_then_sync, stream, settings, bandwidth)
    finally:
        for buffer in (src, dst, inp, out, host_in, host_out):
            buffer.free()


def matmul_workload(stream: Stream, settings: BenchSettings) -> None:
    try:
        import torch
    except ImportError:
        print("\n=== matmul: skipped, PyTorch is not installed")
        return
    size = 8192
    device = torch.device("cuda", torch.cuda.current_device())
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    c = torch.empty(size, size, device=device, dtype=torch.bfloat16)
    external = torch.cuda.ExternalStream(stream.handle)
    torch.cuda.synchronize()

    def matmul(s: int) -> None:
        with torch.cuda.stream(external):
            torch.matmul(a, b, out=c)

    def flops(median_ms: float) -> str:
        return f"{2 * size**3 / (median_ms / 1e3) / 1e12:.0f} TFLOP/s (median)"

    measure("matmul", matmul, stream, settings, flops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed duration per workload")
    parser.add_argument("--megabytes", type=int, default=256, help="size of the device-to-device copy")
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args()
    gpu = gpu_properties(args.device)
    print(
        f"GPU {gpu.index}: {gpu.name}, compute {gpu.compute}, {gpu.memory_bytes / 2**30:.0f} GiB, "
        f"{gpu.multiprocessors} SMs, driver CUDA {gpu.driver}, runtime CUDA {gpu.runtime}"
    )
    check(cudart().cudaSetDevice(args.device), "cudaSetDevice")
    settings = BenchSettings(warmup_ms=200, duration_s=args.seconds)
    with Stream() as stream:
        copy_workloads(stream, settings, args.megabytes)
        matmul_workload(stream, settings)


if __name__ == "__main__":
    main()

"""trtci's onnxruntime-cuda measurement against a bare IOBinding loop, CUDA graphs on vs off, FP16 vs FP32.

    PYTHONUNBUFFERED=1 python -m benchmarks.gpu_backend [--rounds 5] [--seconds 0.5]

On a ResNet-18-shaped network (benchmarks/resnet.py) at batch 1, 8 and 32, in interleaved rounds (trtci, bare,
trtci, bare, ... so drift hits both alike):
  trtci   trtci's session: inputs and outputs on the device, CUDA events on ONNX Runtime's compute stream, the
          trtexec loop (trtci.backends.onnxruntime_cuda), with ONNX Runtime's CUDA graphs on and off;
  bare    a loop written here: one plain ORT CUDA session, IOBinding with device-resident inputs and outputs,
          `run_with_iobinding` (synchronous) timed with perf_counter, as a user would time it by hand.
The bare loop also pays the host's launch and synchronization, so trtci's GPU time is expected at or below it.
Needs onnxruntime-gpu, cuda-python and a GPU. The last line:
    gpu: overhead_ratio=<trtci/bare median> graph_speedup_b1=<off/on> fp16_speedup_b32=<fp32/fp16>
where overhead_ratio is the largest over the batches with graphs off (the same execution as the bare loop).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.resnet import resnet18
from trtci.backends.base import LoadRequest
from trtci.backends.registry import get_backend
from trtci.config import BenchSettings, parse_config
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import prepare_fp16, prepare_fp32

BATCHES = (1, 8, 32)


def bare_loop(ort, path: Path, feeds: dict[str, np.ndarray], seconds: float) -> float:
    """Median ms of synchronous run_with_iobinding calls over `seconds`, after a short warm-up."""
    providers = [("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda", 0)
    for _ in range(20):
        session.run_with_iobinding(binding)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 20:
        start = time.perf_counter()
        session.run_with_iobinding(binding)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def trtci_median(backend, path: Path, precision: str, batch: int, feeds, settings, graphs: bool) -> float:
    shapes = {name: value.shape for name, value in feeds.items()}
    request = LoadRequest(path, precision, batch, shapes, options={"cuda_graphs": graphs})
    session = backend.load(request)
    try:
        return session.benchmark(feeds, settings, batch).stats.median
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    import onnxruntime as ort

    workdir = Path(tempfile.mkdtemp(prefix="trtci-gpu-bench-"))
    config = parse_config({"models": [{"path": "m.onnx", "precisions": ["fp32"]}]}, "benchmark", workdir)
    backend = get_backend("onnxruntime-cuda", config)
    info = inspect_model(resnet18(workdir / "resnet18.onnx"))
    models = {"fp32": prepare_fp32(info, workdir / "cache"), "fp16": prepare_fp16(info, workdir / "cache")}
    settings = BenchSettings(warmup_ms=100, duration_s=args.seconds)
    rng = np.random.default_rng(0)
    results: dict[tuple[str, int, str], list[float]] = {}
    print(f"device: {backend.device().name}  onnxruntime {backend.version}  rounds {args.rounds} x {args.seconds} s")
    for _ in range(args.rounds):
        for batch in BATCHES:
            feeds = {"image": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
            for precision, prepared in models.items():
                for graphs in (False, True):
                    key = (precision, batch, "trtci graph" if graphs else "trtci plain")
                    value = trtci_median(backend, prepared.path, precision, batch, feeds, settings, graphs)
                    results.setdefault(key, []).append(value)
                if precision == "fp32":
                    results.setdefault((precision, batch, "bare"), []).append(
                        bare_loop(ort, prepared.path, feeds, args.seconds)
                    )
    median = {key: statistics.median(values) for key, values in results.items()}
    print(f"{'precision':>9} {'batch':>5} {'trtci plain':>12} {'trtci graph':>12} {'bare loop':>10} {'plain/bare':>10}")
    for precision in models:
        for batch in BATCHES:
            plain, graph = median[(precision, batch, "trtci plain")], median[(precision, batch, "trtci graph")]
            bare = median.get((precision, batch, "bare"))
            ratio = f"{plain / bare:10.3f}" if bare else f"{'':>10}"
            shown = f"{bare:10.3f}" if bare else f"{'':>10}"
            print(f"{precision:>9} {batch:>5} {plain:12.3f} {graph:12.3f} {shown} {ratio}")
    overhead = max(median[("fp32", b, "trtci plain")] / median[("fp32", b, "bare")] for b in BATCHES)
    graph_speedup = median[("fp32", 1, "trtci plain")] / median[("fp32", 1, "trtci graph")]
    fp16_speedup = median[("fp32", 32, "trtci graph")] / median[("fp16", 32, "trtci graph")]
    print(
        f"gpu: overhead_ratio={overhead:.3f} graph_speedup_b1={graph_speedup:.3f} "
        f"fp16_speedup_b32={fp16_speedup:.3f}"
    )


if __name__ == "__main__":
    main()

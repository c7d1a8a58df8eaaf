"""How much trtci.backends.measure.measure_host adds over a hand-written perf_counter loop around the same session.

Builds an MLP with onnx.helper, opens one ONNX Runtime session, and alternates blocks of (a) a bare loop and
(b) measure_host with the same number of timed iterations, for many rounds, so drift and noise from other
processes hit both kinds alike. Compares the medians of the per-round median latencies, and the wall time per
iteration (which also counts the loop's own work).

Run from the repository root (so `trtci` imports): `python -m benchmarks.harness_overhead` (< 90 s).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from trtci.backends.measure import measure_host
from trtci.config import BenchSettings

BATCH = 8
WIDTHS = (512, 1024, 1024, 10)
ITERATIONS = 300
ROUNDS = 60


def mlp_model(widths: tuple[int, ...], batch: int) -> bytes:
    """An MLP of MatMul+Add(+Relu) layers with fixed random weights, serialized."""
    rng = np.random.default_rng(0)
    nodes, weights = [], []
    current = "x"
    for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
        w = (rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        weights += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(fan_out, np.float32), f"b{i}"),
        ]
        nodes += [helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"])]
        nodes += [helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        current = f"a{i}"
        if i < len(widths) - 2:
            nodes += [helper.make_node("Relu", [current], [f"r{i}"])]
            current = f"r{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, widths[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, widths[-1]])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def bare_block(run: Callable[[], object], iterations: int) -> tuple[list[float], float]:
    """The loop a user would write by hand around `run`: per-call ms and wall seconds."""
    perf = time.perf_counter
    run()  # one warm-up call, as measure_host makes with warmup_ms=0
    samples = []
    start = perf()
    for _ in range(iterations):
        t0 = perf()
        run()
        samples.append((perf() - t0) * 1e3)
    return samples, perf() - start


def trtci_block(run: Callable[[], object], iterations: int) -> tuple[list[float], float]:
    # A duration that has passed after the first call makes min_iterations the budget, as in the bare loop.
    settings = BenchSettings(warmup_ms=0, duration_s=1e-6, min_iterations=iterations)
    result = measure_host(run, settings, BATCH)
    return result.samples_ms, result.duration_s


def loop_cost_us(block: Callable[[Callable[[], object], int], tuple[list[float], float]]) -> float:
    """Wall microseconds per iteration around a call that does nothing: the loop's own cost, best of 5."""
    return min(block(lambda: None, 100_000)[1] for _ in range(5)) * 1e6 / 100_000


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def summarize(kind: str, medians: list[float], walls: list[float]) -> None:
    quantiles = statistics.quantiles(medians, n=10)
    print(
        f"{kind:<6} {len(medians):>6} {statistics.median(medians):>10.4f} {quantiles[0]:>8.4f} "
        f"{quantiles[-1]:>8.4f} {statistics.median(walls):>12.4f}"
    )


def main() -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one core: less exposed to the other processes on a shared machine
    session = ort.InferenceSession(mlp_model(WIDTHS, BATCH), options, providers=["CPUExecutionProvider"])
    feeds = {"x": np.random.default_rng(1).normal(size=(BATCH, WIDTHS[0])).astype(np.float32)}

    def run() -> object:
        return session.run(None, feeds)

    for _ in range(200):
        run()

    results: dict[str, tuple[list[float], list[float]]] = {"bare": ([], []), "trtci": ([], [])}
    blocks = {"bare": bare_block, "trtci": trtci_block}
    for round_index in range(ROUNDS):
        order = ("bare", "trtci") if round_index % 2 == 0 else ("trtci", "bare")
        for kind in order:
            samples, wall_s = blocks[kind](run, ITERATIONS)
            results[kind][0].append(statistics.median(samples))
            results[kind][1].append(wall_s * 1e3 / ITERATIONS)

    print(f"{ROUNDS} rounds x {ITERATIONS} iterations per kind, batch {BATCH}, MLP {WIDTHS}")
    print(f"{'kind':<6} {'rounds':>6} {'median_ms':>10} {'p10_ms':>8} {'p90_ms':>8} {'wall/iter_ms':>12}")
    for kind, (medians, walls) in results.items():
        summarize(kind, medians, walls)
    trtci_median = statistics.median(results["trtci"][0])
    bare_median = statistics.median(results["bare"][0])
    wall_ratio = statistics.median(results["trtci"][1]) / statistics.median(results["bare"][1])
    paired = [t / b for t, b in zip(results["trtci"][0], results["bare"][0])]
    print(f"wall per iteration ratio (trtci/bare): {wall_ratio:.4f}")
    print(f"median of per-round ratios of medians (trtci/bare): {statistics.median(paired):.4f}")
    print(
        f"loop cost around a no-op call, us/iteration: bare {loop_cost_us(bare_block):.3f} "
        f"trtci {loop_cost_us(trtci_block):.3f}"
    )
    print(
        f"harness_overhead: trtci_median_ms={trtci_median:.4f} bare_median_ms={bare_median:.4f} "
        f"ratio={trtci_median / bare_median:.4f} machine={cpu_name()}, {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()

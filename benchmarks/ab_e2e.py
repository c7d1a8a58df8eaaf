"""End-to-end A/B trials: real `trtci ab` runs, each in a process of its own, on a fast and a slow model.

Models are MLPs built with onnx.helper (MatMul + Relu layers of fixed random weights, fixed batch):

- fast: 48 layers 128 wide at batch 8, a fraction of a millisecond a call: rounds must batch calls to time well;
- slow: 6 layers 1024 wide at batch 128, about ten milliseconds a call: one or two calls a round.

B is A plus a side branch of work whose result is added as zeros (`side_branch`: x times a width-by-k matrix, times a
k-by-width zero matrix): the same outputs, and a cost that grows with k in small steps. k starts from a short
measurement of one layer's cost and is corrected until B's cost over A, measured in 120 alternating A B B A blocks of
50 ms a side, is within a point of 10% (at most CALIBRATION_STEPS corrections). B's true cost is then measured
separately at length: the median of 200 such blocks' ratios (a block's ratio varies by 10-15% on a busy 2-core
machine).

A/A compares two files of the same model; A/B compares A and B. Each comparison is
`trtci ab --model-a A --model-b B --budget <budget> --min-effect <min effect>` run as a user runs it; a claim is a
verdict of regression or improvement. Used by benchmarks/detection.py (`--e2e`).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
TARGET_SLOWDOWN = 0.10
CALIBRATION_TOLERANCE = 0.01
CALIBRATION_STEPS = 5


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    width: int
    batch: int


FAST = Shape("fast", 48, 128, 8)
SLOW = Shape("slow", 6, 1024, 128)


def mlp(shape: Shape, layers: int, side: int = 0) -> bytes:
    """`layers` MatMul+Relu layers of the shape's width with fixed random weights (the first n alike in any size),
    plus, when `side` > 0, a side branch of that width (`side_branch`): the same outputs for more work."""
    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "x"
    for i in range(layers):
        w = (rng.normal(size=(shape.width, shape.width)) / math.sqrt(shape.width)).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]),
            helper.make_node("Relu", [f"m{i}"], [f"r{i}"]),
        ]
        current = f"r{i}"
    nodes[-1].output[0] = "y"
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [shape.batch, shape.width]) for n in ("x", "y")]
    graph = helper.make_graph(nodes, "mlp", value[:1], value[1:], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return (side_branch(model, side) if side > 0 else model).SerializeToString()


def side_branch(model: onnx.ModelProto, width: int) -> onnx.ModelProto:
    """`model` with the same outputs and more work: its first input times a (features x width) matrix, times a
    (width x outputs) zero matrix, added to its first output. The input and output must be [batch, n] floats."""
    graph = model.graph
    dims = [[d.dim_value for d in t.type.tensor_type.shape.dim] for t in (graph.input[0], graph.output[0])]
    if any(len(shape) != 2 or not shape[1] for shape in dims):
        raise SystemExit(f"the side branch needs a [batch, n] first input and output, not {dims}")
    (_, features), (_, outputs) = dims
    rng = np.random.default_rng(0)
    side_in = (rng.standard_normal((features, width)) / np.sqrt(features)).astype(np.float32)
    graph.initializer.extend([
        numpy_helper.from_array(side_in, "side_in"),
        numpy_helper.from_array(np.zeros((width, outputs), np.float32), "side_out"),
    ])  # fmt: skip
    output = graph.output[0].name
    for node in graph.node:
        node.output[:] = ["before_side" if name == output else name for name in node.output]
    graph.node.extend([
        helper.make_node("MatMul", [graph.input[0].name, "side_in"], ["side_hidden"], name="side_in"),
        helper.make_node("MatMul", ["side_hidden", "side_out"], ["side_zeros"], name="side_out"),
        helper.make_node("Add", ["before_side", "side_zeros"], [output], name="side_add"),
    ])  # fmt: skip
    onnx.checker.check_model(model)
    return model


def call_of(model: bytes, shape: Shape) -> Callable[[], object]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feeds = {"x": np.random.default_rng(1).standard_normal((shape.batch, shape.width)).astype(np.float32)}
    return lambda: session.run(None, feeds)


def block_ratios(
    call_a: Callable[[], object], call_b: Callable[[], object], blocks: int, block_s: float = 0.05
) -> list[float]:
    """Per A B B A block of about `block_s` a side, the ratio of B's time to A's (a true cost, drift cancelled)."""
    for _ in range(3):
        call_a()
        call_b()
    start = time.perf_counter()
    call_a()
    calls = max(1, round(block_s / max(time.perf_counter() - start, 1e-6)))

    def timed(fn: Callable[[], object]) -> float:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - t

    ratios = []
    for _ in range(blocks):
        a1, b1, b2, a2 = timed(call_a), timed(call_b), timed(call_b), timed(call_a)
        ratios.append((b1 + b2) / (a1 + a2))
    return ratios


def make_models(shape: Shape, directory: Path) -> tuple[Path, Path, Path, float, float]:
    """(A, a copy of A, B, B's true cost over A, A's median call in ms): B's side branch is sized until its true
    cost is within CALIBRATION_TOLERANCE of TARGET_SLOWDOWN (or CALIBRATION_STEPS measurements were made)."""
    base = mlp(shape, shape.layers)
    call_a = call_of(base, shape)
    double = float(np.median(block_ratios(call_a, call_of(mlp(shape, 2 * shape.layers), shape), 16)))
    # one layer's share of a call, from twice as many layers; the side branch's two matmuls cost 2 * k / width layers
    layer_share = max(double - 1.0, 0.05) / shape.layers
    side = max(1, round(TARGET_SLOWDOWN / layer_share * shape.width / 2))
    for _ in range(CALIBRATION_STEPS):
        slower = mlp(shape, shape.layers, side)
        cost = float(np.median(block_ratios(call_a, call_of(slower, shape), 120)))
        if abs(cost - 1.0 - TARGET_SLOWDOWN) <= CALIBRATION_TOLERANCE:
            break
        side = max(1, round(side * min(max(TARGET_SLOWDOWN / max(cost - 1.0, 0.005), 0.5), 2.0)))
    true = float(np.median(block_ratios(call_a, call_of(slower, shape), 200)))
    paths = [directory / f"{shape.name}-{n}.onnx" for n in ("a", "a-copy", "b")]
    for path, model in zip(paths, (base, base, slower)):
        path.write_bytes(model)
    start = time.perf_counter()
    for _ in range(5):
        call_a()
    return paths[0], paths[1], paths[2], true, (time.perf_counter() - start) / 5 * 1e3


@dataclass
class Trial:
    verdict: str
    ratio: float
    rounds: int
    calls: int
    seconds: float


def trtci_ab(a: Path, b: Path, batch: int, budget: float, min_effect: float) -> Trial:
    """One `trtci ab` in a new process, and what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "trtci.cli", "ab", "--model-a", str(a), "--model-b", str(b), "--batch-size", str(batch)]
        + ["--budget", f"{budget:g}", "--min-effect", f"{min_effect:g}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"trtci ab failed ({done.returncode}):\n{done.stderr[-2000:]}")
    out = done.stdout
    rounds = re.search(r"rounds\s+(\d+) of (\d+) calls a side in ([\d.]+) s", out)
    ratio = re.search(r"ratio B/A\s+([\d.]+)", out)
    verdict = re.search(r"verdict\s+(\S+)", out)
    assert rounds and ratio and verdict, out
    return Trial(verdict[1], float(ratio[1]), int(rounds[1]), int(rounds[2]), float(rounds[3]))


def trials(shape: Shape, directory: Path, aa: int, ab: int, budget: float, min_effect: float) -> dict[str, object]:
    """A/A and A/B comparisons of one model shape, interleaved; their claims, recall and times."""
    a, copy, b, true, call_ms = make_models(shape, directory)
    done: dict[str, list[Trial]] = {"aa": [], "ab": []}
    for i in range(max(aa, ab)):
        if i < ab:
            done["ab"].append(trtci_ab(a, b, shape.batch, budget, min_effect))
        if i < aa:
            done["aa"].append(trtci_ab(a, copy, shape.batch, budget, min_effect))
    claims = sum(t.verdict in ("regression", "improvement") for t in done["aa"])
    caught = sum(t.verdict == "regression" for t in done["ab"])
    every = done["aa"] + done["ab"]
    return {
        "shape": shape,
        "call_ms": call_ms,
        "true_ratio": true,
        "aa": len(done["aa"]),
        "aa_claims": claims,
        "ab": len(done["ab"]),
        "caught": caught,
        "recall": caught / len(done["ab"]) if done["ab"] else math.nan,
        "median_s": float(np.median([t.seconds for t in every])),
        "max_s": max(t.seconds for t in every),
        "median_rounds": float(np.median([t.rounds for t in every])),
        "calls_per_round": float(np.median([t.calls for t in every])),
    }


def report(result: dict[str, object]) -> str:
    shape = result["shape"]
    assert isinstance(shape, Shape)
    return (
        f"{shape.name}: {shape.layers} layers x {shape.width} at batch {shape.batch}, {result['call_ms']:.2f} ms a "
        f"call; B/A true {result['true_ratio']:.3f}; A/A claims {result['aa_claims']}/{result['aa']}, A/B caught "
        f"{result['caught']}/{result['ab']}; median {result['median_rounds']:.0f} rounds of "
        f"{result['calls_per_round']:.0f} calls, {result['median_s']:.1f} s (max {result['max_s']:.1f} s)"
    )

"""Tiny real ONNX models for tests, built with onnx.helper and deterministic weights.

Other test files import these builders; each writes a checked model to `path` and returns the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _initializer(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.normal(0.0, scale, size=shape).astype(np.float32), name)


def save_graph(graph: onnx.GraphProto, path: Path) -> Path:
    """`graph` as a checked opset-17 model file at `path` (its folder made)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="trtci-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path


def mlp_classifier(
    path: Path, in_features: int = 16, hidden: int = 32, classes: int = 10, dynamic_batch: bool = True, seed: int = 0
) -> Path:
    """Gemm/Relu/Gemm: input "input" float32 [N, in_features], output "logits" [N, classes]."""
    rng = np.random.default_rng(seed)
    batch: int | str = "N" if dynamic_batch else 1
    initializers = [
        _initializer(rng, "fc1.weight", (hidden, in_features), np.sqrt(2.0 / in_features)),
        _initializer(rng, "fc1.bias", (hidden,), 0.1),
        _initializer(rng, "fc2.weight", (classes, hidden), np.sqrt(2.0 / hidden)),
        _initializer(rng, "fc2.bias", (classes,), 0.1),
    ]
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["fc1.out"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1.out"], ["relu.out"], name="relu"),
        helper.make_node("Gemm", ["relu.out", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, in_features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializers,
    )
    return save_graph(graph, path)


def small_cnn(path: Path, seed: int = 0) -> Path:
    """Conv/Relu/Conv/GlobalAveragePool/Flatten/Gemm: input "image" float32 [N,1,8,8], output "logits" [N,10]."""
    rng = np.random.default_rng(seed)
    initializers = [
        _initializer(rng, "conv1.weight", (8, 1, 3, 3), np.sqrt(2.0 / 9)),
        _initializer(rng, "conv1.bias", (8,), 0.1),
        _initializer(rng, "conv2.weight", (16, 8, 3, 3), np.sqrt(2.0 / 72)),
        _initializer(rng, "conv2.bias", (16,), 0.1),
        _initializer(rng, "fc.weight", (10, 16), np.sqrt(2.0 / 16)),
        _initializer(rng, "fc.bias", (10,), 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["conv1.out"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["conv1.out"], ["relu.out"], name="relu"),
        helper.make_node("Conv", ["relu.out", "conv2.weight", "conv2.bias"], ["conv2.out"], name="conv2", pads=[1] * 4),
        helper.make_node("GlobalAveragePool", ["conv2.out"], ["pool.out"], name="pool"),
        helper.make_node("Flatten", ["pool.out"], ["flat.out"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat.out", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializers,
    )
    return save_graph(graph, path)

"""Models with a planted INT8 accuracy fault in one known node, and data sets that expose it.

The fault is the classic outlier channel: one output channel of the faulty node is scaled up 1000x (weights and
bias) and the next layer scales that input channel down 1000x, so the FP32 function is unchanged. Per-tensor
activation quantization then spends its whole 8-bit range on the outlier, rounding every other channel to zero:
INT8 fails its accuracy gate, and the faulty node is the one to keep in float.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tests.models import save_graph

OUTLIER = 1000.0


def _save(nodes, inputs, outputs, weights: dict[str, np.ndarray], path: Path) -> Path:
    initializers = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()]
    return save_graph(helper.make_graph(nodes, "planted", inputs, outputs, initializers), path)


def planted_mlp(path: Path, faulty: str | tuple[str, ...] = "fc2", channel: int = 3, seed: int = 0) -> Path:
    """Gemm fc1 -> Relu -> Gemm fc2 -> Relu -> Gemm fc3 -> Relu -> Gemm fc4 ("logits", 10 classes) on 32
    features, with the outlier channel planted in `faulty` (fc1, fc2 or fc3, or several) and undone by the next
    Gemm."""
    rng = np.random.default_rng(seed)
    sizes = [32, 64, 64, 64, 10]
    weights: dict[str, np.ndarray] = {}
    nodes, current = [], "input"
    for index in range(4):
        name = f"fc{index + 1}"
        weights[f"{name}.weight"] = rng.normal(0, np.sqrt(2.0 / sizes[index]), (sizes[index + 1], sizes[index]))
        weights[f"{name}.bias"] = rng.normal(0, 0.1, sizes[index + 1])
        out = "logits" if index == 3 else f"{name}.out"
        nodes.append(helper.make_node("Gemm", [current, f"{name}.weight", f"{name}.bias"], [out], name=name, transB=1))
        if index < 3:
            nodes.append(helper.make_node("Relu", [out], [f"relu{index + 1}"], name=f"relu{index + 1}"))
            current = f"relu{index + 1}"
    for node in [faulty] if isinstance(faulty, str) else faulty:
        following = f"fc{int(node[2:]) + 1}"
        weights[f"{node}.weight"][channel] *= OUTLIER
        weights[f"{node}.bias"][channel] *= OUTLIER
        weights[f"{following}.weight"][:, channel] /= OUTLIER
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 32])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])]
    return _save(nodes, inputs, outputs, weights, path)


def planted_cnn(path: Path, faulty: str = "conv2", channel: int = 5, seed: int = 0) -> Path:
    """conv1 -> Relu -> conv2 -> Relu -> conv3 -> Relu -> Flatten -> Gemm "fc" on "image" [N, 3, 8, 8], with
    the outlier channel planted in `faulty` (conv1 or conv2) and undone by the next convolution."""
    rng = np.random.default_rng(seed)
    channels = [3, 16, 16, 8]
    weights: dict[str, np.ndarray] = {}
    nodes, current = [], "image"
    for index in range(3):
        name, cin, cout = f"conv{index + 1}", channels[index], channels[index + 1]
        weights[f"{name}.weight"] = rng.normal(0, np.sqrt(2.0 / (cin * 9)), (cout, cin, 3, 3))
        weights[f"{name}.bias"] = rng.normal(0, 0.1, cout)
        inputs = [current, f"{name}.weight", f"{name}.bias"]
        nodes.append(helper.make_node("Conv", inputs, [f"{name}.out"], name=name, pads=[1] * 4))
        nodes.append(helper.make_node("Relu", [f"{name}.out"], [f"relu{index + 1}"], name=f"relu{index + 1}"))
        current = f"relu{index + 1}"
    nodes += [
        helper.make_node("Flatten", [current], ["flat.out"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat.out", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    weights["fc.weight"] = rng.normal(0, np.sqrt(2.0 / 512), (10, 512))
    weights["fc.bias"] = np.zeros(10)
    following = f"conv{int(faulty[4:]) + 1}"
    weights[f"{faulty}.weight"][channel] *= OUTLIER
    weights[f"{faulty}.bias"][channel] = abs(weights[f"{faulty}.bias"][channel]) * OUTLIER  # kept alive by Relu
    weights[f"{following}.weight"][:, channel] /= OUTLIER
    graph_inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])]
    return _save(nodes, graph_inputs, outputs, weights, path)


def labelled_data(model: Path, shape: tuple[int, ...], samples: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs labelled with the FP32 model's own top-1, so FP32 scores 100% and any loss shows."""
    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = rng.standard_normal((samples, *shape)).astype(np.float32)
    (logits,) = session.run(None, {name: x})
    return {name: x, "labels": logits.argmax(axis=1).astype(np.int64)}


def planted_config(
    tmp_path: Path, builder, shape: tuple[int, ...], faulty: str | tuple[str, ...], min_ratio: float = 0.99, **extra
) -> Path:
    """A trtci.yml for the planted model in `tmp_path`, with calibration and labelled validation data. The
    random transformer's INT8 loses a little top-1 even without a fault (close decisions on random inputs): give
    it a lower `min_ratio`."""
    import yaml

    model = builder(tmp_path / f"{builder.__name__}.onnx", faulty=faulty)
    calibration = labelled_data(model, shape, 64, seed=1)
    calibration.pop("labels")
    np.savez(tmp_path / "calibration.npz", **calibration)
    np.savez(tmp_path / "validation.npz", **labelled_data(model, shape, 200, seed=2))
    config = {
        "models": [
            {
                "name": "planted",
                "path": model.name,
                "precisions": ["fp32", "int8"],
                "batch_sizes": [8],
                "calibration": {"data": "calibration.npz", "method": "minmax", **extra.pop("calibration", {})},
                "validation": {"data": "validation.npz"},
                "accuracy": {"min_ratio": min_ratio},
            }
        ],
        "bench": {"warmup_ms": 10, "duration_s": 0.05, "min_iterations": 5},
        "compare": {"confirm_budget_s": 0, "ab_budget_s": 0},
        "report": None,
        **extra,
    }
    path = tmp_path / "trtci.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def planted_transformer(path: Path, faulty: str = "linear1", channel: int = 7, seed: int = 0) -> Path:
    """tests.exported.transformer_encoder with the outlier channel planted in its feed-forward `linear1` (the
    exported MatMul and its bias Add: ONNX node /layers.0/linear1/MatMul), made positive so GELU passes it on,
    and undone by `linear2`. Input "src" [batch, seq, 32], output "logits" [batch, 10]."""
    from tests.exported import transformer_encoder

    assert faulty == "linear1", "the feed-forward's first linear layer is the one planted"
    model = onnx.load(str(transformer_encoder(path, seed=seed)))
    weights = {t.name: t for t in model.graph.initializer}
    w1, b1 = "onnx::MatMul__layers.0_linear1", "layers.0.linear1.bias"
    w2 = "onnx::MatMul__layers.0_linear2"
    values = {name: numpy_helper.to_array(weights[name]).copy() for name in (w1, b1, w2)}
    values[w1][:, channel] *= OUTLIER  # MatMul weights are [in, out]
    values[b1][channel] = 3.0 * OUTLIER
    values[w2][channel, :] /= OUTLIER
    for name, value in values.items():
        weights[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return Path(path)

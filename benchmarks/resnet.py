"""A ResNet-18-shaped ONNX network with random weights, built with onnx.helper and numpy.

Same layers and shapes as torchvision's resnet18 after BatchNormalization is folded into the convolutions
(Conv with bias and per-channel weight scales, Relu, MaxPool, residual Add, GlobalAveragePool, Flatten, Gemm),
so its speed on a backend is that of the real network; its weights are random, so its accuracy means nothing
beyond agreement between precisions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, stride of the first block) per stage
BLOCKS_PER_STAGE = 2
FEATURES = 512


class _Graph:
    """Collects nodes and initializers while the network is laid out, one layer at a time."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def weight(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        # He initialization keeps activations in a sane range through 18 layers, as in a trained network.
        values = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(values, name))
        return name

    def bias(self, name: str, size: int) -> str:
        values = self.rng.normal(0.0, 0.05, size=size).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(values, name))
        return name

    def conv(self, name: str, x: str, c_in: int, c_out: int, kernel: int, stride: int) -> str:
        fan_in = c_in * kernel * kernel
        # A folded BatchNormalization scales each output channel differently (what per-channel quantization
        # is for); RMS 1 keeps the activations' scale.
        gamma = np.exp(self.rng.normal(0.0, 0.5, size=(c_out, 1, 1, 1)))
        gamma /= np.sqrt((gamma**2).mean())
        values = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(c_out, c_in, kernel, kernel)) * gamma
        self.initializers.append(numpy_helper.from_array(values.astype(np.float32), f"{name}.weight"))
        w = f"{name}.weight"
        b = self.bias(f"{name}.bias", c_out)
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [f"{name}.out"],
                name=name,
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        return f"{name}.out"

    def op(self, op_type: str, name: str, inputs: list[str], **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [f"{name}.out"], name=name, **attrs))
        return f"{name}.out"

    def basic_block(self, name: str, x: str, c_in: int, c_out: int, stride: int) -> str:
        y = self.op("Relu", f"{name}.relu1", [self.conv(f"{name}.conv1", x, c_in, c_out, 3, stride)])
        y = self.conv(f"{name}.conv2", y, c_out, c_out, 3, 1)
        shortcut = x
        if stride != 1 or c_in != c_out:
            shortcut = self.conv(f"{name}.downsample", x, c_in, c_out, 1, stride)
        return self.op("Relu", f"{name}.relu2", [self.op("Add", f"{name}.add", [y, shortcut])])


def _backbone(g: _Graph) -> str:
    x = g.op("Relu", "relu", [g.conv("conv1", "image", 3, 64, 7, 2)])
    x = g.op("MaxPool", "maxpool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for stage, (c_out, stride) in enumerate(STAGES, start=1):
        for block in range(BLOCKS_PER_STAGE):
            x = g.basic_block(f"layer{stage}.{block}", x, c_in, c_out, stride if block == 0 else 1)
            c_in = c_out
    return g.op("Flatten", "flatten", [g.op("GlobalAveragePool", "avgpool", [x])], axis=1)


def _model(g: _Graph, output: onnx.ValueInfoProto, image_size: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        g.nodes,
        "resnet18",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, image_size, image_size])],
        [output],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="trtci-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def resnet18_model(
    classes: int = 1000,
    image_size: int = 224,
    seed: int = 0,
    head: tuple[np.ndarray, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """The network: input "image" float32 [N,3,H,W], output "logits" [N,classes].

    `head` replaces the random classifier with given (weight [classes, 512], bias [classes]) arrays.
    """
    g = _Graph(seed)
    features = _backbone(g)
    if head is None:
        fc_w, fc_b = g.weight("fc.weight", (classes, FEATURES), FEATURES), g.bias("fc.bias", classes)
    else:
        classes = head[0].shape[0]
        g.initializers.append(numpy_helper.from_array(head[0].astype(np.float32), "fc.weight"))
        g.initializers.append(numpy_helper.from_array(head[1].astype(np.float32), "fc.bias"))
        fc_w, fc_b = "fc.weight", "fc.bias"
    g.nodes.append(helper.make_node("Gemm", [features, fc_w, fc_b], ["logits"], name="fc", transB=1))
    return _model(g, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]), image_size)


def resnet18_backbone_model(image_size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """The same network (same seed, same weights) without its classifier: output "features" [N,512]."""
    g = _Graph(seed)
    _backbone(g)
    g.nodes[-1].output[0] = "features"  # rename the Flatten's output, the last node of the backbone
    return _model(g, helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", FEATURES]), image_size)


def nearest_class_mean_head(class_means: np.ndarray, logit_range: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """A linear classifier (weight, bias) that picks the class whose mean feature vector is nearest.

    argmin_c |f - m_c|^2 = argmax_c (m_c . f - |m_c|^2 / 2); subtracting the mean of all class means and scaling
    leave the argmax unchanged and bring the logits to a trained network's range (about +-`logit_range` on the
    class means). A random network's own classifier gives every input the same top-1 class, because the shared
    mean of its features dominates, which would make top-1 agreement meaningless.
    """
    means = class_means.astype(np.float64)
    center = means.mean(axis=0)
    weight = means - center
    bias = -0.5 * ((means**2).sum(axis=1) - (center**2).sum())
    logits = means @ weight.T + bias
    scale = logit_range / np.abs(logits - logits.mean(axis=1, keepdims=True)).max()
    return (weight * scale).astype(np.float32), (bias * scale).astype(np.float32)


def resnet18(path: Path, classes: int = 1000, image_size: int = 224, seed: int = 0) -> Path:
    """Write the network to `path` (about 47 MB at 1000 classes) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(resnet18_model(classes, image_size, seed), str(path))
    return path

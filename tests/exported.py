"""ONNX models as PyTorch's exporter writes them, built with onnx.helper (torch is not installed here).

Each builder writes a checked model to `path` and returns the path. The graphs follow `torch.onnx.export`'s
(opset 17) output node for node where it matters for precision conversion: the shape arithmetic on int64
tensors (Shape, Gather, Unsqueeze, Concat, Reshape), the Cast nodes that turn shapes into float scales, the
scaled-dot-product attention of `nn.MultiheadAttention` (whose `Cast` of the scale broke
onnxconverter-common's FP16 conversion), LayerNormalization, the erf form of GELU, depthwise convolutions with
hardswish, ConvTranspose and Resize. Weights are seeded, so every build gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
INT64_MAX = np.iinfo(np.int64).max


class GraphBuilder:
    """Nodes, initializers and names in the style of the TorchScript exporter ("/layer/Op_3")."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count: dict[str, int] = {}

    def op(self, scope: str, op_type: str, inputs: list[str], outputs: int = 1, **attributes) -> str | list[str]:
        index = self._count.get(f"{scope}/{op_type}", 0)
        self._count[f"{scope}/{op_type}"] = index + 1
        name = f"{scope}/{op_type}" + (f"_{index}" if index else "")
        names = [f"{name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=name, **attributes))
        return names[0] if outputs == 1 else names

    def const(self, scope: str, value: np.ndarray) -> str:
        """A Constant node, as the exporter writes small tensors (shapes, indices, scalars)."""
        out = self.op(scope, "Constant", [], value=numpy_helper.from_array(np.asarray(value)))
        assert isinstance(out, str)
        return out

    def weight(self, name: str, shape: tuple[int, ...], scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        std = scale if scale is not None else float(np.sqrt(1.0 / max(fan_in, 1)))
        self.add(name, self.rng.normal(0.0, std, size=shape).astype(np.float32))
        return name

    def add(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def save(self, path: Path, name: str, inputs: list, outputs: list) -> Path:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch")
        model.producer_version = "2.5.1"
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(path))
        return path


def _linear(g: GraphBuilder, scope: str, x: str, inp: int, out: int) -> str:
    """nn.Linear on a 3-D tensor: MatMul with the transposed weight, then Add of the bias (bias first, as torch)."""
    weight = g.weight(f"onnx::MatMul_{scope.replace('/', '_')}", (inp, out))
    bias = g.add(f"{scope.strip('/').replace('/', '.')}.bias", (g.rng.normal(0, 0.02, size=out)).astype(np.float32))
    y = g.op(scope, "MatMul", [x, weight])
    return str(g.op(scope, "Add", [bias, str(y)]))


def _dim(g: GraphBuilder, scope: str, x: str, axis: int) -> str:
    shape = g.op(scope, "Shape", [x])
    return str(g.op(scope, "Gather", [str(shape), g.const(scope, np.array(axis, dtype=np.int64))], axis=0))


def _unsq(g: GraphBuilder, scope: str, scalar: str) -> str:
    return str(g.op(scope, "Unsqueeze", [scalar, g.const(scope, np.array([0], dtype=np.int64))]))


def _reshape(g: GraphBuilder, scope: str, x: str, dims: list[str]) -> str:
    shape = g.op(scope, "Concat", dims, axis=0)
    return str(g.op(scope, "Reshape", [x, str(shape)]))


def _attention(g: GraphBuilder, x: str, embed: int, heads: int) -> str:
    """nn.MultiheadAttention(batch_first=True) self-attention as F.multi_head_attention_forward exports it."""
    s = "/layers.0/self_attn"
    hd = embed // heads
    xt = str(g.op(s, "Transpose", [x], perm=[1, 0, 2]))  # [S, N, E]
    seq, batch = _dim(g, s, xt, 0), _dim(g, s, xt, 1)
    proj = _linear(g, s, xt, embed, 3 * embed)
    three, e = g.const(s, np.array([3], dtype=np.int64)), g.const(s, np.array([embed], dtype=np.int64))
    proj = _reshape(g, s, proj, [_unsq(g, s, seq), _unsq(g, s, batch), three, e])  # unflatten(-1, (3, E))
    proj = str(g.op(s, "Unsqueeze", [proj, g.const(s, np.array([0], dtype=np.int64))]))
    proj = str(g.op(s, "Transpose", [proj], perm=[3, 1, 2, 0, 4]))
    proj = str(g.op(s, "Squeeze", [proj, g.const(s, np.array([3], dtype=np.int64))]))  # [3, S, N, E]
    heads_total = str(g.op(s, "Mul", [batch, g.const(s, np.array(heads, dtype=np.int64))]))
    qkv = []
    for index in range(3):
        t = str(g.op(s, "Gather", [proj, g.const(s, np.array(index, dtype=np.int64))], axis=0))
        t = _reshape(g, s, t, [_unsq(g, s, seq), _unsq(g, s, heads_total), g.const(s, np.array([hd], np.int64))])
        t = str(g.op(s, "Transpose", [t], perm=[1, 0, 2]))  # [N*H, S, hd]
        four = [_unsq(g, s, batch), g.const(s, np.array([heads], np.int64)), _unsq(g, s, seq)]
        qkv.append(_reshape(g, s, t, [*four, g.const(s, np.array([hd], np.int64))]))  # [N, H, S, hd]
    q, k, v = qkv
    # torch/onnx/symbolic_opset14.py _attention_scale: 1 / sqrt(float(q.shape[-1])), cast back to q's type
    last = g.op(
        s,
        "Slice",
        [str(g.op(s, "Shape", [q])), g.const(s, np.array([-1], np.int64)), g.const(s, np.array([INT64_MAX], np.int64))],
    )
    size = g.op(s, "Cast", [str(last)], to=TensorProto.FLOAT)
    scale = g.op(s, "Div", [g.const(s, np.array([1.0], np.float32)), str(g.op(s, "Sqrt", [str(size)]))])
    scale = str(g.op(s, "Cast", [str(scale)], to=TensorProto.FLOAT))
    root = str(g.op(s, "Sqrt", [scale]))
    kt = str(g.op(s, "Transpose", [k], perm=[0, 1, 3, 2]))
    scores = g.op(s, "MatMul", [str(g.op(s, "Mul", [q, root])), str(g.op(s, "Mul", [kt, root]))])
    weights = g.op(s, "Softmax", [str(scores)], axis=-1)
    out = str(g.op(s, "MatMul", [str(weights), v]))  # [N, H, S, hd]
    out = str(g.op(s, "Transpose", [out], perm=[2, 0, 1, 3]))  # [S, N, H, hd]
    rows = str(g.op(s, "Mul", [seq, batch]))
    out = _reshape(g, s, out, [_unsq(g, s, rows), g.const(s, np.array([embed], np.int64))])
    weight = g.weight("layers.0.self_attn.out_proj.weight", (embed, embed))
    bias = g.add("layers.0.self_attn.out_proj.bias", np.zeros(embed, np.float32))
    out = str(g.op(f"{s}/out_proj", "Gemm", [out, weight, bias], alpha=1.0, beta=1.0, transB=1))
    e2 = g.const(s, np.array([embed], np.int64))
    out = _reshape(g, s, out, [_unsq(g, s, seq), _unsq(g, s, batch), e2])
    return str(g.op(s, "Transpose", [out], perm=[1, 0, 2]))


def _layer_norm(g: GraphBuilder, scope: str, x: str, embed: int) -> str:
    weight = g.add(f"{scope.strip('/')}.weight", (1.0 + g.rng.normal(0, 0.05, embed)).astype(np.float32))
    bias = g.add(f"{scope.strip('/')}.bias", g.rng.normal(0, 0.05, embed).astype(np.float32))
    return str(g.op(scope, "LayerNormalization", [x, weight, bias], axis=-1, epsilon=1e-5))


def _gelu(g: GraphBuilder, scope: str, x: str) -> str:
    """F.gelu(approximate='none') at opset 17: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    erf = g.op(scope, "Erf", [str(g.op(scope, "Div", [x, g.const(scope, np.array(1.4142135, np.float32))]))])
    plus = g.op(scope, "Add", [str(erf), g.const(scope, np.array(1.0, np.float32))])
    return str(g.op(scope, "Mul", [str(g.op(scope, "Mul", [x, str(plus)])), g.const(scope, np.array(0.5, np.float32))]))


def transformer_encoder(path: Path, embed: int = 32, heads: int = 4, ff: int = 64, classes: int = 10, seed: int = 0):
    """One nn.TransformerEncoderLayer(batch_first=True, activation="gelu") and a mean-pooled classifier head.

    Input "src" float32 [batch, seq, embed]; output "logits" float32 [batch, classes].
    """
    g = GraphBuilder(seed)
    x = "src"
    x = str(g.op("/layers.0", "Add", [x, _attention(g, x, embed, heads)]))
    x = _layer_norm(g, "/layers.0/norm1", x, embed)
    hidden = _gelu(g, "/layers.0", _linear(g, "/layers.0/linear1", x, embed, ff))
    x = str(g.op("/layers.0", "Add", [x, _linear(g, "/layers.0/linear2", hidden, ff, embed)]))
    x = _layer_norm(g, "/layers.0/norm2", x, embed)
    pooled = str(g.op("", "ReduceMean", [x], axes=[1], keepdims=0))
    weight, bias = g.weight("head.weight", (classes, embed)), g.add("head.bias", np.zeros(classes, np.float32))
    g.nodes.append(helper.make_node("Gemm", [pooled, weight, bias], ["logits"], name="/head/Gemm", transB=1))
    inputs = [helper.make_tensor_value_info("src", TensorProto.FLOAT, ["batch", "seq", embed])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])]
    return g.save(path, "main_graph", inputs, outputs)


def _conv(g: GraphBuilder, scope: str, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1) -> str:
    """Conv with BatchNorm folded into its weights and bias, as exported from an eval-mode model."""
    weight = g.weight(
        f"onnx::Conv_{scope}", (cout, cin // group, k, k), scale=float(np.sqrt(2.0 / (cin // group * k * k)))
    )
    bias = g.add(f"onnx::Conv_{scope}_bias", g.rng.normal(0, 0.05, cout).astype(np.float32))
    pads = [k // 2] * 4
    return str(
        g.op(scope, "Conv", [x, weight, bias], kernel_shape=[k, k], strides=[stride] * 2, pads=pads, group=group)
    )


def mobilenet_like(path: Path, classes: int = 10, seed: int = 0) -> Path:
    """MobileNetV3-style: stem conv + hardswish, inverted residual blocks (expand, depthwise, squeeze-excite,
    project, residual Add), global pooling and a classifier. Input "image" [N, 3, 32, 32], output "logits"."""
    g = GraphBuilder(seed)
    x = str(g.op("/features.0", "HardSwish", [_conv(g, "/features.0/0/Conv", "image", 3, 16, 3, stride=2)]))
    for index, (cin, expand, cout, stride) in enumerate([(16, 32, 16, 1), (16, 48, 24, 2), (24, 72, 24, 1)], 1):
        s = f"/features.{index}/block"
        h = str(g.op(s, "HardSwish", [_conv(g, f"{s}/0/Conv", x, cin, expand, 1)]))
        h = str(g.op(s, "HardSwish", [_conv(g, f"{s}/1/Conv", h, expand, expand, 3, stride, group=expand)]))
        pooled = str(g.op(f"{s}/2", "GlobalAveragePool", [h]))
        se = str(g.op(f"{s}/2", "Relu", [_conv(g, f"{s}/2/fc1/Conv", pooled, expand, expand // 4, 1)]))
        se = str(
            g.op(
                f"{s}/2",
                "HardSigmoid",
                [_conv(g, f"{s}/2/fc2/Conv", se, expand // 4, expand, 1)],
                alpha=1.0 / 6,
                beta=0.5,
            )
        )
        h = _conv(g, f"{s}/3/Conv", str(g.op(f"{s}/2", "Mul", [se, h])), expand, cout, 1)
        x = str(g.op(f"/features.{index}", "Add", [h, x])) if stride == 1 and cin == cout else h
    x = str(g.op("/avgpool", "GlobalAveragePool", [x]))
    x = str(g.op("", "Flatten", [x], axis=1))
    weight, bias = g.weight("classifier.weight", (classes, 24)), g.add("classifier.bias", np.zeros(classes, np.float32))
    g.nodes.append(helper.make_node("Gemm", [x, weight, bias], ["logits"], name="/classifier/Gemm", transB=1))
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])]
    return g.save(path, "main_graph", inputs, outputs)


def unet_like(path: Path, seed: int = 0) -> Path:
    """A two-level UNet: conv blocks, MaxPool, ConvTranspose up, skip Concat, a bilinear Resize by scale factor
    and one by sizes computed from the input's shape (F.interpolate(size=x.shape[-2:])). Input "image"
    [N, 3, 32, 32], output "mask" [N, 2, 32, 32]."""
    g = GraphBuilder(seed)
    e1 = str(g.op("/enc1", "Relu", [_conv(g, "/enc1/Conv", "image", 3, 8, 3)]))
    e2 = str(g.op("/pool", "MaxPool", [e1], kernel_shape=[2, 2], strides=[2, 2]))
    e2 = str(g.op("/enc2", "Relu", [_conv(g, "/enc2/Conv", e2, 8, 16, 3)]))
    bottom = str(g.op("/pool_1", "MaxPool", [e2], kernel_shape=[2, 2], strides=[2, 2]))
    bottom = str(g.op("/mid", "Relu", [_conv(g, "/mid/Conv", bottom, 16, 16, 3)]))
    empty = g.const("/up1", np.array([], np.float32))
    scales = g.const("/up1", np.array([1.0, 1.0, 2.0, 2.0], np.float32))
    up = str(
        g.op(
            "/up1",
            "Resize",
            [bottom, empty, scales],
            mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel",
            cubic_coeff_a=-0.75,
            nearest_mode="floor",
        )
    )
    d2 = str(g.op("/dec2", "Relu", [_conv(g, "/dec2/Conv", str(g.op("/cat2", "Concat", [up, e2], axis=1)), 32, 16, 3)]))
    weight = g.weight("up2.weight", (16, 8, 2, 2), scale=0.25)
    bias = g.add("up2.bias", np.zeros(8, np.float32))
    up2 = str(g.op("/up2", "ConvTranspose", [d2, weight, bias], kernel_shape=[2, 2], strides=[2, 2]))
    d1 = str(g.op("/dec1", "Relu", [_conv(g, "/dec1/Conv", str(g.op("/cat1", "Concat", [up2, e1], axis=1)), 16, 8, 3)]))
    head = _conv(g, "/head/Conv", d1, 8, 2, 1)
    # F.interpolate(head, size=image.shape[-2:]): the sizes come from the input's shape
    spatial = g.op(
        "/resize",
        "Slice",
        [
            str(g.op("/resize", "Shape", ["image"])),
            g.const("/resize", np.array([2], np.int64)),
            g.const("/resize", np.array([4], np.int64)),
        ],
    )
    leading = g.op(
        "/resize",
        "Slice",
        [
            str(g.op("/resize", "Shape", [head])),
            g.const("/resize", np.array([0], np.int64)),
            g.const("/resize", np.array([2], np.int64)),
        ],
    )
    sizes = g.op("/resize", "Concat", [str(leading), str(spatial)], axis=0)
    g.nodes.append(
        helper.make_node(
            "Resize",
            [head, "", "", str(sizes)],
            ["mask"],
            name="/resize/Resize",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    )
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])]
    outputs = [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 2, 32, 32])]
    return g.save(path, "main_graph", inputs, outputs)


def bert_like(path: Path, vocab: int = 100, embed: int = 32, classes: int = 4, seed: int = 0) -> Path:
    """A BERT-style classifier as Hugging Face models export: token and position embeddings (Gather on
    tables, positions from Range over the input's shape), the extended attention mask (Cast of the int64 mask,
    (1 - mask) * float32 min), single-head attention scaled by a Div, LayerNormalization, erf GELU, a Tanh
    pooler on the first token. Inputs "input_ids" and "attention_mask" int64 [batch, seq]; output "logits"."""
    g = GraphBuilder(seed)
    words = g.weight("embeddings.word_embeddings.weight", (vocab, embed), scale=0.5)
    positions = g.weight("embeddings.position_embeddings.weight", (64, embed), scale=0.1)
    e = "/embeddings"
    x = str(g.op(e, "Gather", [words, "input_ids"], axis=0))
    seq = _dim(g, e, "input_ids", 1)
    zero, one = g.const(e, np.array(0, np.int64)), g.const(e, np.array(1, np.int64))
    index = str(g.op(e, "Unsqueeze", [str(g.op(e, "Range", [zero, seq, one])), g.const(e, np.array([0], np.int64))]))
    x = str(g.op(e, "Add", [x, str(g.op(e, "Gather", [positions, index], axis=0))]))
    x = _layer_norm(g, "/embeddings/LayerNorm", x, embed)
    m = "/extended_mask"
    mask = g.op(m, "Unsqueeze", ["attention_mask", g.const(m, np.array([1, 2], np.int64))])
    mask = g.op(m, "Cast", [str(mask)], to=TensorProto.FLOAT)
    mask = g.op(m, "Sub", [g.const(m, np.array(1.0, np.float32)), str(mask)])
    mask = str(g.op(m, "Mul", [str(mask), g.const(m, np.array(np.finfo(np.float32).min, np.float32))]))
    a = "/encoder/layer.0/attention"
    q, k, v = (_linear(g, f"{a}/{name}", x, embed, embed) for name in ("query", "key", "value"))
    kt = str(g.op(a, "Transpose", [k], perm=[0, 2, 1]))
    scores = g.op(a, "Div", [str(g.op(a, "MatMul", [q, kt])), g.const(a, np.array(np.sqrt(embed), np.float32))])
    squeezed = str(g.op(m, "Squeeze", [mask, g.const(m, np.array([1], np.int64))]))  # [batch, 1, seq]
    weights = g.op(a, "Softmax", [str(g.op(a, "Add", [str(scores), squeezed]))], axis=-1)
    context = str(g.op(a, "MatMul", [str(weights), v]))
    x = _layer_norm(
        g, f"{a}/LayerNorm", str(g.op(a, "Add", [_linear(g, f"{a}/dense", context, embed, embed), x])), embed
    )
    f = "/encoder/layer.0"
    hidden = _gelu(g, f"{f}/intermediate", _linear(g, f"{f}/intermediate/dense", x, embed, 4 * embed))
    x = _layer_norm(
        g,
        f"{f}/output/LayerNorm",
        str(g.op(f, "Add", [_linear(g, f"{f}/output/dense", hidden, 4 * embed, embed), x])),
        embed,
    )
    first = str(g.op("/pooler", "Gather", [x, g.const("/pooler", np.array(0, np.int64))], axis=1))
    pw, pb = g.weight("pooler.dense.weight", (embed, embed)), g.add("pooler.dense.bias", np.zeros(embed, np.float32))
    pooled = str(g.op("/pooler", "Tanh", [str(g.op("/pooler/dense", "Gemm", [first, pw, pb], transB=1))]))
    cw, cb = g.weight("classifier.weight", (classes, embed)), g.add("classifier.bias", np.zeros(classes, np.float32))
    g.nodes.append(helper.make_node("Gemm", [pooled, cw, cb], ["logits"], name="/classifier/Gemm", transB=1))
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])]
    return g.save(path, "main_graph", inputs, outputs)

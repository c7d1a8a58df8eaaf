"""The quantized tensors of a Q/DQ model as units that can be switched on one at a time in the FP32 graph.

A unit is one float tensor the quantizer rounds (an activation or a weight) with the QuantizeLinear /
DequantizeLinear nodes that do it and the nodes that read the rounded copy. `only` puts one unit into the FP32
graph (the same Q/DQ pair, the same scales), so its effect on the final outputs is measured alone. Each unit
blames one node: for an activation, the node where its values were computed (through data movement, Relu-like
nodes and elementwise math on that one value: a bias Add, an activation function); for a weight, the node that
reads it. `exclude` is what the quantizer's nodes_to_exclude needs to leave the tensor in float: the node that
outputs it, the node it is blamed on and every node that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

QDQ = ("QuantizeLinear", "DequantizeLinear")
# Nodes that carry a value through unchanged or clipped: an outlier they pass on was made upstream.
PASS_THROUGH = frozenset(
    {"Relu", "Clip", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
)
# Elementwise math: a node of these whose computed inputs all derive from one tensor only transforms it.
ELEMENTWISE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Erf", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "LeakyRelu", "Neg"}
)
_SUFFIX = "__trtci_only"


@dataclass
class Unit:
    """One quantized tensor of the Q/DQ model, in terms of the FP32 graph it came from."""

    source: str  # the float tensor the quantizer rounds, as named in the FP32 graph
    weight: bool  # a constant (weight, bias) rather than an activation
    blamed: str  # the node this tensor's rounding is charged to
    op_type: str
    chain: list[onnx.NodeProto] = field(default_factory=list)  # its Q/DQ nodes, in order
    readers: list[tuple[str, int, str]] = field(default_factory=list)  # (node, input index, rounded copy it reads)
    exclude: tuple[str, ...] = ()  # nodes_to_exclude that leave the tensor in float
    float_copy: str = ""  # the tensor holding its float values in the Q/DQ model ("" when only the FP32 has it)


def find_units(fp32: onnx.ModelProto, int8: onnx.ModelProto) -> list[Unit]:
    """Every tensor the Q/DQ model `int8` rounds, matched to `fp32` (the graph it was quantized from) by node name."""
    fp32_nodes = {n.name: n for n in fp32.graph.node if n.name}
    producers = {name: n for n in int8.graph.node for name in n.output}
    fp32_producers = {name: n for n in fp32.graph.node for name in n.output}
    constants = {t.name for t in fp32.graph.initializer}
    constants |= {n.output[0] for n in fp32.graph.node if n.op_type == "Constant"}
    units: dict[str, Unit] = {}
    for node in int8.graph.node:
        twin = fp32_nodes.get(node.name)
        if node.op_type in QDQ or twin is None:
            continue
        for index, name in enumerate(node.input):
            dequantize = producers.get(name)
            if dequantize is None or dequantize.op_type != "DequantizeLinear" or index >= len(twin.input):
                continue
            quantize = producers.get(dequantize.input[0])
            if quantize is not None and quantize.op_type != "QuantizeLinear":
                quantize = None
            source = quantize.input[0] if quantize is not None else twin.input[index]
            unit = units.get(source)
            if unit is None:
                weight = source in constants
                blamed = node if weight else _origin(source, fp32_producers, constants, node)
                chain = [dequantize] if quantize is None else [quantize, dequantize]
                unit = units[source] = Unit(source, weight, blamed.name, blamed.op_type, chain)
                unit.float_copy = "" if quantize is None else source
            elif dequantize not in unit.chain:
                unit.chain.append(dequantize)
            unit.readers.append((node.name, index, name))
    for unit in units.values():
        readers = [reader for reader, _, _ in unit.readers]
        made_by = fp32_producers.get(unit.source)
        computed_by = [] if unit.weight or made_by is None else [made_by.name, unit.blamed]
        unit.exclude = tuple(dict.fromkeys([*computed_by, *readers]))
    return list(units.values())


def _origin(
    tensor: str, producers: dict[str, onnx.NodeProto], constants: set[str], reader: onnx.NodeProto
) -> onnx.NodeProto:
    """The node where `tensor`'s values were computed: through pass-through nodes, and through elementwise
    nodes whose computed inputs all derive from one tensor (a bias Add, a scale, GELU's erf and products,
    x * sigmoid(x)); `reader` for a graph input."""
    root = _root(tensor, producers, constants, {})
    return producers.get(root) or producers.get(tensor) or reader  # a graph input's root: the tensor itself


def _root(tensor: str, producers: dict[str, onnx.NodeProto], constants: set[str], memo: dict[str, str]) -> str:
    if tensor in memo:
        return memo[tensor]
    node = producers.get(tensor)
    root = tensor
    if node is not None and node.op_type in PASS_THROUGH and node.input:
        root = _root(node.input[0], producers, constants, memo)
    elif node is not None and node.op_type in ELEMENTWISE:
        computed = [name for name in node.input if name and name not in constants]
        sources = {_root(name, producers, constants, memo) for name in computed if name in producers}
        sources |= {name for name in computed if name not in producers}  # graph inputs
        if len(sources) == 1:
            root = sources.pop()
    memo[tensor] = root
    return root


def only(fp32: onnx.ModelProto, int8: onnx.ModelProto, unit: Unit) -> onnx.ModelProto:
    """`fp32` with `unit` quantized as `int8` quantizes it, and nothing else."""
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    graph = model.graph
    needed = {name for node in unit.chain for name in node.input[1:]}
    if not unit.float_copy:
        needed.add(unit.chain[0].input[0])
    graph.initializer.extend(_renamed_tensor(t) for t in int8.graph.initializer if t.name in needed)
    internal = {name for node in unit.chain for name in node.output}
    chain = []
    for node in unit.chain:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name += _SUFFIX
        for position, name in enumerate(copy.input):
            if name in needed or name in internal:
                copy.input[position] += _SUFFIX
        for position in range(len(copy.output)):
            copy.output[position] += _SUFFIX
        chain.append(copy)
    readers = {(node, index): rounded + _SUFFIX for node, index, rounded in unit.readers}
    nodes = list(graph.node)
    # right after the node computing the source (its readers come later), or first for inputs and constants
    first = next((i + 1 for i, n in enumerate(nodes) if unit.source in n.output), 0)
    for node in nodes:
        for index in range(len(node.input)):
            if (node.name, index) in readers:
                node.input[index] = readers[(node.name, index)]
    del graph.node[:]
    graph.node.extend([*nodes[:first], *chain, *nodes[first:]])
    return model


def _renamed_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.name += _SUFFIX
    return copy

"""FP16 conversion by type propagation: FP16 where ONNX and accuracy allow it, FP32 elsewhere, casts in between.

`convert_to_fp16` decides per node (trtci.pipeline.fp16_rules), retypes the float32 tensors of the nodes that
run in FP16, converts the constants they read, and inserts one Cast wherever a tensor crosses between the two
precisions, so every node sees exactly the types its ONNX schema asks for: ONNX Runtime loads the result and
TensorRT's strongly typed networks parse it. Graph inputs and outputs keep float32. The model is checked with
ONNX's strict type inference before it is returned, and its metadata lists the nodes that stayed FP32
(`KEPT_FP32_KEY`, read back with `kept_fp32`).

`convert_with_modelopt` runs NVIDIA ModelOpt AutoCast instead, where it is installed (`fp16: {converter:
modelopt}` in trtci.yml).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtci.errors import BackendUnavailable, ModelError
from trtci.pipeline.fp16_rules import (
    ANY_INPUT,
    FIXED_TYPE,
    MOVEMENT,
    KeptNode,
    allows_fp16,
    constant_values,
    float_variables,
    formal_type,
    keep_reason,
    node_label,
    opsets,
    schema_of,
)

KEPT_FP32_KEY = "trtci.fp16.kept_fp32"
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
# Initializers above this many bytes are left out of the copy that type inference reads (types need no data).
_SKELETON_BYTES = 1 << 16
_NAMED_IN_NOTE = 5


@dataclass
class Fp16Model:
    """A converted model, the nodes that stayed in FP32 and how many run in FP16."""

    model: onnx.ModelProto
    kept_fp32: list[KeptNode]
    fp16_nodes: int


def convert_file(path: Path, converter: str = "trtci") -> Fp16Model:
    """The FP16 conversion of the ONNX file at `path` by `converter` ("trtci" or "modelopt").

    Raises ModelError naming the file when it cannot be converted, BackendUnavailable when ModelOpt is asked
    for and missing.
    """
    if converter == "modelopt":
        return convert_with_modelopt(path)
    try:
        return convert_to_fp16(onnx.load(str(path)))
    except (ModelError, onnx.checker.ValidationError, onnx.defs.SchemaError) as e:
        raise ModelError(f"{path}: {e}") from e


def kept_fp32_notes(kept: list[KeptNode]) -> tuple[str, ...]:
    """One line for the run's notes: how many nodes stayed in FP32, of which op types, the first few names."""
    if not kept:
        return ()
    counts = Counter(k.op_type for k in kept)
    ops = ", ".join(f"{count} {op}" for op, count in counts.most_common())
    names = ", ".join(k.node for k in kept[:_NAMED_IN_NOTE]) + (", ..." if len(kept) > _NAMED_IN_NOTE else "")
    return (f"{len(kept)} nodes kept in FP32 for accuracy ({ops}): {names}; all in metadata {KEPT_FP32_KEY}",)


def convert_to_fp16(model: onnx.ModelProto) -> Fp16Model:
    """Convert `model` in place to mixed FP16/FP32 with float32 inputs and outputs.

    Raises ModelError when the model's types cannot be inferred or the result fails ONNX's type check.
    """
    types = infer_types(model)
    low, kept = _classify(model, types)
    _Rewrite(model, types, low).run()
    check_types(model)
    annotate(model, kept)
    return Fp16Model(model, kept, len(low))


def convert_with_modelopt(path: Path) -> Fp16Model:
    """NVIDIA ModelOpt AutoCast's conversion (FP32 inputs and outputs kept). BackendUnavailable without it."""
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as e:
        raise BackendUnavailable(
            f"fp16.converter is modelopt, but NVIDIA ModelOpt cannot be imported ({e}); install it with "
            "pip install 'nvidia-modelopt[onnx]' (it needs torch), or use fp16: {converter: trtci}"
        ) from e
    original = onnx.load(str(path))
    try:
        converted = convert_to_mixed_precision(onnx_path=str(path), low_precision_type="fp16", keep_io_types=True)
    except Exception as e:  # AutoCast raises bare Exceptions and asserts on graphs it refuses
        raise ModelError(f"{path}: ModelOpt AutoCast failed ({e}); try fp16: {{converter: trtci}}") from e
    check_types(converted)
    kept = _kept_by(original, converted)
    annotate(converted, kept)
    return Fp16Model(converted, kept, sum(1 for n in converted.graph.node if n.op_type != "Cast") - len(kept))


def kept_fp32(model: onnx.ModelProto) -> list[KeptNode]:
    """The nodes a trtci FP16 conversion kept in FP32, from the model's metadata ([] when there are none)."""
    for prop in model.metadata_props:
        if prop.key == KEPT_FP32_KEY:
            return [KeptNode(**entry) for entry in json.loads(prop.value)]
    return []


def annotate(model: onnx.ModelProto, kept: list[KeptNode]) -> None:
    """Record the FP32-kept nodes in the model's metadata_props."""
    props = [p for p in model.metadata_props if p.key != KEPT_FP32_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=KEPT_FP32_KEY, value=json.dumps([asdict(k) for k in kept]))


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without large initializer data (declared as typed inputs instead): enough for type inference."""
    skeleton = onnx.ModelProto(ir_version=max(model.ir_version, 4), producer_name=model.producer_name)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    source, graph = model.graph, skeleton.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    inputs = {i.name for i in source.input}
    for tensor in source.initializer:
        small = tensor.data_location != TensorProto.EXTERNAL and tensor.ByteSize() <= _SKELETON_BYTES
        if small:
            graph.initializer.append(tensor)
        elif tensor.name not in inputs:
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return skeleton


def infer_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor ONNX's inference can tell (inputs, initializers, constants, intermediates)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_skeleton(model), strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        raise ModelError(f"ONNX type inference failed ({_first_line(e)}); the model must pass onnx.checker") from e
    types: dict[str, int] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    for name, tensor in constant_values(model).items():
        types[name] = tensor.data_type
    return types


def check_types(model: onnx.ModelProto) -> None:
    """ONNX's strict type and shape inference over the converted graph: ModelError naming the node that fails.

    A graph with custom ops (no ONNX schema) cannot be inferred strictly; it is left to the backend's own check.
    """
    versions = opsets(model)
    if any(schema_of(node, versions) is None for node in model.graph.node):
        return
    try:
        onnx.shape_inference.infer_shapes(_skeleton(model), check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        raise ModelError(f"FP16 conversion gave an invalid model ({_first_line(e)}); leave fp16 out for it") from e


def _classify(model: onnx.ModelProto, types: dict[str, int]) -> tuple[dict[int, set[str]], list[KeptNode]]:
    """Per FP16 node (by index), the type variables that become float16; and the float nodes kept in FP32."""
    versions, constants = opsets(model), constant_values(model)
    low: dict[int, set[str]] = {}
    kept: list[KeptNode] = []
    arrives_half: set[str] = set()  # tensors that FP16 nodes produce, for data movement to follow
    for index, node in enumerate(model.graph.node):
        if node.op_type in FIXED_TYPE or node.op_type in ANY_INPUT:
            continue
        schema = schema_of(node, versions)
        if schema is None:
            variables = {"?"} if any(types.get(n) == FLOAT for n in [*node.input, *node.output]) else set()
        else:
            variables = float_variables(node, schema, types)
        if not variables:
            continue
        reason = keep_reason(node, schema, variables, constants)
        if reason is not None:
            kept.append(KeptNode(node_label(node, index), node.op_type, reason))
            continue
        assert schema is not None
        data = node.input[0] if node.input else ""
        if node.op_type in MOVEMENT and data not in constants and data not in arrives_half:
            continue  # data movement stays where its data is: FP32 in, FP32 out, no casts around it
        low[index] = {v for v in variables if allows_fp16(schema, v)}
        for position, name in enumerate(node.output):
            if formal_type(schema.outputs, position) in low[index]:
                arrives_half.add(name)
    return low, kept


def _captured(graph: onnx.GraphProto) -> set[str]:
    """Every name read inside the graph's subgraphs (If/Loop/Scan bodies read outer tensors by name)."""
    names: set[str] = set()
    for node in graph.node:
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs):
                names.update(name for inner in body.node for name in inner.input)
                names.update(o.name for o in body.output)
                names |= _captured(body)
    return names


class _Rewrite:
    """Retype the FP16 nodes' tensors, give every node the input types it expects, then tidy the casts."""

    def __init__(self, model: onnx.ModelProto, types: dict[str, int], low: dict[int, set[str]]) -> None:
        self.graph = model.graph
        self.nodes = list(model.graph.node)
        self.types = types
        self.now = dict(types)  # types as the rewrite leaves them
        self.low = low
        self.versions = opsets(model)
        self.constants = constant_values(model)
        self.inputs = {i.name for i in self.graph.input}
        self.producer = {name: i for i, node in enumerate(self.nodes) for name in node.output}
        self.provided: dict[tuple[str, int], str] = {}
        self.after: dict[int, list[onnx.NodeProto]] = defaultdict(list)  # producer index (-1: top) -> new nodes
        self.inserted: set[int] = set()  # id() of the Cast nodes this rewrite made
        self.taken = {n for node in self.nodes for n in [node.name, *node.input, *node.output]}
        self.taken |= {t.name for t in self.graph.initializer} | self.inputs

    def run(self) -> None:
        self._retype_outputs()
        for index, node in enumerate(self.nodes):
            self._fix_inputs(index, node)
        ordered = [*self.after[-1]]
        for index, node in enumerate(self.nodes):
            ordered.extend([node, *self.after[index]])
        ordered = self._fold_casts(ordered)
        del self.graph.node[:]
        self.graph.node.extend(ordered)
        self._drop_unused_constants()
        stale = [v for v in self.graph.value_info if self.now.get(v.name) != self.types.get(v.name)]
        for value in stale:
            self.graph.value_info.remove(value)

    def _fresh(self, name: str) -> str:
        candidate, count = name, 1
        while candidate in self.taken:
            count += 1
            candidate = f"{name}_{count}"
        self.taken.add(candidate)
        return candidate

    def _retype_outputs(self) -> None:
        """Outputs of FP16 nodes become float16; graph outputs and subgraph-read tensors keep float32 by a Cast."""
        keep_float = {o.name for o in self.graph.output} | _captured(self.graph)
        for index, variables in self.low.items():
            node = self.nodes[index]
            schema = schema_of(node, self.versions)
            assert schema is not None
            for position, name in enumerate(node.output):
                if not name or formal_type(schema.outputs, position) not in variables:
                    continue
                if name not in keep_float:
                    self.now[name] = HALF
                    continue
                half = self._fresh(f"{name}_fp16")
                node.output[position] = half
                self.now[half] = HALF
                self.provided[(name, HALF)] = half
                cast_name = self._fresh(f"{node.name or node.op_type}/Cast_to_fp32")
                self.after[index].append(helper.make_node("Cast", [half], [name], name=cast_name, to=FLOAT))

    def _fix_inputs(self, index: int, node: onnx.NodeProto) -> None:
        if node.op_type in ANY_INPUT or index not in self.low and node.op_type in FIXED_TYPE:
            return
        variables = self.low.get(index)
        schema = schema_of(node, self.versions) if variables is not None else None
        for position, name in enumerate(node.input):
            if not name:
                continue
            if schema is not None and variables is not None:
                if formal_type(schema.inputs, position) not in variables:
                    continue
                wanted = HALF
            elif self.types.get(name) == FLOAT:
                wanted = FLOAT  # an FP32 node reads what it read before
            else:
                continue
            if self.now.get(name) != wanted:
                node.input[position] = self._provide(name, wanted)

    def _provide(self, name: str, wanted: int) -> str:
        """`name` as type `wanted`: a converted constant, or the output of one Cast shared by every reader."""
        key = (name, wanted)
        if key in self.provided:
            return self.provided[key]
        suffix = "fp16" if wanted == HALF else "fp32"
        if name in self.constants and name not in self.inputs:
            new = self._fresh(f"{name}_{suffix}")
            values = numpy_helper.to_array(self.constants[name])
            converted = values.astype(np.float16 if wanted == HALF else np.float32)
            self.graph.initializer.append(numpy_helper.from_array(converted, new))
        else:
            new = self._fresh(f"{name}_to_{suffix}")
            cast = helper.make_node("Cast", [name], [new], name=self._fresh(f"{name}/Cast_to_{suffix}"), to=wanted)
            self.inserted.add(id(cast))
            self.after[self.producer.get(name, -1)].append(cast)
        self.now[new] = wanted
        self.provided[key] = new
        return new

    def _fold_casts(self, ordered: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
        """An exporter's Cast to float32 read only by a Cast this rewrite added becomes one Cast to the end type."""
        readers: dict[str, int] = defaultdict(int)
        for node in ordered:
            for name in node.input:
                readers[name] += 1
        pinned = {o.name for o in self.graph.output} | _captured(self.graph)
        producers = {name: node for node in ordered for name in node.output}
        dropped: set[int] = set()
        for node in ordered:
            if id(node) not in self.inserted:
                continue
            source = producers.get(node.input[0])
            if source is None or source.op_type != "Cast" or id(source) in self.inserted:
                continue
            if readers[node.input[0]] != 1 or node.input[0] in pinned:
                continue
            to = next(a for a in node.attribute if a.name == "to").i
            for attribute in source.attribute:
                if attribute.name == "to":
                    attribute.i = to
            source.output[0] = node.output[0]
            dropped.add(id(node))
        return [node for node in ordered if id(node) not in dropped]

    def _drop_unused_constants(self) -> None:
        """Initializers and Constant nodes that only the converted nodes read, now replaced by their FP16 copies."""
        read = {name for node in self.graph.node for name in node.input} | _captured(self.graph)
        read |= {o.name for o in self.graph.output}
        replaced = {name for name, _ in self.provided if name in self.constants}
        unused = replaced - read
        kept_tensors = [t for t in self.graph.initializer if t.name not in unused]
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept_tensors)
        kept_nodes = [n for n in self.graph.node if not (n.op_type == "Constant" and n.output[0] in unused)]
        del self.graph.node[:]
        self.graph.node.extend(kept_nodes)


def _kept_by(original: onnx.ModelProto, converted: onnx.ModelProto) -> list[KeptNode]:
    """Nodes of `original` with float32 math that still compute in float32 in `converted` (matched by name)."""
    before, after = infer_types(original), infer_types(converted)
    versions = opsets(original)
    by_name = {n.name: n for n in converted.graph.node if n.name}
    kept = []
    for index, node in enumerate(original.graph.node):
        schema = schema_of(node, versions)
        if schema is None or node.op_type in FIXED_TYPE or node.op_type in ANY_INPUT:
            continue
        twin = by_name.get(node.name)
        if float_variables(node, schema, before) and twin is not None and float_variables(twin, schema, after):
            kept.append(KeptNode(node_label(node, index), node.op_type, "kept in FP32 by ModelOpt AutoCast"))
    return kept


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

"""Which nodes of an FP32 ONNX graph may run in FP16, and why the others stay in FP32.

The rules follow NVIDIA ModelOpt AutoCast's: numerically sensitive ops stay in FP32 (normalizations and
reductions sum many values; Softmax, Exp, Log, Pow, Sqrt and Reciprocal leave FP16's range of +-65504 on
ordinary inputs), as does any node that reads a constant FP16 cannot hold, and any node whose ONNX schema has
no float16 for the types involved. Typing comes from the op schemas, so a node is converted exactly where ONNX
allows it: for each type variable bound to float32 (and allowing float16), every input and output of that
variable changes together; inputs of fixed type (Resize's scales) and int64 shape arithmetic never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

FP16_MAX = float(np.finfo(np.float16).max)

# Numerically sensitive op types and why they stay in FP32 (AutoCast's defaults and NVIDIA's FP16 guidance).
SENSITIVE: dict[str, str] = {
    **dict.fromkeys(
        (
            "LayerNormalization",
            "GroupNormalization",
            "InstanceNormalization",
            "LpNormalization",
            "MeanVarianceNormalization",
            "RMSNormalization",
        ),
        "normalization: mean and variance are computed in FP32",
    ),
    **dict.fromkeys(
        (
            "ReduceMean",
            "ReduceSum",
            "ReduceSumSquare",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceProd",
            "CumSum",
        ),
        "reduction: long sums lose FP16's 11 bits",
    ),
    "Softmax": "softmax inputs stay in FP32: exponentials overflow FP16",
    "LogSoftmax": "softmax inputs stay in FP32: exponentials overflow FP16",
    **dict.fromkeys(("Exp", "Log", "Pow", "Sqrt", "Reciprocal"), "range: results leave FP16's +-65504"),
    # AutoCast's OP_TYPES_NOT_SUPPORTED_IN_LOW_PRECISION
    **dict.fromkeys(("Upsample", "NonMaxSuppression", "Celu"), "not supported in FP16 by TensorRT"),
}

# Ops whose output type comes from an attribute, and quantization ops: never retyped.
FIXED_TYPE = frozenset(
    {
        "Cast",
        "Constant",
        "ConstantOfShape",
        "EyeLike",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
    }
)
# Ops that read only their input's shape or convert any type: they take FP16 or FP32 alike, no cast needed.
ANY_INPUT = frozenset({"Shape", "Size", "Cast"})
# Data movement: no arithmetic, so it runs in the precision its data arrives in (saves casts around FP32 nodes).
MOVEMENT = frozenset(
    {
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Identity",
        "Gather",
        "Slice",
        "Expand",
        "Tile",
        "Split",
        "Pad",
        "DepthToSpace",
        "SpaceToDepth",
    }
)


@dataclass(frozen=True)
class KeptNode:
    """A node with float32 math that stays in FP32, and why."""

    node: str
    op_type: str
    reason: str


def node_label(node: onnx.NodeProto, index: int) -> str:
    """The node's name, or `<op_type>#<index>` for an unnamed node."""
    return node.name or f"{node.op_type}#{index}"


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    """Opset version per domain ("" for the default domain)."""
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}


def schema_of(node: onnx.NodeProto, versions: dict[str, int]) -> onnx.defs.OpSchema | None:
    domain = "" if node.domain == "ai.onnx" else node.domain
    if domain not in versions:
        return None
    try:
        return onnx.defs.get_schema(node.op_type, versions[domain], domain)
    except onnx.defs.SchemaError:
        return None


def formal_type(params: Sequence[onnx.defs.OpSchema.FormalParameter], index: int) -> str:
    """The type string of the formal parameter at `index` (the last one repeats when it is variadic); "" past
    the end."""
    if index < len(params):
        return params[index].type_str
    if params and params[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        return params[-1].type_str
    return ""


def float_variables(node: onnx.NodeProto, schema: onnx.defs.OpSchema, types: dict[str, int]) -> set[str]:
    """The schema's type variables that this node binds to float32 (through any input or output)."""
    variables = {c.type_param_str for c in schema.type_constraints}
    bound = set()
    for params, names in ((schema.inputs, node.input), (schema.outputs, node.output)):
        for index, name in enumerate(names):
            formal = formal_type(params, index)
            if name and formal in variables and types.get(name) == TensorProto.FLOAT:
                bound.add(formal)
    return bound


def allows_fp16(schema: onnx.defs.OpSchema, variable: str) -> bool:
    return any(
        c.type_param_str == variable and "tensor(float16)" in c.allowed_type_strs for c in schema.type_constraints
    )


def constant_values(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node tensors by name."""
    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.t is not None:
                    constants[node.output[0]] = attribute.t
    return constants


def out_of_range(tensor: onnx.TensorProto) -> float | None:
    """The largest finite magnitude of a float32 constant when FP16 cannot hold it, else None."""
    if tensor.data_type != TensorProto.FLOAT or tensor.data_location == TensorProto.EXTERNAL and not tensor.raw_data:
        return None
    values = numpy_helper.to_array(tensor)
    finite = np.abs(values[np.isfinite(values)])
    peak = float(finite.max()) if finite.size else 0.0
    return peak if peak > FP16_MAX else None


def keep_reason(
    node: onnx.NodeProto,
    schema: onnx.defs.OpSchema | None,
    variables: set[str],
    constants: dict[str, onnx.TensorProto],
) -> str | None:
    """Why a node with float32 math stays in FP32, or None when it may run in FP16."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return "holds subgraphs (If, Loop, Scan): kept in FP32 as a whole"
    if schema is None:
        return f"no ONNX schema for {node.domain or 'ai.onnx'}::{node.op_type} (a custom op)"
    if node.op_type in SENSITIVE:
        return SENSITIVE[node.op_type]
    if not any(allows_fp16(schema, v) for v in variables):
        return f"ONNX {node.op_type} has no float16 type"
    for name in node.input:
        peak = out_of_range(constants[name]) if name in constants else None
        if peak is not None:
            return f"constant {name} holds {peak:.3g}, beyond FP16's {FP16_MAX:g}"
    return None

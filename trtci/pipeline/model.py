"""Inspect an ONNX model: its identity (content hash), opset, and the inputs and outputs a run must feed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from trtci.errors import ModelError
from trtci.results import file_sha256


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output."""

    name: str
    dtype: str  # numpy dtype name: "float32", "float16", "int64", ...
    shape: tuple[int | str | None, ...]  # int for fixed dims, str for symbolic dims ("N", "batch"), None unknown


@dataclass(frozen=True)
class ModelInfo:
    """What trtci knows about an ONNX file after checking it."""

    path: Path
    sha256: str
    size_bytes: int
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def name(self) -> str:
        return self.path.stem


def _tensor_spec(path: Path, role: str, value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        kind = (value.type.WhichOneof("value") or "untyped").removesuffix("_type")
        hint = ""
        if kind in ("sequence", "map"):
            hint = " (a scikit-learn classifier: convert it with options={'zipmap': False})"
        raise ModelError(
            f"{path}: {role} '{value.name}' is a {kind}, not a tensor; trtci feeds and compares tensors only: "
            f"re-export the model with tensor {role}s{hint}"
        )
    if not tensor_type.elem_type and role == "input":  # trtci could not make up data of no type
        raise ModelError(f"{path}: input '{value.name}' has no element type; re-export the model with typed inputs")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name if tensor_type.elem_type else "unknown"
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return TensorSpec(value.name, dtype, tuple(dims))


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    return 0


def inspect_model(path: Path) -> ModelInfo:
    """Check the model with onnx.checker and describe it. Raises ModelError naming the file and the fix."""
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "a FIFO, socket or device"
        raise ModelError(f"{path}: is {kind}, not an ONNX file; point the model path at the .onnx file")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found; check the path in the config or on the command line")
    try:
        # External data stays on disk: only the graph is needed here, and >2 GB models must not be loaded whole.
        model = onnx.load(str(path), load_external_data=False)
    except OSError as e:
        raise ModelError(
            f"{path}: cannot read the model ({e.strerror or e}); check the file and its permissions"
        ) from e
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not a readable ONNX protobuf ({e}); re-export the model to ONNX") from e
    if not model.HasField("graph"):
        raise ModelError(f"{path}: not an ONNX model (no graph found); re-export the model to ONNX")
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: fails onnx.checker ({first_line}); fix or re-export the model") from e
    if not model.graph.output:
        raise ModelError(f"{path}: the graph has no outputs, so there is nothing to run or compare; re-export it")
    initializers = {tensor.name for tensor in model.graph.initializer}
    return ModelInfo(
        path=path,
        sha256=file_sha256(path),
        size_bytes=path.stat().st_size,
        opset=_default_opset(model),
        inputs=tuple(_tensor_spec(path, "input", v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_tensor_spec(path, "output", v) for v in model.graph.output),
    )

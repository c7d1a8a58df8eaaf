"""A Triton Inference Server model configuration (`config.pbtxt`) as protobuf text, from plain data.

The text is Triton's `inference.ModelConfig` message (model_config.proto) in protobuf's text format: `name`,
`platform` (`tensorrt_plan` or `onnxruntime_onnx`), `max_batch_size`, `input`/`output` with Triton data types
and dims, `default_model_filename`, `cc_model_filenames` (compute capability -> plan file, so one model serves a
GPU matrix) and an `instance_group`. Lines starting with `#` are comments in that format; they carry what the
engines passed with (accuracy, speed, the run). Names Triton would refuse are refused here (DataError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from trtci.errors import DataError

# numpy dtype name -> Triton's DataType (model_config.proto)
TRITON_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16",
    "object": "TYPE_STRING", "str": "TYPE_STRING",
}  # fmt: skip
PLATFORMS = ("tensorrt_plan", "onnxruntime_onnx")
# A model's name is its directory in the repository and a path segment of Triton's HTTP and GRPC endpoints.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_COMPUTE = re.compile(r"^[0-9]+\.[0-9]+$")


@dataclass(frozen=True)
class TritonTensor:
    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    dims: tuple[int, ...]  # without the batch dimension when the model batches; -1 for a variable dim


@dataclass(frozen=True)
class TritonModel:
    """What `config.pbtxt` says about one model."""

    name: str
    platform: str
    max_batch_size: int  # 0: the model does not batch (dims are whole shapes)
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]
    default_model_filename: str
    cc_model_filenames: dict[str, str] = field(default_factory=dict)
    instance_kind: str = "KIND_GPU"
    comments: tuple[str, ...] = ()


def check_model_name(name: str) -> str:
    """`name` when Triton accepts it as a model name; DataError with the rule otherwise."""
    if not _MODEL_NAME.match(name) or name in (".", ".."):
        raise DataError(
            f"'{name}' is not a name Triton serves a model under: it is the model's folder in the repository and a "
            "path segment of its HTTP/GRPC endpoints; use letters, digits, '_', '-' and '.' (e.g. --name-prefix)"
        )
    return name


def config_pbtxt(model: TritonModel) -> str:
    """The model's `config.pbtxt` text. DataError for a name, data type, dim or compute capability Triton
    would refuse."""
    check_model_name(model.name)
    if model.platform not in PLATFORMS:
        raise DataError(f"{model.name}: platform '{model.platform}' is not one trtci exports ({', '.join(PLATFORMS)})")
    lines = [f"# {line}".rstrip() for text in model.comments for line in (text.splitlines() or [""])]
    lines += [
        f"name: {_quote(model.name)}",
        f"platform: {_quote(model.platform)}",
        f"max_batch_size: {model.max_batch_size}",
    ]
    lines += _tensors("input", model.name, model.inputs)
    lines += _tensors("output", model.name, model.outputs)
    lines.append(f"default_model_filename: {_quote(model.default_model_filename)}")
    for compute, filename in sorted(model.cc_model_filenames.items(), key=lambda item: _compute_order(item[0])):
        if not _COMPUTE.match(compute):
            raise DataError(f"{model.name}: compute capability '{compute}' is not like 8.6")
        lines.append(f"cc_model_filenames {{ key: {_quote(compute)} value: {_quote(filename)} }}")
    lines.append(f"instance_group [ {{ count: 1 kind: {model.instance_kind} }} ]")
    return "\n".join(lines) + "\n"


def _tensors(role: str, model: str, tensors: tuple[TritonTensor, ...]) -> list[str]:
    if not tensors:
        raise DataError(f"{model}: no {role}s; Triton needs every {role} of the model in its configuration")
    lines = [f"{role} ["]
    for index, tensor in enumerate(tensors):
        if not tensor.name:
            raise DataError(f"{model}: {role} #{index} has no name; Triton addresses tensors by name")
        data_type = TRITON_TYPES.get(tensor.dtype)
        if data_type is None:
            raise DataError(f"{model}: {role} '{tensor.name}' is {tensor.dtype}, which Triton has no data type for")
        if not tensor.dims or any(d < -1 or d == 0 for d in tensor.dims):
            raise DataError(f"{model}: {role} '{tensor.name}' has dims {list(tensor.dims)}; Triton needs >= 1 or -1")
        dims = ", ".join(str(d) for d in tensor.dims)
        separator = "," if index < len(tensors) - 1 else ""
        lines.append(f"  {{ name: {_quote(tensor.name)} data_type: {data_type} dims: [ {dims} ] }}{separator}")
    lines.append("]")
    return lines


def _compute_order(compute: str) -> tuple[int, ...]:
    return tuple(int(part) for part in compute.split(".") if part.isdigit())


def _quote(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 kept; quotes, backslashes and control characters escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = re.sub(r"[\x00-\x1f]", lambda m: f"\\{ord(m.group()):03o}", escaped)
    return f'"{escaped}"'

"""An engine's layers as plain data, from the TensorRT engine inspector's JSON and trtexec's per-layer profile.

The inspector's JSON (`IEngineInspector.get_engine_information(JSON)`, which is also what `trtexec
--exportLayerInfo` writes) comes in two layouts: TensorRT 10.x ends with `"Bindings": [names]`, 11.x with
`"I/O Tensors": [{"Name": ...}, ...]`. With `ProfilingVerbosity.DETAILED` each layer is an object (`Name`,
`LayerType`, `Inputs`/`Outputs` with `Dimensions` and `Format/Datatype`, or `Format` and `Datatype` apart,
`TacticName`/`TacticValue`); with `LAYER_NAMES_ONLY` each layer is just its name.

No file has a per-layer precision field: a tensor's data type is a word of its format string ("Row major linear
FP32", "Thirty-two wide channel vectorized row major Int8 format"), and a layer's precision is the data types of
its inputs and outputs. Everything here is pure: JSON-like data in, frozen dataclasses out, DataError (one line
naming `source`) for data that is not what it claims.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from trtci.errors import DataError

# Words of a format string that name a data type, and the canonical spelling trtci shows.
DTYPES = {
    "fp32": "FP32", "float": "FP32", "fp16": "FP16", "half": "FP16", "bf16": "BF16", "fp8": "FP8",
    "fp4": "FP4", "int8": "INT8", "uint8": "UINT8", "int4": "INT4", "int32": "INT32", "int64": "INT64",
    "bool": "BOOL", "e8m0": "E8M0",
}  # fmt: skip
REDUCED = ("INT8", "UINT8", "INT4", "FP8", "FP4")  # an engine with a tensor of these runs (partly) quantized
HALF = ("FP16", "BF16")
REFORMAT_PREFIX = "Reformatting CopyNode"
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Layer:
    """One engine layer. `kind` is what it computes (`ParameterType`, else `LayerType`: "Convolution",
    "Pooling", "Reformat"...), `implementation` TensorRT's layer type ("CaskConvolution", "TiledPooling")."""

    name: str
    kind: str = ""
    implementation: str = ""
    inputs: tuple[str, ...] = ()  # data type of each input tensor, "" where the format names none
    outputs: tuple[str, ...] = ()
    output_shape: tuple[int, ...] = ()
    tactic: str = ""  # TacticName, else TacticValue
    origin: str = ""  # "QDQ" for a quantize layer, "REFORMAT" for one TensorRT inserted
    time_ms: float | None = None  # average time per inference, from a per-layer profile

    @property
    def reformat(self) -> bool:
        """A layer that only converts a tensor's format or type (TensorRT's inserted copies and quantize
        reformats): kind Reformat, or a "Reformatting CopyNode" (some are NoOps)."""
        return self.kind == "Reformat" or self.name.startswith(REFORMAT_PREFIX)

    @property
    def precision(self) -> str:
        """'FP16' when every tensor has one type, else 'INT8,FP16->FP16' (inputs -> outputs); '' unknown."""
        types = [t for t in (*self.inputs, *self.outputs) if t]
        if not types:
            return ""
        if len(set(types)) == 1:
            return types[0]
        return f"{','.join(self.inputs) or '?'}->{','.join(self.outputs) or '?'}"

    @property
    def parts(self) -> frozenset[str]:
        """The network layers TensorRT fused into this one ("Conv_5 + Add_6 + Relu_7")."""
        return frozenset(part.strip() for part in self.name.split(" + ") if part.strip())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "implementation": self.implementation, "precision": self.precision,
            "inputs": list(self.inputs), "outputs": list(self.outputs), "output_shape": list(self.output_shape),
            "tactic": self.tactic, "origin": self.origin, "time_ms": self.time_ms,
        }  # fmt: skip


@dataclass(frozen=True)
class EngineLayers:
    """An engine's layers in execution order, its I/O tensor names, and which inspector layout they came in."""

    layers: tuple[Layer, ...]
    io_tensors: tuple[str, ...] = ()
    layout: str = ""  # "10.x" (Bindings), "11.x" (I/O Tensors), "profile" (names and times only)
    detailed: bool = True  # False for LAYER_NAMES_ONLY: names without types, precisions or tactics

    @property
    def timed(self) -> bool:
        return any(layer.time_ms is not None for layer in self.layers)

    @property
    def total_ms(self) -> float | None:
        """Sum of the layers' times per inference; None without a profile."""
        return sum(layer.time_ms or 0.0 for layer in self.layers) if self.timed else None

    @property
    def precision(self) -> str:
        """What the tensors show: "int8" with any 8-bit or smaller type, else "fp16" with any FP16/BF16, else
        "fp32"; "" when the layers carry no types."""
        types = {t for layer in self.layers for t in (*layer.inputs, *layer.outputs) if t}
        if not types:
            return ""
        if types & set(REDUCED):
            return "int8"
        return "fp16" if types & set(HALF) else "fp32"

    def layer(self, name: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.name == name), None)


def dtype_of(format_text: str) -> str:
    """The data type a format string names ('Channel major FP16 format where channel % 8 == 0' -> 'FP16'),
    or '' when it names none."""
    for word in _WORD.findall(format_text):
        found = DTYPES.get(word.lower())
        if found:
            return found
    return ""


def engine_layers(data: Any, source: str) -> EngineLayers:
    """Parse the inspector's JSON (already loaded). Raises DataError naming `source` when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise DataError(
            f"{source}: not TensorRT engine layer information (no 'Layers' list); pass the file written by "
            "trtexec --exportLayerInfo or the engine inspector's JSON"
        )
    if "Bindings" in data and "I/O Tensors" in data:
        raise DataError(f"{source}: has both 'Bindings' (TensorRT 10.x) and 'I/O Tensors' (11.x); the file is damaged")
    if "I/O Tensors" in data:
        layout, io = "11.x", _io_names(data["I/O Tensors"], source, "I/O Tensors")
    elif "Bindings" in data:
        layout, io = "10.x", _io_names(data["Bindings"], source, "Bindings")
    else:
        raise DataError(f"{source}: no 'Bindings' (TensorRT 10.x) or 'I/O Tensors' (11.x); the file is incomplete")
    raw_layers = data["Layers"]
    if all(isinstance(item, str) for item in raw_layers):
        layers = tuple(Layer(name=name) for name in raw_layers)
        return EngineLayers(_unique(layers, source), io, layout, detailed=False)
    layers = tuple(_layer(item, index, source) for index, item in enumerate(raw_layers))
    return EngineLayers(_unique(layers, source), io, layout, detailed=True)


def with_times(engine: EngineLayers, times: dict[str, float], source: str) -> EngineLayers:
    """The engine with each layer's time from a profile (name -> ms). The profile must name exactly the
    engine's layers (in any order): DataError names the first layer one has and the other lacks."""
    names = [layer.name for layer in engine.layers]
    extra = [name for name in times if name not in set(names)]
    missing = [name for name in names if name not in times]
    if extra or missing:
        what = (
            f"times layer '{extra[0]}', which the layer information lacks"
            if extra
            else f"lacks layer '{missing[0]}' of the layer information"
        )
        raise DataError(
            f"{source}: the profile {what} ({len(times)} profiled layers, {len(names)} in the engine); pass the "
            "profile and layer information of the same engine"
        )
    timed = tuple(_replace_time(layer, times[layer.name]) for layer in engine.layers)
    return EngineLayers(timed, engine.io_tensors, engine.layout, engine.detailed)


def from_profile(times: dict[str, float]) -> EngineLayers:
    """An engine known only from a per-layer profile: names and times, in the profile's order."""
    return EngineLayers(tuple(Layer(name=n, time_ms=t) for n, t in times.items()), layout="profile", detailed=False)


def _replace_time(layer: Layer, time_ms: float) -> Layer:
    return Layer(
        layer.name, layer.kind, layer.implementation, layer.inputs, layer.outputs, layer.output_shape,
        layer.tactic, layer.origin, time_ms,
    )  # fmt: skip


def _io_names(value: Any, source: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DataError(f"{source}: '{key}' is not a list; the file is damaged")
    names = []
    for item in value:
        name = item.get("Name") if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise DataError(f"{source}: an entry of '{key}' has no tensor name; the file is damaged")
        names.append(name)
    return tuple(names)


def _unique(layers: tuple[Layer, ...], source: str) -> tuple[Layer, ...]:
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:
            raise DataError(f"{source}: layer '{layer.name}' appears twice; the file is damaged")
        seen.add(layer.name)
    return layers


def _layer(item: Any, index: int, source: str) -> Layer:
    if not isinstance(item, dict) or not isinstance(item.get("Name"), str) or not item["Name"]:
        raise DataError(f"{source}: layer #{index} has no 'Name'; the file is damaged")
    name = item["Name"]
    inputs = _tensors(item.get("Inputs", []), source, name, "Inputs")
    outputs = _tensors(item.get("Outputs", []), source, name, "Outputs")
    shape = outputs[0][1] if outputs else ()
    return Layer(
        name=name,
        kind=str(item.get("ParameterType") or item.get("LayerType") or ""),
        implementation=str(item.get("LayerType") or ""),
        inputs=tuple(dtype for dtype, _ in inputs),
        outputs=tuple(dtype for dtype, _ in outputs),
        output_shape=shape,
        tactic=str(item.get("TacticName") or item.get("TacticValue") or ""),
        origin=str(item.get("Origin") or ""),
    )


def _tensors(value: Any, source: str, layer: str, key: str) -> list[tuple[str, tuple[int, ...]]]:
    """(data type, dimensions) of each tensor of a layer's Inputs or Outputs."""
    if not isinstance(value, list):
        raise DataError(f"{source}: layer '{layer}': '{key}' is not a list; the file is damaged")
    found = []
    for tensor in value:
        if not isinstance(tensor, dict):
            raise DataError(f"{source}: layer '{layer}': an entry of '{key}' is not a tensor; the file is damaged")
        if "Format/Datatype" in tensor:
            dtype = dtype_of(str(tensor["Format/Datatype"]))
        else:
            dtype = dtype_of(str(tensor.get("Datatype") or tensor.get("DataType") or ""))
        dims = tensor.get("Dimensions", [])
        if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise DataError(f"{source}: layer '{layer}': a tensor's 'Dimensions' are not integers; the file is damaged")
        found.append((dtype, tuple(dims)))
    return found


def finite_ms(value: Any) -> bool:
    """A time trtexec could have written: a finite number >= 0 (bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0

"""Prepare an ONNX model per precision: a shape-inferred FP32 copy, an FP16 conversion, INT8 Q/DQ by calibration.

Every prepared file is cached under `cache_dir/<key>/model.<precision>[.<scheme>].onnx`, where the key hashes the
model's bytes and everything else that changes the output (calibration data, scheme, method, recipe, library
versions). Files are written in a temporary folder and moved into place model-file-last, so an interrupted run
never leaves a file that a later run takes for a finished one.

INT8 has two Q/DQ schemes, because the fast recipe depends on who runs the model:
- "tensorrt": TensorRT explicit quantization (symmetric S8S8, per-channel weights, no bias or output
  quantization), the placement NVIDIA ModelOpt asks ONNX Runtime's quantizer for.
- "onnxruntime": U8S8 QDQ for ONNX Runtime's CPU kernels (QUInt8 asymmetric activations, QInt8 per-channel
  weights, 7-bit weights on x86 without VNNI, layers producing graph outputs kept float). Measured with
  benchmarks/int8_speedup.py: QOperator is no faster, per-tensor weights lose ~10 dB on BN-folded convolutions,
  quantizing only Conv/Gemm is slower (float Adds between them), S8S8 is slower than FP32 on AVX2.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trtci import __version__
from trtci.context.host import cpu_info
from trtci.errors import ConfigError, DataError, ModelError
from trtci.pipeline.cache import commit, entry_path, open_cache, workdir
from trtci.pipeline.fp16 import convert_file, kept_fp32, kept_fp32_notes
from trtci.pipeline.model import ModelInfo
from trtci.results import stable_hash

SCHEMES = ("onnxruntime", "tensorrt")
# trtci's calibration method names -> onnxruntime.quantization.CalibrationMethod members
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "distribution": "Distribution"}

# Above this a model must be written with external data: protobuf cannot serialize 2 GB in one message.
_LARGE_MODEL_BYTES = 1_800_000_000
# Calibration batches run per collection round; bounds the intermediate activations held in memory at once.
_CALIBRATION_CHUNK = 8

# The op types whose inputs TensorRT wants quantized: the math that runs in INT8, plus residual Adds so that
# TensorRT can fuse them into the preceding convolution's epilogue.
_TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")

RECIPES: dict[str, dict[str, Any]] = {
    "onnxruntime": {
        "quant_format": "QDQ",
        "activation_type": "QUInt8",
        "weight_type": "QInt8",
        "per_channel": True,
        "reduce_range": False,  # set per machine by recipe(): True on x86 without VNNI
        "op_types_to_quantize": None,  # every op ORT has a quantized kernel for, so Q/DQ fuse into QLinear ops
        # 8-bit logits lose close top-1 decisions; the last layers are a tiny share of the compute.
        "float_output_layers": True,
        "extra_options": {},
    },
    "tensorrt": {
        "quant_format": "QDQ",
        "activation_type": "QInt8",
        "weight_type": "QInt8",
        "per_channel": True,
        "reduce_range": False,
        "op_types_to_quantize": list(_TENSORRT_OP_TYPES),
        "float_output_layers": False,  # outputs are never quantized in this scheme, see below
        "extra_options": {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            # TensorRT's parser refuses the INT32 bias DequantizeLinear that QuantizeBias=True makes.
            "QuantizeBias": False,
            "AddQDQPairToWeight": True,
            "DedicatedQDQPair": False,
            "ForceQuantizeNoInputCheck": True,
            "OpTypesToExcludeOutputQuantization": list(_TENSORRT_OP_TYPES),
        },
    },
}


def recipe(scheme: str) -> dict[str, Any]:
    """The quantizer settings for a scheme on this machine (part of the cache key).

    On x86 without VNNI, ONNX Runtime's U8S8 kernels sum pairs of u8*s8 products in int16 (vpmaddubsw), which
    saturates with full-range 8-bit weights: measured here, a small CNN fell from 42 dB to 10 dB SQNR. 7-bit
    weights (reduce_range) cannot saturate, cost nothing in speed and a little in precision.
    """
    settings = dict(RECIPES[scheme])
    if scheme == "onnxruntime":
        settings["reduce_range"] = _x86_without_vnni()
    return settings


def _x86_without_vnni() -> bool:
    """True on x86 CPUs without AVX-512 VNNI or AVX-VNNI (also when the CPU's flags cannot be read: the safe side)."""
    cpu = cpu_info()
    if str(cpu["arch"]).lower() not in ("x86_64", "amd64", "i386", "i686"):
        return False
    isa = cpu["isa"]
    return not (isinstance(isa, list) and {"avx512_vnni", "avx_vnni"}.intersection(isa))


@dataclass(frozen=True)
class PreparedModel:
    """A model file ready for a backend, and how it was made."""

    path: Path
    precision: str  # fp32 | fp16 | int8
    quantization: str  # "" for fp32/fp16, "onnxruntime" or "tensorrt" for int8
    options_hash: str  # hash of everything but the model that made this file (data, scheme, recipe, versions)
    cache_hit: bool
    notes: tuple[str, ...] = ()  # what a user should know, e.g. a fallback taken while preparing


def prepare_fp32(model: ModelInfo, cache_dir: Path) -> PreparedModel:
    """A copy with inferred intermediate shapes, or the original file when inference adds nothing to it."""
    options_hash = stable_hash({"precision": "fp32", "trtci": __version__, "onnx": onnx.__version__})
    if _has_external_data(model.path):
        # A copy elsewhere would lose the relative paths to its weight files; the original serves as well.
        return PreparedModel(model.path, "fp32", "", options_hash, False, ("external data: using the original",))
    target = entry_path(cache_dir, model.sha256, options_hash, "model.fp32.onnx")
    open_cache(cache_dir)
    if target.is_file():
        return PreparedModel(target, "fp32", "", options_hash, True)
    with workdir(cache_dir) as work:
        inferred = work / target.name
        try:
            onnx.shape_inference.infer_shapes_path(str(model.path), str(inferred))
        except (onnx.shape_inference.InferenceError, ValueError, RuntimeError) as e:
            note = f"ONNX shape inference failed ({_first_line(e)}); using the original"
            return PreparedModel(model.path, "fp32", "", options_hash, False, (note,))
        if _value_info_count(inferred) <= _value_info_count(model.path):
            return PreparedModel(model.path, "fp32", "", options_hash, False)
        commit(work, target)
    return PreparedModel(target, "fp32", "", options_hash, False)


def prepare_fp16(model: ModelInfo, cache_dir: Path, converter: str = "trtci") -> PreparedModel:
    """FP16 by trtci's type-propagating conversion (trtci.pipeline.fp16) or NVIDIA ModelOpt AutoCast
    (`converter="modelopt"`), with FP32 inputs and outputs kept for the caller. Its notes say which nodes
    stayed in FP32; the model's metadata lists them (trtci.pipeline.fp16.kept_fp32)."""
    options_hash = stable_hash(
        {"precision": "fp16", "keep_io_types": True, "trtci": __version__, "converter": converter}
    )
    target = entry_path(cache_dir, model.sha256, options_hash, "model.fp16.onnx")
    open_cache(cache_dir)
    if target.is_file():
        kept = kept_fp32(onnx.load(str(target), load_external_data=False))
        return PreparedModel(target, "fp16", "", options_hash, True, kept_fp32_notes(kept))
    converted = convert_file(model.path, converter)
    with workdir(cache_dir) as work:
        _save(converted.model, work / target.name, _is_large(model))
        commit(work, target)
    return PreparedModel(target, "fp16", "", options_hash, False, kept_fp32_notes(converted.kept_fp32))


def prepare_int8(
    model: ModelInfo,
    calibration: Sequence[dict[str, np.ndarray]],
    *,
    scheme: str,
    method: str,
    data_hash: str,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    nodes_to_exclude: Sequence[str] = (),
) -> PreparedModel:
    """A Q/DQ INT8 model calibrated on `calibration` (a list of feed dicts, one per batch) for `scheme`, with the
    nodes named in `nodes_to_exclude` kept in float.

    A cached result for the same model bytes, data_hash, scheme, method, exclusions and recipe is returned without
    calibrating. Raises DataError for unusable calibration data and ModelError when the quantizer fails.
    """
    import onnxruntime

    if scheme not in SCHEMES:
        raise ConfigError(f"unknown INT8 scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    options_hash = stable_hash(
        {
            "precision": "int8",
            "scheme": scheme,
            "method": method,
            "data": data_hash,
            "recipe": recipe(scheme),
            "trtci": __version__,
            "onnxruntime": onnxruntime.__version__,
            # only when given, so that the cache keys of runs without exclusions stay as they were
            **({"exclude": sorted(nodes_to_exclude)} if nodes_to_exclude else {}),
        }
    )
    target = entry_path(cache_dir, model.sha256, options_hash, f"model.int8.{scheme}.onnx")
    open_cache(cache_dir)
    if target.is_file():
        return PreparedModel(target, "int8", scheme, options_hash, True)
    _check_calibration(model, calibration)
    with workdir(cache_dir) as work:
        preprocessed = work / "preprocessed.onnx"
        notes = _preprocess(model, preprocessed)
        reader = _CalibrationReader(calibration, progress)
        _quantize(model, preprocessed, work / target.name, reader, scheme, method, list(nodes_to_exclude))
        commit(work, target)
    return PreparedModel(target, "int8", scheme, options_hash, False, tuple(notes))


class _CalibrationReader:
    """ONNX Runtime's CalibrationDataReader over in-memory batches, reporting each batch it hands out.

    It supports `set_range`, so the quantizer can collect statistics a few batches at a time
    (`CalibStridedMinMax`, used by every calibration method) instead of holding every activation at once.
    """

    def __init__(self, batches: Sequence[dict[str, np.ndarray]], progress: Callable[[int, int], None] | None):
        self._batches = batches
        self._progress = progress
        self._next = 0
        self._end = len(batches)
        self._consumed = 0
        # The quantizer runs with stdout captured; progress output (a CLI's bar) goes to the real one.
        self._stdout = sys.stdout

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        feed = self._batches[self._next]
        self._next += 1
        self._consumed += 1
        if self._progress is not None:
            with contextlib.redirect_stdout(self._stdout):
                self._progress(self._consumed, len(self._batches))
        return feed

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self._batches))


def _check_calibration(model: ModelInfo, calibration: Sequence[dict[str, np.ndarray]]) -> None:
    if len(calibration) == 0:
        raise DataError(f"{model.path}: no calibration data for INT8; give calibration samples or leave int8 out")
    expected = {spec.name for spec in model.inputs}
    for index, feed in enumerate(calibration):
        missing, unknown = expected - feed.keys(), feed.keys() - expected
        if missing or unknown:
            raise DataError(
                f"{model.path}: calibration batch {index} has inputs {sorted(feed)}, the model takes "
                f"{sorted(expected)}; make the calibration data match the model's input names"
            )


def _preprocess(model: ModelInfo, output: Path) -> list[str]:
    """Run ORT's quant_pre_process; retry without symbolic shape inference, which fails on some graphs."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    large = _is_large(model)
    try:
        quant_pre_process(str(model.path), str(output), save_as_external_data=large)
        return []
    except Exception as first:  # symbolic shape inference asserts on shapes it cannot follow
        try:
            quant_pre_process(str(model.path), str(output), skip_symbolic_shape=True, save_as_external_data=large)
        except Exception as e:
            raise ModelError(
                f"{model.path}: INT8 pre-processing (shape inference and graph optimization) failed "
                f"({_first_line(e)}); check that the model runs in ONNX Runtime, or leave int8 out"
            ) from e
        return [f"symbolic shape inference failed ({_first_line(first)}); quantized without it"]


def _quantize(
    model: ModelInfo,
    source: Path,
    output: Path,
    reader: _CalibrationReader,
    scheme: str,
    method: str,
    excluded: list[str],
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    settings = recipe(scheme)
    extra_options = dict(settings["extra_options"])
    stride = _stride(len(reader), _CALIBRATION_CHUNK)
    if stride < len(reader):
        extra_options["CalibStridedMinMax"] = stride
    try:
        # The calibrators print progress banners to stdout, which belongs to the CLI's report.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(source),
                str(output),
                reader,
                quant_format=QuantFormat[settings["quant_format"]],
                activation_type=QuantType[settings["activation_type"]],
                weight_type=QuantType[settings["weight_type"]],
                per_channel=settings["per_channel"],
                reduce_range=settings["reduce_range"],
                op_types_to_quantize=settings["op_types_to_quantize"],
                nodes_to_exclude=_nodes_to_exclude(source, scheme) + excluded,
                calibrate_method=CalibrationMethod[METHODS[method]],
                use_external_data_format=_is_large(model),
                extra_options=extra_options,
            )
    except Exception as e:  # the quantizer raises anything from ValueError to onnxruntime's own errors
        raise ModelError(
            f"{model.path}: INT8 calibration and quantization ({scheme} scheme, {method}) failed "
            f"({_first_line(e)}); try another calibration method or leave int8 out"
        ) from e


def _nodes_to_exclude(path: Path, scheme: str) -> list[str]:
    """Nodes the recipe keeps in float: output layers (onnxruntime), Adds of a constant (tensorrt).

    TensorRT wants Q/DQ on residual Adds (two computed inputs) only; bias Adds of constants stay float.
    """
    graph = onnx.load(str(path), load_external_data=False).graph
    excluded = []
    if recipe(scheme)["float_output_layers"]:
        outputs = {o.name for o in graph.output}
        excluded += [n.name for n in graph.node if outputs.intersection(n.output) and n.name]
    if scheme == "tensorrt":
        constants = {t.name for t in graph.initializer}
        constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
        excluded += [n.name for n in graph.node if n.op_type == "Add" and constants.intersection(n.input) and n.name]
    return excluded


def _stride(total: int, chunk: int) -> int:
    """The largest divisor of `total` not above `chunk` (ORT's strided collection needs an exact split)."""
    return max(d for d in range(1, min(total, chunk) + 1) if total % d == 0)


def _save(model: onnx.ModelProto, path: Path, large: bool) -> None:
    try:
        if large:
            onnx.save_model(model, str(path), save_as_external_data=True, location=f"{path.name}.data")
        else:
            onnx.save_model(model, str(path))
    except OSError as e:  # a full disk
        raise ConfigError(f"{path.parent.parent}: cannot write to the cache ({e.strerror or e})") from e


def _is_large(model: ModelInfo) -> bool:
    return model.size_bytes > _LARGE_MODEL_BYTES or _has_external_data(model.path)


def _has_external_data(path: Path) -> bool:
    graph = onnx.load(str(path), load_external_data=False).graph
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)


def _value_info_count(path: Path) -> int:
    return len(onnx.load(str(path), load_external_data=False).graph.value_info)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

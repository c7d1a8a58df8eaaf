"""Building a TensorRT engine: ONNX file -> network (strongly typed) -> builder config -> serialized plan.

Used by the `tensorrt` and `tensorrt-rtx` backends (trtci.backends.tensorrt) over either Python module, which
share the builder API. The precision comes from the model itself (FP16 tensors, Q/DQ nodes for INT8), never
from builder flags, so the same code builds on TensorRT 10.12+ and 11.x.

Typing: the code is checked against TensorRT's stubs. Functions that touch TensorRT bind the name `trt` to the
`tensorrt` stubs for mypy and, at run time, to whichever module the flavor uses (`import_tensorrt` below).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtci.backends.base import LoadRequest
from trtci.config import TensorRTOptions
from trtci.errors import BackendError, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    import tensorrt as trt_stubs

MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx_bindings"}
INSTALL_HINTS = {
    "tensorrt": "pip install 'trtci[tensorrt]' (TensorRT 10.12+ wheels come from NVIDIA's index, pypi.nvidia.com)",
    "tensorrt-rtx": "pip install 'trtci[tensorrt-rtx]' (TensorRT for RTX, builds engines even without a GPU)",
}
QDQ_LAYER_TYPES = ("QUANTIZE", "DEQUANTIZE")


def import_tensorrt(flavor: str) -> Any:
    """The flavor's Python module; BackendUnavailable with the install hint when it cannot be imported."""
    try:
        return importlib.import_module(MODULES[flavor])
    except (ImportError, OSError) as e:
        raise BackendUnavailable(
            f"{flavor}: cannot import {MODULES[flavor]} ({e}); {INSTALL_HINTS[flavor]}, then run `trtci doctor`"
        ) from e


@dataclass
class BuildLog:
    """What TensorRT's logger said during a build, kept to explain a failure."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def last_errors(self, count: int = 3) -> str:
        return " | ".join(self.errors[-count:]) or "TensorRT logged no error"


def make_logger(flavor: str, log: BuildLog) -> trt_stubs.ILogger:
    """A TensorRT logger that records errors and warnings into `log` (defined per call: it subclasses TensorRT)."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = import_tensorrt(flavor)

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                log.errors.append(msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warnings.append(msg)

    return RecordingLogger()



@dataclass
class BuildOutput:
    plan: bytes
    facts: dict[str, Any]
    timing_cache: bytes | None


def _parse(flavor: str, network: trt_stubs.INetworkDefinition, model_path: Path, logger: trt_stubs.ILogger) -> None:
    """Parse the ONNX file into `network`; BackendError naming each refused node and TensorRT's message."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = import_tensorrt(flavor)
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(model_path)):
        return
    problems = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node_name() or (f"#{error.node()}" if error.node() >= 0 else "")
        where = f"node '{node}' ({error.node_operator()})" if node else "the model"
        problems.append(f"{where}: {error.desc()}")
    raise BackendError(
        f"{flavor} cannot parse {model_path.name}: " + "; ".join(problems or ["the parser gave no reason"])
    )


def dims(dims: trt_stubs.Dims) -> tuple[int, ...]:
    """A TensorRT Dims as a tuple (-1 for a dynamic dim)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def _profile(
    flavor: str, builder: trt_stubs.Builder, network: trt_stubs.INetworkDefinition, request: LoadRequest
) -> tuple[trt_stubs.IOptimizationProfile | None, dict[str, list[list[int]]]]:
    """An optimization profile for the network's dynamic inputs, from request.shape_ranges or request.shapes.

    Returns (None, {}) when every input is static. Raises BackendError when a dynamic input has no shape.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = import_tensorrt(flavor)
    profile = builder.create_optimization_profile()
    shapes: dict[str, list[list[int]]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if all(d >= 0 for d in dims(tensor.shape)):
            continue
        name = tensor.name
        if name in request.shape_ranges:
            low, mid, high = request.shape_ranges[name]
        elif name in request.shapes:
            low = mid = high = request.shapes[name]
        else:
            raise BackendError(
                f"{request.model_path.name}: input '{name}' has dynamic shape {dims(tensor.shape)} and no shape was "
                "given; set it under the model's inputs: in the config"
            )
        profile.set_shape(name, trt.Dims(list(low)), trt.Dims(list(mid)), trt.Dims(list(high)))
        shapes[name] = [list(low), list(mid), list(high)]
    return (profile if shapes else None), shapes


def _configure(
    flavor: str,
    builder: trt_stubs.Builder,
    options: TensorRTOptions,
    computes: list[str] | None,
) -> trt_stubs.IBuilderConfig:
    """A builder config with the options. `computes` (SM names) are TensorRT for RTX's ahead-of-time targets;
    None builds for the GPU present."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = import_tensorrt(flavor)
    config = builder.create_builder_config()
    if options.workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    if flavor == "tensorrt":  # TensorRT for RTX logs "unsupported" for any level, NONE included
        level = getattr(trt.HardwareCompatibilityLevel, options.hardware_compatibility.upper())
        config.hardware_compatibility_level = level
    config.profiling_verbosity = getattr(trt.ProfilingVerbosity, options.profiling_verbosity.upper())
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if flavor == "tensorrt-rtx":
        _set_rtx_targets(trt, config, computes)
    return config


def _set_rtx_targets(trt: Any, config: Any, computes: list[str] | None) -> None:
    """TensorRT for RTX's compute-capability targets (not in TensorRT's stubs, hence untyped)."""
    names = computes or ["CURRENT"]
    config.num_compute_capabilities = len(names)
    for i, name in enumerate(names):
        member = getattr(trt.ComputeCapability, name.upper(), None)
        if member is None:
            valid = ", ".join(m for m in trt.ComputeCapability.__members__ if m.startswith("SM"))
            raise ConfigError(f"tensorrt.compute_capabilities: '{name}' is not a target; choose from {valid}")
        config.set_compute_capability(member, i)


def _count_layers(flavor: str, network: trt_stubs.INetworkDefinition) -> tuple[int, int]:
    """(layers, Q/DQ layers) of the parsed network."""
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = import_tensorrt(flavor)
    qdq_types = {getattr(trt.LayerType, name) for name in QDQ_LAYER_TYPES}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    return len(layers), sum(layer.type in qdq_types for layer in layers)


def build_plan(
    flavor: str,
    request: LoadRequest,
    options: TensorRTOptions,
    computes: list[str] | None,
    timing_cache: bytes | None = None,
) -> BuildOutput:
    """Parse and build one engine; BackendError with the parser's or the logger's reason on failure.

    `timing_cache` (TensorRT only; TensorRT for RTX accepts timing-cache calls as no-ops, so they are skipped)
    seeds the build and the updated cache comes back in the output.
    """
    if TYPE_CHECKING:
        import tensorrt as trt
    else:
        trt = import_tensorrt(flavor)
    log = BuildLog()
    logger = make_logger(flavor, log)
    builder = trt.Builder(logger)
    # 11.x ignores the flag (strong typing is always on); 10.12+ needs it to take precisions from the model.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    _parse(flavor, network, request.model_path, logger)
    config = _configure(flavor, builder, options, computes)
    profile, profile_shapes = _profile(flavor, builder, network, request)
    if profile is not None:
        config.add_optimization_profile(profile)
    use_timing_cache = flavor == "tensorrt"
    if use_timing_cache:
        cache = config.create_timing_cache(timing_cache or b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    layers, qdq_layers = _count_layers(flavor, network)
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    build_time = time.perf_counter() - start
    if plan is None:
        raise BackendError(f"{flavor} failed to build {request.model_path.name}: {log.last_errors()}")
    new_cache = bytes(config.get_timing_cache().serialize()) if use_timing_cache else None
    notes = []
    if flavor == "tensorrt-rtx" and options.hardware_compatibility != "none":
        notes.append("hardware_compatibility is ignored: TensorRT for RTX does not support it")
    data = bytes(plan)
    facts = {
        "build_time_s": build_time,
        "plan_bytes": len(data),
        "layers": layers,
        "qdq_layers": qdq_layers,
        "profiles": profile_shapes,
        "build_warnings": log.warnings[-5:],
        "notes": notes,
    }
    return BuildOutput(plan=data, facts=facts, timing_cache=new_cache)


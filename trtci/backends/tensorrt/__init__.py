"""The TensorRT backends: `tensorrt` (TensorRT 10.12+ and 11.x) and `tensorrt-rtx` (TensorRT for RTX).

One implementation over both Python modules (`tensorrt`, `tensorrt_rtx_bindings`), which share the builder API.
Engines are built from the prepared ONNX with a strongly typed network: the precision comes from the model
itself (FP16 tensors, Q/DQ nodes for INT8), never from builder flags, so the same code builds on 10.12+ and 11.x.

Where the builder works but no supported GPU is present (CI, CPU runners, a TensorRT for RTX build on a
data-center GPU), the backend is in build-only mode: `load` parses and builds (a compile check with build facts)
and `run`/`benchmark` raise BackendUnavailable with the reason.

Typing: the code is checked against TensorRT's stubs. Functions that touch TensorRT bind the name `trt` to the
`tensorrt` stubs for mypy and, at run time, to whichever module the flavor uses (`import_tensorrt` below).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from trtci.backends.base import Feeds, LoadRequest, Progress
from trtci.backends.tensorrt.engine_cache import CacheDecision, EngineCache, EngineMetadata, Target, engine_key
from trtci.config import BenchSettings, TensorRTOptions, format_validation_error
from trtci.errors import BackendError, BackendUnavailable, ConfigError
from trtci.results import BenchResult, DeviceInfo, file_sha256, stable_hash

if TYPE_CHECKING:
    import tensorrt as trt_stubs

    from trtci.backends.cuda_timing import DeviceBuffer, GpuProperties, PinnedArray

MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx_bindings"}
INSTALL_HINTS = {
    "tensorrt": "pip install 'trtci[tensorrt]' (TensorRT 10.12+ wheels come from NVIDIA's index, pypi.nvidia.com)",
    "tensorrt-rtx": "pip install 'trtci[tensorrt-rtx]' (TensorRT for RTX, builds engines even without a GPU)",
}
# Options that change the engine; the others (CUDA graphs, transfers, device) only change how it is measured.
BUILD_OPTIONS = ("workspace_mb", "optimization_level", "hardware_compatibility", "version_compatible")
QDQ_LAYER_TYPES = ("QUANTIZE", "DEQUANTIZE")


def rtx_can_run_on(compute: str) -> bool:
    """TensorRT for RTX runs on Turing, Ampere, Ada and Blackwell consumer/workstation GPUs (7.5-8.9, 12.x),
    not on data-center Hopper or Blackwell (9.0, 10.x): its runtime refuses those (seen on an H100)."""
    major, minor = (int(part) for part in compute.split("."))
    return (major, minor) >= (7, 5) and major < 9 or major >= 12


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


def options_from(request: LoadRequest) -> TensorRTOptions:
    """The TensorRT options in a LoadRequest, validated; ConfigError names a bad key."""
    known = {k: v for k, v in request.options.items() if k in TensorRTOptions.model_fields}
    try:
        return TensorRTOptions.model_validate(known)
    except ValidationError as e:
        raise ConfigError(format_validation_error("tensorrt options", e)) from e


def compute_of(sm: str) -> str:
    """'SM86' -> '8.6', 'SM120' -> '12.0'."""
    digits = sm.upper().removeprefix("SM")
    if not digits.isdigit() or len(digits) < 2:
        raise ConfigError(f"tensorrt.compute_capabilities: '{sm}' is not like SM86")
    return f"{digits[:-1]}.{digits[-1]}"


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


def _dims(dims: trt_stubs.Dims) -> tuple[int, ...]:
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
        if all(d >= 0 for d in _dims(tensor.shape)):
            continue
        name = tensor.name
        if name in request.shape_ranges:
            low, mid, high = request.shape_ranges[name]
        elif name in request.shapes:
            low = mid = high = request.shapes[name]
        else:
            raise BackendError(
                f"{request.model_path.name}: input '{name}' has dynamic shape {_dims(tensor.shape)} and no shape was "
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


class TensorRTBackend:
    """The `tensorrt` or `tensorrt-rtx` backend on one CUDA device (or none, in build-only mode)."""

    int8_scheme = "tensorrt"

    def __init__(self, flavor: str, options: TensorRTOptions | None = None) -> None:
        if flavor not in MODULES:
            raise ConfigError(f"unknown TensorRT flavor '{flavor}'; choose from {', '.join(MODULES)}")
        self.name = flavor
        self.options = options or TensorRTOptions()
        self.trt = import_tensorrt(flavor)
        self.version = str(self.trt.__version__)
        self.device_index = self.options.device if self.options.device is not None else 0
        self.gpu, self.why_not_run = self._probe_gpu()
        self.can_run = self.why_not_run == ""
        if flavor == "tensorrt" and self.gpu is None:
            raise BackendUnavailable(
                f"tensorrt needs an NVIDIA GPU to build engines ({self.why_not_run}); use the tensorrt-rtx backend "
                "for build-only checks on runners without a GPU, or run `trtci doctor`"
            )

    def _probe_gpu(self) -> tuple[GpuProperties | None, str]:
        """This runner's GPU (None without one) and why engines cannot run here ("" when they can)."""
        from trtci.backends.cuda_timing import gpu_count, gpu_properties

        try:
            if gpu_count() <= self.device_index:
                return None, f"CUDA device {self.device_index} does not exist"
            gpu = gpu_properties(self.device_index)
        except (BackendUnavailable, BackendError) as e:  # no GPU, or a CUDA error such as a driver mismatch
            return None, str(e)
        if self.name == "tensorrt-rtx" and not rtx_can_run_on(gpu.compute):
            return gpu, (
                f"TensorRT for RTX cannot run on {gpu.name} (compute {gpu.compute}); it runs on RTX-class GPUs "
                "(compute 7.5-8.9, 12.x): use the tensorrt backend on this GPU"
            )
        return gpu, ""

    @property
    def build_targets(self) -> list[str] | None:
        """RTX ahead-of-time targets in build-only mode; None builds for the GPU present."""
        if self.name == "tensorrt-rtx" and not self.can_run:
            return list(self.options.compute_capabilities)
        return None

    def target(self) -> Target:
        if self.can_run and self.gpu is not None:
            return Target(self.name, self.version, self.gpu.name, (self.gpu.compute,), self.gpu.runtime)
        return Target(self.name, self.version, "", tuple(compute_of(sm) for sm in self.build_targets or []))

    def device(self) -> DeviceInfo:
        details: dict[str, Any] = {
            "tensorrt_flavor": self.name,
            "tensorrt": self.version,
            "build_only": not self.can_run,
        }
        if self.can_run and self.gpu is not None:
            details.update(compute=self.gpu.compute, memory_bytes=self.gpu.memory_bytes, cuda=self.gpu.runtime)
            details["driver_cuda"] = self.gpu.driver
            return DeviceInfo(kind="gpu", name=self.gpu.name, details=details)
        target = self.target()
        details["targets"] = list(target.compute)
        return DeviceInfo(kind="gpu", name=f"build-only {target.gpu}", details=details)

    def load(self, request: LoadRequest) -> TensorRTSession | BuildOnlySession:
        """Reuse a cached engine built for this exact target, or build one; then open it where it can run."""
        options = options_from(request)
        model_hash = file_sha256(request.model_path)
        build_options = {name: getattr(options, name) for name in BUILD_OPTIONS}
        build_options.update(
            profiling_verbosity=options.profiling_verbosity,
            shapes={k: list(v) for k, v in sorted(request.shapes.items())},
            shape_ranges={k: [list(s) for s in v] for k, v in sorted(request.shape_ranges.items())},
        )
        target = self.target()
        expected = EngineMetadata(
            key=engine_key(model_hash, request.precision, build_options, target),
            model_hash=model_hash,
            precision=request.precision,
            options=build_options,
            target=target.__dict__ | {"compute": list(target.compute)},
            plan_sha256="",
            plan_bytes=0,
            build_time_s=0.0,
            input_hashes={"model": model_hash, "shapes": stable_hash(build_options["shapes"])},
        )
        cache = EngineCache(request.cache_dir) if request.cache_dir is not None else None
        plan, build = self._plan(request, options, expected, target, cache)
        if not self.can_run:
            build["inspector"] = "not available in build-only mode: the engine cannot be deserialized here"
            return BuildOnlySession(build, self.why_not_run)
        return TensorRTSession(self, plan, request, options, build)

    def _plan(
        self,
        request: LoadRequest,
        options: TensorRTOptions,
        expected: EngineMetadata,
        target: Target,
        cache: EngineCache | None,
    ) -> tuple[bytes, dict[str, Any]]:
        decision = cache.lookup(expected, target) if cache is not None else None
        if decision and decision.metadata is not None and decision.plan is not None:
            build = dict(decision.metadata.build)
            build.update(cache="reused", cache_reason=decision.reason, engine_path=str(decision.plan_path))
            return decision.plan, build
        timing_path = cache.timing_cache_path(target) if cache is not None else None
        seed = timing_path.read_bytes() if timing_path is not None and timing_path.exists() else None
        output = build_plan(self.name, request, options, self.build_targets, seed)
        build = {
            "backend": self.name,
            "tensorrt_flavor": self.name,
            "tensorrt_version": self.version,
            "target_gpu": target.gpu_name,
            "target_compute": list(target.compute),
            "build_only": not self.can_run,
            **output.facts,
            "timing_cache": _timing_note(self.name, timing_path, seed),
            "cache": "built",
            "cache_reason": _cache_reason(decision),
        }
        if cache is not None:
            expected.build = build
            expected.build_time_s = output.facts["build_time_s"]
            expected.layers, expected.qdq_layers = output.facts["layers"], output.facts["qdq_layers"]
            expected.driver = self.gpu.driver if self.gpu is not None else ""
            build["engine_path"] = str(cache.store(output.plan, expected))
            if timing_path is not None and output.timing_cache:
                timing_path.parent.mkdir(parents=True, exist_ok=True)
                timing_path.write_bytes(output.timing_cache)
        return output.plan, build


def _cache_reason(decision: CacheDecision | None) -> str:
    return decision.reason if decision is not None else "no cache directory: built without caching"


def _timing_note(flavor: str, path: Path | None, seed: bytes | None) -> str:
    if flavor == "tensorrt-rtx":
        return "not used: TensorRT for RTX accepts timing-cache calls as no-ops"
    if path is None:
        return "not persisted: no cache directory"
    return f"{'reused' if seed else 'created'} {path}"


class BuildOnlySession:
    """An engine that was built (its facts are in `build`) but cannot run on this machine."""

    def __init__(self, build: dict[str, Any], reason: str) -> None:
        self.build: dict[str, Any] | None = build
        self.reason = reason

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        raise BackendUnavailable(f"build-only mode, the engine was built but cannot run here: {self.reason}")

    def benchmark(
        self, feeds: Feeds, settings: BenchSettings, batch: int, progress: Progress | None = None
    ) -> BenchResult:
        raise BackendUnavailable(f"build-only mode, the engine was built but cannot be measured here: {self.reason}")

    def close(self) -> None:
        """Nothing is held: the plan lives in the engine cache."""


@dataclass
class _Tensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    device: DeviceBuffer
    host: PinnedArray


class TensorRTSession:
    """A deserialized engine with one execution context, device buffers bound to every I/O tensor, a stream."""

    def __init__(
        self,
        backend: TensorRTBackend,
        plan: bytes,
        request: LoadRequest,
        options: TensorRTOptions,
        build: dict[str, Any],
    ) -> None:
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = backend.trt
        from trtci.backends.cuda_timing import Stream, set_device

        self._trt = backend.trt
        self.options = options
        self.device_index = backend.device_index
        set_device(self.device_index)
        log = BuildLog()
        self._runtime = trt.Runtime(make_logger(backend.name, log))
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError(
                f"{backend.name} cannot load the engine of {request.model_path.name}: {log.last_errors()}"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        self.stream = Stream()
        self.tensors = self._bind(request)
        build.update(device_memory_bytes=int(engine.device_memory_size_v2), engine_layers=int(engine.num_layers))
        if options.profiling_verbosity == "detailed" and "engine_path" in build:
            build["inspector"] = self._save_inspector(Path(build["engine_path"]))
        self.build: dict[str, Any] | None = build

    def _bind(self, request: LoadRequest) -> list[_Tensor]:
        """Set input shapes, then allocate and bind device and pinned host memory for every I/O tensor."""
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self._trt
        from trtci.backends.cuda_timing import DeviceBuffer, PinnedArray

        engine, context = self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            if name not in request.shapes:
                raise BackendError(f"{request.model_path.name}: no shape for engine input '{name}'")
            context.set_input_shape(name, trt.Dims(list(request.shapes[name])))
        tensors = []
        for name in names:
            shape = _dims(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(
                    f"{request.model_path.name}: output '{name}' has a data-dependent shape {shape}, which trtci's "
                    "TensorRT runner does not support (it needs an output allocator)"
                )
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host = PinnedArray(shape, dtype)
            device = DeviceBuffer(host.array.nbytes, f"tensor '{name}' {shape}")
            context.set_tensor_address(name, device.ptr)
            tensors.append(_Tensor(name, name in inputs, shape, dtype, device, host))
        return tensors

    def _save_inspector(self, engine_path: Path) -> str:
        """Save the engine inspector's layer JSON beside the engine; return its path or why it was not saved."""
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self._trt
        inspector = self._engine.create_engine_inspector()
        if inspector is None:
            return "the runtime gave no engine inspector"
        path = engine_path.with_suffix(".layers.json")
        path.write_text(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        return str(path)

    def _enqueue(self, stream: int) -> None:
        if not self._context.execute_async_v3(stream):
            raise BackendError("execute_async_v3 failed: see TensorRT's log above")

    def _stage_inputs(self, feeds: Feeds) -> None:
        for tensor in self.tensors:
            if not tensor.is_input:
                continue
            if tensor.name not in feeds:
                raise BackendError(f"missing input '{tensor.name}'")
            value = feeds[tensor.name]
            if tuple(value.shape) != tensor.shape:
                raise BackendError(
                    f"input '{tensor.name}' has shape {tuple(value.shape)}; the engine was bound for {tensor.shape}"
                )
            np.copyto(tensor.host.array, value, casting="same_kind")

    def _upload(self, stream: int) -> None:
        for tensor in self.tensors:
            if tensor.is_input:
                tensor.device.upload(tensor.host.array, stream)

    def _download(self, stream: int) -> None:
        for tensor in self.tensors:
            if not tensor.is_input:
                tensor.device.download(tensor.host.array, stream)

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Copy the feeds in, run once on the session's stream, copy every output out."""
        self._stage_inputs(feeds)
        handle = self.stream.handle
        self._upload(handle)
        self._enqueue(handle)
        self._download(handle)
        self.stream.synchronize()
        return {t.name: t.host.array.copy() for t in self.tensors if not t.is_input}

    def benchmark(
        self, feeds: Feeds, settings: BenchSettings, batch: int, progress: Progress | None = None
    ) -> BenchResult:
        """trtexec's measurement: CUDA events, a CUDA graph unless turned off, transfers only when asked for,
        NVML telemetry sampled around it."""
        from trtci.backends.cuda_timing import time_enqueue, to_bench_result
        from trtci.backends.telemetry import TelemetrySampler

        self.run(feeds)  # stages the inputs on the device and surfaces a bad feed before timing
        transfers = self.options.include_data_transfers
        with TelemetrySampler(self.device_index) as telemetry:
            timing = time_enqueue(
                self._enqueue,
                settings,
                self.stream.handle,
                h2d=self._upload if transfers else None,
                d2h=self._download if transfers else None,
                cuda_graph=self.options.cuda_graphs,
                progress=progress,
            )
        return to_bench_result(timing, batch, settings, extra={"telemetry": telemetry.summary})

    def close(self) -> None:
        for tensor in self.tensors:
            tensor.device.free()
            tensor.host.free()
        self.tensors = []
        self.stream.close()
        del self._context, self._engine


def create_backend(name: str, options: TensorRTOptions | None = None) -> TensorRTBackend:
    """The `tensorrt` or `tensorrt-rtx` backend; BackendUnavailable with the install hint when it cannot work."""
    return TensorRTBackend(name, options)

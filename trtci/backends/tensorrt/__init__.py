"""The TensorRT backends: `tensorrt` (TensorRT 10.12+ and 11.x) and `tensorrt-rtx` (TensorRT for RTX).

One implementation over both Python modules (`tensorrt`, `tensorrt_rtx_bindings`), which share the builder API:
`build` turns a prepared ONNX file into an engine, `engine_cache` keeps engines per exact target, `session` runs
and times them. This module holds the backend itself and its two factories, registered in
trtci.backends.registry.

Where the builder works but no supported GPU is present (CI, CPU runners, a TensorRT for RTX build on a
data-center GPU), the backend is in build-only mode: `load` parses and builds (a compile check with build facts)
and `run`/`benchmark` raise BackendUnavailable with the reason. TensorRT is imported when a backend is made,
never at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from trtci.backends.base import LoadRequest, prefer_for_auto
from trtci.backends.tensorrt.build import MODULES, build_plan, import_tensorrt
from trtci.backends.tensorrt.engine_cache import CacheDecision, EngineCache, EngineMetadata, Target, engine_key
from trtci.backends.tensorrt.session import BuildOnlySession, TensorRTSession
from trtci.config import Config, TensorRTOptions, format_validation_error
from trtci.errors import BackendError, BackendUnavailable, ConfigError
from trtci.results import DeviceInfo, file_sha256, stable_hash

if TYPE_CHECKING:
    from trtci.backends.cuda_timing import GpuProperties

# Options that change the engine; the others (CUDA graphs, transfers, device) only change how it is measured.
BUILD_OPTIONS = ("workspace_mb", "optimization_level", "hardware_compatibility", "version_compatible")


@prefer_for_auto(10)
def create_tensorrt(config: Config) -> TensorRTBackend:
    """The `tensorrt` backend for a run; BackendUnavailable with the fix when TensorRT or a GPU is missing."""
    return TensorRTBackend("tensorrt", config.tensorrt)


@prefer_for_auto(20)
def create_tensorrt_rtx(config: Config) -> TensorRTBackend:
    """The `tensorrt-rtx` backend for a run; BackendUnavailable with the fix when TensorRT for RTX is missing."""
    return TensorRTBackend("tensorrt-rtx", config.tensorrt)


def rtx_can_run_on(compute: str) -> bool:
    """TensorRT for RTX runs on Turing, Ampere, Ada and Blackwell consumer/workstation GPUs (7.5-8.9, 12.x),
    not on data-center Hopper or Blackwell (9.0, 10.x): its runtime refuses those (seen on an H100)."""
    major, minor = (int(part) for part in compute.split("."))
    return (major, minor) >= (7, 5) and major < 9 or major >= 12


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


class TensorRTBackend:
    """The `tensorrt` or `tensorrt-rtx` backend on one CUDA device (or none, in build-only mode)."""

    int8_scheme = "tensorrt"
    validation_only_schemes: tuple[str, ...] = ()
    builds_engines = True

    def __init__(self, flavor: str, options: TensorRTOptions | None = None) -> None:
        if flavor not in MODULES:
            raise ConfigError(f"unknown TensorRT flavor '{flavor}'; choose from {', '.join(MODULES)}")
        self.name = flavor
        self.options = options or TensorRTOptions()
        self.version = str(import_tensorrt(flavor).__version__)
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

    def load_options(self, config: Config) -> dict[str, Any]:
        """The `tensorrt:` section of the config, read back by `options_from` in `load`."""
        return config.tensorrt.model_dump()

    def identity_options(self, config: Config) -> dict[str, Any]:
        """Every `tensorrt:` setting: build options change the engine, the others how it is measured."""
        return {"tensorrt": config.tensorrt.model_dump(mode="json")}

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
        return TensorRTSession(self.name, self.device_index, plan, request, options, build)

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


"""The trtexec command line that rebuilds and re-measures a TensorRT series by hand.

For a series of the `tensorrt` backend it is `trtexec`, for `tensorrt-rtx` NVIDIA's `tensorrt_rtx` (the same
flags). The command builds from the prepared ONNX file (precision comes from the model: strongly typed), with the
series' optimization profile (`--minShapes/--optShapes/--maxShapes`) and shapes, the build options that change
the engine, and measures the way trtci did: warm-up, duration and iterations, CUDA graphs, data transfers
included or not (each written explicitly where the TensorRT version's default differs), spin-wait. With an
`export_prefix` it also writes the files `trtci ingest trtexec` reads, so the hand run can be recorded too.
`notes` say what has no trtexec flag. Pure: a series and settings in, argv out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from trtci.config import BenchSettings, TensorRTOptions
from trtci.errors import DataError
from trtci.results import SeriesResult

TOOLS = {"tensorrt": "trtexec", "tensorrt-rtx": "tensorrt_rtx"}
HARDWARE_LEVELS = {"ampere_plus": "ampere+", "same_compute_capability": "sameComputeCapability"}


@dataclass(frozen=True)
class TrtexecCommand:
    argv: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        """The command as one shell line, every argument quoted where the shell needs it."""
        return shlex.join(self.argv)


def trtexec_command(
    series: SeriesResult,
    model_path: str,
    bench: BenchSettings | None = None,
    options: TensorRTOptions | None = None,
    export_prefix: str = "",
) -> TrtexecCommand:
    """The command for `series`, building from `model_path` (the prepared ONNX of its precision). `bench` and
    `options` are the run's settings (defaults where not given); what the series measured (CUDA graph used,
    transfers timed) wins over them. DataError for a series of another backend."""
    flavor = str((series.build or {}).get("tensorrt_flavor") or series.key.backend)
    if flavor not in TOOLS:
        raise DataError(f"{series.key.label}: not a TensorRT series (backend {series.key.backend}); no trtexec command")
    bench = bench or BenchSettings()
    options = options or TensorRTOptions()
    build = series.build or {}
    version = str(build.get("tensorrt_version", ""))
    modern = flavor == "tensorrt" and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 11
    argv = [TOOLS[flavor], f"--onnx={model_path}"]
    notes: list[str] = []
    if flavor == "tensorrt" and not modern:
        argv.append("--stronglyTyped")
    argv += _shapes(build.get("profiles") or {})
    argv += _build_flags(options, flavor, notes)
    if flavor == "tensorrt-rtx" and build.get("target_compute"):
        notes.append(f"built ahead of time for compute {', '.join(build['target_compute'])}: run it on such a GPU")
    argv += [f"--warmUp={bench.warmup_ms:g}", f"--duration={bench.duration_s:g}"]
    argv.append(f"--iterations={bench.min_iterations}")
    measured: dict[str, Any] = (series.bench.extra.get("trtexec") or {}) if series.bench else {}
    cuda_graph = bool(measured.get("cuda_graph", options.cuda_graphs))
    transfers = bool(measured.get("transfers_included", options.include_data_transfers))
    if modern:
        if not cuda_graph:
            notes.append("trtci timed plain enqueues; trtexec 11 uses CUDA graphs by default")
        if transfers:
            argv.append("--includeDataTransfers")
    else:
        if cuda_graph:
            argv.append("--useCudaGraph")
        if not transfers:
            argv.append("--noDataTransfers")
        argv.append("--useSpinWait")
    if export_prefix:
        argv += [
            f"--exportTimes={export_prefix}.timing.json",
            f"--exportProfile={export_prefix}.profile.json",
            f"--exportLayerInfo={export_prefix}.graph.json",
            "--separateProfileRun",
        ]
    return TrtexecCommand(tuple(argv), tuple(notes))


def _shapes(profiles: dict[str, list[list[int]]]) -> list[str]:
    """--minShapes/--optShapes/--maxShapes for a real range, and --shapes (the timed shape) for each input."""
    if not profiles:
        return []
    names = sorted(profiles)

    def spec(index: int) -> str:
        return ",".join(f"{_name(name)}:{'x'.join(str(d) for d in profiles[name][index])}" for name in names)

    flags = []
    if any(profiles[name][0] != profiles[name][2] for name in names):
        flags += [f"--minShapes={spec(0)}", f"--optShapes={spec(1)}", f"--maxShapes={spec(2)}"]
    return [*flags, f"--shapes={spec(1)}"]


def _name(name: str) -> str:
    """trtexec reads 'name:dims'; a name with ':' or ',' is wrapped in single quotes, as its help says."""
    return f"'{name}'" if ":" in name or "," in name else name


def _build_flags(options: TensorRTOptions, flavor: str, notes: list[str]) -> list[str]:
    flags = []
    if options.workspace_mb is not None:
        flags.append(f"--memPoolSize=workspace:{options.workspace_mb}M")
    flags.append(f"--builderOptimizationLevel={options.optimization_level}")
    if options.hardware_compatibility != "none":
        if flavor == "tensorrt":
            flags.append(f"--hardwareCompatibilityLevel={HARDWARE_LEVELS[options.hardware_compatibility]}")
        else:
            notes.append("hardware_compatibility is ignored by TensorRT for RTX")
    if options.version_compatible:
        flags.append("--versionCompatible")
    flags.append(f"--profilingVerbosity={options.profiling_verbosity}")
    return flags

"""Turn trtexec's exports into a trtci run: one series per engine, judged like trtci's own.

The samples are `--exportTimes`' per-inference latencies (H2D + GPU compute + D2H, as trtexec counts them),
after dropping warm-up inferences the way trtexec does (`startComputeMs` before the warm-up time; older trtexec
versions export them, newer ones do not). GPU compute, enqueue and, when transfers were timed, H2D and D2H get
trtexec's statistics too (`bench.extra["trtexec"]`, as the TensorRT backend records them), and throughput is
trtexec's wall time rule: inferences over last D2H end - first H2D start. A TREx profiling summary, when given, must
agree with the recomputed numbers: a timing file from another run is refused.

The series key names what was measured: model (`--name`, else the files' shared name without `.engine`/`.onnx`),
precision, batch, backend `trtexec` and the device (GPU name, compute capability, TensorRT version), with
"data transfers timed" as the options. Each fact comes from the files (TREx metadata, the layer information's
tensor types, the timed shapes) or a flag, and every source given must agree: a file that is not what it claims
is refused with one line. `--exportProfile` and `--exportLayerInfo` are kept in the series' build facts (layers,
types, precisions, tactics, time per layer) for per-layer diffs (trtci.verdict.layer_diff).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtci.backends.cuda_timing import TimingRun, to_bench_result
from trtci.config import BenchSettings
from trtci.errors import DataError
from trtci.pipeline.trtexec_files import (
    ExportSet,
    Iteration,
    read_layer_info,
    read_metadata,
    read_profile,
    read_times,
)
from trtci.results import DeviceInfo, RunContext, RunResult, SeriesKey, SeriesResult, stable_hash
from trtci.verdict.engine_layers import EngineLayers, from_profile, with_times

BACKEND = "trtexec"
DEFAULT_WARMUP_MS = 200.0  # trtexec's default --warmUp
SUMMARY_TOLERANCE = 1e-4  # relative: trtexec prints 6 significant digits
_WARMUP = re.compile(r"\+\s*([0-9.]+)\s*ms warm ?up", re.IGNORECASE)


@dataclass(frozen=True)
class Claims:
    """Facts given on the command line; each is checked against the files that state it."""

    name: str | None = None
    gpu: str | None = None
    compute: str | None = None
    tensorrt_version: str | None = None
    batch: int | None = None
    precision: str | None = None
    warmup_ms: float | None = None


@dataclass
class TrtexecExport:
    """The content of one engine's export files, each checked; None where a file was not given."""

    name: str
    files: dict[str, Path]
    iterations: list[Iteration] | None = None
    profile_runs: int | None = None
    engine: EngineLayers | None = None  # layer information, with the profile's times when both were given
    build_metadata: dict[str, Any] | None = None
    profile_metadata: dict[str, Any] | None = None
    devices: list[dict[str, Any]] | None = None

    @property
    def label(self) -> str:
        """The name with the folder its files are in ('fp16/resnet.onnx.engine'), to tell engines apart."""
        folders = {path.parent.name for path in self.files.values()}
        return f"{folders.pop()}/{self.name}" if len(folders) == 1 else self.name


def read_export(export: ExportSet) -> TrtexecExport:
    """Read and check every file of `export`; a profile must time exactly the layers of the layer information."""
    files = export.files
    read = TrtexecExport(name=export.name, files=dict(files))
    if "times" in files:
        read.iterations = read_times(files["times"])
    times: dict[str, float] | None = None
    if "profile" in files:
        read.profile_runs, times = read_profile(files["profile"])
    if "layer-info" in files:
        read.engine = read_layer_info(files["layer-info"])
        if times is not None:
            read.engine = with_times(read.engine, times, f"{files['profile']} vs {files['layer-info'].name}")
    elif times is not None:
        read.engine = from_profile(times)
    if "build-metadata" in files:
        read.build_metadata = read_metadata(files["build-metadata"], "build-metadata")
    if "profile-metadata" in files:
        read.profile_metadata = read_metadata(files["profile-metadata"], "profile-metadata")
    if "device-metadata" in files:
        read.devices = read_metadata(files["device-metadata"], "device-metadata")
    return read


def trtexec_run(exports: list[TrtexecExport], context: RunContext, claims: Claims | None = None) -> RunResult:
    """A RunResult with one series per export, ready for compare and Store.record_run."""
    if not exports:
        raise DataError("no trtexec export files given; pass the files written by --exportTimes and friends")
    claims = claims or Claims()
    if len(exports) > 1 and claims.name:
        raise DataError("--name names one engine, but the files are of several; ingest them one engine at a time")
    series, warnings = [], []
    devices: dict[str, DeviceInfo] = {}
    for export in exports:
        result, device, notes = trtexec_series(export, claims)
        series.append(result)
        devices.setdefault(device.id, device)
        warnings += [f"{result.key.label}: {note}" for note in notes]
    ids = [s.key.id for s in series]
    if len(set(ids)) != len(ids):
        raise DataError("two engines of the files have the same name, precision, batch and GPU; pass them apart")
    return RunResult(context=context, devices=list(devices.values()), series=series, warnings=warnings)


def trtexec_series(export: TrtexecExport, claims: Claims) -> tuple[SeriesResult, DeviceInfo, list[str]]:
    """One export's series and device, and trtexec's warnings about its timing."""
    if export.iterations is None:
        raise DataError(
            f"{export.name}: no --exportTimes file; trtci records per-inference times (pass the file written by "
            "trtexec --exportTimes)"
        )
    name = _agree("engine name", [("--name", claims.name)]) or _model_name(export.name)
    warmup = _agree("warm-up (ms)", [("--warmup-ms", claims.warmup_ms), *_warmup_facts(export)])
    kept = _after_warmup(export, DEFAULT_WARMUP_MS if warmup is None else warmup)
    device = _device(export, claims)
    precision = _agree("precision", [("--precision", claims.precision), *_precision_facts(export)])
    if precision is None:
        raise DataError(f"{export.name}: no file states the precision; pass --precision fp32, fp16 or int8")
    batch = _agree("batch", [("--batch", claims.batch), *_batch_facts(export)])
    if batch is None:
        raise DataError(f"{export.name}: no file states the batch size; pass --batch")
    transfers = any(it.h2d_ms > 0 or it.d2h_ms > 0 for it in kept)
    timing = TimingRun(
        latency_ms=[it.latency_ms for it in kept],
        compute_ms=[it.compute_ms for it in kept],
        enqueue_ms=[it.enqueue_ms for it in kept],
        h2d_ms=[it.h2d_ms for it in kept] if transfers else [],
        d2h_ms=[it.d2h_ms for it in kept] if transfers else [],
        wall_s=(kept[-1].end_ms - kept[0].start_ms) / 1e3,
        warmup_ms=warmup if warmup is not None else DEFAULT_WARMUP_MS,
        cuda_graph=_option(export, "CUDA Graph") == "Enabled",
        graph_note=f"as trtexec ran it (CUDA Graph: {_option(export, 'CUDA Graph') or 'not recorded'})",
    )
    if not timing.wall_s > 0:
        raise DataError(f"{export.files['times']}: the inferences span no time; the file is damaged")
    bench = to_bench_result(timing, batch, BenchSettings())
    _check_summary(export, bench.extra["trtexec"]["stats"])
    key = SeriesKey(
        model=name,
        model_hash=stable_hash({"trtexec-model": name}, 64),
        precision=precision,
        batch=batch,
        backend=BACKEND,
        device_id=device.id,
        options_hash=stable_hash({"data_transfers": transfers}),
    )
    build = _build_facts(export, warmup, len(export.iterations) - len(kept))
    return SeriesResult(key=key, bench=bench, build=build), device, list(bench.extra["trtexec"]["warnings"])


def _agree(what: str, sources: list[tuple[str, Any]]) -> Any:
    """The one value every source that states it gives; DataError naming two that differ."""
    given = [(source, value) for source, value in sources if value is not None and value != ""]
    for source, value in given[1:]:
        if value != given[0][1]:
            raise DataError(
                f"{what}: {given[0][0]} says {given[0][1]!r} but {source} says {value!r}; the files are not of "
                "one trtexec run, or the flag is wrong"
            )
    return given[0][1] if given else None


def _model_name(name: str) -> str:
    for suffix in (".engine", ".plan", ".trt", ".onnx"):
        name = name.removesuffix(suffix)
    return name


def _option(export: TrtexecExport, key: str) -> str:
    options = (export.profile_metadata or {}).get("inference_options") or {}
    return str(options.get(key, ""))


def _warmup_facts(export: TrtexecExport) -> list[tuple[str, Any]]:
    found = _WARMUP.search(_option(export, "Duration"))
    return [(str(export.files.get("profile-metadata")), float(found.group(1)))] if found else []


def _after_warmup(export: TrtexecExport, warmup_ms: float) -> list[Iteration]:
    kept = [it for it in export.iterations or [] if it.start_compute_ms >= warmup_ms]
    if not kept:
        raise DataError(
            f"{export.files['times']}: every inference started within the {warmup_ms:g} ms warm-up; pass the "
            "warm-up trtexec ran with (--warmup-ms)"
        )
    return kept


def _precision_facts(export: TrtexecExport) -> list[tuple[str, Any]]:
    facts = []
    if export.build_metadata is not None:
        flags = str((export.build_metadata.get("build_options") or {}).get("Precision", "")).upper()
        if flags:
            precision = "int8" if "INT8" in flags or "FP8" in flags else "fp16" if "16" in flags else "fp32"
            facts.append((f"{export.files['build-metadata']} (Precision {flags})", precision))
    if export.engine is not None and export.engine.precision:
        facts.append((f"{export.files['layer-info']} (tensor types)", export.engine.precision))
    return facts


def _batch_facts(export: TrtexecExport) -> list[tuple[str, Any]]:
    facts = []
    shapes = _option(export, "Input inference shape")
    batches = {int(dims.split("x")[0]) for dims in re.findall(r"=\s*([0-9]+(?:x[0-9]+)*)", shapes)}
    if len(batches) > 1:
        raise DataError(f"{export.files['profile-metadata']}: inputs of different batch sizes ({shapes}); pass --batch")
    if batches:
        facts.append((f"{export.files['profile-metadata']} (shape {shapes})", batches.pop()))
    if export.engine is not None and export.engine.detailed and export.engine.layers:
        first = export.engine.layers[0].output_shape
        if first:
            facts.append((f"{export.files['layer-info']} (first layer's output {list(first)})", first[0]))
    return facts


def _device(export: TrtexecExport, claims: Claims) -> DeviceInfo:
    info = (export.profile_metadata or {}).get("device_information") or {}
    selected = info.get("Selected Device")
    gpus = export.devices or []
    listed = [g for g in gpus if g.get("Name") == selected] if selected else gpus
    if len(listed) > 1:
        raise DataError(f"{export.files['device-metadata']}: lists {len(gpus)} GPUs; pass --gpu to say which ran")
    gpu = listed[0] if listed else {}
    metadata = str(export.files.get("device-metadata"))
    compute_cc = gpu.get("ComputeCapability")
    stated = str(export.files.get("profile-metadata"))
    name = _agree("GPU", [("--gpu", claims.gpu), (stated, selected), (metadata, gpu.get("Name"))])
    if name is None:
        raise DataError(f"{export.name}: no file names the GPU; pass --gpu (e.g. 'NVIDIA A100 80GB PCIe')")
    compute = _agree(
        "compute capability",
        [
            ("--compute", claims.compute),
            (stated, _compute(info.get("Compute Capability"))),
            (metadata, ".".join(str(v) for v in compute_cc) if isinstance(compute_cc, list) else None),
        ],
    )
    details = {"compute": compute or "unknown", "tensorrt": claims.tensorrt_version or "unknown", "source": BACKEND}
    return DeviceInfo(kind="gpu", name=str(name), details=details)


def _compute(value: Any) -> str | None:
    return f"{value:.1f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_summary(export: TrtexecExport, stats: dict[str, dict[str, float]]) -> None:
    """The TREx profiling summary's latency and GPU compute (min, max, mean, median) must be what the timing
    file gives, to trtexec's printed precision."""
    summary = (export.profile_metadata or {}).get("performance_summary") or {}
    for key, quantity in (("Latency", "latency"), ("GPU Compute Time", "gpu_compute")):
        values = summary.get(key)
        if not isinstance(values, list) or len(values) < 4:
            continue
        for label, stated, recomputed in zip(("min", "max", "mean", "median"), values, (
            stats[quantity]["min"], stats[quantity]["max"], stats[quantity]["mean"], stats[quantity]["median"]
        )):  # fmt: skip
            if not isinstance(stated, (int, float)) or abs(stated - recomputed) > SUMMARY_TOLERANCE * abs(stated):
                raise DataError(
                    f"{export.files['profile-metadata']}: {key} {label} is {stated} ms but "
                    f"{export.files['times'].name} gives {recomputed:.6g} ms; the files are of different runs"
                )


def _build_facts(export: TrtexecExport, warmup: float | None, dropped: int) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "source": BACKEND,
        "files": {kind: str(path) for kind, path in sorted(export.files.items())},
        "warmup_ms": DEFAULT_WARMUP_MS if warmup is None else warmup,
        "warmup_inferences_dropped": dropped,
    }
    if export.build_metadata is not None:
        facts["build_options"] = export.build_metadata.get("build_options") or {}
    if export.profile_metadata is not None:
        facts["inference_options"] = export.profile_metadata.get("inference_options") or {}
    if export.engine is not None:
        facts["layer_info"] = {
            "layout": export.engine.layout,
            "detailed": export.engine.detailed,
            "io_tensors": list(export.engine.io_tensors),
            "profile_runs": export.profile_runs,
            "layers": [layer.as_dict() for layer in export.engine.layers],
        }
        facts["engine_layers"] = len(export.engine.layers)
    return facts

"""`trtci export triton`: a Triton model repository from what a run (or a GPU matrix's runs) built and validated.

One Triton model per trtci model and precision that passed, named `<model>_<precision>`:

- TensorRT backends: `platform: "tensorrt_plan"`, one plan per GPU of the matrix, mapped by compute capability
  in `cc_model_filenames` (`model_sm86.plan`, ...). Every GPU that ran the backend must have a plan of a passing
  series: a GPU whose series failed, errored or whose plan cannot be found is named in the error. Plans are found
  where the run built them (`build.engine_path`) or by file name under `--engines` folders (a matrix leg's
  uploaded engine cache); the plan's header must be the backend's, and its sidecar's sha256 must match.
- ONNX Runtime: `platform: "onnxruntime_onnx"`, the FP32 model itself or its FP16 conversion (made as `trtci run`
  makes it, from the cache when there).

Inputs and outputs (names, Triton data types, dims) come from the FP32 ONNX model, whose sha256 must be the one
the run measured. `max_batch_size` follows the engine's profile: a batch range from 1 gives a batching model;
a fixed batch gives whole shapes and `max_batch_size: 0`. The accuracy and speed each engine passed with, the
run, and the trtexec command that rebuilds a plan are comments in `config.pbtxt`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trtci.backends.tensorrt.engine_cache import read_plan_header
from trtci.errors import BackendError, DataError
from trtci.pipeline.model import ModelInfo, inspect_model
from trtci.report.triton import TritonModel, TritonTensor, check_model_name, config_pbtxt
from trtci.report.trtexec_command import trtexec_command
from trtci.results import DeviceInfo, RunResult, SeriesResult

TENSORRT_BACKENDS = ("tensorrt", "tensorrt-rtx")


@dataclass
class ExportedModel:
    """One model of the repository: its configuration and the files of its version folder (name -> source)."""

    config: TritonModel
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class TritonRepository:
    models: list[ExportedModel]
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def load_runs(sources: list[Path], db: Path | None = None, run_id: str | None = None) -> list[RunResult]:
    """The runs to export: every run file under `sources` (a GPU matrix's legs, as `trtci merge` reads them) and
    the run `run_id` (default: the latest) of the database `db`. DataError for an unreadable file or no run."""
    from trtci.pipeline.fanin import find_runfiles, load_legs
    from trtci.store.database import Store

    runs = []
    if sources:
        files, problems = find_runfiles(sources)
        legs, left_out = load_legs(files)
        problems += [leg.problem for leg in left_out]
        if problems:
            raise DataError(problems[0])
        runs += [leg.run for leg in legs]
    if db is not None:
        if not db.is_file():
            raise DataError(f"{db}: no such database; pass the --db trtci run wrote")
        with Store(db) as store:
            ids = [run_id] if run_id else [row["id"] for row in store.runs(1)]
            runs += [store.load_run(i) for i in ids]
    if not runs:
        raise DataError("no run to export: pass run files (trtci run --bundle-dir) or --db with a recorded run")
    return runs


def triton_repository(
    runs: list[RunResult],
    onnx_models: dict[str, Path],
    backend: str,
    *,
    precisions: list[str] | None = None,
    engine_dirs: list[Path] | None = None,
    cache_dir: Path = Path(".trtci-cache"),
) -> TritonRepository:
    """The models to export for `backend` from `runs` (see the module docstring). `onnx_models` maps each trtci
    model name to its FP32 ONNX file. DataError for anything Triton could not serve."""
    series = [s for run in runs for s in run.series if s.key.backend == backend]
    if not series:
        found = sorted({s.key.backend for run in runs for s in run.series})
        raise DataError(f"no {backend} series in the run(s); they hold {', '.join(found) or 'no series'}")
    devices = {d.id: d for run in runs for d in run.devices}
    matrix = list(dict.fromkeys(s.key.device_id for s in series))
    groups: dict[tuple[str, str, str], list[SeriesResult]] = {}
    for s in series:
        groups.setdefault((s.key.model, s.key.precision, s.key.quantization), []).append(s)
    repository = TritonRepository(models=[])
    for (model, precision, quantization), members in groups.items():
        if precisions and precision not in precisions:
            continue
        passing = [s for s in members if s.passed]
        if not passing:
            reason = next((s.error for s in members if s.error), None) or "failed its accuracy check"
            repository.notes.append(f"{model} {precision}: not exported ({reason})")
            continue
        info = _onnx(model, onnx_models, members[0])
        name = check_model_name(f"{model}_{precision}" + (f"_{quantization}" if quantization else ""))
        if backend in TENSORRT_BACKENDS:
            exported = _plans(name, info, members, matrix, devices, engine_dirs or [], runs)
        else:
            exported = _onnx_model(name, info, passing, precision, cache_dir, runs)
        repository.models.append(exported)
    if precisions and not repository.models:
        raise DataError(f"no {backend} series of precision {', '.join(precisions)} passed in the run(s)")
    return repository


def write_repository(repository: TritonRepository, out: Path, version: int = 1) -> list[Path]:
    """Write each model's `config.pbtxt` and `<version>/` files under `out`; the config files written."""
    written = []
    for model in repository.models:
        text = config_pbtxt(model.config)  # refuses what Triton would, before anything is written
        folder = out / model.config.name
        (folder / str(version)).mkdir(parents=True, exist_ok=True)
        for filename, source in model.files.items():
            shutil.copyfile(source, folder / str(version) / filename)
        (folder / "config.pbtxt").write_text(text)
        written.append(folder / "config.pbtxt")
    return written


def _onnx(model: str, onnx_models: dict[str, Path], series: SeriesResult) -> ModelInfo:
    path = onnx_models.get(model)
    if path is None:
        raise DataError(f"{model}: its ONNX file is needed for inputs and outputs; pass --model {model}=PATH.onnx")
    info = inspect_model(path)
    if info.sha256 != series.key.model_hash:
        raise DataError(f"{path}: not the {model} model the run measured (sha256 differs); pass that FP32 ONNX file")
    return info


def _plans(
    name: str,
    info: ModelInfo,
    members: list[SeriesResult],
    matrix: list[str],
    devices: dict[str, DeviceInfo],
    engine_dirs: list[Path],
    runs: list[RunResult],
) -> ExportedModel:
    """One plan per GPU of the matrix, each the largest passing batch's, mapped by compute capability."""
    missing, chosen = [], []
    for device_id in matrix:
        gpu = _gpu(devices.get(device_id), device_id)
        here = [s for s in members if s.key.device_id == device_id]
        passing = sorted((s for s in here if s.passed and s.build), key=lambda s: s.key.batch)
        if not passing:
            why = next((s.error for s in here if s.error), None) or ("no series" if not here else "failed accuracy")
            missing.append(f"{gpu} ({why})")
            continue
        try:
            chosen.append((passing[-1], gpu, _find_plan(passing[-1], engine_dirs)))
        except DataError as e:
            missing.append(f"{gpu} ({e})")
    if missing:
        raise DataError(f"{name}: no engine for {'; '.join(missing)}: every GPU of the matrix needs a plan")
    files: dict[str, Path] = {}
    by_compute: dict[str, str] = {}
    comments = [f"trtci export of {name} from run(s) {', '.join(r.context.run_id for r in runs)}"]
    for series, gpu, plan in chosen:
        computes = [str(c) for c in series.build.get("target_compute") or []]  # type: ignore[union-attr]
        filename = "model_" + "_".join(f"sm{c.replace('.', '')}" for c in computes or ["unknown"]) + ".plan"
        for compute in computes:
            by_compute.setdefault(compute, filename)
        files.setdefault(filename, plan)
        comments += [f"{gpu}: {_passed_with(series)}", f"  {filename} rebuilt by: {_command(series, info)}"]
    batch, inputs, outputs = _io(info, chosen[0][0])
    return ExportedModel(
        TritonModel(
            name=name, platform="tensorrt_plan", max_batch_size=batch, inputs=inputs, outputs=outputs,
            default_model_filename=next(iter(files)), cc_model_filenames=by_compute, comments=tuple(comments),
        ),
        files,
    )  # fmt: skip


def _onnx_model(
    name: str, info: ModelInfo, passing: list[SeriesResult], precision: str, cache: Path, runs: list[RunResult]
) -> ExportedModel:
    if precision == "fp32":
        source = info.path
    elif precision == "fp16":
        from trtci.pipeline.prepare import prepare_fp16

        source = prepare_fp16(info, cache / "prepared").path
    else:
        raise DataError(f"{name}: exporting an ONNX Runtime INT8 model is not supported; export fp32 or fp16")
    largest = max(passing, key=lambda s: s.key.batch)
    batch, inputs, outputs = _io(info, largest, onnxruntime=True)
    comments = [f"trtci export of {name} from run(s) {', '.join(r.context.run_id for r in runs)}"]
    comments += [_passed_with(s) for s in sorted(passing, key=lambda s: s.key.batch)]
    config = TritonModel(
        name=name, platform="onnxruntime_onnx", max_batch_size=batch, inputs=inputs, outputs=outputs,
        default_model_filename="model.onnx", instance_kind="KIND_CPU", comments=tuple(comments),
    )  # fmt: skip
    return ExportedModel(config, {"model.onnx": source})


def _io(
    info: ModelInfo, series: SeriesResult, onnxruntime: bool = False
) -> tuple[int, tuple[TritonTensor, ...], tuple[TritonTensor, ...]]:
    """(max_batch_size, inputs, outputs): batching when every tensor's first dim is symbolic and the engine's
    profile (TensorRT) takes batch 1 to its max; else whole shapes."""
    profiles = (series.build or {}).get("profiles") or {}
    symbolic = all(t.shape and not isinstance(t.shape[0], int) for t in (*info.inputs, *info.outputs))
    if onnxruntime:
        batch = series.key.batch if symbolic else 0
    else:
        ranges = [profiles.get(t.name) for t in info.inputs]
        batching = symbolic and all(r and r[0][0] == 1 for r in ranges)
        batch = min(r[2][0] for r in ranges) if batching else 0  # type: ignore[index]

    def dims(shape: tuple, name: str, is_input: bool) -> tuple[int, ...]:
        whole = []
        for i, d in enumerate(shape):
            if isinstance(d, int):
                whole.append(d)
            elif is_input and name in profiles and profiles[name][0][i] == profiles[name][2][i]:
                whole.append(int(profiles[name][0][i]))  # a symbolic dim the engine fixed
            elif i == 0 and not onnxruntime and not batch:
                whole.append(series.key.batch)
            else:
                whole.append(-1)
        return tuple(whole[1:] if batch else whole)

    inputs = tuple(TritonTensor(t.name, t.dtype, dims(t.shape, t.name, True)) for t in info.inputs)
    outputs = tuple(TritonTensor(t.name, t.dtype, dims(t.shape, t.name, False)) for t in info.outputs)
    return batch, inputs, outputs


def _find_plan(series: SeriesResult, engine_dirs: list[Path]) -> Path:
    built = Path(str((series.build or {}).get("engine_path", "")))
    candidates = [built] if built.name else []
    for folder in engine_dirs:
        candidates += sorted(folder.rglob(built.name)) if built.name else []
    for path in candidates:
        if path.is_file():
            _check_plan(path, series.key.backend)
            return path
    where = f"{built.name or 'no engine_path'} not found" + (" under --engines" if engine_dirs else "")
    raise DataError(f"{where}; pass --engines with the folder holding that leg's engines")


def _check_plan(path: Path, backend: str) -> None:
    data = path.read_bytes()
    try:
        header = read_plan_header(data)
    except BackendError as e:
        raise DataError(f"{path}: {e}") from e
    if header.flavor != backend:
        raise DataError(f"{path}: a {header.flavor} plan, not one of the {backend} backend")
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        expected = json.loads(sidecar.read_text()).get("plan_sha256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise DataError(f"{path}: differs from its sidecar {sidecar.name} (replaced or truncated)")


def _gpu(device: DeviceInfo | None, device_id: str) -> str:
    if device is None:
        return f"device {device_id}"
    compute = device.details.get("compute") or ", ".join(device.details.get("targets") or [])
    return f"{device.name} (compute {compute})" if compute and compute not in device.name else device.name


def _passed_with(series: SeriesResult) -> str:
    speed = "not timed (build-only)"
    if series.bench is not None:
        stats = series.bench.stats
        speed = f"median {stats.median:.4g} ms, p99 {stats.p99:.4g} ms, {stats.throughput:.4g} inferences/s"
    accuracy = "no accuracy check (no validation data)"
    result = series.accuracy
    if series.key.precision == "fp32":
        accuracy = "the FP32 reference"
    elif result is not None and result.ratio is not None:
        accuracy = f"top-1 {result.top1:.4f} vs FP32 {result.reference_top1:.4f} (ratio {result.ratio:.4f}, passed)"
    elif result is not None and result.outputs:
        worst = min(result.outputs, key=lambda o: o.cosine)
        accuracy = f"cosine {worst.cosine:.4f} to FP32 on '{worst.name}' over {result.samples} samples (passed)"
    return f"batch {series.key.batch}: {speed}; accuracy: {accuracy}"


def _command(series: SeriesResult, info: ModelInfo) -> str:
    model = info.path.name if series.key.precision == "fp32" else f"{info.path.stem}.{series.key.precision}.onnx"
    return trtexec_command(series, model).line

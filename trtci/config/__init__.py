"""The trtci.yml configuration, validated strictly: an unknown key or a wrong type names its key path.

Documented in docs/config.md. Every model is pydantic with extra="forbid", so a typo is an error, not a
silent default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trtci.config.yaml_file import load_yaml
from trtci.errors import ConfigError

Precision = Literal["fp32", "fp16", "int8"]
# A registered backend's name or "auto". Plugins add names, so the registry (trtci.backends.registry), not this
# type, knows which exist: a run checks them before any work.
BackendName = Annotated[str, Field(min_length=1)]
CalibrationMethod = Literal["minmax", "entropy", "percentile", "distribution"]
# "auto" compares minmax, entropy and percentile on the validation set and keeps the best one
CalibrationChoice = Literal["minmax", "entropy", "percentile", "distribution", "auto"]
# MLPerf Inference's accuracy targets: a quantized model must reach this fraction of FP32's task metric.
ACCURACY_PRESETS = {"mlperf-99": 0.99, "mlperf-99.9": 0.999}
ALL_PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")
DEFAULT_BACKENDS: tuple[BackendName, ...] = ("onnxruntime",)
_FUNCTION_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# A tensor dim or batch size: TensorRT's shapes and profiles hold int32, and a larger one could only exhaust memory.
MAX_DIM = 2**31 - 1
BatchSize = Annotated[int, Field(ge=1, le=MAX_DIM)]
MAX_DURATION_S = 3600.0  # the longest a series is timed
# Timed iterations a benchmark may be asked for at least: each one is kept as a sample, so this bounds its memory.
MAX_MIN_ITERATIONS = 1_000_000


def _no_duplicates(value: list) -> list:
    if len(set(value)) != len(value):
        raise ValueError("list has duplicates")
    return value


class Strict(BaseModel):
    # allow_inf_nan=False: `duration_s: .inf` would measure forever, and a NaN threshold compares false with anything.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BenchSettings(Strict):
    """How to measure latency, the trtexec way."""

    warmup_ms: Annotated[float, Field(ge=0, le=600_000)] = 200.0
    duration_s: Annotated[float, Field(gt=0, le=MAX_DURATION_S)] = 3.0
    min_iterations: Annotated[int, Field(ge=1, le=MAX_MIN_ITERATIONS)] = 10
    max_cv: Annotated[float, Field(gt=0)] = 0.025  # above this the result is flagged "unstable", as trtexec does
    threads: Annotated[int, Field(ge=0)] = 0  # ONNX Runtime intra-op threads; 0 lets ORT choose


class AccuracyThresholds(Strict):
    """When a lower precision passes against FP32. With labels the ratio gates; without, agreement does.

    A `preset` (mlperf-99, mlperf-99.9) sets min_ratio and min_top1_agreement to its fraction of FP32; ratios are
    then reported to 5 significant figures, so 0.99899 never reads as 0.9990.
    """

    preset: Literal["mlperf-99", "mlperf-99.9"] | None = None
    min_ratio: Annotated[float, Field(gt=0, le=1.5)] = 0.99  # top-1(precision) / top-1(fp32), as MLPerf
    min_top1_agreement: Annotated[float, Field(ge=0, le=1)] = 0.99
    min_cosine: Annotated[float, Field(ge=-1, le=1)] = 0.99
    min_sqnr_db: float = 20.0

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        if not isinstance(data, dict) or data.get("preset") is None:
            return data
        if data["preset"] not in ACCURACY_PRESETS:
            return data  # the Literal reports it
        given = data.keys() & {"min_ratio", "min_top1_agreement"}
        fraction = ACCURACY_PRESETS[data["preset"]]
        if any(data[key] != fraction for key in given):
            raise ValueError(f"preset {data['preset']} sets {' and '.join(sorted(given))}: give the preset or them")
        return {**data, "min_ratio": fraction, "min_top1_agreement": fraction}


class CompareSettings(Strict):
    """When a latency change against the base branch counts."""

    threshold: Annotated[float, Field(gt=0, lt=10)] = 0.10  # minimum relative change of the median that counts
    window: Annotated[int, Field(ge=1, le=1000)] = 10  # base runs whose per-run medians form the baseline
    # Base runs needed before a change is judged: with fewer, run-to-run drift is unknown and a change stays
    # "inconclusive" (1 judges on the within-run interval alone, as when runs are known to be stable).
    min_history: Annotated[int, Field(ge=1, le=1000)] = 3
    # Two-sided confidence of the ratio's interval: 0.98 leaves 1% in each tail, so a series that did not change
    # is flagged with at most 1% probability per comparison (docs/statistics.md).
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.98
    resamples: Annotated[int, Field(ge=100, le=100_000)] = 2000  # bootstrap resamples
    confirm_budget_s: Annotated[float, Field(ge=0, le=3600)] = 30.0  # re-measuring a suspect series; 0: no check
    # When a PR changes a model file or its build settings: seconds of interleaved A/B against the merge-base's build,
    # per series; 0: off.
    ab_budget_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    # Per-series thresholds: a series label ("resnet50 fp16 b1 onnxruntime") or series id -> its threshold.
    thresholds: dict[str, Annotated[float, Field(gt=0, lt=10)]] = Field(default_factory=dict)
    # Known regressions accepted with a reason: a series label or id -> why. Such a series gets the verdict
    # "acknowledged", keeps its numbers and passes the gate (docs/statistics.md).
    acknowledge: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    # Top-1 change against the base branch's, on the same validation samples, that counts: 0.01 is one percentage
    # point. Judged with a paired bootstrap interval, like latency (docs/statistics.md).
    accuracy_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.01
    # Judge each series by what changed since the base (docs/statistics.md): identical inputs are never a
    # regression, a changed model is timed against the merge-base's. False judges every series against history,
    # for series that depend on something trtci cannot see.
    attribute: bool = True
    # A regression after a change of environment only (backend or its version, driver/CUDA, trtci): "warn"
    # reports it, "fail" fails the gate.
    environment: Literal["warn", "fail"] = "warn"
    # A regression found by a run on the branch its history comes from (main after a merge): "warn" reports it
    # with the history's change points, "fail" fails the gate as a pull request's does.
    post_merge: Literal["warn", "fail"] = "warn"
    # "worse" flags changes for the worse; "either" also flags a change for the better beyond the threshold
    # (a model that got much faster may have stopped doing its work).
    alert: Literal["worse", "either"] = "worse"
    # Seconds the fixed reference workload (the canary) is timed at the start and at the end of a run: the
    # machine's speed, against which history comparisons are read (docs/statistics.md). 0: off.
    canary_s: Annotated[float, Field(ge=0, le=60)] = 0.2


class HistorySettings(Strict):
    """The `history:` section of trtci.yml: how much history the results database keeps."""

    keep_runs: Annotated[int, Field(ge=1)] | None = 500  # per series; None keeps every run
    keep_days: Annotated[float, Field(gt=0)] | None = None  # also keep whatever is younger than this
    full_samples_runs: Annotated[int, Field(ge=0)] = 20  # newest results per series that keep every raw sample
    sketch_points: Annotated[int, Field(ge=2, le=100_000)] = 201  # quantiles kept of older results' samples


class InputSpec(Strict):
    """An input's shape where the model leaves dims open. The first dim is the batch and comes from batch_sizes."""

    name: str
    shape: list[int | str] | None = None  # concrete dims for benchmarking; symbolic names are taken from the model
    min: list[int] | None = None  # TensorRT optimization-profile range for dynamic dims other than the batch
    opt: list[int] | None = None
    max: list[int] | None = None

    @model_validator(mode="after")
    def _dims_in_range(self) -> InputSpec:
        for field_name in ("shape", "min", "opt", "max"):
            for axis, dim in enumerate(getattr(self, field_name) or []):
                if isinstance(dim, int) and not 0 <= dim <= MAX_DIM:
                    raise ValueError(f"{field_name} dim {axis} is {dim}; a dim is a size from 0 to {MAX_DIM}")
        return self

    @model_validator(mode="after")
    def _ranges_complete(self) -> InputSpec:
        given = [r is not None for r in (self.min, self.opt, self.max)]
        if any(given) and not all(given):
            raise ValueError("give all of min, opt and max, or none")
        if all(given):
            lengths = {len(self.min or []), len(self.opt or []), len(self.max or [])}
            if len(lengths) != 1:
                raise ValueError("min, opt and max must have the same rank")
            for lo, mid, hi in zip(self.min or [], self.opt or [], self.max or []):
                if not lo <= mid <= hi:
                    raise ValueError(f"need min <= opt <= max in every dim, got {lo}, {mid}, {hi}")
        return self


class DataSpec(Strict):
    data: str  # a .npz file, a directory of .npy files, or module:function yielding feed dicts
    max_samples: Annotated[int, Field(ge=1)] | None = None


class CalibrationSpec(DataSpec):
    method: CalibrationChoice = "minmax"
    batch_size: BatchSize = 8
    # ONNX node names the quantizer keeps in float (what `trtci explain int8` suggests when INT8 fails accuracy)
    nodes_to_exclude: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @field_validator("nodes_to_exclude")
    @classmethod
    def _unique_nodes(cls, value: list) -> list:
        return _no_duplicates(value)


class Fp16Settings(Strict):
    """How FP16 models are made: trtci's own conversion, or NVIDIA ModelOpt AutoCast where it is installed."""

    converter: Literal["trtci", "modelopt"] = "trtci"


class ValidationSpec(DataSpec):
    label_output: str | None = None  # which output holds class scores for labels; default: the first [N, C] one


class ModelConfig(Strict):
    path: Path
    name: str | None = None  # defaults to the file's stem
    precisions: list[Precision] = Field(default_factory=lambda: list(ALL_PRECISIONS), min_length=1)
    batch_sizes: list[BatchSize] = Field(default_factory=lambda: [1], min_length=1)
    inputs: list[InputSpec] = Field(default_factory=list)
    calibration: CalibrationSpec | None = None
    validation: ValidationSpec | None = None
    accuracy: AccuracyThresholds = AccuracyThresholds()
    fp16: Fp16Settings = Fp16Settings()
    bench: BenchSettings | None = None  # overrides the global bench settings for this model

    @property
    def display_name(self) -> str:
        return self.name or self.path.stem

    @field_validator("precisions", "batch_sizes")
    @classmethod
    def _unique(cls, value: list) -> list:
        return _no_duplicates(value)

    @model_validator(mode="after")
    def _int8_needs_calibration(self) -> ModelConfig:
        if "int8" in self.precisions and self.calibration is None:
            raise ValueError("int8 needs calibration data: add calibration: {data: calib.npz} or drop int8")
        if self.calibration is not None and self.calibration.method == "auto" and self.validation is None:
            raise ValueError(
                "calibration method auto compares methods on the validation set: add validation: {data: ...} "
                "or pick a method (minmax, entropy, percentile, distribution)"
            )
        return self


class TensorRTOptions(Strict):
    """Builder options for the tensorrt and tensorrt-rtx backends (docs/tensorrt.md)."""

    workspace_mb: Annotated[int, Field(ge=1)] | None = None
    optimization_level: Annotated[int, Field(ge=0, le=5)] = 3
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] = "none"
    version_compatible: bool = False
    profiling_verbosity: Literal["layer_names_only", "detailed", "none"] = "detailed"
    compute_capabilities: list[str] = Field(default_factory=lambda: ["SM86"])  # TensorRT for RTX build targets
    cuda_graphs: bool = True
    include_data_transfers: bool = False
    device: int | None = None  # CUDA device index; default: CUDA_VISIBLE_DEVICES' first


class Config(Strict):
    models: list[ModelConfig] = Field(min_length=1)
    backends: list[BackendName] = Field(default_factory=lambda: list(DEFAULT_BACKENDS), min_length=1)
    database: Path = Path("trtci.db")
    report: Path | None = Path("trtci-report.md")
    summary_json: Path | None = None
    template_dir: Path | None = None
    cache_dir: Path = Path(".trtci-cache")
    bench: BenchSettings = BenchSettings()
    compare: CompareSettings = CompareSettings()
    tensorrt: TensorRTOptions = TensorRTOptions()
    history: HistorySettings = HistorySettings()

    @field_validator("backends")
    @classmethod
    def _unique_backends(cls, value: list) -> list:
        return _no_duplicates(value)

    @model_validator(mode="after")
    def _unique_model_names(self) -> Config:
        names = [m.display_name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique, repeated: {', '.join(duplicates)} (set name:)")
        return self

    def bench_for(self, model: ModelConfig) -> BenchSettings:
        return model.bench or self.bench


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None:
        return None
    return path if path.is_absolute() else base / path


def is_function_ref(source: str) -> bool:
    """True for 'package.module:function' data sources (a file of that name must exist to win)."""
    return bool(_FUNCTION_REF.match(source)) and not Path(source).exists()


def _resolve_data(spec: DataSpec | None, base: Path) -> DataSpec | None:
    if spec is None or is_function_ref(spec.data):
        return spec  # module:function sources are imported, not resolved
    return spec.model_copy(update={"data": str(_resolve(Path(spec.data), base))})


def resolve_paths(config: Config, base: Path) -> Config:
    """Return a copy whose relative paths are taken from `base` (the config file's directory)."""
    models = [
        m.model_copy(
            update={
                "path": _resolve(m.path, base),
                "calibration": _resolve_data(m.calibration, base),
                "validation": _resolve_data(m.validation, base),
            }
        )
        for m in config.models
    ]
    return config.model_copy(
        update={
            "models": models,
            "database": _resolve(config.database, base),
            "report": _resolve(config.report, base),
            "summary_json": _resolve(config.summary_json, base),
            "template_dir": _resolve(config.template_dir, base),
            "cache_dir": _resolve(config.cache_dir, base),
        }
    )


def parse_config(data: dict, source: str, base: Path, config_file: Path | None = None) -> Config:
    """Validate a config mapping; relative paths are taken from `base`. `config_file`, the trtci.yml the mapping
    came from, is an input no output may overwrite."""
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from e
    config = resolve_paths(config, base)
    check_paths(config, source, config_file)
    return config


def check_paths(config: Config, source: str, config_file: Path | None = None) -> None:
    """Refuse, before any work, outputs that would overwrite the database, an input (`config_file` among them)
    or each other, and a cache directory that is a file. A report written over the database would destroy every
    recorded run."""
    outputs = {"database": config.database, "report": config.report, "summary_json": config.summary_json}
    inputs: dict[str, Path] = {"the config file": config_file} if config_file is not None else {}
    for i, model in enumerate(config.models):
        inputs[f"models.{i}.path"] = model.path
        for kind in ("calibration", "validation"):
            spec = getattr(model, kind)
            if spec is not None and not is_function_ref(spec.data):
                inputs[f"models.{i}.{kind}.data"] = Path(spec.data)
    seen: dict[Path, str] = {}
    for key, path in [*outputs.items(), *inputs.items()]:
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen and (key in outputs or seen[resolved] in outputs):
            raise ConfigError(
                f"{source}: {key} and {seen[resolved]} are the same file ({path}); give each output its own path"
            )
        seen.setdefault(resolved, key)
    for key, path in outputs.items():
        if path is not None and str(path) != ":memory:":
            _check_writable_place(source, key, path, want_dir=False)
    _check_writable_place(source, "cache_dir", config.cache_dir, want_dir=True)


def _check_writable_place(source: str, key: str, path: Path, *, want_dir: bool) -> None:
    """`path` is a file (or, with `want_dir`, a directory) or can be made one: no device, pipe or folder in its
    place (a report opened on a FIFO would wait forever), and no file where one of its folders must be."""
    if path.exists():
        if want_dir and not path.is_dir():
            raise ConfigError(f"{source}: {key} {path} is a file; point {key} at a directory")
        if not want_dir and not path.is_file():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ConfigError(f"{source}: {key} {path} is {kind}; point {key} at a file path")
        return
    folder = next((parent for parent in path.parents if parent.exists()), None)
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"{source}: {key} {path}: {folder} is a file, not a directory; choose another path")


def load_config(path: Path) -> Config:
    """Read and validate trtci.yml. Relative paths in it are relative to the file's directory."""
    return parse_config(load_yaml(path), str(path), path.parent, path)


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line naming `source` and each problem's key path, e.g. 'trtci.yml: models.0.precisions.1: Input should
    be ...; bench: ...'; past SHOWN_PROBLEMS, how many more there are (10,000 bad entries made a line of a megabyte)."""
    problems = []
    for item in error.errors()[:SHOWN_PROBLEMS]:
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against docs/config.md)"
        problems.append(f"{where}: {message}")
    if error.error_count() > SHOWN_PROBLEMS:
        problems.append(f"and {error.error_count() - SHOWN_PROBLEMS} more problems")
    return f"{source}: {'; '.join(problems)}"


SHOWN_PROBLEMS = 3

"""One run, end to end: check inputs -> prepare -> load/build -> validate -> bench -> compare -> store.

Everything the user gave is checked before any work, so bad input costs seconds, not a calibration. A series
that fails on a backend (an op it cannot run, a failed build) records its reason and the others go on. The run is
written to the database in one transaction at the end: an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from trtci.backends import get_backend
from trtci.backends.base import Backend, LoadRequest, Session
from trtci.config import BenchSettings, CompareSettings, Config, InputSpec, ModelConfig
from trtci.context.git import file_at
from trtci.errors import BackendError, ConfigError, DataError, ModelError, StoreError
from trtci.pipeline.data import Dataset, check_against_model, load_dataset
from trtci.pipeline.model import ModelInfo, TensorSpec, inspect_model
from trtci.pipeline.prepare import PreparedModel, prepare_fp16, prepare_fp32, prepare_int8
from trtci.results import AccuracyResult, Comparison, RunContext, RunResult, SeriesKey, SeriesResult, stable_hash
from trtci.store.database import Store
from trtci.store.retention import apply_retention
from trtci.verdict.abtest import ABResult, ab_test
from trtci.verdict.accuracy import may_hold_class_scores, validate
from trtci.verdict.accuracy_change import compare_accuracy
from trtci.verdict.latency import acknowledge, compare, decide_ab, settings_for, stale_acknowledgements

AB_METHOD = "ab-merge-base"  # Comparison.method of a verdict from A/B against the merge-base's build
Shapes = dict[str, tuple[int, ...]]
ShapeRanges = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


class Progress(Protocol):
    """Where the pipeline reports long work. The CLI shows rich progress bars; tests pass nothing."""

    def task(self, description: str) -> contextlib.AbstractContextManager[Callable[[float], None]]: ...


class _Silent:
    @contextlib.contextmanager
    def task(self, description: str) -> Iterator[Callable[[float], None]]:
        yield lambda fraction: None


@dataclass
class ModelPlan:
    """A model with its data loaded and its shapes worked out: everything checked, nothing computed yet."""

    config: ModelConfig
    info: ModelInfo
    calibration: Dataset | None
    validation: Dataset | None
    shapes: dict[int, Shapes]  # batch -> concrete input shapes
    shape_ranges: dict[int, ShapeRanges]  # batch -> TensorRT profile (min, opt, max) per input

    @property
    def name(self) -> str:
        return self.config.display_name


@dataclass
class Variant:
    """One prepared model a backend runs: a precision, and for int8 its Q/DQ scheme."""

    precision: str
    quantization: str = ""
    prepared: PreparedModel | None = None
    error: str | None = None


@dataclass
class Remeasure:
    """What it takes to benchmark a series again: its backend, load request, inputs and settings."""

    backend: Backend
    request: LoadRequest
    feeds: dict[str, np.ndarray]
    settings: BenchSettings


@dataclass
class _RunState:
    series: list[SeriesResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Recipes, not open sessions: holding every engine until the end of a run could exhaust GPU memory, and
    # loading again is cheap (the prepared model and the engine are cached).
    remeasure: dict[str, Remeasure] = field(default_factory=dict)
    ab: dict[str, _AB] = field(default_factory=dict)  # series id -> A/B against what the merge-base had


@dataclass
class _Base:
    """The model and its settings as they were at the PR's merge-base, and the variants prepared from them."""

    plan: ModelPlan
    config: Config  # the merge-base's trtci.yml where it is known, else this run's
    prepared: dict[tuple[str, str], Variant] = field(default_factory=dict)

    def changed(self, key: SeriesKey, backend: Backend) -> str:
        """What the PR changed of this series: "model", "build settings", both, or "" (nothing, or a precision the
        merge-base did not build: then there is nothing to time against)."""
        precision, batch = key.precision, key.batch
        if precision not in self.plan.config.precisions:
            return ""
        changed = []
        if self.plan.info.sha256 != key.model_hash:
            changed.append("model")
        if _options_hash(self.plan, self.config, precision, backend, batch) != key.options_hash:
            changed.append("build settings")
        return " and ".join(changed)


@dataclass
class _AB:
    """An A/B of one series against what the merge-base had, and what the PR changed."""

    result: ABResult
    changed: str


def plan_model(model: ModelConfig) -> ModelPlan:
    """Load and check one model and its data. Raises ModelError, DataError or ConfigError naming the problem."""
    info = inspect_model(model.path)
    calibration = validation = None
    if model.calibration is not None and "int8" in model.precisions:
        calibration = load_dataset(model.calibration.data, model.calibration.max_samples)
        check_against_model(calibration, info, "calibration")
    if model.validation is not None:
        validation = load_dataset(model.validation.data, model.validation.max_samples)
        check_against_model(validation, info, "validation")
        if validation.labels is not None:
            _check_label_output(model, info, validation)
    sample = validation or calibration
    shapes = {b: input_shapes(model, info, b, sample) for b in model.batch_sizes}
    ranges = {b: shape_ranges(model, shapes[b]) for b in model.batch_sizes}
    return ModelPlan(model, info, calibration, validation, shapes, ranges)


def _check_label_output(model: ModelConfig, info: ModelInfo, validation: Dataset) -> None:
    """Labels need an output of class scores [N, C > 1]: judged from the declared outputs, before any work.

    The output is `validation.label_output`, else the first that may hold class scores, as accuracy picks it.
    Symbolic dims may take any size, so only what the declaration rules out stops the run.
    """
    assert model.validation is not None
    wanted = model.validation.label_output
    fix = f"set validation.label_output to an output of class scores, or drop the labels from {validation.source}"
    if wanted is None:
        if not any(may_hold_class_scores(o.dtype, o.shape) for o in info.outputs):
            outputs = ", ".join(f"output '{o.name}' is {_declared(o)}" for o in info.outputs)
            raise DataError(
                f"{model.display_name}: the validation data has labels but no output holds class scores [N, C]: "
                f"{outputs}; export the class scores as an output and {fix}"
            )
        return
    spec = next((o for o in info.outputs if o.name == wanted), None)
    if spec is None:
        names = ", ".join(o.name for o in info.outputs)
        raise ConfigError(
            f"{model.display_name}: validation.label_output '{wanted}' is not an output of the model; outputs: {names}"
        )
    if not may_hold_class_scores(spec.dtype, spec.shape):
        raise DataError(
            f"{model.display_name}: validation.label_output '{wanted}' is {_declared(spec)}, not class scores "
            f"[N, C]; {fix}"
        )


def _declared(spec: TensorSpec) -> str:
    return f"{spec.dtype} [{', '.join('?' if d is None else str(d) for d in spec.shape)}]"


def input_shapes(model: ModelConfig, info: ModelInfo, batch: int, sample: Dataset | None) -> Shapes:
    """Concrete shapes for one batch size: the batch dim from `batch`, other open dims from config or data."""
    overrides = {spec.name: spec for spec in model.inputs}
    unknown = sorted(set(overrides) - {i.name for i in info.inputs})
    if unknown:
        names = ", ".join(i.name for i in info.inputs)
        raise ConfigError(f"{model.display_name}: inputs lists {', '.join(unknown)}, not inputs of the model ({names})")
    shapes: Shapes = {}
    for spec in info.inputs:
        override = overrides.get(spec.name)
        if override is not None:
            _check_given_dims(model, spec, override)
        given = override.shape or override.opt if override else None
        dims: list[int] = []
        for axis, dim in enumerate(spec.shape):
            if axis == 0:
                if isinstance(dim, int) and dim != batch:
                    raise ConfigError(_fixed_batch_message(model, spec, dim, batch))
                dims.append(batch)
            elif isinstance(dim, int):
                dims.append(dim)
            elif given is not None and isinstance(given[axis], int):
                dims.append(int(given[axis]))
            elif sample is not None:
                dims.append(int(sample.arrays[spec.name].shape[axis]))
            else:
                raise ConfigError(
                    f"{model.display_name}: input '{spec.name}' dim {axis} ('{dim}') is dynamic; set its size "
                    f"with inputs: [{{name: {spec.name}, shape: [...]}}] or give validation data"
                )
        shapes[spec.name] = tuple(dims)
    return shapes


def _check_given_dims(model: ModelConfig, spec: TensorSpec, override: InputSpec) -> None:
    """The config's shape and min/opt/max must have the model input's rank and keep its fixed dims."""
    for field_name in ("shape", "min", "opt", "max"):
        given = getattr(override, field_name)
        if given is None:
            continue
        if len(given) != len(spec.shape):
            raise ConfigError(
                f"{model.display_name}: inputs.{spec.name}.{field_name} has rank {len(given)}, the model's input "
                f"has rank {len(spec.shape)}"
            )
        for axis, (fixed, size) in enumerate(zip(spec.shape, given)):
            # the first dim is the batch, which batch_sizes sets
            if axis and isinstance(fixed, int) and isinstance(size, int) and size != fixed:
                raise ConfigError(
                    f"{model.display_name}: inputs.{spec.name}.{field_name} dim {axis} is {size} but the model "
                    f"fixes it at {fixed}; set it to {fixed} or leave it out"
                )


def _fixed_batch_message(model: ModelConfig, spec: TensorSpec, dim: int, batch: int) -> str:
    if len(spec.shape) == 1:  # no dim to spare for a batch: trtci still takes the first dim as the batch
        return (
            f"{model.display_name}: the first dim of input '{spec.name}' is fixed at {dim}, so batch size {batch} "
            f"cannot run; trtci takes the first dim as the batch: use batch_sizes: [{dim}]"
        )
    return (
        f"{model.display_name}: input '{spec.name}' has a fixed batch of {dim}, so batch size {batch} cannot run; "
        f"use batch_sizes: [{dim}] or export the model with a dynamic batch"
    )


def shape_ranges(model: ModelConfig, shapes: Shapes) -> ShapeRanges:
    """TensorRT profiles: the batch is fixed per engine; other dims use the config's min/opt/max when given."""
    overrides = {spec.name: spec for spec in model.inputs}
    ranges: ShapeRanges = {}
    for name, shape in shapes.items():
        spec = overrides.get(name)
        if spec is not None and spec.min is not None and spec.opt is not None and spec.max is not None:
            batch = shape[0]
            low = (batch, *spec.min[1:])
            mid = (batch, *spec.opt[1:])
            high = (batch, *spec.max[1:])
            ranges[name] = (low, mid, high)
        else:
            ranges[name] = (shape, shape, shape)
    return ranges


def run(
    config: Config, context: RunContext, progress: Progress | None = None, *, base_config: Config | None = None
) -> RunResult:
    """Run every model on every backend, compare with the baseline and record the run.

    `base_config` is the trtci.yml of the PR's merge-base (merge_base.config_at): a series whose model file or
    build settings the PR changed is then timed against the merge-base's build in alternating rounds. Without
    it, only model files are taken from the merge-base, built with this run's settings.
    """
    progress = progress or _Silent()
    plans = [plan_model(model) for model in config.models]
    store = _open_store(config.database)  # before any work: an unwritable path fails in a second
    try:
        backends, notes = unique_backends([get_backend(name, config) for name in config.backends])
        reference_backend = _reference_backend(backends, config)
        state = _RunState(warnings=notes)
        for plan in plans:
            base = _merge_base_side(plan, context, config, base_config, state)
            _run_model(plan, config, backends, reference_backend, state, progress, base)
        devices = {backend.device().id: backend.device() for backend in backends}
        result = RunResult(
            context=context, devices=list(devices.values()), series=state.series, warnings=state.warnings
        )
        result.comparisons = [
            _ab_comparison(c, state.ab[c.series_id], result, config.compare) if c.series_id in state.ab else c
            for c in compare(result, store, config.compare)
        ]
        result.accuracy_changes = compare_accuracy(result, store, config.compare)
        result.warnings.extend(stale_acknowledgements(result, config.compare))
        confirm(result, state.remeasure, store, config.compare, progress)
        store.record_run(result)
        apply_retention(store, config.history, vacuum=False)  # a cheap delete; `trtci db prune` also vacuums
    finally:
        store.close()
    return result


def unique_backends(backends: list[Backend]) -> tuple[list[Backend], list[str]]:
    """Each backend once, in order, and a warning for each repeat (`auto` resolves to a backend also listed)."""
    kept: dict[str, Backend] = {}
    warnings = []
    for backend in backends:
        if backend.name in kept:
            warnings.append(f"backend {backend.name} is listed more than once (auto may resolve to it): it runs once")
        else:
            kept[backend.name] = backend
    return list(kept.values()), warnings


def confirm(
    result: RunResult,
    remeasure: dict[str, Remeasure],
    store: Store,
    settings: CompareSettings,
    progress: Progress | None = None,
) -> None:
    """Benchmark each series judged a regression again and keep the verdict only if the new measurement holds it.

    A busy moment on a shared runner slows one measurement far more often than two in a row. Each suspect gets
    twice its configured duration, less when `settings.confirm_budget_s` (for the whole run) runs short. The
    comparison gets `confirmed` and a note in its reason; one that did not hold becomes the re-measurement's
    comparison. The series keeps its first measurement: that is what the run recorded.
    """
    progress = progress or _Silent()
    left = settings.confirm_budget_s
    suspects = [  # an A/B verdict is already drift-free and measured until it was sure: not re-measured
        i
        for i, c in enumerate(result.comparisons)
        if c.verdict == "regression" and c.series_id in remeasure and c.method != AB_METHOD
    ]
    for done, index in enumerate(suspects):
        first = result.comparisons[index]
        recipe = remeasure[first.series_id]
        duration = min(2.0 * recipe.settings.duration_s, left / (len(suspects) - done))
        if duration <= 0:
            first.reason += "; not re-measured: the confirmation budget (compare.confirm_budget_s) is spent"
            continue
        series = next(s for s in result.series if s.key.id == first.series_id)
        try:
            with progress.task(f"{series.key.label}: re-measuring a suspected regression") as update:
                with contextlib.closing(recipe.backend.load(recipe.request)) as session:
                    longer = recipe.settings.model_copy(update={"duration_s": duration})
                    bench = session.benchmark(recipe.feeds, longer, series.key.batch, update)
        except BackendError as e:
            first.reason += f"; not re-measured: {e}"
            continue
        left -= bench.duration_s
        again = compare(replace(result, series=[replace(series, bench=bench)]), store, settings)
        second = next(c for c in again if c.series_id == first.series_id)
        result.comparisons[index] = _confirmed(first, second, bench.duration_s)


def _confirmed(first: Comparison, second: Comparison, seconds: float) -> Comparison:
    assert first.ratio is not None
    again = f"{(second.ratio - 1) * 100:+.1f}%" if second.ratio is not None else "no ratio"
    if second.verdict == "regression":
        first.confirmed = True
        first.reason += f"; confirmed by a re-measurement of {seconds:.1f} s ({again})"
        return first
    second.confirmed = False
    second.reason += (
        f"; not confirmed: the first measurement ({(first.ratio - 1) * 100:+.1f}%) looked like a regression, "
        f"a re-measurement of {seconds:.1f} s did not hold it"
    )
    return second


def _open_store(path: Path) -> Store:
    if str(path) != ":memory:":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{path}: cannot create its directory ({e.strerror}); choose a writable --db path") from e
    return Store(path)


def _reference_backend(backends: list[Backend], config: Config) -> Backend:
    """FP32 reference outputs always come from ONNX Runtime on the CPU, the embedded default."""
    for backend in backends:
        if backend.name == "onnxruntime":
            return backend
    return get_backend("onnxruntime", config)


def _variants(plan: ModelPlan, backend: Backend) -> list[tuple[str, str]]:
    variants: list[tuple[str, str]] = []
    for precision in plan.config.precisions:
        if precision != "int8":
            variants.append((precision, ""))
            continue
        schemes = [backend.int8_scheme]
        if backend.name == "onnxruntime" and plan.validation is not None:
            schemes.append("tensorrt")  # validate the Q/DQ model TensorRT would be given, on the CPU
        variants.extend(("int8", scheme) for scheme in schemes)
    return variants


def _validated_only(backend: Backend, quantization: str) -> bool:
    """A Q/DQ scheme made for another backend is run here for its accuracy only: its latency here means nothing."""
    return bool(quantization) and quantization != backend.int8_scheme


def _fixed_batch(info: ModelInfo) -> int | None:
    return next((s.shape[0] for s in info.inputs if s.shape and isinstance(s.shape[0], int)), None)


def _calibration_batch(plan: ModelPlan) -> int:
    """The model's fixed batch where it has one (no other batch runs), else calibration.batch_size."""
    assert plan.config.calibration is not None
    return _fixed_batch(plan.info) or plan.config.calibration.batch_size


def _prepare(plan: ModelPlan, config: Config, precision: str, quantization: str, progress: Progress) -> Variant:
    variant = Variant(precision, quantization)
    cache = config.cache_dir / "prepared"
    try:
        if precision == "fp32":
            variant.prepared = prepare_fp32(plan.info, cache)
        elif precision == "fp16":
            with progress.task(f"{plan.name}: converting to FP16"):
                variant.prepared = prepare_fp16(plan.info, cache)
        else:
            assert plan.calibration is not None and plan.config.calibration is not None  # checked by the config
            spec = plan.config.calibration
            batch = _calibration_batch(plan)
            feeds = [batch_feeds for batch_feeds, _ in plan.calibration.full_batches(batch)]
            with progress.task(f"{plan.name}: calibrating INT8 ({quantization} scheme, {spec.method})") as update:
                variant.prepared = prepare_int8(
                    plan.info,
                    feeds,
                    scheme=quantization,
                    method=spec.method,
                    data_hash=stable_hash([plan.calibration.sha256, batch]),  # padding depends on the batch
                    cache_dir=cache,
                    progress=lambda done, total: update(done / max(total, 1)),
                )
    except (ModelError, BackendError) as e:
        variant.error = str(e)
    return variant


def _run_model(
    plan: ModelPlan,
    config: Config,
    backends: list[Backend],
    reference_backend: Backend,
    state: _RunState,
    progress: Progress,
    base: _Base | None = None,
) -> None:
    prepared: dict[tuple[str, str], Variant] = {("fp32", ""): _prepare(plan, config, "fp32", "", progress)}
    reference = _reference(plan, config, backends, reference_backend, prepared[("fp32", "")], progress)
    for backend in backends:
        for precision, quantization in _variants(plan, backend):
            if (precision, quantization) not in prepared:
                prepared[(precision, quantization)] = _prepare(plan, config, precision, quantization, progress)
    for variant in prepared.values():
        if variant.prepared is not None:
            state.warnings.extend(f"{plan.name} {variant.precision}: {note}" for note in variant.prepared.notes)

    for backend in backends:
        device_id = backend.device().id
        for precision, quantization in _variants(plan, backend):
            variant = prepared[(precision, quantization)]
            accuracy, failure = None, variant.error
            if failure is None and backend.can_run and reference is not None:
                # FP32 on the reference backend is the reference itself: no second pass over the data
                own = reference if backend is reference_backend and precision == "fp32" else None
                try:
                    accuracy = _validate(plan, backend, config, variant, reference, progress, candidate=own)
                except BackendError as e:
                    failure = str(e)
            validated_only = _validated_only(backend, quantization)
            batches = [_validation_batch(plan)] if validated_only else plan.config.batch_sizes
            for batch in batches:
                key = SeriesKey(
                    model=plan.name,
                    model_hash=plan.info.sha256,
                    precision=precision,
                    batch=batch,
                    backend=backend.name,
                    device_id=device_id,
                    quantization=quantization,
                    options_hash=_options_hash(plan, config, precision, backend, batch),
                )
                series = SeriesResult(key=key, accuracy=accuracy, error=failure)
                state.series.append(series)
                if failure is None and not validated_only:
                    _measure(series, plan, config, backend, variant, state, progress, base)


def _measure(
    series: SeriesResult,
    plan: ModelPlan,
    config: Config,
    backend: Backend,
    variant: Variant,
    state: _RunState,
    progress: Progress,
    base: _Base | None = None,
) -> None:
    """Load or build one series and benchmark it where the backend can run; a backend failure is recorded.
    When the PR changed the model, also time it against the merge-base's version, interleaved."""
    assert variant.prepared is not None
    batch = series.key.batch
    settings = config.bench_for(plan.config)
    try:
        request = load_request(plan, config, variant.prepared, batch, backend)
        if backend.name == "onnxruntime":
            session = backend.load(request)
        else:
            with progress.task(f"{series.key.label}: building engine"):
                session = backend.load(request)
        with contextlib.closing(session):  # frees an engine's device memory before the next series builds
            series.build = session.build
            if not backend.can_run:
                return
            feeds = bench_feeds(plan, batch)
            with progress.task(f"{series.key.label}: benchmarking") as update:
                series.bench = session.benchmark(feeds, settings, batch, update)
            if base is not None:
                _ab_against_merge_base(series, session, feeds, base, config, backend, variant, state, progress)
    except BackendError as e:
        series.error = str(e)
        return
    state.remeasure[series.key.id] = Remeasure(backend, request, feeds, settings)
    if series.bench.stats.unstable:
        state.warnings.append(
            f"{series.key.label}: unstable, CV {series.bench.stats.cv:.1%} above {settings.max_cv:.1%}; "
            "results on a busy machine are noisy"
        )


def _merge_base_side(
    plan: ModelPlan, context: RunContext, config: Config, base_config: Config | None, state: _RunState
) -> _Base | None:
    """The model and its settings as they were at the PR's merge-base (git show), or None where there is nothing
    to compare with: no merge-base, A/B turned off, a model the PR adds, a model file outside git.

    A series whose model file or build settings the PR changed has a new identity, so it has no history: it is
    judged by timing both builds in alternating rounds in this job instead (drift-free, measured until the
    interval is narrow enough). Data sets are read as they are now on both sides.
    """
    if context.merge_base is None or config.compare.ab_budget_s <= 0:
        return None
    model, settings = plan.config, config
    if base_config is not None:
        named = next((m for m in base_config.models if m.display_name == plan.name), None)
        if named is None:
            return None  # a model this PR adds
        model, settings = named, base_config
    shown = file_at(model.path, context.merge_base)
    if shown is None:
        return None
    digest = hashlib.sha256(shown).hexdigest()
    if base_config is None and digest == plan.info.sha256:
        return None  # the same model with this run's own settings: nothing can differ
    target = config.cache_dir / "merge-base" / f"{digest[:16]}.onnx"
    try:
        if digest == plan.info.sha256:
            target, info = plan.config.path, plan.info
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file():
                partial = target.with_suffix(".tmp")
                partial.write_bytes(shown)
                partial.replace(target)
            info = inspect_model(target)
        if [(i.name, i.dtype, len(i.shape)) for i in info.inputs] != [
            (i.name, i.dtype, len(i.shape)) for i in plan.info.inputs
        ]:
            raise ModelError("its inputs differ in name, type or rank")
        model = model.model_copy(update={"path": target, "name": plan.name})
        sample = plan.validation or plan.calibration
        shapes = {b: input_shapes(model, info, b, sample) for b in plan.config.batch_sizes}
        ranges = {b: shape_ranges(model, shapes[b]) for b in plan.config.batch_sizes}
    except (OSError, ModelError, ConfigError, DataError) as e:
        state.warnings.append(f"{plan.name}: no A/B against the merge-base: {e}")
        return None
    return _Base(ModelPlan(model, info, plan.calibration, plan.validation, shapes, ranges), settings)


def _ab_against_merge_base(
    series: SeriesResult,
    head: Session,
    feeds: dict[str, np.ndarray],
    base: _Base,
    config: Config,
    backend: Backend,
    variant: Variant,
    state: _RunState,
    progress: Progress,
) -> None:
    changed = base.changed(series.key, backend)
    if not changed:
        return  # the same series as on the base branch: its history judges it
    key = (variant.precision, variant.quantization)
    if key not in base.prepared:
        base.prepared[key] = _prepare(base.plan, base.config, *key, progress)
    old = base.prepared[key]
    if old.prepared is None:
        state.warnings.append(f"{series.key.label}: no A/B against the merge-base: {old.error}")
        return
    threshold = settings_for(series.key, config.compare).threshold
    request = load_request(base.plan, base.config, old.prepared, series.key.batch, backend)
    base_feeds = _own_feeds(base.plan, series.key.batch)  # the input shapes may be what the PR changed
    try:
        with contextlib.closing(backend.load(request)) as a:
            with progress.task(f"{series.key.label}: A/B against the merge-base's {changed}"):
                result = ab_test(
                    lambda: a.run(base_feeds),
                    lambda: head.run(feeds),
                    time_budget_s=config.compare.ab_budget_s,
                    min_effect=threshold,
                    confidence=config.compare.confidence,
                )
    except BackendError as e:
        state.warnings.append(f"{series.key.label}: no A/B against the merge-base: {e}")
        return
    state.ab[series.key.id] = _AB(result, changed)


def _ab_comparison(first: Comparison, done: _AB, run: RunResult, settings: CompareSettings) -> Comparison:
    """The verdict of the A/B against the merge-base's build, replacing the history comparison of a changed series."""
    ab = done.result
    verdict = decide_ab(ab, first.threshold)
    change = f"{(ab.ratio - 1) * 100:+.1f}% (CI {(ab.low - 1) * 100:+.1f}%..{(ab.high - 1) * 100:+.1f}%)"
    comparison = replace(
        first,
        verdict=verdict,
        ratio=ab.ratio,
        baseline=first.current / ab.ratio if first.current is not None else None,
        interval=[ab.low, ab.high],
        resolution=ab.resolution,
        noise=None,
        method=AB_METHOD,
        reason=(
            f"the {done.changed} changed: interleaved A/B against the merge-base's build, {change} in "
            f"{ab.rounds} rounds ({ab.elapsed_s:.1f} s), threshold {first.threshold:.0%}"
        ),
    )
    series = next(s for s in run.series if s.key.id == first.series_id)
    acknowledge(comparison, (series.key.label, series.key.id), settings, run.context.labels)
    return comparison


def _reference(
    plan: ModelPlan,
    config: Config,
    backends: list[Backend],
    reference_backend: Backend,
    fp32: Variant,
    progress: Progress,
) -> dict[str, np.ndarray] | None:
    """FP32 outputs on the validation set from ONNX Runtime, or None without validation data.

    The FP32 model must run on ONNX Runtime whenever it is the reference or a backend: if it cannot, the model
    itself is the problem (an op ONNX Runtime lacks, a broken graph), so the run stops before any measurement.
    """
    if plan.validation is None and not any(b.name == "onnxruntime" for b in backends):
        return None
    try:
        if fp32.prepared is None:
            raise BackendError(fp32.error or "FP32 preparation failed")
        if plan.validation is None:
            request = load_request(plan, config, fp32.prepared, _validation_batch(plan), reference_backend)
            reference_backend.load(request).close()
            return None
        with progress.task(f"{plan.name}: FP32 reference outputs on onnxruntime") as update:
            return _outputs(reference_backend, plan, config, fp32.prepared, update)
    except BackendError as e:
        raise ModelError(
            f"{plan.info.path}: the FP32 model does not run on ONNX Runtime ({e}); trtci needs it as the accuracy "
            "reference: fix or re-export the model"
        ) from e


def load_request(plan: ModelPlan, config: Config, prepared: PreparedModel, batch: int, backend: Backend) -> LoadRequest:
    """What `backend.load` gets for one prepared model at one batch: shapes, profile, cache and options."""
    options: dict[str, object] = {"threads": config.bench_for(plan.config).threads}
    if backend.name != "onnxruntime":
        options.update(config.tensorrt.model_dump())
    return LoadRequest(
        model_path=prepared.path,
        precision=prepared.precision,
        batch=batch,
        shapes=plan.shapes[batch],
        shape_ranges=plan.shape_ranges[batch],
        cache_dir=config.cache_dir / "engines",
        options=options,
    )


def _options_hash(plan: ModelPlan, config: Config, precision: str, backend: Backend, batch: int) -> str:
    return stable_hash(series_options(plan, config, precision, backend, batch))


def series_options(plan: ModelPlan, config: Config, precision: str, backend: Backend, batch: int) -> dict:
    """What else changes the numbers of a series: input shapes (an open sequence length, say), calibration data,
    batch and method, session or build options and, for engines, the optimization profile."""
    options: dict[str, object] = {"threads": config.bench_for(plan.config).threads, "shapes": plan.shapes[batch]}
    if precision == "int8" and plan.calibration is not None and plan.config.calibration is not None:
        options["calibration"] = [plan.calibration.sha256, plan.config.calibration.method, _calibration_batch(plan)]
    if backend.name != "onnxruntime":
        options["tensorrt"] = config.tensorrt.model_dump(mode="json")
        options["shape_ranges"] = plan.shape_ranges[batch]
    return options


def _validation_batch(plan: ModelPlan) -> int:
    return max(plan.config.batch_sizes)


def _outputs(
    backend: Backend,
    plan: ModelPlan,
    config: Config,
    prepared: PreparedModel,
    update: Callable[[float], None],
) -> dict[str, np.ndarray]:
    """Run the whole validation set through one prepared model; outputs stacked along axis 0, one row a sample.

    Every batch is full (the last one padded, see Dataset.full_batches): a session bound to one shape, as a
    TensorRT engine is, takes them all; the padding rows are dropped from the outputs.
    """
    assert plan.validation is not None
    batch = _validation_batch(plan)
    chunks: dict[str, list[np.ndarray]] = {}
    total, done = plan.validation.size, 0
    session: Session = backend.load(load_request(plan, config, prepared, batch, backend))
    with contextlib.closing(session):
        for feeds, real in plan.validation.full_batches(batch):
            for name, value in session.run(feeds).items():
                chunks.setdefault(name, []).append(value[:real])
            done += real
            update(done / total)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def _validate(
    plan: ModelPlan,
    backend: Backend,
    config: Config,
    variant: Variant,
    reference: dict[str, np.ndarray],
    progress: Progress,
    candidate: dict[str, np.ndarray] | None = None,
) -> AccuracyResult:
    """The variant's accuracy against the reference; its outputs are computed unless given as `candidate`."""
    assert plan.validation is not None and variant.prepared is not None
    if candidate is None:
        scheme = f"({variant.quantization})" if variant.quantization else ""
        with progress.task(f"{plan.name} {variant.precision}{scheme}: validating on {backend.name}") as update:
            candidate = _outputs(backend, plan, config, variant.prepared, update)
    labels = plan.validation.labels
    label_output = plan.config.validation.label_output if plan.config.validation else None
    try:
        result = validate(reference, candidate, plan.config.accuracy, labels=labels, label_output=label_output)
    except DataError as e:
        raise DataError(f"{plan.name}: {e}") from e
    result.validation_hash = plan.validation.sha256  # per-sample hits pair only with hits on the same samples
    return result


def _own_feeds(plan: ModelPlan, batch: int) -> dict[str, np.ndarray]:
    """`bench_feeds`, or seeded random inputs where the data does not fit the plan's shapes (the merge-base's model
    or settings may take other shapes than the data sets of today)."""
    feeds = bench_feeds(plan, batch)
    if all(tuple(value.shape) == tuple(plan.shapes[batch][name]) for name, value in feeds.items()):
        return feeds
    return bench_feeds(replace(plan, calibration=None, validation=None), batch)


def bench_feeds(plan: ModelPlan, batch: int) -> dict[str, np.ndarray]:
    """Real samples when there are any (validation, else calibration); else seeded random data of the right type."""
    data = plan.validation or plan.calibration
    if data is not None:
        return data.feeds_for_batch(batch)
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in plan.info.inputs:
        shape = plan.shapes[batch][spec.name]
        dtype = np.dtype(spec.dtype)
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)  # zeros are valid indices for embedding inputs
    return feeds

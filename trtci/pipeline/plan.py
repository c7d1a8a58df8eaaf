"""Planning a model: everything about it worked out and checked before any work, nothing computed yet.

`plan_model` loads a model's description and data sets and fixes its input shapes per batch size (and the
optimization profile of backends that build engines). From a plan come what every later stage asks: the
`LoadRequest` a backend gets (`load_request`), what identifies a series besides its key (`series_options`,
hashed into SeriesKey.options_hash), and the inputs a benchmark runs on (`bench_feeds`). `trtci ab` and the
pytest plugin plan their models here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from trtci.backends.base import Backend, LoadRequest
from trtci.config import Config, InputSpec, ModelConfig
from trtci.errors import ConfigError, DataError
from trtci.pipeline.data import Dataset, check_against_model, check_memory, load_dataset
from trtci.pipeline.model import ModelInfo, TensorSpec, inspect_model
from trtci.pipeline.prepare import PreparedModel
from trtci.results import stable_hash
from trtci.verdict.accuracy import may_hold_class_scores

Shapes = dict[str, tuple[int, ...]]
ShapeRanges = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


@dataclass
class ModelPlan:
    """A model with its data loaded and its shapes worked out: everything checked, nothing computed yet."""

    config: ModelConfig
    info: ModelInfo
    calibration: Dataset | None
    validation: Dataset | None
    shapes: dict[int, Shapes]  # batch -> concrete input shapes
    shape_ranges: dict[int, ShapeRanges]  # batch -> engine optimization profile (min, opt, max) per input
    # INT8 scheme -> the calibration method `method: auto` chose for it (trtci.pipeline.calibration_choice)
    calibration_methods: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.display_name


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
    plan = ModelPlan(model, info, calibration, validation, shapes, ranges)
    for batch in model.batch_sizes:  # before any work: a batch that cannot fit in memory fails in a second
        _check_feed_memory(plan, batch)
    return plan


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


def load_request(plan: ModelPlan, config: Config, prepared: PreparedModel, batch: int, backend: Backend) -> LoadRequest:
    """What `backend.load` gets for one prepared model at one batch: shapes, profile, cache and options (the
    model's thread count and the backend's own `load_options`)."""
    options: dict[str, object] = {"threads": config.bench_for(plan.config).threads}
    options.update(backend.load_options(config))
    return LoadRequest(
        model_path=prepared.path,
        precision=prepared.precision,
        batch=batch,
        shapes=plan.shapes[batch],
        shape_ranges=plan.shape_ranges[batch],
        cache_dir=config.cache_dir / "engines",
        options=options,
    )


def options_hash(plan: ModelPlan, config: Config, precision: str, backend: Backend, batch: int) -> str:
    """SeriesKey.options_hash: `series_options`, hashed."""
    return stable_hash(series_options(plan, config, precision, backend, batch))


def series_options(plan: ModelPlan, config: Config, precision: str, backend: Backend, batch: int) -> dict:
    """What else changes the numbers of a series: input shapes (an open sequence length, say), calibration data,
    batch, method (with the methods `auto` chose) and the nodes kept in float, the backend's `identity_options`
    and, for engines, the optimization profile.

    Hashed into the series' identity, so any change here starts a new history for every series it touches
    (tests/test_backend_plugins.py pins the built-in backends' dicts)."""
    options: dict[str, object] = {"threads": config.bench_for(plan.config).threads, "shapes": plan.shapes[batch]}
    if precision == "int8" and plan.calibration is not None and plan.config.calibration is not None:
        spec = plan.config.calibration
        calibration: list = [plan.calibration.sha256, spec.method, calibration_batch(plan)]
        if spec.method == "auto":  # what auto chose, per scheme, once the INT8 models are prepared
            calibration.append(dict(sorted(plan.calibration_methods.items())))
        if spec.nodes_to_exclude:
            calibration.append(sorted(spec.nodes_to_exclude))
        options["calibration"] = calibration
    options.update(backend.identity_options(config))
    if backend.builds_engines:
        options["shape_ranges"] = plan.shape_ranges[batch]
    return options


def validation_batch(plan: ModelPlan) -> int:
    """The batch the validation set runs in: the model's largest batch size (fewest calls)."""
    return max(plan.config.batch_sizes)


def _fixed_batch(info: ModelInfo) -> int | None:
    return next((s.shape[0] for s in info.inputs if s.shape and isinstance(s.shape[0], int)), None)


def calibration_batch(plan: ModelPlan) -> int:
    """The model's fixed batch where it has one (no other batch runs), else calibration.batch_size."""
    assert plan.config.calibration is not None
    return _fixed_batch(plan.info) or plan.config.calibration.batch_size


def own_feeds(plan: ModelPlan, batch: int) -> dict[str, np.ndarray]:
    """`bench_feeds`, or seeded random inputs where the data does not fit the plan's shapes (the merge-base's model
    or settings may take other shapes than the data sets of today)."""
    feeds = bench_feeds(plan, batch)
    if all(tuple(value.shape) == tuple(plan.shapes[batch][name]) for name, value in feeds.items()):
        return feeds
    return bench_feeds(replace(plan, calibration=None, validation=None), batch)


def bench_feeds(plan: ModelPlan, batch: int) -> dict[str, np.ndarray]:
    """Real samples when there are any (validation, else calibration); else seeded random data of the right type.

    Raises DataError, before allocating, when one batch needs more memory than this machine has free."""
    data = plan.validation or plan.calibration
    if data is not None:
        return data.feeds_for_batch(batch)
    _check_feed_memory(plan, batch)
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


def _check_feed_memory(plan: ModelPlan, batch: int) -> None:
    """DataError when one batch of benchmark inputs (`bench_feeds`) would not fit in this machine's free memory."""
    data = plan.validation or plan.calibration
    if data is not None:
        check_memory(data.batch_bytes(batch), f"{data.source}: a batch of {batch} samples", "lower batch_sizes")
        return
    need = 0
    for spec in plan.info.inputs:
        dtype = np.dtype(spec.dtype)
        # floating inputs are drawn in float64 and then cast: both arrays are alive at once
        per_element = dtype.itemsize + (8 if np.issubdtype(dtype, np.floating) else 0)
        need += math.prod(plan.shapes[batch][spec.name]) * per_element
    check_memory(
        need, f"{plan.name}: random inputs for a batch of {batch}", "lower batch_sizes or the sizes in inputs:"
    )

"""One run, end to end: check inputs -> prepare -> load/build -> validate -> bench -> compare -> store.

Everything the user gave is checked before any work (backend names, then each model's plan), so bad input costs
seconds, not a calibration. A series that fails on a backend (an op it cannot run, a failed build) records its
reason and the others go on. The run is written to the database in one transaction at the end: an interrupted
run leaves nothing behind.

This module only orchestrates; each step lives in its own module, in the order the data flows:
canary (the machine's speed, at the start) -> plan (shapes, data, series identity) -> variants (prepared models)
-> validate (accuracy vs FP32) -> bench (here: `_measure`) -> merge_base (A/B of what a PR changed) -> canary (at
the end) -> trtci.verdict (compare) -> confirm -> store.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from trtci.backends.base import Backend, LoadRequest, Session
from trtci.backends.registry import check_names, get_backend
from trtci.config import Config
from trtci.errors import BackendError, StoreError
from trtci.pipeline.canary import CanaryTimer
from trtci.pipeline.confirm import Remeasure, confirm
from trtci.pipeline.merge_base import MergeBase, MergeBaseAB, ab_against_merge_base, ab_comparison, merge_base_side
from trtci.pipeline.plan import ModelPlan, bench_feeds, load_request, options_hash, plan_model, validation_batch
from trtci.pipeline.progress import Progress, Silent
from trtci.pipeline.validate import reference_backend, reference_outputs, validate_variant
from trtci.pipeline.variants import Variant, prepare_variant, validated_only, variants_for
from trtci.results import RunContext, RunResult, SeriesKey, SeriesResult
from trtci.store.database import Store
from trtci.store.queries import previous_commit
from trtci.store.retention import apply_retention
from trtci.verdict.accuracy_change import compare_accuracy
from trtci.verdict.latency import compare
from trtci.verdict.policy import stale_acknowledgements


@dataclass
class _RunState:
    """What the run has gathered so far, filled in model by model."""

    series: list[SeriesResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Recipes, not open sessions: holding every engine until the end of a run could exhaust GPU memory, and
    # loading again is cheap (the prepared model and the engine are cached).
    remeasure: dict[str, Remeasure] = field(default_factory=dict)
    ab: dict[str, MergeBaseAB] = field(default_factory=dict)  # series id -> A/B against what the merge-base had


def run(
    config: Config, context: RunContext, progress: Progress | None = None, *, base_config: Config | None = None
) -> RunResult:
    """Run every model on every backend, compare with the baseline and record the run.

    `base_config` is the trtci.yml of the PR's merge-base (merge_base.config_at): a series whose model file or
    build settings the PR changed is then timed against the merge-base's build in alternating rounds. Without
    it, only model files are taken from the merge-base, built with this run's settings.
    """
    progress = progress or Silent()
    check_names(config.backends)
    plans = [plan_model(model) for model in config.models]
    store = _open_store(config.database)  # before any work: an unwritable path fails in a second
    try:
        backends, notes = unique_backends([get_backend(name, config) for name in config.backends])
        reference = reference_backend(backends, config)
        state = _RunState(warnings=notes)
        canary = CanaryTimer(config)
        if canary.seconds > 0:
            with progress.task("canary: the machine's speed at the start"):
                canary.start(backends, state.warnings)
        previous = _previous_commit(store, context)
        for plan in plans:
            base = merge_base_side(plan, context, config, base_config, state.warnings, previous)
            _run_model(plan, config, backends, reference, state, progress, base)
        devices = {backend.device().id: backend.device() for backend in backends}
        warnings = list(dict.fromkeys(state.warnings))  # one note per variant can say the same thing: say it once
        result = RunResult(context=context, devices=list(devices.values()), series=state.series, warnings=warnings)
        result.warnings.extend(unstable_warning(result.series, config))
        if canary.starts:
            with progress.task("canary: the machine's speed at the end"):
                result.canaries = canary.finish(backends, result.warnings)
        try:
            result.comparisons = [
                ab_comparison(c, state.ab[c.series_id], result, config.compare) if c.series_id in state.ab else c
                for c in compare(result, store, config.compare)
            ]
            result.accuracy_changes = compare_accuracy(result, store, config.compare)
            result.warnings.extend(stale_acknowledgements(result, config.compare))
            confirm(result, state.remeasure, store, config.compare, progress)
        except StoreError as e:  # the history could not be read (locked too long, damaged): keep what was measured
            raise StoreError(store.keep_unrecorded(result, e)) from e
        try:
            store.record_run(result)
        except StoreError as e:  # the work is done: keep it, and say so in the report, the JSON and the console
            result.warnings.append(store.keep_unrecorded(result, e))
        else:
            apply_retention(store, config.history, vacuum=False)  # a cheap delete; `trtci db prune` also vacuums
    finally:
        store.close()
    return result


def _previous_commit(store: Store, context: RunContext) -> str | None:
    """After a merge (a run with no base branch), the branch's previous measured commit: what a model changed
    since then is timed against. None for a pull request (its merge-base serves) or without git facts."""
    if context.base_branch is not None or context.branch is None or context.commit is None:
        return None
    return previous_commit(store, context.branch, context.commit, exclude_run=context.run_id)


def unstable_warning(series: list[SeriesResult], config: Config) -> list[str]:
    """One warning naming every unstable series (robust spread above bench.max_cv), or none."""
    unstable = [s for s in series if s.bench is not None and s.bench.stats.unstable]
    if not unstable:
        return []
    names = ", ".join(f"{s.key.label} ({s.bench.stats.spread or 0:.1%})" for s in unstable if s.bench is not None)
    return [
        f"{len(unstable)} of {sum(s.bench is not None for s in series)} series unstable, their robust spread above "
        f"{config.bench.max_cv:.1%} ({names}): one run's median is less certain, so history comparisons widen "
        "their interval with it and A/B verdicts measure until sure; a quieter runner or longer bench.duration_s helps"
    ]


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


def _open_store(path: Path) -> Store:
    if str(path) != ":memory:":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{path}: cannot create its directory ({e.strerror}); choose a writable --db path") from e
    store = Store(path)
    try:
        store.check_writable()
    except BaseException:
        store.close()
        raise
    return store


def _run_model(
    plan: ModelPlan,
    config: Config,
    backends: list[Backend],
    reference_backend: Backend,
    state: _RunState,
    progress: Progress,
    base: MergeBase | None = None,
) -> None:
    """Prepare every variant the backends need, compute the FP32 reference, then validate and measure each
    series: one per backend, variant and batch size (one per variant validated only)."""
    prepared = _prepare_variants(plan, config, backends, progress, state.warnings)
    reference = reference_outputs(plan, config, backends, reference_backend, prepared[("fp32", "")], progress)
    for backend in backends:
        device_id = backend.device().id
        for precision, quantization in variants_for(plan, backend):
            variant = prepared[(precision, quantization)]
            accuracy, failure = None, variant.error
            if failure is None and backend.can_run and reference is not None:
                # FP32 on the reference backend is the reference itself: no second pass over the data
                own = reference if backend is reference_backend and precision == "fp32" else None
                try:
                    accuracy = validate_variant(plan, backend, config, variant, reference, progress, candidate=own)
                except BackendError as e:
                    failure = str(e)
            only_validated = validated_only(backend, quantization)
            for batch in [validation_batch(plan)] if only_validated else plan.config.batch_sizes:
                key = SeriesKey(
                    model=plan.name,
                    model_hash=plan.info.sha256,
                    precision=precision,
                    batch=batch,
                    backend=backend.name,
                    device_id=device_id,
                    quantization=quantization,
                    options_hash=options_hash(plan, config, precision, backend, batch),
                )
                series = SeriesResult(key=key, accuracy=accuracy, error=failure)
                state.series.append(series)
                if failure is None and not only_validated:
                    _measure(series, plan, config, backend, variant, state, progress, base)


def _prepare_variants(
    plan: ModelPlan, config: Config, backends: list[Backend], progress: Progress, warnings: list[str]
) -> dict[tuple[str, str], Variant]:
    """FP32 (always: it is the accuracy reference) and every variant any backend runs, each prepared once."""
    prepared = {("fp32", ""): prepare_variant(plan, config, "fp32", "", progress)}
    for backend in backends:
        for precision, quantization in variants_for(plan, backend):
            if (precision, quantization) not in prepared:
                prepared[(precision, quantization)] = prepare_variant(plan, config, precision, quantization, progress)
    for variant in prepared.values():
        if variant.prepared is not None:
            warnings.extend(f"{plan.name} {variant.precision}: {note}" for note in variant.prepared.notes)
    return prepared


def _measure(
    series: SeriesResult,
    plan: ModelPlan,
    config: Config,
    backend: Backend,
    variant: Variant,
    state: _RunState,
    progress: Progress,
    base: MergeBase | None = None,
) -> None:
    """Load or build one series and benchmark it where the backend can run; a backend failure is recorded.
    When the PR changed the model, also time it against the merge-base's version, interleaved."""
    assert variant.prepared is not None
    batch = series.key.batch
    settings = config.bench_for(plan.config)
    try:
        request = load_request(plan, config, variant.prepared, batch, backend)
        with contextlib.closing(_load(backend, request, series.key.label, progress)) as session:
            # closing frees an engine's device memory before the next series builds
            series.build = session.build
            if not backend.can_run:
                return
            feeds = bench_feeds(plan, batch)
            with progress.task(f"{series.key.label}: benchmarking") as update:
                series.bench = session.benchmark(feeds, settings, batch, update)
            if base is not None:
                done = ab_against_merge_base(
                    series, request, feeds, base, plan, config, backend, variant, state.warnings, progress
                )
                if done is not None:
                    state.ab[series.key.id] = done
    except BackendError as e:
        series.error = str(e)
        return
    state.remeasure[series.key.id] = Remeasure(backend, request, feeds, settings)


def _load(backend: Backend, request: LoadRequest, label: str, progress: Progress) -> Session:
    """`backend.load`, shown as a step of its own where it compiles an engine (seconds to minutes)."""
    if not backend.builds_engines:
        return backend.load(request)
    with progress.task(f"{label}: building engine"):
        return backend.load(request)

"""A/B against the merge-base's build: how a pull request that changes a model or its settings is judged.

A series whose model file or build settings a PR changed has a new identity, so it has no history to be compared
with. Instead, the model and settings as they were at the PR's merge-base (read with `git show`) are prepared
and built too, and both builds are timed in alternating rounds in this job (trtci.verdict.abtest): drift-free,
measured until the interval is narrow enough. Its verdict replaces the history comparison (`ab_comparison`).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from trtci.backends.base import Backend, LoadRequest
from trtci.config import CompareSettings, Config
from trtci.context.git import file_at
from trtci.errors import BackendError, ConfigError, DataError, ModelError
from trtci.pipeline.model import inspect_model
from trtci.pipeline.plan import ModelPlan, input_shapes, load_request, own_feeds, series_options, shape_ranges
from trtci.pipeline.progress import Progress
from trtci.pipeline.variants import Variant, prepare_variant
from trtci.results import Comparison, RunContext, RunResult, SeriesKey, SeriesResult
from trtci.verdict.abtest import ABResult, ab_test
from trtci.verdict.attribution import code_changes
from trtci.verdict.latency import decide_ab
from trtci.verdict.policy import acknowledge, settings_for

AB_METHOD = "ab-merge-base"  # Comparison.method of a verdict from A/B against the merge-base's build


@dataclass
class MergeBase:
    """The model and its settings as they were at the PR's merge-base, and the variants prepared from them."""

    plan: ModelPlan
    config: Config  # the merge-base's trtci.yml where it is known, else this run's
    prepared: dict[tuple[str, str], Variant] = field(default_factory=dict)
    origin: str = "the merge-base"  # what the other side is, in words

    def changed(self, key: SeriesKey, backend: Backend, plan: ModelPlan, config: Config) -> list[str]:
        """What the PR changed of this series: "model", "calibration data", "build settings", or [] (nothing, or a
        precision the merge-base did not build: then there is nothing to time against). `plan` and `config` are
        the PR's own, which made `key`."""
        precision, batch = key.precision, key.batch
        if precision not in self.plan.config.precisions:
            return []
        changed = ["model"] if self.plan.info.sha256 != key.model_hash else []
        base = series_options(self.plan, self.config, precision, backend, batch)
        changed += code_changes(series_options(plan, config, precision, backend, batch), base)
        return changed


@dataclass
class MergeBaseAB:
    """An A/B of one series against what the merge-base had, and what the PR changed."""

    result: ABResult
    changed: list[str]
    origin: str = "the merge-base"


def merge_base_side(
    plan: ModelPlan,
    context: RunContext,
    config: Config,
    base_config: Config | None,
    warnings: list[str],
    previous: str | None = None,
) -> MergeBase | None:
    """The model and its settings as they were at the PR's merge-base (git show), or None where there is nothing
    to compare with: no merge-base, A/B turned off, a model the PR adds, a model file outside git.

    `base_config` is the merge-base's trtci.yml, or None to take only the model file from there, with this run's
    settings. Data sets are read as they are now on both sides. A merge-base model that cannot be planned (other
    inputs, an unreadable file) adds a line to `warnings` and gives None. Without a merge-base (a run after a
    merge, on the branch its history comes from), `previous` is the branch's previous measured commit: a model
    changed since then is timed against it the same way.
    """
    commit = context.merge_base or previous
    if commit is None or config.compare.ab_budget_s <= 0:
        return None
    origin = "the merge-base" if context.merge_base else f"the previous measured commit {commit[:7]}"
    model, settings = plan.config, config
    if base_config is not None:
        named = next((m for m in base_config.models if m.display_name == plan.name), None)
        if named is None:
            return None  # a model this PR adds
        model, settings = named, base_config
    shown = file_at(model.path, commit)
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
        warnings.append(f"{plan.name}: no A/B against the merge-base: {e}")
        return None
    return MergeBase(ModelPlan(model, info, plan.calibration, plan.validation, shapes, ranges), settings, origin=origin)


def ab_against_merge_base(
    series: SeriesResult,
    head: LoadRequest,
    feeds: dict[str, np.ndarray],
    base: MergeBase,
    plan: ModelPlan,
    config: Config,
    backend: Backend,
    variant: Variant,
    warnings: list[str],
    progress: Progress,
) -> MergeBaseAB | None:
    """Time `head` (the PR's build of `series`, loaded as `head` asks, fed `feeds`) against the merge-base's build
    of the same variant, in alternating rounds; both sides are loaded for interleaving (LoadRequest.interleaved).
    None when the PR changed nothing of this series (its history judges it) or the merge-base's build cannot be
    made or run here (a line in `warnings` says why)."""
    changed = base.changed(series.key, backend, plan, config)
    if not changed:
        return None
    key = (variant.precision, variant.quantization)
    if key not in base.prepared:
        base.prepared[key] = prepare_variant(base.plan, base.config, *key, progress)
    old = base.prepared[key]
    if old.prepared is None:
        warnings.append(f"{series.key.label}: no A/B against the merge-base: {old.error}")
        return None
    threshold = settings_for(series.key, config.compare).threshold
    request = load_request(base.plan, base.config, old.prepared, series.key.batch, backend)
    base_feeds = own_feeds(base.plan, series.key.batch)  # the input shapes may be what the PR changed
    try:
        with (
            contextlib.closing(backend.load(request.interleaved())) as a,
            contextlib.closing(backend.load(head.interleaved())) as b,
        ):
            with progress.task(f"{series.key.label}: A/B against the merge-base's {' and '.join(changed)}"):
                result = ab_test(
                    lambda: a.run(base_feeds),
                    lambda: b.run(feeds),
                    time_budget_s=config.compare.ab_budget_s,
                    min_effect=threshold,
                    confidence=config.compare.confidence,
                    threshold=threshold,
                )
    except BackendError as e:
        warnings.append(f"{series.key.label}: no A/B against the merge-base: {e}")
        return None
    return MergeBaseAB(result, changed, base.origin)


def ab_comparison(first: Comparison, done: MergeBaseAB, run: RunResult, settings: CompareSettings) -> Comparison:
    """The verdict of the A/B against the merge-base's build, replacing the history comparison of a changed series."""
    ab = done.result
    verdict = decide_ab(ab, first.threshold)
    change = f"{(ab.ratio - 1) * 100:+.1f}% (CI {(ab.low - 1) * 100:+.1f}%..{(ab.high - 1) * 100:+.1f}%)"
    spent = "" if ab.converged else ", budget spent before the interval was narrow enough"
    comparison = replace(
        first,
        verdict=verdict,
        ratio=ab.ratio,
        baseline=first.current / ab.ratio if first.current is not None else None,
        interval=[ab.low, ab.high],
        resolution=ab.resolution,
        noise=None,
        method=AB_METHOD,
        changed=list(done.changed),
        machine=None,
        machine_drift=False,
        rounds=ab.rounds,
        calls_per_round=ab.calls_per_round,
        reason=(
            f"the {' and '.join(done.changed)} changed: interleaved A/B against {done.origin}'s build, {change} in "
            f"{ab.rounds} rounds of {ab.calls_per_round} calls a side ({ab.elapsed_s:.1f} s{spent}), threshold "
            f"{first.threshold:.0%}"
        ),
    )
    series = next(s for s in run.series if s.key.id == first.series_id)
    acknowledge(comparison, (series.key.label, series.key.id), settings, run.context.labels)
    return comparison

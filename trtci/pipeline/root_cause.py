"""INT8 root cause: which ONNX nodes break a failing INT8 model, and the fewest to keep in float so it passes.

`explain_int8` ranks the quantized tensors by their effect on the outputs (trtci.pipeline.int8_sensitivity),
then searches greedily: it keeps the nodes of the most harmful tensor in float (calibration.nodes_to_exclude),
re-quantizes and runs the accuracy gate on the whole validation set, adding the next tensor's nodes until the
gate passes, and then drops each added node the gate can do without. Every step is a real quantization, so
the set it reports is one a user can commit and get the same model. The search stops at a budget of
quantizations and says so. The run calls it for every INT8 variant that fails accuracy (trtci.pipeline
.validate); `trtci explain int8` calls it on demand.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from trtci.backends.base import Backend
from trtci.config import Config
from trtci.errors import BackendError, ModelError
from trtci.pipeline.int8_eval import dataset_outputs
from trtci.pipeline.int8_sensitivity import RankedUnit, rank_units
from trtci.pipeline.int8_variant import calibration_inputs, int8_method, prepare_plan_int8
from trtci.pipeline.plan import ModelPlan, bench_feeds, load_request, validation_batch
from trtci.pipeline.prepare import PreparedModel, _preprocess, prepare_fp32, prepare_int8
from trtci.results import AccuracyResult, NodeSensitivity, RootCause
from trtci.verdict.abtest import ab_test
from trtci.verdict.accuracy import validate

TRIALS = 16  # quantizations the search may run
BUDGET_S = 600.0  # and the wall time it may take; both bound a root cause on a large model
RANKED_SHOWN = 10  # nodes kept in the ranking


def explain_int8(
    plan: ModelPlan,
    config: Config,
    scheme: str,
    reference: dict[str, np.ndarray],
    *,
    trials: int = TRIALS,
    budget_s: float = BUDGET_S,
    speedup: Callable[[Path], list[float] | None] | None = None,
) -> RootCause:
    """Diagnose the plan's INT8 model for `scheme` against `reference` (FP32 outputs on the validation set).

    `speedup(mixed_model)` times a passing mixed model against FP32 where that means something (the scheme's
    own backend, able to run): [speedup, low, high]. Raises ModelError when the INT8 model cannot be made at all.
    """
    assert plan.validation is not None and plan.config.calibration is not None
    cache = config.cache_dir / "prepared"
    threads = config.bench_for(plan.config).threads
    method, _ = int8_method(plan, scheme, cache, threads)
    feeds, data_hash = calibration_inputs(plan)
    configured = list(plan.config.calibration.nodes_to_exclude)
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=cache) as scratch:
        work = Path(scratch)

        def trial(excluded: list[str]) -> tuple[AccuracyResult, Path]:
            prepared = prepare_int8(
                plan.info, feeds, scheme=scheme, method=method, data_hash=data_hash, cache_dir=work,
                nodes_to_exclude=excluded,
            )  # fmt: skip
            return _score(plan, prepared.path, reference, threads), prepared.path

        int8_path = prepare_plan_int8(plan, scheme, cache, threads=threads).path  # ModelError names a node
        current = _score(plan, int8_path, reference, threads)
        if current.passed:
            return RootCause(passed=True, nodes_to_exclude=configured, note=_no_failure(current), trials=1)
        preprocessed = work / "fp32.preprocessed.onnx"
        _preprocess(plan.info, preprocessed)
        ranked = _ranked(plan, onnx.load(str(preprocessed)), onnx.load(str(int8_path)), reference, threads)
        known = {n.name for n in onnx.load(str(plan.info.path), load_external_data=False).graph.node}
        search = _Search(trial, configured, known, trials - 1, started + budget_s)
        cause = search.run(ranked)
        cause.ranking = _by_node(ranked)
        timed = speedup(search.passing_path) if cause.passed and speedup and search.passing_path else None
        if timed is not None:
            cause.speedup_vs_fp32, cause.speedup_interval = timed[0], timed[1:]
        return cause


def _score(plan: ModelPlan, path: Path, reference: dict[str, np.ndarray], threads: int) -> AccuracyResult:
    assert plan.validation is not None
    outputs = dataset_outputs(path, plan.validation, validation_batch(plan), threads)
    label_output = plan.config.validation.label_output if plan.config.validation else None
    return validate(reference, outputs, plan.config.accuracy, plan.validation.labels, label_output)


def _ranked(
    plan: ModelPlan, fp32: onnx.ModelProto, int8: onnx.ModelProto, reference: dict[str, np.ndarray], threads: int
) -> list[RankedUnit]:
    assert plan.validation is not None
    label_output = plan.config.validation.label_output if plan.config.validation else None
    batch = validation_batch(plan)
    return rank_units(fp32, int8, plan.validation, reference, plan.config.accuracy, batch, label_output, threads)


def _by_node(ranked: list[RankedUnit]) -> list[NodeSensitivity]:
    """The ranking by node: each node once, at its most harmful tensor."""
    seen: dict[str, NodeSensitivity] = {}
    for item in ranked:
        if item.sensitivity is not None:
            seen.setdefault(item.sensitivity.node, item.sensitivity)
    return list(seen.values())[:RANKED_SHOWN]


def _no_failure(result: AccuracyResult) -> str:
    metric = f"top-1 ratio {result.ratio:#.5g}" if result.ratio is not None else "every output within its thresholds"
    return f"INT8 passes its accuracy gate ({metric}): there is no failure to explain"


class _Search:
    """Greedy: add the next harmful tensor's nodes until the gate passes; then drop what the gate can do without."""

    def __init__(
        self,
        trial: Callable[[list[str]], tuple[AccuracyResult, Path]],
        configured: list[str],
        known: set[str],
        trials: int,
        deadline: float,
    ) -> None:
        self.trial = trial
        self.configured = configured
        self.known = known
        self.left = trials
        self.deadline = deadline
        self.used = 1  # the configured model, scored before the search
        self.passing_path: Path | None = None

    def _can(self) -> bool:
        return self.left > 0 and time.monotonic() < self.deadline

    def _try(self, excluded: list[str]) -> AccuracyResult | None:
        """The gate's verdict with `excluded` in float; None when the quantizer refuses that set."""
        self.left -= 1
        self.used += 1
        try:
            result, path = self.trial(excluded)
        except ModelError:
            return None
        if result.passed:
            self.passing_path = path
        return result

    def run(self, ranked: list[RankedUnit]) -> RootCause:
        """Keep each blamed node's tensors in float, most harmful node first, until the gate passes."""
        groups: dict[str, list[str]] = {}
        for item in ranked:  # a node's group: every tensor blamed on it (an outlier flows through several)
            groups.setdefault(item.unit.blamed, []).extend(item.unit.exclude)
        excluded = list(self.configured)
        best: AccuracyResult | None = None
        for nodes in groups.values():
            added = [n for n in dict.fromkeys(nodes) if n in self.known and n not in excluded]
            if not added:
                continue
            if not self._can():
                return self._stopped(excluded, best, "the budget ran out")
            excluded += added
            result = self._try(excluded)
            best = result if result is not None else best  # AccuracyResult is falsy when it fails
            if best is not None and best.passed:
                return self._prune(excluded, best)
        return self._stopped(excluded, best, "keeping every ranked node in float still fails")

    def _prune(self, excluded: list[str], passing: AccuracyResult) -> RootCause:
        """Drop each added node the gate passes without, the last added first."""
        note = ""
        for node in [n for n in reversed(excluded) if n not in self.configured]:
            if not self._can():
                note = "the budget ran out while dropping nodes: a smaller set may pass"
                break
            fewer = [n for n in excluded if n != node]
            result = self._try(fewer)
            if result is not None and result.passed:
                excluded, passing = fewer, result
        return _cause(excluded, passing, self.used, note)

    def _stopped(self, excluded: list[str], best: AccuracyResult | None, why: str) -> RootCause:
        note = f"no set of nodes kept in float passed within {self.used} quantizations: {why}"
        return _cause(excluded, best, self.used, note)


def _cause(excluded: list[str], result: AccuracyResult | None, trials: int, note: str) -> RootCause:
    cause = RootCause(nodes_to_exclude=excluded, trials=trials, note=note)
    if result is not None:
        cause.passed = result.passed
        cause.ratio = result.ratio
        cause.sqnr_db = min(o.sqnr_db for o in result.outputs)
        cause.reasons = list(result.reasons)
    return cause


def summary(cause: RootCause) -> str:
    """One line for a failing INT8 variant's reasons: the top offenders by ONNX node, and the fix or the budget."""
    if not cause.ranking:
        return f"root cause: {cause.note}" if cause.note else "root cause: no quantized tensor found to blame"
    names = ", ".join(
        f"{s.node} ({s.op_type}: outputs at {s.sqnr_db:.1f} dB with only {s.tensor} in INT8)" for s in cause.ranking[:3]
    )
    if not cause.passed:
        return f"root cause: {names}; {cause.note}"
    snippet = f"calibration: {{nodes_to_exclude: [{', '.join(cause.nodes_to_exclude)}]}}"
    measured = [f"top-1 ratio {cause.ratio:#.5g}" if cause.ratio is not None else f"SQNR {cause.sqnr_db:.1f} dB"]
    if cause.speedup_vs_fp32 is not None:
        measured.append(f"{cause.speedup_vs_fp32:.2f}x the speed of FP32")
    return f"root cause: {names}; {snippet} passes ({', '.join(measured)})"


def backend_speedup(plan: ModelPlan, config: Config, backend: Backend) -> Callable[[Path], list[float] | None]:
    """A `speedup` for explain_int8: FP32 over the mixed model on `backend`, timed in interleaved A/B rounds at
    the plan's largest batch, with its 95% interval; None when the backend cannot load one of them."""

    def measure(mixed: Path) -> list[float] | None:
        batch = max(plan.config.batch_sizes)
        fp32 = prepare_fp32(plan.info, config.cache_dir / "prepared")
        candidate = PreparedModel(mixed, "int8", backend.int8_scheme, "", False)
        feeds = bench_feeds(plan, batch)
        budget = max(2 * config.bench_for(plan.config).duration_s, 0.5)
        try:
            with contextlib.ExitStack() as stack:
                a = stack.enter_context(
                    contextlib.closing(backend.load(load_request(plan, config, fp32, batch, backend)))
                )
                b = stack.enter_context(
                    contextlib.closing(backend.load(load_request(plan, config, candidate, batch, backend)))
                )
                result = ab_test(lambda: a.run(feeds), lambda: b.run(feeds), time_budget_s=budget, min_rounds=4)
        except BackendError:
            return None
        if not result.ratio > 0:
            return None
        # A bound of 0 (the A/B could not bound the ratio from below) is an unbounded speedup, not a division error.
        return [1.0 / result.ratio, *(1.0 / bound if bound > 0 else math.inf for bound in (result.high, result.low))]

    return measure

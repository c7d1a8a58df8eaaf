"""`calibration: {method: auto}`: minmax, entropy and percentile calibrated and compared on the validation set.

Each candidate INT8 model is made once (trtci.pipeline.prepare caches it, so the chosen one is not made again)
and scored against FP32 the way the accuracy gate scores it: passing first, then the top-1 ratio (with labels)
or top-1 agreement, then the worst output's SQNR. The choice is cached beside the prepared models, keyed by
everything that can change it, and recorded with the run: in the series identity (plan.series_options) and as
a note that gives every method's score.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trtci import __version__
from trtci.errors import ModelError
from trtci.pipeline.int8_eval import dataset_outputs
from trtci.pipeline.plan import ModelPlan, validation_batch
from trtci.pipeline.prepare import prepare_int8, recipe
from trtci.results import AccuracyResult, stable_hash
from trtci.verdict.accuracy import validate

CANDIDATES = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class MethodChoice:
    """The method `auto` chose for one scheme, and the line that records why."""

    method: str
    note: str


def choose_method(
    plan: ModelPlan,
    scheme: str,
    feeds: list[dict[str, np.ndarray]],
    data_hash: str,
    cache_dir: Path,
    threads: int = 0,
) -> MethodChoice:
    """The candidate method whose INT8 model scores best against FP32 on the plan's validation set.

    Raises the last candidate's ModelError when none can be quantized.
    """
    assert plan.validation is not None  # the config requires validation data for auto
    key = stable_hash(
        [plan.info.sha256, data_hash, plan.validation.sha256, scheme, recipe(scheme), plan.config.accuracy.model_dump(),
         plan.config.calibration.nodes_to_exclude if plan.config.calibration else [], __version__]
    )  # fmt: skip
    stored = Path(cache_dir) / "choices" / f"{key}.json"
    if stored.is_file():
        return MethodChoice(**json.loads(stored.read_text()))
    batch = validation_batch(plan)
    reference = dataset_outputs(plan.info.path, plan.validation, batch, threads)
    label_output = plan.config.validation.label_output if plan.config.validation else None
    scores: dict[str, AccuracyResult | ModelError] = {}
    for method in CANDIDATES:
        try:
            prepared = prepare_int8(
                plan.info,
                feeds,
                scheme=scheme,
                method=method,
                data_hash=data_hash,
                cache_dir=cache_dir,
                nodes_to_exclude=plan.config.calibration.nodes_to_exclude if plan.config.calibration else (),
            )
        except ModelError as e:
            scores[method] = e
            continue
        candidate = dataset_outputs(prepared.path, plan.validation, batch, threads)
        scores[method] = validate(reference, candidate, plan.config.accuracy, plan.validation.labels, label_output)
    results = {m: r for m, r in scores.items() if isinstance(r, AccuracyResult)}
    if not results:
        raise scores[CANDIDATES[-1]]  # type: ignore[misc]  # every entry is a ModelError here
    chosen = max(results, key=lambda m: _rank(results[m]))
    described = "; ".join(f"{m} {_describe(scores[m])}" for m in CANDIDATES)
    choice = MethodChoice(chosen, f"calibration method auto ({scheme} scheme) chose {chosen}: {described}")
    _store(stored, choice)
    return choice


def _rank(result: AccuracyResult) -> tuple[bool, float, float]:
    """Passing first, then the task metric (top-1 ratio, else top-1 agreement, else cosine), then the worst SQNR."""
    agreement = [o.top1_agreement for o in result.outputs if o.top1_agreement is not None]
    metric = result.ratio if result.ratio is not None else min(agreement) if agreement else None
    if metric is None:
        metric = min(o.cosine for o in result.outputs)
    sqnr = min(o.sqnr_db for o in result.outputs)
    return (result.passed, _finite(metric), _finite(sqnr))


def _finite(value: float) -> float:
    return value if math.isfinite(value) or value == math.inf else -math.inf


def _describe(score: AccuracyResult | ModelError) -> str:
    if isinstance(score, ModelError):
        return "could not be quantized"
    sqnr = min(o.sqnr_db for o in score.outputs)
    metric = f"top-1 ratio {score.ratio:.5g}, " if score.ratio is not None else ""
    return f"{'passes' if score.passed else 'fails'} ({metric}SQNR {sqnr:.1f} dB)"


def _store(path: Path, choice: MethodChoice) -> None:
    """Write the choice atomically: a concurrent reader sees no file or the whole one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(choice), handle)
    os.replace(temp, path)

"""INT8 root cause where it is asked for: automatically for a failing INT8 variant during a run (`diagnose`),
and for `trtci explain int8` (`explain_models`). The diagnosis itself is trtci.pipeline.root_cause.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trtci.backends.base import Backend
from trtci.backends.registry import get_backend
from trtci.config import Config
from trtci.errors import BackendError, ConfigError, ModelError
from trtci.pipeline.int8_eval import dataset_outputs
from trtci.pipeline.plan import ModelPlan, plan_model, validation_batch
from trtci.pipeline.prepare import SCHEMES, prepare_fp32
from trtci.pipeline.progress import Progress, Silent
from trtci.pipeline.root_cause import BUDGET_S, TRIALS, backend_speedup, explain_int8, summary
from trtci.results import AccuracyResult, RootCause


def diagnose(
    result: AccuracyResult,
    plan: ModelPlan,
    backend: Backend,
    config: Config,
    scheme: str,
    reference: dict[str, np.ndarray],
    progress: Progress,
) -> None:
    """Attach the root cause of a failing INT8 variant to its accuracy result, with one line in its reasons.

    The mixed model that passes is timed where that means something: on `backend`, when it times this scheme and
    can run. A model the root cause cannot analyse gets the reason instead.
    """
    timed = backend.can_run and scheme == backend.int8_scheme
    with progress.task(f"{plan.name} int8({scheme}): root cause of the accuracy failure"):
        try:
            cause = explain_int8(
                plan, config, scheme, reference, speedup=backend_speedup(plan, config, backend) if timed else None
            )
        except (ModelError, BackendError) as e:
            cause = RootCause(note=f"the root cause could not be searched ({e})")
    if cause.passed and not timed:
        cause.note = f"not timed: {backend.name} does not run the {scheme} scheme's model for its speed here"
    result.root_cause = cause
    result.reasons.append(summary(cause))


@dataclass
class Explained:
    """One model's INT8 root cause for `trtci explain int8`, or why there is none."""

    model: str
    scheme: str
    cause: RootCause | None = None
    error: str = ""  # the model could not be quantized or run: why
    snippet: list[str] = field(default_factory=list)  # trtci.yml lines that keep the found nodes in float

    @property
    def resolved(self) -> bool:
        """INT8 passes as configured, or with the nodes the search found kept in float."""
        return not self.error and self.cause is not None and self.cause.passed


def explain_models(
    config: Config,
    model: str | None = None,
    scheme: str | None = None,
    *,
    trials: int = TRIALS,
    budget_s: float = BUDGET_S,
    progress: Progress | None = None,
) -> list[Explained]:
    """Root-cause INT8 for `model` (default: every model with int8) in `scheme` (default: the first backend's).

    Raises ConfigError when no model qualifies (none lists int8, or validation data is missing). A model that
    cannot be quantized or run gets its reason in `Explained.error`; the others go on.
    """
    progress = progress or Silent()
    models = [m for m in config.models if model is None or m.display_name == model]
    if not models:
        names = ", ".join(m.display_name for m in config.models)
        raise ConfigError(f"no model named {model!r} in the config; models: {names}")
    models = [m for m in models if "int8" in m.precisions]
    if not models:
        raise ConfigError("no model in the config lists int8 in its precisions: there is no INT8 to explain")
    missing = [m.display_name for m in models if m.validation is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: explaining INT8 needs validation data to measure accuracy on")
    backend = get_backend(config.backends[0], config)
    chosen = scheme or backend.int8_scheme or SCHEMES[0]
    speed = backend.can_run and chosen == backend.int8_scheme
    explained = []
    for spec in models:
        plan = plan_model(spec)
        outcome = Explained(plan.name, chosen)
        try:
            with progress.task(f"{plan.name}: FP32 reference outputs"):
                fp32 = prepare_fp32(plan.info, config.cache_dir / "prepared")
                assert plan.validation is not None
                reference = dataset_outputs(fp32.path, plan.validation, validation_batch(plan))
            with progress.task(f"{plan.name} int8({chosen}): root cause"):
                outcome.cause = explain_int8(
                    plan, config, chosen, reference, trials=trials, budget_s=budget_s,
                    speedup=backend_speedup(plan, config, backend) if speed else None,
                )  # fmt: skip
        except (ModelError, BackendError) as e:
            outcome.error = str(e)
        if outcome.cause is not None and outcome.cause.ranking and outcome.cause.passed:
            outcome.snippet = _snippet(plan.name, outcome.cause.nodes_to_exclude)
        explained.append(outcome)
    return explained


def _snippet(model: str, nodes: list[str]) -> list[str]:
    return [
        "models:",
        f"  - name: {model}",
        "    calibration:",
        f"      nodes_to_exclude: [{', '.join(nodes)}]",
    ]

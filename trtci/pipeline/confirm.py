"""Re-measuring suspected regressions before a run reports them.

A busy moment on a shared runner slows one measurement far more often than two in a row, so each series judged a
regression is benchmarked again (`confirm`) from the recipe its first measurement left (`Remeasure`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np

from trtci.backends.base import Backend, LoadRequest
from trtci.config import BenchSettings, CompareSettings
from trtci.errors import BackendError
from trtci.pipeline.merge_base import AB_METHOD
from trtci.pipeline.progress import Progress, Silent
from trtci.results import Comparison, RunResult
from trtci.store.database import Store
from trtci.verdict.latency import compare


@dataclass
class Remeasure:
    """What it takes to benchmark a series again: its backend, load request, inputs and settings."""

    backend: Backend
    request: LoadRequest
    feeds: dict[str, np.ndarray]
    settings: BenchSettings


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
    progress = progress or Silent()
    left = settings.confirm_budget_s
    suspects = [  # an A/B verdict is already drift-free and measured until it was sure: not re-measured
        i
        for i, c in enumerate(result.comparisons)
        if c.verdict == "regression" and not c and c.series_id in remeasure and c.method != AB_METHOD
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

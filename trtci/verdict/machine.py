"""The machine's speed: each run's canary against the base branch's, as an index history comparisons divide by.

A canary is a fixed tiny model timed on each backend and device at the start and at the end of a run
(trtci.pipeline.canary). Its median over the base runs' is the machine speed index of this run: 1.4 reads "this
runner is 40% slower than when the base was measured". A history comparison divides its ratio by the index
(ratio of ratios), so a machine that got slower does not read as a model that did. A canary that moved more than
its noise, against its history or between the start and the end of the run, marks the run noisy: no history
comparison of it can fail the gate (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from trtci.config import CompareSettings
from trtci.results import Canary
from trtci.verdict.stats import normal_quantile, run_noise

# The smallest canary noise assumed: with a short or very quiet history, a canary move of about 2.3 x this
# (at the default confidence) still reads as the machine's jitter, not as a moved machine.
NOISE_FLOOR = 0.02


def judge_canary(canary: Canary, history_ms: list[float], settings: CompareSettings, branch: str | None) -> None:
    """Fill `canary`'s judgement from the medians of the base runs' canaries (newest first): the baseline, the
    index `ratio`, the noise, whether it `moved` beyond the noise, and the `reason`."""
    z = normal_quantile(settings.confidence)
    within = abs(math.log(canary.end_ms / canary.start_ms)) if canary.start_ms > 0 and canary.end_ms > 0 else 0.0
    noise = run_noise(history_ms[::-1]) if history_ms else None
    floor = max(noise or 0.0, NOISE_FLOOR)
    canary.noise, canary.history_runs = noise, len(history_ms)
    moved_within = within > z * floor * math.sqrt(2.0)
    text = f"canary {_ms(canary.median_ms)} ms (start {_ms(canary.start_ms)}, end {_ms(canary.end_ms)})"
    if history_ms:
        canary.baseline_ms = float(np.median(history_ms))
        canary.ratio = canary.median_ms / canary.baseline_ms
        spread = z * floor * math.sqrt(1.0 + math.pi / 2.0 / len(history_ms))
        moved_history = abs(math.log(canary.ratio)) > spread
        runs = f" (median of {len(history_ms)} runs)" if len(history_ms) > 1 else ""
        text += f" vs {_ms(canary.baseline_ms)} ms on {branch or 'the base'}{runs}: " + _speed(canary.ratio)
    else:
        moved_history = False
        text += f"; no canary on {branch or 'the base'} yet: the machine's speed is not known against it"
    canary.moved = moved_within or moved_history
    if canary.moved:
        places = (("during this run", moved_within), ("against the base's history", moved_history))
        where = " and ".join(place for place, moved in places if moved)
        text += f"; moved {where} beyond its noise ({floor:.1%}): history comparisons of this run cannot fail the gate"
    canary.reason = text


def machine_index(
    canary: Canary | None, run_canaries: dict[str, float], run_ids: list[str]
) -> tuple[float | None, Callable[[str], float]]:
    """(index, per-run factor) for a history of `run_ids`: the index is this run's canary over the median of those
    runs' canaries (`run_canaries`, run id -> median); the factor of a run scales its latencies to this run's
    machine speed (runs without a canary get the median's). (None, 1.0) where either side has no canary."""
    known = [run_canaries[r] for r in run_ids if r in run_canaries]
    if canary is None or not known or canary.median_ms <= 0:
        return None, lambda run_id: 1.0
    typical = float(np.median(known))
    now = canary.median_ms
    return now / typical, lambda run_id: now / run_canaries.get(run_id, typical)


def _speed(ratio: float) -> str:
    if ratio >= 1.0:
        return f"the machine is {(ratio - 1) * 100:.0f}% slower than the base's history"
    return f"the machine is {(1 / ratio - 1) * 100:.0f}% faster than the base's history"


def _ms(value: float) -> str:
    if not math.isfinite(value) or value <= 0:
        return f"{value:g}"
    decimals = max(0, 2 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"

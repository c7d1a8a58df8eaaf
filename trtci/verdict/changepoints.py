"""Change points in a series' history: where its median latency stepped, for reports and the dashboard.

PELT (Killick, Fearnhead and Eckley 2012) with a squared-error cost computed from cumulative sums, so each step
of the search is one vectorized numpy expression and a 1,000-run history takes milliseconds. Robustness comes
before the search: each value is clipped to within a few noise widths of its rolling median, so one run on a busy
machine cannot open a segment of its own, while a real step (which moves the rolling median too) passes intact.
The penalty per change scales with the series' noise (a robust estimate from successive differences), so the same
call works on any scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from trtci.verdict.stats import MAD_TO_SIGMA

PENALTY_FACTOR = 4.0  # times noise^2 * log(n): at most 3 of 100 noise-only series of 40 show a change (tests)
CLIP_WIDTHS = 3.0  # values further than this many noise widths from their rolling median are outliers


def change_points(values: Sequence[float], *, min_size: int = 3, penalty: float | None = None) -> list[int]:
    """Indices where a new segment starts (0 < i < len(values)), in order; [] when the series is flat.

    Each segment holds at least `min_size` values. `penalty` is the cost of one more change, in squared units of
    `values`; by default PENALTY_FACTOR * noise^2 * log(n), with noise from successive differences.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1, got {min_size}")
    if n < 2 * min_size or not np.isfinite(x).all():
        return []
    noise = MAD_TO_SIGMA * float(np.median(np.abs(np.diff(x)))) / math.sqrt(2.0)
    if noise == 0.0:
        noise = float(np.std(x)) or 1.0
    if penalty is None:
        penalty = PENALTY_FACTOR * noise**2 * math.log(n)
    x = _clip_outliers(x, noise, min_size)
    s1 = np.concatenate(([0.0], np.cumsum(x)))
    s2 = np.concatenate(([0.0], np.cumsum(x * x)))
    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=np.int64)
    candidates = np.array([0], dtype=np.int64)
    for end in range(min_size, n + 1):
        ready = end - candidates >= min_size
        starts = candidates[ready]
        length = end - starts
        sums = s1[end] - s1[starts]
        costs = best[starts] + (s2[end] - s2[starts]) - sums * sums / length + penalty
        choice = int(np.argmin(costs))
        best[end], last[end] = costs[choice], starts[choice]
        # PELT pruning: a start that cannot beat the best even without a penalty never will later.
        keep = costs - penalty <= best[end]
        candidates = np.concatenate((starts[keep], candidates[~ready], [end]))
    points = []
    end = n
    while end > 0:
        end = int(last[end])
        if end > 0:
            points.append(end)
    return sorted(points)


def _clip_outliers(x: np.ndarray, noise: float, min_size: int) -> np.ndarray:
    """Each value pulled to within CLIP_WIDTHS noise widths of the median of its 2 * min_size + 1 neighbours."""
    half = max(min_size, 1)
    padded = np.pad(x, half, mode="edge")
    local = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    width = CLIP_WIDTHS * noise
    return np.clip(x, local - width, local + width)

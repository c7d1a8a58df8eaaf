"""Latency statistics the way trtexec computes them, and a host-timed measuring loop.

trtexec reports throughput as queries per second (iterations over the timed wall time). trtci reports
inferences per second: `throughput = batch * iterations / wall_s`, that is trtexec's qps times the batch.
Percentiles, median and the coefficient of variation follow trtexec's definitions, so a user who runs
trtexec on the same samples reads the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from trtci.config import MAX_DURATION_S, BenchSettings
from trtci.errors import BackendError
from trtci.results import BenchResult, LatencyStats

PROGRESS_INTERVAL_S = 0.1
# Bounds of one timed loop, whatever the settings ask: samples kept (8 bytes each here, 4 in the database) and time.
MAX_SAMPLES = 2_000_000
MAX_TIMED_S = MAX_DURATION_S
MAD_TO_SIGMA = 1.4826  # the median absolute deviation times this estimates a normal standard deviation


def percentile(sorted_ms: Sequence[float], p: float) -> float:
    """The p-th percentile of ascending samples, picked as trtexec picks it: sorted[N-1-int((1-p/100)*N)].

    The index is computed in float32, as trtexec does, because float64 or exact arithmetic picks a
    neighbouring sample for some sizes (p99 of 100 samples, p90 of 10); it is clamped to the valid range.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    count = len(sorted_ms)
    if count == 0:
        raise ValueError("percentile of no samples")
    one = np.float32(1)
    excluded = int((one - np.float32(p) / np.float32(100)) * np.float32(count))
    return float(sorted_ms[min(max(count - 1 - excluded, 0), count - 1)])


def _checked(samples_ms: Sequence[float]) -> np.ndarray:
    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0:
        raise BackendError("the benchmark timed no iterations: the backend's timer returned no samples")
    bad = ~np.isfinite(samples) | (samples < 0)
    if bad.any():
        first = float(samples[bad][0])
        raise BackendError(
            f"the backend's timer returned {int(bad.sum())} invalid latencies (first: {first} ms); "
            "latencies must be finite and >= 0"
        )
    return samples


def latency_stats(samples_ms: Sequence[float], *, batch: int, wall_s: float, max_cv: float) -> LatencyStats:
    """trtexec-style statistics of per-iteration latencies in ms, timed over `wall_s` seconds of wall time.

    std is the population standard deviation, cv = std / mean (a fraction; trtexec prints it in percent). The
    result is `unstable` when its robust spread (1.4826 x the median absolute deviation, over the median) is
    above max_cv, and its CV too: a few scheduler outliers inflate the CV far beyond what moves the median, which
    is what trtci compares, so outliers alone do not make a series unstable. Raises BackendError when the
    samples are empty, NaN or negative.
    """
    samples = _checked(samples_ms)
    if not wall_s > 0:
        raise BackendError(f"the backend's timer returned a wall time of {wall_s} s; it must be > 0")
    mean = float(samples.mean())
    std = float(samples.std())
    cv = std / mean if mean > 0 else 0.0
    median = float(np.median(samples))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(samples - median))) / median if median > 0 else 0.0
    ordered: list[float] = np.sort(samples).tolist()
    return LatencyStats(
        min=ordered[0],
        mean=mean,
        median=median,
        p90=percentile(ordered, 90),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        std=std,
        cv=cv,
        iterations=len(ordered),
        throughput=batch * len(ordered) / wall_s,
        unstable=min(spread, cv) > max_cv,
        spread=spread,
    )


def collect(
    samples_ms: list[float],
    *,
    batch: int,
    wall_s: float,
    warmup_ms: float,
    settings: BenchSettings,
    timer: str,
    extra: dict | None = None,
) -> BenchResult:
    """A BenchResult from latencies a backend timed itself (CUDA events, for example)."""
    return BenchResult(
        stats=latency_stats(samples_ms, batch=batch, wall_s=wall_s, max_cv=settings.max_cv),
        samples_ms=[float(s) for s in samples_ms],
        warmup_ms=warmup_ms,
        duration_s=wall_s,
        timer=timer,
        extra=dict(extra or {}),
    )


def _warm_up(run_once: Callable[[], object], warmup_s: float) -> float:
    """Call run_once at least once and until warmup_s has passed; return the seconds spent."""
    perf = time.perf_counter
    start = perf()
    run_once()
    now = perf()
    while now - start < warmup_s:
        run_once()
        now = perf()
    return now - start


def _ignore_progress(fraction: float) -> None:
    return None


def _timed_loop(
    run_once: Callable[[], object],
    duration_s: float,
    min_iterations: int,
    progress: Callable[[float], None] | None,
) -> tuple[list[float], float, str | None]:
    """Per-call latencies in seconds, the wall seconds of the whole loop, and what cut it short, if anything.

    The loop ends once `duration_s` has passed and `min_iterations` calls were timed, and at the latest after
    MAX_SAMPLES calls ("sample limit") or MAX_TIMED_S seconds ("time limit"), whatever `min_iterations` asks:
    a fast model timed for an hour would otherwise fill the memory with samples, and a slow one asked for a
    million iterations would run for days. The loop body is kept as small as a hand-written timing loop: two
    perf_counter calls, one append, and one float compare that only rarely leads to the checks and the progress
    callback.
    """
    perf = time.perf_counter
    samples: list[float] = []
    append = samples.append
    report = progress if progress is not None else _ignore_progress
    start = perf()
    deadline = start + duration_s
    give_up = start + max(duration_s, MAX_TIMED_S)
    next_report = start + PROGRESS_INTERVAL_S
    check = min(deadline, next_report)  # past the deadline, every call checks min_iterations
    end = start
    for _ in range(MAX_SAMPLES):
        t0 = perf()
        run_once()
        end = perf()
        append(end - t0)
        if end >= check:
            if end >= deadline and len(samples) >= min_iterations:
                return samples, end - start, None
            if end >= give_up:
                return samples, end - start, "time limit"
            if end >= next_report:
                report(min((end - start) / duration_s, len(samples) / min_iterations, 1.0))
                next_report = end + PROGRESS_INTERVAL_S
            check = min(deadline, next_report)
    return samples, end - start, "sample limit"


def measure_host(
    run_once: Callable[[], object],
    settings: BenchSettings,
    batch: int,
    progress: Callable[[float], None] | None = None,
) -> BenchResult:
    """Measure `run_once` with time.perf_counter around each call, the trtexec way.

    Warms up for settings.warmup_ms (at least one call), then times calls until settings.duration_s has passed
    and at least settings.min_iterations calls were timed, or a bound of `_timed_loop` is reached (its name is
    then in `extra["stopped_by"]`). `progress(fraction)` is called at most about ten
    times a second during the timed phase, and once with 1.0 at the end.
    """
    warmup_s = _warm_up(run_once, settings.warmup_ms / 1e3)
    samples_s, wall_s, cut_short = _timed_loop(run_once, settings.duration_s, settings.min_iterations, progress)
    if progress is not None:
        progress(1.0)
    return collect(
        [s * 1e3 for s in samples_s],
        batch=batch,
        wall_s=wall_s,
        warmup_ms=warmup_s * 1e3,
        settings=settings,
        timer="host",
        extra={"stopped_by": cut_short} if cut_short else None,
    )

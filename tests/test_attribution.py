"""Attribution first: what changed since the base decides how a series is judged (trtci.verdict.attribution)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from trtci import __version__
from trtci.config import CompareSettings
from trtci.results import (
    BenchResult,
    Canary,
    DeviceInfo,
    LatencyStats,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
)
from trtci.store.database import Store
from trtci.verdict.attribution import CODE, DEVICE, ENVIRONMENT, NOTHING, attribute, code_changes
from trtci.verdict.gate import judge
from trtci.verdict.latency import compare
from trtci.verdict.machine import judge_canary

OLD = DeviceInfo(kind="cpu", name="Test CPU", details={"isa": ["avx2"], "onnxruntime": "1.17.0", "threads": 0})
NEW = DeviceInfo(kind="cpu", name="Test CPU", details={"isa": ["avx2"], "onnxruntime": "1.18.0", "threads": 0})
OTHER = DeviceInfo(kind="cpu", name="Other CPU", details={"isa": ["avx2"], "onnxruntime": "1.17.0", "threads": 0})


def key(device: DeviceInfo = OLD, **fields) -> SeriesKey:
    base = SeriesKey(model="m", model_hash="a" * 64, precision="fp32", batch=1, backend="onnxruntime", device_id="")
    return replace(base, device_id=device.id, **fields)


def measured(series_key: SeriesKey, median: float, seed: int = 0) -> SeriesResult:
    samples = list(median * np.exp(np.random.default_rng(seed).normal(0.0, 0.01, 200)))
    stats = LatencyStats(
        min=min(samples),
        mean=float(np.mean(samples)),
        median=float(np.median(samples)),
        p90=median,
        p95=median,
        p99=median,
        max=max(samples),
        std=0.0,
        cv=0.01,
        iterations=len(samples),
        throughput=1.0 / median,
        unstable=False,
    )
    return SeriesResult(series_key, BenchResult(stats, samples, warmup_ms=0.0, duration_s=1.0, timer="host"))


def canary(device: DeviceInfo, start: float, end: float | None = None) -> Canary:
    return Canary("onnxruntime", device.id, start, end if end is not None else start, spread=0.01, iterations=100)


def a_run(
    run_id: str,
    series: list[SeriesResult],
    device: DeviceInfo,
    *,
    day: int,
    branch: str = "main",
    base: str | None = None,
    canaries: list[Canary] | None = None,
) -> RunResult:
    context = RunContext(run_id, f"2026-11-{day:02d}T08:00:00Z", commit=f"{day:040d}", branch=branch, base_branch=base)
    return RunResult(context, [device], series, canaries=canaries or [])


@pytest.fixture
def store():
    with Store(":memory:") as store:
        yield store


def history(store: Store, device: DeviceInfo = OLD, median: float = 1.0, canary_ms: float | None = None) -> None:
    for day in (1, 2, 3, 4, 5):
        canaries = [canary(device, canary_ms * (1 + 0.002 * day))] if canary_ms is not None else []
        series = [measured(key(device), median, seed=day)]
        store.record_run(a_run(f"main-{day}", series, device, day=day, canaries=canaries))


def test_what_changed_is_named_and_sorted_into_its_kind():
    same = attribute(key(), OLD, __version__, key(), OLD, __version__)
    assert (same.kind, same.changes, same.words) == (NOTHING, (), "nothing")
    model = attribute(key(model_hash="b" * 64), OLD, __version__, key(), OLD, __version__)
    assert (model.kind, model.changes) == (CODE, ("model",))
    upgrade = attribute(key(NEW), NEW, __version__, key(), OLD, __version__)
    assert (upgrade.kind, upgrade.changes) == (ENVIRONMENT, ("onnxruntime 1.17.0 -> 1.18.0",))
    trtci = attribute(key(), OLD, __version__, key(), OLD, "0.0.1")
    assert (trtci.kind, trtci.changes) == (ENVIRONMENT, (f"trtci 0.0.1 -> {__version__}",))
    moved = attribute(key(OTHER), OTHER, __version__, key(), OLD, __version__)
    assert (moved.kind, moved.changes) == (DEVICE, ("device Test CPU -> Other CPU",))
    both = attribute(key(NEW, options_hash="x"), NEW, __version__, key(), OLD, __version__)
    assert both.kind == CODE and both.words == "build settings, onnxruntime 1.17.0 -> 1.18.0"
    assert code_changes({"calibration": [1], "threads": 0}, {"calibration": [2], "threads": 0}) == ["calibration data"]
    assert code_changes({"shapes": 1, "calibration": 1}, {"shapes": 2, "calibration": 2}) == [
        "calibration data",
        "build settings",
    ]


def test_identical_inputs_are_never_a_regression_and_a_slow_machine_reads_as_drift(store):
    """The issue's re-runs: the same commit measured 64% slower by a machine that slowed down."""
    history(store)
    current = a_run("pr", [measured(key(), 1.646, seed=9)], OLD, day=9, branch="docs", base="main")
    (c,) = compare(current, store, CompareSettings(threshold=0.10))
    assert (c.verdict, c.changed, c.method, c.machine_drift) == ("unchanged", [], "identical-inputs", True)
    assert c.ratio == pytest.approx(1.646, rel=0.01) and c.interval[0] > 1.5  # the numbers are kept
    assert "machine drift: this runner measured it 65% slower" in c.reason and "cannot have changed" in c.reason
    current.comparisons = [c]
    assert judge(current).passed and judge(current).labels == ("unchanged",)
    attributed_off = compare(current, store, CompareSettings(threshold=0.10, attribute=False))
    assert attributed_off[0].verdict == "regression"  # what history alone says, and said before attribution


def test_an_environment_change_is_judged_against_the_old_history_and_warns_by_default(store):
    history(store)
    current = a_run("pr", [measured(key(NEW), 1.3, seed=9)], NEW, day=9, branch="upgrade", base="main")
    (c,) = compare(current, store, CompareSettings(threshold=0.10))
    assert c.verdict == "regression" and c.changed == ["onnxruntime 1.17.0 -> 1.18.0"]
    assert c.baseline == pytest.approx(1.0, rel=0.02) and c.policy == "warn" and c
    assert c.reason.startswith("environment changed (onnxruntime 1.17.0 -> 1.18.0): median 1.30 ms")
    current.comparisons = [c]
    verdict = judge(current)
    assert verdict.passed and verdict.labels == ("warning",) and verdict.warnings == 1 and verdict.regressions == 0
    (strict,) = compare(current, store, CompareSettings(threshold=0.10, environment="fail"))
    assert strict.verdict == "regression" and strict.policy == "fail" and not strict


def test_the_canary_divides_out_a_slower_machine_ratio_of_ratios(store):
    history(store, canary_ms=0.010)
    # ONNX Runtime upgraded on a machine that is now 30% slower: the series' +30% is the machine's
    slow = [canary(NEW, 0.013)]
    current = a_run("pr", [measured(key(NEW), 1.3, seed=9)], NEW, day=9, branch="upgrade", base="main", canaries=slow)
    (c,) = compare(current, store, CompareSettings(threshold=0.10))
    (judged,) = current.canaries
    assert judged.ratio == pytest.approx(1.3 / 1.006, rel=0.01) and judged.history_runs == 5 and judged.moved
    assert c.machine == pytest.approx(1.29, rel=0.02) and c.ratio == pytest.approx(1.0, abs=0.02)
    assert c.method.endswith("+machine") and "machine speed accounted for" in c.reason


def test_a_canary_that_moved_keeps_a_history_comparison_from_failing(store):
    history(store, canary_ms=0.010)
    moving = [canary(NEW, 0.010, 0.0125)]  # 25% slower at the end of the run than at its start
    current = a_run("pr", [measured(key(NEW), 1.3, seed=9)], NEW, day=9, branch="up", base="main", canaries=moving)
    (c,) = compare(current, store, CompareSettings(threshold=0.10, environment="fail"))
    assert current.canaries[0].moved and "moved during this run" in current.canaries[0].reason
    assert c.verdict == "inconclusive" and c and "this run is noisy (the onnxruntime canary moved" in c.reason


def test_judge_canary_without_history_still_watches_the_run_itself():
    steady = canary(OLD, 0.010, 0.0101)
    judge_canary(steady, [], CompareSettings(), "main")
    assert not steady.moved and steady.ratio is None and "no canary on main yet" in steady.reason
    judge_canary(quiet := canary(OLD, 0.010), [0.0100, 0.0101, 0.0099, 0.0100], CompareSettings(), "main")
    assert not quiet.moved and quiet.baseline_ms == pytest.approx(0.0100) and quiet.noise is not None


def test_post_merge_regressions_warn_and_pull_requests_fail(store):
    history(store)
    settings = CompareSettings(threshold=0.10, attribute=False)
    on_main = a_run("main-9", [measured(key(), 1.5, seed=9)], OLD, day=9)
    (c,) = compare(on_main, store, settings)
    assert c.verdict == "regression" and c.policy == "warn" and c
    in_pr = a_run("pr", [measured(key(), 1.5, seed=9)], OLD, day=9, branch="feature", base="main")
    (p,) = compare(in_pr, store, settings)
    assert p.verdict == "regression" and p.policy == "fail" and not p
    (strict,) = compare(on_main, store, settings.model_copy(update={"post_merge": "fail"}))
    assert not strict


def test_alert_either_flags_an_improvement_beyond_the_threshold(store):
    history(store)
    settings = CompareSettings(threshold=0.10, attribute=False, alert="either")
    current = a_run("pr", [measured(key(), 0.6, seed=9)], OLD, day=9, branch="feature", base="main")
    current.comparisons = compare(current, store, settings)
    (c,) = current.comparisons
    assert c.verdict == "improvement" and c.flagged and not c
    verdict = judge(current)
    assert not verdict.passed and verdict.labels == ("flagged-improvement",)
    assert verdict.failure == "gate failed: 1 improvements beyond the threshold (compare.alert: either)"


def test_canaries_are_stored_with_the_run_and_go_with_it(tmp_path):
    with Store(tmp_path / "r.db") as store:
        judged = canary(OLD, 0.01, 0.011)
        judge_canary(judged, [], CompareSettings(), "main")
        store.record_run(a_run("r1", [measured(key(), 1.0)], OLD, day=1, canaries=[judged]))
        assert store.load_run("r1").canaries == [judged]
        store.delete_results([("r1", key().id)])
        assert store.db.execute("SELECT count(*) FROM canaries").fetchone()[0] == 0


def test_ingested_benchmarks_without_the_fixture_are_judged_by_history(store):
    """Their key is a test's name, not the code under test: identical keys say nothing about what changed."""
    from trtci.pipeline.ingest import BACKEND
    from trtci.verdict.attributed import HISTORY_ONLY_BACKEND

    assert HISTORY_ONLY_BACKEND == BACKEND
    generic = key(backend=BACKEND, precision="n/a")
    for day in (1, 2, 3, 4, 5):
        store.record_run(a_run(f"main-{day}", [measured(generic, 1.0, seed=day)], OLD, day=day))
    current = a_run("pr", [measured(generic, 1.5, seed=9)], OLD, day=9, branch="feature", base="main")
    (c,) = compare(current, store, CompareSettings(threshold=0.10))
    assert c.verdict == "regression" and c.changed is None and not c

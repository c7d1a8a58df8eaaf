from __future__ import annotations

import pytest

from trtci.compare import compare
from trtci.config import CompareSettings
from trtci.results import (
    AccuracyResult,
    BenchResult,
    DeviceInfo,
    LatencyStats,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
)
from trtci.store import Store

CPU = DeviceInfo(kind="cpu", name="Test CPU")
MAIN_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def key(model: str) -> SeriesKey:
    return SeriesKey(
        model=model, model_hash="f" * 64, precision="fp16", batch=1, backend="onnxruntime", device_id=CPU.id
    )


def measured(model: str, median: float) -> SeriesResult:
    stats = LatencyStats(
        min=median,
        mean=median,
        median=median,
        p90=median,
        p95=median,
        p99=median,
        max=median,
        std=0.0,
        cv=0.0,
        iterations=3,
        throughput=1000.0 / median,
        unstable=False,
    )
    return SeriesResult(
        key=key(model),
        bench=BenchResult(stats=stats, samples_ms=[median] * 3, warmup_ms=1.0, duration_s=0.01, timer="host"),
    )


def run(
    run_id: str,
    series: list[SeriesResult],
    *,
    branch: str = "main",
    base_branch: str | None = None,
    commit: str | None = MAIN_COMMIT,
    started_at: str = "2026-11-27T08:00:00Z",
) -> RunResult:
    context = RunContext(run_id=run_id, started_at=started_at, commit=commit, branch=branch, base_branch=base_branch)
    return RunResult(context=context, devices=[CPU], series=series)


@pytest.fixture
def store():
    with Store(":memory:") as store:
        yield store


def by_model(comparisons) -> dict:
    return {c.label.split()[0]: c for c in comparisons}


def test_verdicts_against_the_base_branch(store):
    store.record_run(
        run("main-1", [measured("slower", 1.0), measured("faster", 1.0), measured("same", 1.0), measured("gone", 1.0)])
    )
    current = run(
        "pr-1",
        [
            measured("slower", 1.25),
            measured("faster", 0.8),
            measured("same", 1.05),
            measured("fresh", 2.0),
            SeriesResult(key=key("gone"), error="BackendError: parser failed on node Conv_3"),
        ],
        branch="feature",
        base_branch="main",
        commit="9" * 40,
    )
    comparisons = compare(current, store, CompareSettings(threshold=0.10))
    result = by_model(comparisons)
    assert [c.label.split()[0] for c in comparisons] == ["slower", "faster", "same", "fresh", "gone"]
    assert {name: c.verdict for name, c in result.items()} == {
        "slower": "regression",
        "faster": "improvement",
        "same": "unchanged",
        "fresh": "new",
        "gone": "missing",
    }
    slower = result["slower"]
    assert (slower.current, slower.baseline, slower.ratio, slower.threshold) == (1.25, 1.0, 1.25, 0.10)
    assert (slower.baseline_run, slower.baseline_commit, slower.metric) == ("main-1", MAIN_COMMIT, "latency_median_ms")
    assert slower.reason == "median 1.25 ms vs 1.00 ms on main@0123456 (+25.0%, threshold 10%)"
    assert result["faster"].reason == "median 0.800 ms vs 1.00 ms on main@0123456 (-20.0%, threshold 10%)"
    assert "parser failed on node Conv_3" in result["gone"].reason
    assert result["gone"].current is None and result["gone"].baseline == 1.0
    assert result["fresh"].baseline is None and result["fresh"].ratio is None and "main" in result["fresh"].reason
    assert not slower and all(result[name] for name in ("faster", "same", "fresh", "gone"))
    current.comparisons = comparisons
    assert not current and current.regressions == [slower]


def test_threshold_bounds_are_symmetric_in_ratio(store):
    store.record_run(run("main-1", [measured("up", 1.0), measured("down", 1.0), measured("beyond", 1.0)]))
    current = run(
        "pr-1",
        [measured("up", 1.5), measured("down", 1.0 / 1.5), measured("beyond", 0.5)],
        branch="feature",
        base_branch="main",
    )
    result = by_model(compare(current, store, CompareSettings(threshold=0.5)))
    assert result["up"].verdict == "unchanged"  # exactly +50% is not more than the threshold
    assert result["down"].verdict == "unchanged"  # exactly the inverse is not beyond it either
    assert result["beyond"].verdict == "improvement"


def test_latest_main_run_is_the_baseline_and_the_run_itself_never_is(store):
    store.record_run(run("old", [measured("m", 2.0)], started_at="2026-11-26T08:00:00Z"))
    store.record_run(run("new", [measured("m", 1.0)], commit=None, started_at="2026-11-27T08:00:00Z"))
    # Recorded before comparing, on main itself: its own row must not count as its baseline.
    this = run("this", [measured("m", 1.3)], started_at="2026-11-28T08:00:00Z")
    store.record_run(this)
    (comparison,) = compare(this, store, CompareSettings())
    assert (comparison.baseline_run, comparison.baseline, comparison.verdict) == ("new", 1.0, "regression")
    assert "on main (run new)" in comparison.reason


def test_explicit_base_branch_wins(store):
    store.record_run(run("main-1", [measured("m", 1.0)]))
    store.record_run(run("rel-1", [measured("m", 2.0)], branch="release"))
    current = run("pr-1", [measured("m", 2.0)], branch="feature", base_branch="main")
    (comparison,) = compare(current, store, CompareSettings(), base_branch="release")
    assert (comparison.baseline_run, comparison.verdict) == ("rel-1", "unchanged")


def test_without_base_branch_the_runs_own_branch_is_used(store):
    store.record_run(run("feature-1", [measured("m", 1.0)], branch="feature"))
    current = run("feature-2", [measured("m", 1.5)], branch="feature")
    (comparison,) = compare(current, store, CompareSettings())
    assert (comparison.baseline_run, comparison.verdict) == ("feature-1", "regression")


def test_no_branch_known_means_new(store):
    store.record_run(run("main-1", [measured("m", 1.0)]))
    current = run("local", [measured("m", 5.0)], branch=None)
    (comparison,) = compare(current, store, CompareSettings())
    assert comparison.verdict == "new" and "--base-branch" in comparison.reason


def test_series_without_benchmark_or_error_is_not_compared(store):
    accuracy_only = SeriesResult(key=key("acc"), accuracy=AccuracyResult(passed=True, reasons=[], samples=8))
    assert compare(run("r", [accuracy_only]), store, CompareSettings()) == []


def test_comparisons_round_trip_through_the_store(store):
    store.record_run(run("main-1", [measured("m", 1.0)]))
    current = run("pr-1", [measured("m", 1.2)], branch="feature", base_branch="main")
    current.comparisons = compare(current, store, CompareSettings())
    store.record_run(current)
    row = store.db.execute(
        "SELECT verdict, ratio, baseline_run, reason FROM comparisons WHERE run_id = 'pr-1'"
    ).fetchone()
    assert row == ("regression", pytest.approx(1.2), "main-1", current.comparisons[0].reason)

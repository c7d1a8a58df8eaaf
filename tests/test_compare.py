from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError

from tests.models import mlp_classifier
from trtci.config import CompareSettings, parse_config
from trtci.pipeline import run as pipeline
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
from trtci.store.database import Store
from trtci.verdict.abtest import ABResult
from trtci.verdict.latency import compare, decide, decide_ab
from trtci.verdict.policy import stale_acknowledgements
from trtci.verdict.stats import normal_quantile

CPU = DeviceInfo(kind="cpu", name="Test CPU")
MAIN_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def within_run(**settings) -> CompareSettings:
    """Settings that judge on a short history (min_history=1): most tests here build one or two base runs to
    exercise the decision itself; the default, which waits for 3 base runs, has its own test below. They judge
    history itself, so attribution is off (identical inputs would be "unchanged" by construction:
    tests/test_attribution.py) and a run on main fails like a pull request (post_merge: fail)."""
    return CompareSettings(**{"min_history": 1, "attribute": False, "post_merge": "fail", **settings})


def key(model: str) -> SeriesKey:
    return SeriesKey(
        model=model, model_hash="f" * 64, precision="fp16", batch=1, backend="onnxruntime", device_id=CPU.id
    )


def measured(model: str, median: float, samples: list[float] | None = None, **key_fields) -> SeriesResult:
    samples = samples if samples is not None else [median] * 3
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
        key=replace(key(model), **key_fields),
        bench=BenchResult(stats=stats, samples_ms=samples, warmup_ms=1.0, duration_s=0.01, timer="host"),
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
            measured("same", 1.04),  # below the 1 + threshold / 2 floor: too small to matter
            measured("fresh", 2.0),
            SeriesResult(key=key("gone"), error="BackendError: parser failed on node Conv_3"),
        ],
        branch="feature",
        base_branch="main",
        commit="9" * 40,
    )
    comparisons = compare(current, store, within_run(threshold=0.10))
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
    assert slower.reason.startswith("median 1.25 ms vs 1.00 ms on main@0123456 (+25.0%, interval +25.0%..+25.0%")
    assert "run-to-run noise unknown (1 base runs, 3 needed)" in slower.reason
    assert result["faster"].reason.startswith("median 0.800 ms vs 1.00 ms on main@0123456 (-20.0%")
    assert slower.method == "bootstrap" and slower.noise is None and slower.history_runs == 1
    assert "parser failed on node Conv_3" in result["gone"].reason
    assert result["gone"].current is None and result["gone"].baseline == 1.0
    assert result["fresh"].baseline is None and result["fresh"].ratio is None and "main" in result["fresh"].reason
    assert not slower and all(result[name] for name in ("faster", "same", "fresh", "gone"))
    current.comparisons = comparisons
    assert not current and current.regressions == [slower]


def test_half_the_threshold_is_the_floor_of_a_flag_symmetric_in_ratio(store):
    # Samples without spread give a zero-width interval: only the floor 1 + t / 2 decides.
    threshold = 0.5
    floor = 1 + threshold / 2
    models = {"half": floor, "below": floor * 0.99, "down": 1 / floor, "less": 1 / (floor * 0.99)}
    store.record_run(run("main-1", [measured(name, 1.0) for name in models]))
    current = run(
        "pr-1", [measured(name, ratio) for name, ratio in models.items()], branch="feature", base_branch="main"
    )
    result = by_model(compare(current, store, within_run(threshold=threshold)))
    assert result["half"].verdict == "regression"  # exactly t / 2 counts
    assert result["down"].verdict == "improvement"  # and so does its inverse
    assert result["below"].verdict == "unchanged" and result["less"].verdict == "unchanged"


def test_latest_main_run_is_the_baseline_and_the_run_itself_never_is(store):
    store.record_run(run("old", [measured("m", 2.0)], started_at="2026-11-26T08:00:00Z"))
    store.record_run(run("new", [measured("m", 1.0)], commit=None, started_at="2026-11-27T08:00:00Z"))
    # Recorded before comparing, on main itself: its own row must not count as its baseline.
    this = run("this", [measured("m", 1.3)], started_at="2026-11-28T08:00:00Z")
    store.record_run(this)
    (comparison,) = compare(this, store, within_run(window=1))
    assert (comparison.baseline_run, comparison.baseline, comparison.verdict) == ("new", 1.0, "regression")
    assert "on main (run new)" in comparison.reason


def test_explicit_base_branch_wins(store):
    store.record_run(run("main-1", [measured("m", 1.0)]))
    store.record_run(run("rel-1", [measured("m", 2.0)], branch="release"))
    current = run("pr-1", [measured("m", 2.0)], branch="feature", base_branch="main")
    (comparison,) = compare(current, store, within_run(), base_branch="release")
    assert (comparison.baseline_run, comparison.verdict) == ("rel-1", "unchanged")


def test_without_base_branch_the_runs_own_branch_is_used(store):
    store.record_run(run("feature-1", [measured("m", 1.0)], branch="feature"))
    current = run("feature-2", [measured("m", 1.5)], branch="feature")
    (comparison,) = compare(current, store, within_run())
    assert (comparison.baseline_run, comparison.verdict) == ("feature-1", "regression")


def test_no_branch_known_means_new(store):
    store.record_run(run("main-1", [measured("m", 1.0)]))
    current = run("local", [measured("m", 5.0)], branch=None)
    (comparison,) = compare(current, store, within_run())
    assert comparison.verdict == "new" and "--base-branch" in comparison.reason


def test_series_without_benchmark_or_error_is_not_compared(store):
    accuracy_only = SeriesResult(key=key("acc"), accuracy=AccuracyResult(passed=True, reasons=[], samples=8))
    assert compare(run("r", [accuracy_only]), store, within_run()) == []


def test_comparisons_round_trip_through_the_store(store):
    store.record_run(run("main-1", [measured("m", 1.0)]))
    current = run("pr-1", [measured("m", 1.2)], branch="feature", base_branch="main")
    current.comparisons = compare(current, store, within_run())
    store.record_run(current)
    row = store.db.execute(
        "SELECT verdict, ratio, baseline_run, reason FROM comparisons WHERE run_id = 'pr-1'"
    ).fetchone()
    assert row == ("regression", pytest.approx(1.2), "main-1", current.comparisons[0].reason)


def noisy(rng, median: float, n: int = 400, cv: float = 0.03) -> list[float]:
    return (median * np.exp(rng.normal(0.0, cv, n))).tolist()


def main_history(store, rng, medians: list[float], model: str = "m", **key_fields) -> None:
    for i, median in enumerate(medians):
        store.record_run(
            run(
                f"main-{i}",
                [measured(model, median, noisy(rng, median), **key_fields)],
                commit=f"{i:040x}",
                started_at=f"2026-11-{i + 1:02d}T08:00:00Z",
            )
        )


def pr(model_median: float, rng, *, merge_base: str | None = None, **key_fields) -> RunResult:
    samples = noisy(rng, model_median)
    current = run(
        "pr", [measured("m", float(np.median(samples)), samples, **key_fields)], branch="f", base_branch="main"
    )
    current.context.merge_base = merge_base
    return current


def test_baseline_is_the_median_of_the_windows_run_medians_so_one_outlier_run_does_not_move_it(store):
    rng = np.random.default_rng(0)
    main_history(store, rng, [1.0, 1.01, 0.99, 3.0, 1.0, 1.02])  # run 3 hit a busy runner
    (c,) = compare(pr(1.0, rng), store, within_run(window=6))
    assert c.baseline == pytest.approx(1.005) and c.history_runs == 6
    assert c.verdict == "unchanged" and c.method == "bootstrap+history"
    assert c.noise is not None and c.noise < 0.05  # successive differences: one outlier run barely counts


def test_history_noise_widens_the_interval_into_inconclusive_with_advice(store):
    rng = np.random.default_rng(1)
    main_history(store, rng, (np.exp(rng.normal(0.0, 0.12, 8))).tolist())
    (c,) = compare(pr(1.08, rng), store, within_run(threshold=0.05))
    assert c.verdict == "inconclusive" and c.noise > 0.05
    low, high = c.interval
    assert low < 1.05 < high and c.resolution > 0.05  # too noisy to see a change of the threshold
    assert "noise" in c.reason and "trtci ab" in c.reason


def test_quiet_history_lets_a_real_regression_through_and_records_its_numbers(store):
    rng = np.random.default_rng(2)
    main_history(store, rng, (np.exp(rng.normal(0.0, 0.005, 6))).tolist())
    current = pr(1.20, rng)
    current.comparisons = compare(current, store, within_run(threshold=0.05))
    (c,) = current.comparisons
    assert c.verdict == "regression" and c.interval[0] > 1.05 and c.p_value < 1e-6
    # A quiet history resolves changes below the threshold, down to the floor of half of it.
    assert c.resolution == pytest.approx(0.05 / 2)
    store.record_run(current)
    row = store.db.execute("SELECT verdict, ratio FROM comparisons WHERE run_id = 'pr'").fetchone()
    assert row == ("regression", pytest.approx(c.ratio))


def test_baseline_stops_at_the_merge_base(store):
    rng = np.random.default_rng(3)
    main_history(store, rng, [1.0, 1.0, 1.0, 1.5, 1.5])  # main got slower after the PR branched at main-2
    (at_merge_base,) = compare(pr(1.0, rng, merge_base=f"{2:040x}"), store, within_run(window=3))
    assert at_merge_base.baseline_run == "main-2" and at_merge_base.verdict == "unchanged"
    (latest,) = compare(pr(1.0, rng), store, within_run(window=2))
    assert latest.baseline_run == "main-4" and latest.verdict == "improvement"
    (unknown,) = compare(pr(1.0, rng, merge_base="e" * 40), store, within_run(window=2))
    assert unknown.baseline_run == "main-4" and "merge-base eeeeeee was not measured on main" in unknown.reason


def test_another_device_or_options_is_reported_not_judged(store):
    rng = np.random.default_rng(4)
    main_history(store, rng, [1.0, 1.0, 1.0])
    (device,) = compare(pr(5.0, rng, device_id="other-cpu"), store, within_run())
    assert device.verdict == "new" and "another device: not compared" in device.reason
    (options,) = compare(pr(5.0, rng, options_hash="int8-calib-2"), store, within_run())
    assert options.verdict == "new" and "another options: not compared" in options.reason


def test_base_series_this_run_did_not_measure_is_missing(store):
    store.record_run(run("main-1", [measured("kept", 1.0), measured("dropped", 1.0)]))
    current = run("pr", [measured("kept", 1.0)], branch="f", base_branch="main")
    result = by_model(compare(current, store, within_run()))
    assert result["dropped"].verdict == "missing" and result["dropped"].baseline_run == "main-1"
    assert result["kept"].verdict == "unchanged"


def test_decide_classes_follow_the_interval():
    settings = within_run(threshold=0.05)
    assert decide(1.2, None, 0.01, 10, settings)[0] == "regression"
    assert decide(0.8, None, 0.01, 10, settings)[0] == "improvement"
    assert decide(1.0, None, 0.01, 10, settings)[0] == "unchanged"
    verdict, (low, high), resolution = decide(1.0, None, 0.10, 10, settings)
    assert verdict == "inconclusive" and low < 1 / 1.05 and high > 1.05
    assert resolution == pytest.approx(1.0 / low - 1.0)  # a slowdown of this much would just clear 1


def test_a_change_of_the_threshold_is_flagged_when_the_interval_is_narrower_than_half_of_it():
    settings = within_run(threshold=0.05, confidence=0.98)
    z = normal_quantile(settings.confidence)
    history_runs = 10
    inflation = math.sqrt(1 + math.pi / 2 / history_runs)
    # Noise whose interval half-width is just under log(1.05): a 5% change just clears 1 (and the 1.025 floor).
    noise = math.log(1.05) / z / inflation
    verdict, (low, _), _ = decide(1.05, None, noise * 0.99, history_runs, settings)
    assert verdict == "regression" and 1.0 < low < 1.05  # the old rule (whole interval above 1.05) missed it
    # A little more noise: the interval reaches below 1, so the same 5% is inconclusive, not a regression.
    assert decide(1.05, None, noise * 1.01, history_runs, settings)[0] == "inconclusive"
    # A 2% change measured precisely is below the floor of t / 2 and within the bounds: unchanged.
    assert decide(1.02, None, noise / 20, history_runs, settings)[0] == "unchanged"


def test_decide_ab_applies_the_same_rule_to_an_interleaved_result():
    def ab(ratio: float, low: float, high: float) -> ABResult:
        return ABResult(ratio, low, high, rounds=10, elapsed_s=1.0, resolution=0.0, converged=True)

    assert decide_ab(ab(1.10, 1.06, 1.14), 0.10) == "regression"
    assert decide_ab(ab(1.03, 1.01, 1.05), 0.10) == "unchanged"
    assert decide_ab(ab(1.10, 0.98, 1.22), 0.10) == "inconclusive"
    assert decide_ab(ab(0.90, 0.86, 0.94), 0.10) == "improvement"


def pipeline_config(tmp_path, confirm_budget_s: float, **compare):
    mlp_classifier(tmp_path / "mlp.onnx")
    data = {
        "models": [{"path": "mlp.onnx", "precisions": ["fp32"], "batch_sizes": [1]}],
        "database": "results.db",
        "bench": {"warmup_ms": 0, "duration_s": 0.05, "min_iterations": 20},
        "cache_dir": "cache",
        # history is faked with this run's own series key: judged by history, not attribution (identical inputs);
        # and without canaries, whose move between the start and the end of a run on a busy machine would hold it
        "compare": {
            "threshold": 0.10,
            "confirm_budget_s": confirm_budget_s,
            "attribute": False,
            "canary_s": 0,
            **compare,
        },
    }
    return parse_config(data, "test", tmp_path)


def fake_fast_history(config, tmp_path) -> None:
    """Fakes history, not measurement: main's runs claim a tenth of what this machine really measures (a margin
    wide enough that a busy moment on a shared runner cannot make the real measurement look unchanged)."""
    measured_here = pipeline.run(config, RunContext(run_id="scratch", started_at="2026-11-01T08:00:00Z"))
    (series,) = measured_here.series
    with Store(config.database) as store:
        for i in range(3):
            fast = [x / 10 for x in series.bench.samples_ms]
            fake = measured("x", float(np.median(fast)), fast)
            store.record_run(
                run(f"main-{i}", [replace(fake, key=series.key)], started_at=f"2026-11-0{i + 2}T08:00:00Z")
            )


@pytest.mark.parametrize("budget", [5.0, 0.0])
def test_a_real_regression_is_re_measured_before_it_fails_the_run(tmp_path, budget):
    config = pipeline_config(tmp_path, budget)
    fake_fast_history(config, tmp_path)
    pr_context = RunContext(run_id="pr", started_at="2026-11-10T08:00:00Z", branch="f", base_branch="main")
    result = pipeline.run(config, pr_context)
    (c,) = result.comparisons
    assert c.verdict == "regression" and c.ratio > 3  # ten times slower than the faked history
    if budget:
        assert c.confirmed is True and "confirmed by a re-measurement of" in c.reason
    else:
        assert c.confirmed is None and "not re-measured: the confirmation budget" in c.reason
    with Store(config.database) as store:
        (stored,) = store.load_run("pr").comparisons
    assert stored.confirmed is c.confirmed  # kept in the comparison's extra JSON


def test_a_series_threshold_overrides_the_global_one_by_label_or_id(store):
    store.record_run(run("main-1", [measured("loose", 1.0), measured("by-id", 1.0), measured("plain", 1.0)]))
    current = run(
        "pr", [measured("loose", 1.3), measured("by-id", 1.3), measured("plain", 1.3)], branch="f", base_branch="main"
    )
    thresholds = {current.series[0].key.label: 0.8, current.series[1].key.id: 0.8}
    result = by_model(compare(current, store, within_run(threshold=0.10, thresholds=thresholds)))
    # +30% is below half of 80%, and inside it: unchanged where overridden, a regression under the global 10%.
    assert {name: c.verdict for name, c in result.items()} == {
        "loose": "unchanged",
        "by-id": "unchanged",
        "plain": "regression",
    }
    assert result["loose"].threshold == 0.8 and result["plain"].threshold == 0.10


def test_a_known_regression_is_acknowledged_by_config_label_or_id_and_keeps_its_numbers(store):
    store.record_run(run("main-1", [measured("by-label", 1.0), measured("by-id", 1.0), measured("plain", 1.0)]))
    current = run(
        "pr",
        [measured("by-label", 1.3), measured("by-id", 1.3), measured("plain", 1.3)],
        branch="f",
        base_branch="main",
    )
    acknowledge = {current.series[0].key.label: "new tokenizer, tracked in #12", current.series[1].key.id: "expected"}
    plain = by_model(compare(current, store, within_run()))
    result = by_model(compare(current, store, within_run(acknowledge=acknowledge)))
    assert {name: c.verdict for name, c in result.items()} == {
        "by-label": "acknowledged",
        "by-id": "acknowledged",
        "plain": "regression",
    }
    assert result["by-label"].acknowledgement == "acknowledged in trtci.yml: new tokenizer, tracked in #12"
    assert result["by-id"].acknowledgement == "acknowledged in trtci.yml: expected"
    assert result["plain"].acknowledgement == ""
    for name in ("by-label", "by-id"):
        assert result[name]  # passes the gate
        before, after = plain[name], result[name]
        assert before.verdict == "regression"
        assert (after.ratio, after.interval, after.current, after.baseline, after.reason) == (
            before.ratio,
            before.interval,
            before.current,
            before.baseline,
            before.reason,
        )
    current.comparisons = list(result.values())
    assert current.regressions == [result["plain"]] and not current


def test_the_pr_label_accepts_every_regression_and_a_config_reason_wins(store):
    store.record_run(run("main-1", [measured("slower", 1.0), measured("named", 1.0), measured("faster", 1.0)]))
    current = run(
        "pr",
        [measured("slower", 1.3), measured("named", 1.3), measured("faster", 0.7)],
        branch="f",
        base_branch="main",
    )
    current.context.labels = ["bug", "trtci:accept-regression"]
    settings = within_run(acknowledge={current.series[1].key.label: "known"})
    result = by_model(compare(current, store, settings))
    assert result["slower"].verdict == "acknowledged"
    assert result["slower"].acknowledgement == "acknowledged by the PR label trtci:accept-regression"
    assert result["named"].acknowledgement == "acknowledged in trtci.yml: known"
    assert result["faster"].verdict == "improvement" and result["faster"].acknowledgement == ""
    current.context.labels = ["bug", "trtci:accept-regressions"]  # a near miss accepts nothing
    assert by_model(compare(current, store, within_run()))["slower"].verdict == "regression"


def test_an_acknowledgement_naming_no_series_of_the_run_is_a_warning():
    current = run("pr", [measured("kept", 1.0)])
    settings = within_run(
        acknowledge={current.series[0].key.label: "a", current.series[0].key.id: "b", "renamed fp16 b1 x": "c"}
    )
    (warning,) = stale_acknowledgements(current, settings)
    assert "'renamed fp16 b1 x'" in warning and "no series of this run" in warning
    assert stale_acknowledgements(current, within_run()) == []


def test_an_acknowledgement_needs_a_reason():
    with pytest.raises(ValidationError):
        within_run(acknowledge={"x fp16 b1 onnxruntime": ""})


def test_an_acknowledged_regression_passes_the_run_and_is_not_re_measured(tmp_path):
    acknowledge = {"mlp fp32 b1 onnxruntime": "slower by design", "gone fp32 b1 onnxruntime": "stale"}
    config = pipeline_config(tmp_path, confirm_budget_s=5.0, acknowledge=acknowledge)
    fake_fast_history(config, tmp_path)
    pr_context = RunContext(run_id="pr", started_at="2026-11-10T08:00:00Z", branch="f", base_branch="main")
    result = pipeline.run(config, pr_context)
    (c,) = result.comparisons
    assert c.verdict == "acknowledged" and c.ratio > 3 and c.confirmed is None
    assert result.passed and result.regressions == []
    assert any("'gone fp32 b1 onnxruntime'" in w for w in result.warnings)
    with Store(config.database) as store:
        (stored,) = store.load_run("pr").comparisons
    assert (stored.verdict, stored.acknowledgement) == ("acknowledged", "acknowledged in trtci.yml: slower by design")


def test_by_default_a_short_history_does_not_judge_a_change(store):
    """One base run says nothing about drift between runs: +25% is inconclusive (passes the gate) until 3 exist."""
    store.record_run(run("main-1", [measured("slower", 1.0)]))
    current = run("pr", [measured("slower", 1.25)], branch="feature", base_branch="main", commit="9" * 40)
    (short,) = compare(current, store, CompareSettings(threshold=0.10, attribute=False))
    assert short.verdict == "inconclusive" and short
    assert "judged once the base branch has 3 runs" in short.reason
    for i in (2, 3):
        store.record_run(run(f"main-{i}", [measured("slower", 1.0)], started_at=f"2026-11-2{i}T08:00:00Z"))
    (judged,) = compare(current, store, CompareSettings(threshold=0.10, attribute=False))
    assert judged.verdict == "regression" and not judged

"""The run's own verdict: which failures the gate counts under each --fail-on choice."""

from __future__ import annotations

from tests.sample_runs import passing_run, sample_run
from trtci.verdict.gate import judge


def test_gate_counts_what_fail_on_names():
    run = sample_run()  # one accuracy failure (and one errored series) and one regression
    accuracy, regressions = len(run.accuracy_failures), len(run.regressions)
    assert accuracy >= 1 and regressions >= 1
    both = judge(run, "both").failure
    assert f"{accuracy} series failed accuracy" in both and f"{regressions} performance regressions" in both
    assert "performance" not in judge(run, "accuracy").failure and "accuracy" in judge(run, "accuracy").failure
    assert "accuracy" not in judge(run, "performance").failure and "performance" in judge(run, "performance").failure
    assert judge(run, "none").failure == ""
    assert not run


def test_a_passing_run_passes_every_gate():
    run = passing_run()
    assert run and all(judge(run, choice).failure == "" for choice in ("both", "accuracy", "performance", "none"))

"""The run's own verdict: which failures the gate counts under each --fail-on choice."""

from __future__ import annotations

from test_report import passing_run, sample_run


def test_gate_counts_what_fail_on_names():
    run = sample_run()  # one accuracy failure (and one errored series) and one regression
    accuracy, regressions = len(run.accuracy_failures), len(run.regressions)
    assert accuracy >= 1 and regressions >= 1
    both = run.gate_failure("both")
    assert f"{accuracy} series failed accuracy" in both and f"{regressions} performance regressions" in both
    assert "performance" not in run.gate_failure("accuracy") and "accuracy" in run.gate_failure("accuracy")
    assert "accuracy" not in run.gate_failure("performance") and "performance" in run.gate_failure("performance")
    assert run.gate_failure("none") == ""
    assert not run


def test_a_passing_run_passes_every_gate():
    run = passing_run()
    assert run and all(run.gate_failure(choice) == "" for choice in ("both", "accuracy", "performance", "none"))

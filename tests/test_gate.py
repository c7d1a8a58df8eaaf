"""The merge gate (trtci.verdict.gate): what fails under each --fail-on, the counts behind it, the words and
line that say it, and each series' label; the JSON summary and `trtci status` carry the same verdict."""

from __future__ import annotations

import dataclasses

import pytest

from tests.sample_runs import acknowledged_run, passing_run, sample_run
from trtci.errors import ConfigError
from trtci.github.checks import verdict_from_json_summary
from trtci.report.json_summary import summary_dict, write_summary
from trtci.results import RunResult
from trtci.verdict.gate import COUNTS, FAIL_ON, FAILING_VERDICTS, SERIES_VERDICTS, RunVerdict, judge, series_verdict

RUNS = {"sample": sample_run, "passing": passing_run, "acknowledged": acknowledged_run}


def only(run: RunResult, **kept) -> RunResult:
    """`run` with only the failures named in `kept` (series, comparisons, accuracy_changes) left in it."""
    series = [s for s in run.series if s.passed] + (run.accuracy_failures if kept.get("series") else [])
    comparisons = [c for c in run.comparisons if c or kept.get("comparisons")]
    changes = [c for c in run.accuracy_changes if c or kept.get("accuracy_changes")]
    return dataclasses.replace(run, series=series, comparisons=comparisons, accuracy_changes=changes)


@pytest.mark.parametrize(
    "kept, failing_under",
    [
        ({}, set()),
        ({"series": True}, {"both", "accuracy"}),
        ({"accuracy_changes": True}, {"both", "accuracy"}),
        ({"comparisons": True}, {"both", "performance"}),
    ],
    ids=["nothing", "accuracy-failure", "accuracy-regression", "performance-regression"],
)
def test_fail_on_chooses_which_failures_count(kept, failing_under):
    run = only(sample_run(), **kept)
    for fail_on in FAIL_ON:
        verdict = judge(run, fail_on)
        fails = fail_on in failing_under
        assert bool(verdict) is not fails and verdict.exit_code == (1 if fails else 0), fail_on
        assert verdict.line == (verdict.failure if fails else "gate passed")
        assert verdict.failure.startswith("gate failed: ") if fails else verdict.failure == ""


@pytest.mark.parametrize("name", RUNS)
def test_the_gate_under_both_is_the_runs_own_verdict(name):
    run = RUNS[name]()
    assert judge(run).passed == run.passed == judge(run, "both").passed
    assert judge(run, "none")


def test_counts_and_failure_text_name_the_numbers():
    verdict = judge(sample_run())
    assert verdict.counts == {
        "series": 7,
        "devices": 2,
        "regressions": 1,
        "acknowledged": 0,
        "accuracy_failures": 1,
        "errors": 1,
        "improvements": 1,
        "new": 1,
        "missing": 1,
        "slower_than_fp32": 2,
        "accuracy_regressions": 1,
        "warnings": 0,
        "flagged_improvements": 0,
    }
    assert verdict.words == "1 regression, 1 accuracy regression, 1 accuracy failure, 1 error"
    assert verdict.failure == (
        "gate failed: 2 series failed accuracy or did not run, 1 accuracy regressions against the base branch, "
        "1 performance regressions"
    )
    assert judge(sample_run(), "performance").failure == "gate failed: 1 performance regressions"
    assert judge(passing_run()).words == "pass"


def test_counts_are_the_verdicts_numbers_in_json_order():
    numbers = [f.name for f in dataclasses.fields(RunVerdict) if f.type == "int"]
    assert list(COUNTS) == numbers
    assert list(summary_dict(sample_run())["counts"]) == list(COUNTS)


@pytest.mark.parametrize("name", RUNS)
def test_labels_follow_the_series_and_a_failing_label_means_a_failing_gate(name):
    run = RUNS[name]()
    verdict = judge(run)
    assert len(verdict.labels) == len(run.series) and set(verdict.labels) <= set(SERIES_VERDICTS)
    assert verdict.passed == (not set(verdict.labels) & set(FAILING_VERDICTS))
    assert [r["verdict"] for r in summary_dict(run)["results"]] == list(verdict.labels)


def test_a_series_label_takes_the_worst_of_its_verdicts():
    run = sample_run()
    labels = dict(zip((s.key.label for s in run.series), judge(run).labels))
    errored = next(s for s in run.series if s.error is not None)
    assert labels[errored.key.label] == "error"
    failed = next(s for s in run.series if s.error is None and not s.passed)
    assert labels[failed.key.label] == "fail-accuracy"
    (regression,) = run.regressions
    assert series_verdict(errored, regression) == "error"
    assert series_verdict(dataclasses.replace(errored, error=None, accuracy=None), regression) == "regression"
    assert series_verdict(dataclasses.replace(errored, error=None, accuracy=None), None) == "pass"


def test_an_unknown_fail_on_is_an_input_error():
    with pytest.raises(ConfigError, match="both, accuracy, performance, none"):
        judge(sample_run(), "latency")


@pytest.mark.parametrize("name", RUNS)
def test_the_json_summary_carries_the_same_verdict_to_trtci_status(name, tmp_path):
    run = RUNS[name]()
    write_summary(run, tmp_path / "summary.json")
    read = verdict_from_json_summary(tmp_path / "summary.json")
    verdict = judge(run)
    assert (read.passed, read.counts, read.words) == (verdict.passed, verdict.counts, verdict.words)

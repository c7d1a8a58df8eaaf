"""The merge gate: the one place that decides whether a run passes, and says so.

The earlier verdicts are already made and carried by the results: each series' accuracy check against FP32
(`SeriesResult.passed`), each latency comparison with the base branch and each accuracy change against it
(`bool(comparison)`, `bool(change)`). The gate only combines them: which failures count under `--fail-on`, the
counts behind the decision, the line that states it, and one verdict label per series. The JSON summary, the
report, the console, `trtci status` and the exit codes of `trtci run` and `trtci merge` all read it from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trtci.errors import EXIT_GATE_FAILED, EXIT_OK, ConfigError
from trtci.results import AccuracyChange, Comparison, RunResult, SeriesResult
from trtci.verdict.speedup import slower_than_fp32

# What `--fail-on` may name, and which checks each choice counts.
FAIL_ON = ("both", "accuracy", "performance", "none")
_CHECKS = {"both": ("accuracy", "performance"), "accuracy": ("accuracy",), "performance": ("performance",), "none": ()}

# Each series' verdict label, worst first (docs/json-summary.md). The FAILING_VERDICTS fail the gate under
# --fail-on both; "acknowledged" is a regression accepted with a reason and passes; "warning" is a regression its
# policy only reports (post-merge, an environment change); "flagged-improvement" an improvement beyond the
# threshold under `compare.alert: either`.
SERIES_VERDICTS = (
    "error",
    "fail-accuracy",
    "accuracy-regression",
    "regression",
    "flagged-improvement",
    "acknowledged",
    "warning",
    "inconclusive",
    "improvement",
    "unchanged",
    "new",
    "pass",
)
FAILING_VERDICTS = ("error", "fail-accuracy", "accuracy-regression", "regression", "flagged-improvement")

# The counts behind a verdict, in the order of the JSON summary's `counts`.
COUNTS = (
    "series",
    "devices",
    "regressions",
    "acknowledged",
    "accuracy_failures",
    "errors",
    "improvements",
    "new",
    "missing",
    "slower_than_fp32",
    "accuracy_regressions",
    "warnings",
    "flagged_improvements",
)


def comparisons_by_series(run: RunResult) -> dict[str, Comparison]:
    """The run's comparisons keyed by series id (the last one wins if a series was compared twice)."""
    return {c.series_id: c for c in run.comparisons}


def accuracy_changes_by_series(run: RunResult) -> dict[str, AccuracyChange]:
    """Each series' accuracy change: the one of its variant (every batch shares one accuracy check)."""
    keys = {s.key.id: s.key for s in run.series}
    by_variant = {keys[c.series_id].variant: c for c in run.accuracy_changes if c.series_id in keys}
    return {s.key.id: by_variant[s.key.variant] for s in run.series if s.key.variant in by_variant}


def series_verdict(
    series: SeriesResult, comparison: Comparison | None, accuracy_change: AccuracyChange | None = None
) -> str:
    """One label of SERIES_VERDICTS for a series, from its error, accuracy verdict, accuracy change and comparison.

    An error outranks an accuracy failure, which outranks an accuracy regression against the base branch, which
    outranks the comparison's verdict; a series with none of these is "pass".
    """
    if series.error is not None:
        return "error"
    if series.accuracy is not None and not series.accuracy.passed:
        return "fail-accuracy"
    if accuracy_change is not None and not accuracy_change:
        return "accuracy-regression"
    if comparison is not None:
        if comparison.flagged and comparison:
            return "warning"
        return "flagged-improvement" if comparison.verdict == "improvement" and not comparison else comparison.verdict
    return "pass"


@dataclass(frozen=True)
class RunVerdict:
    """The gate's verdict on a run under `fail_on`, with the counts that led to it. `bool(verdict)` is the
    decision; `labels` holds each series' verdict label, in the run's series order."""

    passed: bool
    series: int
    devices: int
    regressions: int
    acknowledged: int  # regressions accepted with a reason (compare.acknowledge or a PR label): they pass
    accuracy_failures: int  # series whose accuracy check failed (errors are counted apart)
    errors: int
    improvements: int
    new: int
    missing: int  # series on the base branch that this run did not measure
    slower_than_fp32: int
    accuracy_regressions: int  # variants whose top-1 fell against the base branch's (not acknowledged)
    warnings: int = 0  # regressions (and flagged improvements) their policy only reports: post-merge, environment
    flagged_improvements: int = 0  # improvements beyond the threshold that fail (compare.alert: either)
    fail_on: str = "both"
    labels: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.passed

    @property
    def counts(self) -> dict[str, int]:
        """The numbers behind the verdict, as the JSON summary's `counts`."""
        return {name: getattr(self, name) for name in COUNTS}

    @property
    def failed_series(self) -> int:
        """Series that failed accuracy or did not run (errored)."""
        return self.accuracy_failures + self.errors

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_GATE_FAILED

    @property
    def words(self) -> str:
        """'pass', or what failed: '2 regressions, 1 accuracy failure, 1 error'."""
        if self.passed:
            return "pass"
        counts = [
            (self.regressions, "regression", "regressions"),
            (self.flagged_improvements, "flagged improvement", "flagged improvements"),
            (self.accuracy_regressions, "accuracy regression", "accuracy regressions"),
            (self.accuracy_failures, "accuracy failure", "accuracy failures"),
            (self.errors, "error", "errors"),
        ]
        return ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts if n)

    @property
    def failure(self) -> str:
        """Why the gate fails under `fail_on`, e.g. 'gate failed: 2 performance regressions'; '' when it passes."""
        reasons = _reasons(self.counts, _checks(self.fail_on))
        return "gate failed: " + ", ".join(reasons) if reasons else ""

    @property
    def line(self) -> str:
        """The verdict in one line: the failure, or 'gate passed'."""
        return self.failure or "gate passed"


def judge(run: RunResult, fail_on: str = "both") -> RunVerdict:
    """The gate's verdict on `run` when it counts the checks `fail_on` names (one of FAIL_ON): under "both" a
    series that failed accuracy or did not run, an accuracy regression or a performance regression fails it."""
    checks = _checks(fail_on)
    comparisons = comparisons_by_series(run)
    changes = accuracy_changes_by_series(run)
    verdicts = [c.verdict for c in run.comparisons]
    numbers = {
        "series": len(run.series),
        "devices": len({s.key.device_id for s in run.series} | {d.id for d in run.devices}),
        "regressions": len(run.regressions),
        "acknowledged": verdicts.count("acknowledged"),
        "accuracy_failures": sum(1 for s in run.series if s.error is None and not s.passed),
        "errors": sum(1 for s in run.series if s.error is not None),
        "improvements": verdicts.count("improvement"),
        "new": verdicts.count("new"),
        "missing": verdicts.count("missing"),
        "slower_than_fp32": len(slower_than_fp32(run)),
        "accuracy_regressions": len(run.accuracy_regressions),
        "warnings": len(run.warned),
        "flagged_improvements": len(run.flagged_improvements),
    }
    return RunVerdict(
        passed=not _reasons(numbers, checks),
        **numbers,
        fail_on=fail_on,
        labels=tuple(series_verdict(s, comparisons.get(s.key.id), changes.get(s.key.id)) for s in run.series),
    )


def _checks(fail_on: str) -> tuple[str, ...]:
    if fail_on not in _CHECKS:
        raise ConfigError(f"fail-on {fail_on!r}: choose one of {', '.join(FAIL_ON)}")
    return _CHECKS[fail_on]


def _reasons(counts: Mapping[str, int], checks: tuple[str, ...]) -> list[str]:
    """What fails the gate among `checks`, one phrase each: the single rule every verdict is decided by."""
    failed_series = counts["accuracy_failures"] + counts["errors"]
    reasons = []
    if "accuracy" in checks and failed_series:
        reasons.append(f"{failed_series} series failed accuracy or did not run")
    if "accuracy" in checks and counts["accuracy_regressions"]:
        reasons.append(f"{counts['accuracy_regressions']} accuracy regressions against the base branch")
    if "performance" in checks and counts["regressions"]:
        reasons.append(f"{counts['regressions']} performance regressions")
    if "performance" in checks and counts["flagged_improvements"]:
        reasons.append(f"{counts['flagged_improvements']} improvements beyond the threshold (compare.alert: either)")
    return reasons

"""Which found changes fail the gate and which are only reported: the policies, the thresholds per series and the
accepted regressions.

- Pre-merge (a pull request against its base branch): a regression fails the gate.
- Post-merge (a run judged against its own branch's history, as `main` after a merge): a regression is reported
  with the history's change points and passes (`compare.post_merge: fail` makes it fail).
- A change of environment only (the backend's version, driver/CUDA, trtci): reported, passes
  (`compare.environment: fail` makes it fail).
- Accepted regressions (`compare.acknowledge`, the PR label): "acknowledged", with the reason; they pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from trtci.config import CompareSettings
from trtci.results import AccuracyChange, Comparison, RunResult, SeriesKey
from trtci.verdict.attribution import ENVIRONMENT

ACCEPT_LABEL = "trtci:accept-regression"  # a pull request label that accepts every regression of the PR
FAIL, WARN = "fail", "warn"


def policy_for(kind: str | None, post_merge: bool, settings: CompareSettings) -> str:
    """FAIL or WARN for a series whose change is of `kind` (trtci.verdict.attribution; None: not attributed),
    judged post-merge or not."""
    if post_merge and settings.post_merge == WARN:
        return WARN
    if kind == ENVIRONMENT and settings.environment == WARN:
        return WARN
    return FAIL


def settings_for(key: SeriesKey, settings: CompareSettings) -> CompareSettings:
    """The settings of one series: its own threshold when `thresholds` names its label or id."""
    threshold = settings.thresholds.get(key.label, settings.thresholds.get(key.id))
    return settings if threshold is None else settings.model_copy(update={"threshold": threshold})


def acknowledge(
    comparison: Comparison | AccuracyChange, names: Sequence[str], settings: CompareSettings, labels: list[str]
) -> None:
    """Turn a regression into "acknowledged" when `settings.acknowledge` has an entry for one of `names` (a series
    label or id, a variant label) or the pull request carries ACCEPT_LABEL; the trtci.yml entry's reason wins.
    Other verdicts stay as they are."""
    if comparison.verdict != "regression":
        return
    reason = next((settings.acknowledge[name] for name in names if name in settings.acknowledge), None)
    if reason is not None:
        comparison.acknowledgement = f"acknowledged in trtci.yml: {reason}"
    elif ACCEPT_LABEL in labels:
        comparison.acknowledgement = f"acknowledged by the PR label {ACCEPT_LABEL}"
    else:
        return
    comparison.verdict = "acknowledged"


def stale_acknowledgements(run: RunResult, settings: CompareSettings) -> list[str]:
    """One warning per `compare.acknowledge` entry that names no series of the run (by label or id)."""
    names = {name for s in run.series for name in (s.key.label, s.key.id, s.key.variant_label)}
    return [
        f"compare.acknowledge names {entry!r}, which is no series of this run: remove the entry from trtci.yml "
        "or give a series label as the report shows it"
        for entry in settings.acknowledge
        if entry not in names
    ]

"""History comparisons read in the light of what changed (trtci.verdict.attribution) and of the machine's speed
(trtci.verdict.machine): the base facts a run is attributed against, and how each kind of change turns a history
comparison into its verdict.

- identical inputs: "unchanged"; a move against history beyond the noise is machine drift, named as such;
- an environment change: the base series' history, each run scaled to this run's machine speed by the canary;
- a noisy run (a canary that moved, or machine drift on identical inputs): no history comparison of it can fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from trtci import __version__
from trtci.results import MEDIAN, Canary, Comparison, DeviceInfo, Metric, RunResult, SeriesKey
from trtci.store.database import Store
from trtci.store.queries import Cutoff, HistoryPoint, canary_history, devices_by_id, run_version
from trtci.verdict.attribution import Attribution, attribute, provenance
from trtci.verdict.machine import machine_index

IDENTICAL_METHOD = "identical-inputs"  # Comparison.method of a series none of whose inputs changed
HISTORY_ONLY_BACKEND = "pytest-benchmark"  # ingested generic benchmarks: a test name, not the code under test
CANARY_RUNS = 30  # base runs searched for the canaries of an environment change's history


@dataclass
class BaseFacts:
    """What the base's latest run measured: its series keys, devices and trtci version, and this run's devices."""

    run: RunResult
    base_keys: list[SeriesKey]
    base_devices: dict[str, DeviceInfo] = field(default_factory=dict)
    base_version: str | None = None

    @classmethod
    def load(cls, store: Store, run: RunResult, base_run: str | None, base_keys: list[SeriesKey]) -> BaseFacts:
        devices = devices_by_id(store, sorted({k.device_id for k in base_keys})) if base_keys else {}
        version = run_version(store, base_run) if base_run is not None else None
        return cls(run, base_keys, devices, version)

    def match(self, key: SeriesKey) -> SeriesKey | None:
        """The base series of `key`'s provenance: `key` itself where the base measured it, else the one on a
        device of the same kind and name, else any."""
        same = [k for k in self.base_keys if provenance(k) == provenance(key)]
        if key in same:
            return key
        device = self.device(key.device_id)
        alike = [k for k in same if device is not None and _same_model(self.base_devices.get(k.device_id), device)]
        candidates = alike or same
        return candidates[0] if candidates else None

    def attribute(self, key: SeriesKey, base_key: SeriesKey) -> Attribution:
        return attribute(
            key,
            self.device(key.device_id),
            __version__,
            base_key,
            self.base_devices.get(base_key.device_id),
            self.base_version,
        )

    def device(self, device_id: str) -> DeviceInfo | None:
        return next((d for d in self.run.devices if d.id == device_id), None)

    def canary(self, key: SeriesKey) -> Canary | None:
        return next((c for c in self.run.canaries if (c.backend, c.device_id) == (key.backend, key.device_id)), None)


def identical(comparison: Comparison, branch: str | None) -> None:
    """A series none of whose inputs changed: "unchanged", whatever history says; a history verdict of a change is
    machine drift, kept in the numbers and the reason."""
    if comparison.verdict in ("missing", "new"):
        return
    comparison.machine_drift = comparison.verdict in ("regression", "improvement")
    measured = comparison.reason
    comparison.verdict, comparison.method = "unchanged", IDENTICAL_METHOD
    text = f"nothing this series depends on changed since {branch or 'the base'} (model, build settings, backend "
    text += "and its version, device, trtci): it cannot have changed"
    if comparison.machine_drift and comparison.ratio is not None:
        direction = "slower" if comparison.worse else "faster"
        text += (
            f"; machine drift: this runner measured it {abs(comparison.ratio - 1) * 100:.0f}% {direction} than the "
            "base's history for identical inputs"
        )
    comparison.reason = f"{text}; {measured}" if measured else text


def environment_points(
    store: Store,
    facts: BaseFacts,
    key: SeriesKey,
    points: list[HistoryPoint],
    branch: str,
    until: Cutoff,
    metric: Metric = MEDIAN,
) -> tuple[list[HistoryPoint], float | None]:
    """`points` (the base series' history) scaled to this run's machine speed, and the machine index: each run's
    latencies times this run's canary over that run's canary (ratio of ratios), a throughput divided by it.
    Unscaled where a side lacks one."""
    canary, device = facts.canary(key), facts.device(key.device_id)
    if canary is None or device is None:
        return points, None
    medians = canary_history(
        store, canary, device, branch, until=until, exclude_run=facts.run.context.run_id, window=CANARY_RUNS
    )
    index, factor = machine_index(canary, medians, [p.run_id for p in points])
    slower = (lambda run_id: 1.0 / factor(run_id)) if metric.higher_is_better else factor
    scaled = [
        HistoryPoint(
            p.run_id,
            p.commit,
            p.started_at,
            p.value * slower(p.run_id),
            samples=[s * factor(p.run_id) for s in p.samples_ms],
        )
        for p in points
    ]
    return scaled, index


def environment(comparison: Comparison, attribution: Attribution, index: float | None) -> None:
    """Label a history comparison after a change of environment and say how the machine's speed entered it."""
    comparison.machine = index
    comparison.method += "+machine" if index is not None else ""
    speed = (
        f"machine speed accounted for (this run's canary is {index:.2f}x the base's)"
        if index is not None
        else "machine speed not accounted for (no canary on one side)"
    )
    comparison.reason = f"environment changed ({attribution.words}): {comparison.reason}; {speed}"


def base_regressed(verdicts: list[tuple[str | None, str, float | None]]) -> str:
    """'the base is regressed since commit X (+12%)' when the base branch's latest decisive verdict on a series
    (newest first: regression or improvement; unchanged and inconclusive ones are passed over) was a regression;
    else ''. An acknowledged regression was accepted: not named."""
    for commit, verdict, ratio in verdicts:
        if verdict == "regression":
            change = f" ({(ratio - 1) * 100:+.0f}%)" if ratio is not None else ""
            return f"the base is regressed since commit {(commit or 'unknown')[:7]}{change}"
        if verdict in ("improvement", "acknowledged"):
            return ""
    return ""


def noisy_reasons(canaries: Sequence[Canary], comparisons: Sequence[Comparison]) -> list[str]:
    """Why this run is noisy, one phrase each: canaries that moved, series with identical inputs that drifted."""
    reasons = [f"the {c.backend} canary moved beyond its noise" for c in canaries if c.moved]
    drifted = sum(1 for c in comparisons if c.machine_drift)
    if drifted:
        reasons.append(f"{drifted} series with identical inputs moved against history (machine drift)")
    return reasons


def hold_history_verdicts(comparisons: Sequence[Comparison], reasons: list[str]) -> None:
    """In a noisy run, a history comparison that found a change is "inconclusive": history alone cannot tell a
    slower machine from a slower series. A/B verdicts and identical inputs are not history comparisons."""
    for comparison in comparisons:
        if comparison.verdict in ("regression", "improvement") and _judged_by_history(comparison):
            comparison.reason += (
                f"; {comparison.verdict} not kept: this run is noisy ({'; '.join(reasons)}), and history alone "
                "cannot tell a slower machine from a slower series"
            )
            comparison.verdict = "inconclusive"


def _judged_by_history(comparison: Comparison) -> bool:
    return comparison.method.startswith(("bootstrap", "medians", "values"))


def _same_model(a: DeviceInfo | None, b: DeviceInfo) -> bool:
    return a is not None and (a.kind, a.name) == (b.kind, b.name)

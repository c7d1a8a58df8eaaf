"""Read the base branch's history from the results database for compare: read-only SQL, no writes.

The baseline of a pull request is the base branch as it was when the PR branched off: runs at or before the
run of the merge-base commit, when that commit was measured, else the latest runs. Each series' history is a
window of those runs, newest first, with the raw samples of each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

from trtci.results import MEDIAN, METRICS, AccuracyResult, Canary, DeviceInfo, Metric, SeriesKey
from trtci.store.database import Store
from trtci.store.samples import SAMPLES_FLOAT32, decode_stored_samples

FULL_SAMPLES = "all"  # benchmarks.samples_kept of a row whose raw samples were not thinned


@dataclass(frozen=True)
class Cutoff:
    """The newest base run a baseline may use (None: no limit) and a note on how it was chosen."""

    started_at: str | None
    rowid: int | None
    note: str


@dataclass
class HistoryPoint:
    """One earlier run of a series on the base branch. Its raw samples are decoded when first asked for: compare
    resamples only the latest run's, and the window's other runs contribute their medians."""

    run_id: str
    commit: str | None
    started_at: str
    value: float  # the judged metric's value in that run (its median latency unless another metric is judged)
    samples: list[float] | None = None  # given when already decoded; else decoded from `blob` on first use
    blob: bytes | None = field(default=None, repr=False)
    encoding: str = SAMPLES_FLOAT32
    kept: str = FULL_SAMPLES

    @cached_property
    def samples_ms(self) -> list[float]:
        """The raw samples; none when they were thinned to quantiles, which a bootstrap must not resample."""
        if self.samples is not None:
            return self.samples
        if not self.blob or self.kept != FULL_SAMPLES:
            return []
        return decode_stored_samples(self.blob, self.encoding)


def cutoff(store: Store, branch: str, merge_base: str | None) -> Cutoff:
    """Where the baseline's history ends: the latest run of `merge_base` on `branch`, else no limit."""
    if merge_base is None:
        return Cutoff(None, None, "")
    row = store.db.execute(
        """SELECT started_at, rowid FROM runs WHERE branch = ? AND "commit" = ?
           ORDER BY started_at DESC, rowid DESC LIMIT 1""",
        [branch, merge_base],
    ).fetchone()
    if row is None:
        return Cutoff(None, None, f"merge-base {merge_base[:7]} was not measured on {branch}: latest runs used")
    return Cutoff(row[0], row[1], "")


def history(
    store: Store,
    series_id: str,
    branch: str,
    *,
    until: Cutoff,
    exclude_run: str | None,
    window: int,
    metric: Metric = MEDIAN,
) -> list[HistoryPoint]:
    """Up to `window` runs on `branch` that benchmarked `series_id` and measured `metric`, at or before `until`,
    newest first."""
    limit_sql, limit_args = _until_sql(until)
    assert metric in METRICS.values()  # its column goes into the SQL
    rows = store.db.execute(
        f"""SELECT runs.id, runs."commit", runs.started_at, b.{metric.column}, b.samples_ms, b.samples_encoding,
                   b.samples_kept
            FROM runs JOIN benchmarks AS b ON b.run_id = runs.id
            WHERE b.series_id = ? AND runs.branch = ? AND runs.id IS NOT ? {limit_sql}
            ORDER BY runs.started_at DESC, runs.rowid DESC
            LIMIT ?""",
        [series_id, branch, exclude_run, *limit_args, window],
    ).fetchall()
    return [
        HistoryPoint(run_id, commit, started_at, float(value), blob=blob, encoding=encoding, kept=kept)
        for run_id, commit, started_at, value, blob, encoding, kept in rows
        if value is not None
    ]


def latest_base_series(
    store: Store, branch: str, *, until: Cutoff, exclude_run: str | None
) -> tuple[str | None, list[SeriesKey]]:
    """The latest base run at or before `until` and the series it benchmarked."""
    limit_sql, limit_args = _until_sql(until)
    row = store.db.execute(
        f"""SELECT runs.id FROM runs WHERE runs.branch = ? AND runs.id IS NOT ? {limit_sql}
            AND EXISTS (SELECT 1 FROM benchmarks WHERE benchmarks.run_id = runs.id)
            ORDER BY runs.started_at DESC, runs.rowid DESC LIMIT 1""",
        [branch, exclude_run, *limit_args],
    ).fetchone()
    if row is None:
        return None, []
    rows = store.db.execute(
        """SELECT s.model, s.model_hash, s.precision, s.batch, s.backend, s.device_id, s.quantization, s.options_hash
           FROM benchmarks AS b JOIN series AS s ON s.id = b.series_id WHERE b.run_id = ? ORDER BY b.rowid""",
        [row[0]],
    ).fetchall()
    return row[0], [SeriesKey(*values) for values in rows]


def _until_sql(until: Cutoff) -> tuple[str, list[object]]:
    if until.started_at is None:
        return "", []
    return "AND (runs.started_at < ? OR (runs.started_at = ? AND runs.rowid <= ?))", [
        until.started_at,
        until.started_at,
        until.rowid,
    ]


@dataclass(frozen=True)
class BaseAccuracy:
    """The accuracy row of one base run's series, with its per-sample hits (accuracy.pack_hits)."""

    run_id: str
    commit: str | None
    device_id: str
    samples: int
    hits: str


def latest_accuracy(
    store: Store, key: SeriesKey, accuracy: AccuracyResult, branch: str, *, until: Cutoff, exclude_run: str | None
) -> BaseAccuracy | None:
    """The newest base run at or before `until` that checked `key`'s variant (model name, precision, quantization,
    backend) with per-sample hits of the same metric on the same validation set as `accuracy`: on `key`'s device
    where one did, else on any device. Checks on another set cannot be paired, so they are never the baseline."""
    limit_sql, limit_args = _until_sql(until)
    row = store.db.execute(
        f"""SELECT runs.id, runs."commit", s.device_id, a.samples, a.hits
            FROM accuracy AS a JOIN runs ON runs.id = a.run_id JOIN series AS s ON s.id = a.series_id
            WHERE runs.branch = ? AND runs.id IS NOT ? {limit_sql}
              AND a.hits != '' AND a.hits_metric = ? AND a.validation_hash = ?
              AND s.model = ? AND s.precision = ? AND s.quantization = ? AND s.backend = ?
            ORDER BY s.device_id = ? DESC, runs.started_at DESC, runs.rowid DESC LIMIT 1""",
        [
            branch,
            exclude_run,
            *limit_args,
            accuracy.hits_metric,
            accuracy.validation_hash,
            key.model,
            key.precision,
            key.quantization,
            key.backend,
            key.device_id,
        ],
    ).fetchone()
    return BaseAccuracy(*row) if row is not None else None


def run_version(store: Store, run_id: str) -> str | None:
    """The trtci version that recorded `run_id`: trtci does the timing, so its version is one of a series' inputs."""
    row = store.db.execute("SELECT trtci_version FROM runs WHERE id = ?", [run_id]).fetchone()
    return row[0] if row is not None else None


def devices_by_id(store: Store, ids: list[str]) -> dict[str, DeviceInfo]:
    """The recorded devices of these ids (those the database has)."""
    rows = store.db.execute(
        "SELECT id, kind, name, details FROM devices WHERE id IN (SELECT value FROM json_each(?))", [json.dumps(ids)]
    ).fetchall()
    return {row[0]: DeviceInfo(kind=row[1], name=row[2], details=json.loads(row[3])) for row in rows}


def canary_history(
    store: Store,
    canary: Canary,
    device: DeviceInfo,
    branch: str,
    *,
    until: Cutoff,
    exclude_run: str | None,
    window: int,
) -> dict[str, float]:
    """Run id -> canary median of the latest `window` runs on `branch` at or before `until` that timed this canary
    (version, backend) on a device of the same kind and name (any software version), newest first."""
    limit_sql, limit_args = _until_sql(until)
    rows = store.db.execute(
        f"""SELECT runs.id, c.median_ms FROM canaries AS c JOIN runs ON runs.id = c.run_id
            JOIN devices AS d ON d.id = c.device_id
            WHERE runs.branch = ? AND runs.id IS NOT ? {limit_sql}
              AND c.version = ? AND c.backend = ? AND d.kind = ? AND d.name = ?
            ORDER BY runs.started_at DESC, runs.rowid DESC LIMIT ?""",
        [branch, exclude_run, *limit_args, canary.version, canary.backend, device.kind, device.name, window],
    ).fetchall()
    return {run_id: float(median) for run_id, median in rows}


def previous_commit(store: Store, branch: str, commit: str, *, exclude_run: str | None) -> str | None:
    """The commit of the latest run on `branch` measured at another commit than `commit`, or None."""
    row = store.db.execute(
        """SELECT "commit" FROM runs WHERE branch = ? AND "commit" IS NOT NULL AND "commit" != ? AND id IS NOT ?
           ORDER BY started_at DESC, rowid DESC LIMIT 1""",
        [branch, commit, exclude_run],
    ).fetchone()
    return row[0] if row is not None else None


def base_verdicts(
    store: Store, label: str, branch: str, *, until: Cutoff, exclude_run: str | None, window: int
) -> list[tuple[str | None, str, float | None]]:
    """(commit, verdict, ratio) of the latest `window` comparisons of the series labelled `label` on `branch` at
    or before `until`, newest first: what the base branch's own runs found, whatever model file they measured."""
    limit_sql, limit_args = _until_sql(until)
    return store.db.execute(
        f"""SELECT runs."commit", c.verdict, c.ratio FROM comparisons AS c JOIN runs ON runs.id = c.run_id
            WHERE runs.branch = ? AND c.label = ? AND runs.id IS NOT ? {limit_sql}
            ORDER BY runs.started_at DESC, runs.rowid DESC LIMIT ?""",
        [branch, label, exclude_run, *limit_args, window],
    ).fetchall()


def canary_trend(
    store: Store, *, branch: str | None, last: int
) -> dict[tuple[str, str], list[tuple[str, float, bool]]]:
    """(backend, device name) -> (commit or run id, canary median ms, moved) of its latest `last` runs on
    `branch` (any branch when None), oldest first: the machine's speed over time, for the dashboard."""
    rows = store.db.execute(
        """SELECT c.backend, d.name, coalesce(runs."commit", runs.id), c.median_ms, c.moved
           FROM canaries AS c JOIN runs ON runs.id = c.run_id JOIN devices AS d ON d.id = c.device_id
           WHERE (? IS NULL OR runs.branch = ?) ORDER BY runs.started_at, runs.rowid""",
        [branch, branch],
    ).fetchall()
    trend: dict[tuple[str, str], list[tuple[str, float, bool]]] = {}
    for backend, device, run, median, moved in rows:
        trend.setdefault((backend, device), []).append((run, float(median), bool(moved)))
    return {key: points[-last:] for key, points in trend.items()}

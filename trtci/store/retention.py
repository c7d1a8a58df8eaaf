"""Retention: keep the results database small while the history stays useful.

Per series, a result is kept while it is among the newest `keep_runs` of that series or younger than
`keep_days`; older ones are deleted (a run left with no result goes too). Of the results kept, all but the newest
`full_samples_runs` of each series have their raw samples thinned to a quantile sketch of `sketch_points` values,
which still draws a distribution and answers any percentile to within a sketch step.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from trtci.config import HistorySettings
from trtci.store.database import Store


@dataclass
class RetentionReport:
    results_deleted: int
    runs_deleted: int
    results_thinned: int
    bytes_before: int
    bytes_after: int


def apply_retention(
    store: Store, settings: HistorySettings, *, now: datetime.datetime | None = None, vacuum: bool = True
) -> RetentionReport:
    """Delete and thin what `settings` does not keep, then VACUUM so the file shrinks. Returns what it did."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    before = _size(store)
    expired, to_thin = _plan(store, settings, now)
    runs_deleted = store.delete_results(expired) if expired else 0
    thinned = store.thin_samples(to_thin, settings.sketch_points) if to_thin else 0
    if vacuum:
        store.vacuum()
    return RetentionReport(len(expired), runs_deleted, thinned, before, _size(store))


def _plan(
    store: Store, settings: HistorySettings, now: datetime.datetime
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(results to delete, results to thin), as (run id, series id) pairs, newest-first rank per series."""
    cutoff = (
        (now - datetime.timedelta(days=settings.keep_days)).strftime("%Y-%m-%dT%H:%M:%S")
        if settings.keep_days
        else None
    )
    expired, to_thin = [], []
    for run_id, series_id, started_at, kept, rank in store.results_by_recency():
        recent = cutoff is not None and started_at >= cutoff
        if settings.keep_runs is not None and rank > settings.keep_runs and not recent:
            expired.append((run_id, series_id))
        elif rank > settings.full_samples_runs and kept == "all":
            to_thin.append((run_id, series_id))
    return expired, to_thin


def _size(store: Store) -> int:
    return os.path.getsize(store.path) if store.path != ":memory:" else 0

"""The results database: one SQLite file that every run appends to, documented in docs/schema.md.

`Store` opens (and migrates, trtci.store.migrations) the file, records and loads whole runs (trtci.store.rows),
answers the history and listing queries, and prunes. A run is written in one transaction, so a failed or
interrupted write leaves no row of that run behind.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from trtci.errors import DataError, StoreError
from trtci.results import RunResult
from trtci.store.connection import DatabaseLocked, connect, transaction
from trtci.store.migrations import MIGRATIONS_TABLE, migrate, missing_schema
from trtci.store.rows import LATENCY_COLUMNS, insert_run, json_column, load_run
from trtci.store.runfile import read_runfile, write_runfile
from trtci.store.samples import decode_stored_samples, encode_for_store, quantile_sketch


class AlreadyRecorded(StoreError):
    """The database already holds a run with this id."""


class Store:
    """A results database, opened or created at `path` (":memory:" for a throwaway one) and migrated.

    Statements wait up to `timeout_s` (default: `TRTCI_DB_TIMEOUT`, trtci.store.connection) for another
    process's lock, then raise DatabaseLocked. `db` is its sqlite_utils.Database: the store's own modules query
    through it, and users may read it (docs/schema.md); code outside trtci.store asks these methods instead.
    """

    def __init__(self, path: str | Path, *, timeout_s: float | None = None):
        self.path = str(path)
        self.db = connect(self.path, timeout_s)
        try:
            migrate(self.db, self.path)
        except BaseException:
            self.db.close()
            raise

    def check_writable(self) -> None:
        """Raise StoreError now, before any work, where a run could not be recorded later: a file or directory
        that cannot be written, or a table or column this trtci's schema has and the file lacks (a damaged file).

        The check writes a row and rolls it back, so the file keeps every byte; it waits for a lock like a write.
        """
        lacking = missing_schema(self.db)
        if lacking:
            raise StoreError(
                f"{self.path}: damaged trtci database ({lacking[0]} is missing); restore it from a copy, or point "
                "--db at a new path (`trtci history pull` rebuilds a database from the data branch)"
            )
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES ('trtci-write-check', '')")
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as e:  # a DatabaseLocked is a StoreError already, and says so
            raise StoreError(
                f"{self.path}: cannot write to the database ({e}); make the file and its directory writable, "
                "or point --db at a writable path"
            ) from e

    def record_run(self, run: RunResult) -> None:
        """Write a whole run in one transaction: either every row of it lands, or none does.

        Waits for another process's write lock (see the class); raises DatabaseLocked when it is held longer,
        StoreError for any other reason the run cannot be written."""
        run_id = run.context.run_id
        try:
            with transaction(self.db.conn):
                if self.db.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone():
                    raise AlreadyRecorded(f"{self.path}: run {run_id} is already recorded; each run needs a new run id")
                insert_run(self.db.conn, run)
        except sqlite3.Error as e:
            raise StoreError(
                f"{self.path}: cannot record run {run_id} ({e}); check that the file is writable, "
                "the disk has space and no other process holds a write lock"
            ) from e

    def keep_unrecorded(self, run: RunResult, error: StoreError) -> str:
        """Write `run`, which `record_run` refused with `error`, as a run file beside the database; return one
        line that names it and how to record it later (`trtci db import`), or why it could not be written."""
        directory = Path(self.path).absolute().parent if self.path != ":memory:" else Path.cwd()
        where = str(error).removeprefix(f"{self.path}: ")
        try:
            kept = write_runfile(run, directory)
        except (OSError, OverflowError) as e:  # OverflowError: a sample float32 cannot hold, as the store said
            return f"run {run.context.run_id} was NOT recorded in {self.path} ({where}) nor kept in {directory} ({e})"
        return (
            f"run {run.context.run_id} was NOT recorded in {self.path} ({where}); it is kept in {kept}: "
            f"record it with `trtci db import {kept} --db {self.path}`"
        )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest `limit` runs, newest first, as rows of the `runs` table."""
        rows = self.db.query("SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?", [limit])
        try:
            return [
                {**row, "passed": bool(row["passed"]), "warnings": json_column(row["warnings"], list, "runs.warnings")}
                for row in rows
            ]
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from e

    def has_run(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone() is not None

    def import_run(self, run: RunResult) -> bool:
        """Record `run` unless its id is already here (history pull, fan-in). True when it was recorded; the
        check and the write are one transaction, so two processes importing the same run record it once."""
        try:
            self.record_run(run)
        except AlreadyRecorded:
            return False
        return True

    def import_runfiles(self, paths: list[Path]) -> tuple[list[str], int, list[str]]:
        """Record the run in each run file, each judged alone: (run ids recorded, how many were already here,
        one line per file refused, naming it). A lock held too long stops the import (DatabaseLocked): every
        later file would wait as long."""
        recorded, known, refused = [], 0, []
        for path in paths:
            try:
                run = read_runfile(path)
                if self.import_run(run):
                    recorded.append(run.context.run_id)
                else:
                    known += 1
            except DatabaseLocked:
                raise
            except (DataError, StoreError) as e:
                refused.append(str(e) if str(path) in str(e) else f"{path}: {e}")
        return recorded, known, refused

    def load_run(self, run_id: str) -> RunResult:
        """The run as `record_run` got it, rebuilt from the tables, raw samples included.

        What the database cannot hold comes back in its stored form: samples to the tick (or the quantile sketch
        of a thinned run), an infinite or NaN number inside JSON as None, a non-finite SQNR as inf.
        """
        try:
            run = load_run(self.db, run_id)
        except StoreError as e:
            raise StoreError(f"{self.path}: run {run_id}: {e}") from e
        if run is None:
            raise StoreError(f"{self.path}: no run {run_id}; list the runs with `trtci db runs`")
        return run

    def series_history(
        self, series_id: str, branch: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The benchmarks of one series, oldest first (the latest `limit` of them), on `branch` or on any.

        Each dict has run_id, commit, branch, started_at, the LATENCY_COLUMNS, accuracy (top1, cosine: the
        lowest output cosine, accuracy_passed) and the stored comparison (verdict, ratio) of that run.
        """
        return self.history(series_ids=[series_id], branch=branch, limit=limit).get(series_id, [])

    def history(
        self, *, series_ids: list[str] | None = None, branch: str | None = None, limit: int | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """`series_history` of many series in one query: series id -> its points, oldest first."""
        where, params = ["(:branch IS NULL OR runs.branch = :branch)"], {"branch": branch, "limit": limit}
        if series_ids is not None:
            where.append("b.series_id IN (SELECT value FROM json_each(:ids))")
            params["ids"] = json.dumps(series_ids)
        # The latest `limit` per series, picked in SQL: the dashboard of a long history reads only what it draws.
        latest = f"""SELECT b.run_id, b.series_id FROM (
                SELECT b.run_id, b.series_id, row_number() OVER (
                    PARTITION BY b.series_id ORDER BY runs.started_at DESC, runs.rowid DESC) AS age
                FROM benchmarks AS b JOIN runs ON runs.id = b.run_id WHERE {" AND ".join(where)}) AS b
            WHERE :limit IS NULL OR b.age <= :limit"""
        rows = self.db.query(
            f"""SELECT b.series_id, runs.id AS run_id, runs."commit" AS "commit", runs.branch, runs.started_at,
                       {", ".join(f"b.{column}" for column in LATENCY_COLUMNS.values())},
                       a.top1, a.passed AS accuracy_passed,
                       (SELECT min(o.cosine) FROM accuracy_outputs AS o
                        WHERE o.run_id = b.run_id AND o.series_id = b.series_id) AS cosine,
                       c.verdict, c.ratio
                FROM benchmarks AS b JOIN runs ON runs.id = b.run_id
                LEFT JOIN accuracy AS a ON a.run_id = b.run_id AND a.series_id = b.series_id
                LEFT JOIN comparisons AS c ON c.run_id = b.run_id AND c.series_id = b.series_id
                WHERE (b.run_id, b.series_id) IN ({latest})
                ORDER BY b.series_id, runs.started_at, runs.rowid""",
            params,
        )
        history: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            row["unstable"] = bool(row["unstable"])
            if row["accuracy_passed"] is not None:
                row["accuracy_passed"] = bool(row["accuracy_passed"])
            history.setdefault(row.pop("series_id"), []).append(row)
        return history

    def series(self) -> list[dict[str, Any]]:
        """Every series with its device name, label fields, result count and latest run time."""
        return list(
            self.db.query(
                """SELECT series.*, devices.name AS device, devices.kind AS device_kind,
                          count(b.run_id) AS results, max(runs.started_at) AS latest
                   FROM series JOIN devices ON devices.id = series.device_id
                   LEFT JOIN benchmarks AS b ON b.series_id = series.id LEFT JOIN runs ON runs.id = b.run_id
                   GROUP BY series.id ORDER BY series.model, devices.name, series.precision, series.batch"""
            )
        )

    def results_by_recency(self) -> list[tuple[str, str, str, str | None, int]]:
        """Every result as (run id, series id, started_at, samples_kept, rank), rank 1 being the newest of its
        series; samples_kept is None for a result without a benchmark. What retention plans from."""
        return self.db.execute(
            """SELECT m.run_id, m.series_id, runs.started_at, b.samples_kept,
                      row_number() OVER (PARTITION BY m.series_id ORDER BY runs.started_at DESC, runs.rowid DESC)
               FROM run_series AS m JOIN runs ON runs.id = m.run_id
               LEFT JOIN benchmarks AS b ON b.run_id = m.run_id AND b.series_id = m.series_id"""
        ).fetchall()

    def delete_results(self, pairs: list[tuple[str, str]]) -> int:
        """Delete the results of these (run id, series id) pairs, then the runs left with no result.

        A comparison elsewhere whose baseline was a deleted run keeps its numbers and commit, not the link.
        Returns the number of runs deleted.
        """
        per_series = (
            "accuracy_outputs",
            "accuracy",
            "benchmarks",
            "builds",
            "series_errors",
            "comparisons",
            "accuracy_changes",
            "run_series",
        )
        with transaction(self.db.conn):
            for table in per_series:
                self.db.conn.executemany(f"DELETE FROM {table} WHERE run_id = ? AND series_id = ?", pairs)
            touched = sorted({run_id for run_id, _ in pairs})
            empty = [
                run_id
                for run_id in touched
                if self.db.execute("SELECT 1 FROM run_series WHERE run_id = ? LIMIT 1", [run_id]).fetchone() is None
            ]
            for run_id in empty:
                for table in ("comparisons", "accuracy_changes"):
                    self.db.conn.execute(f"UPDATE {table} SET baseline_run = NULL WHERE baseline_run = ?", [run_id])
                for table in per_series + ("run_devices",):
                    self.db.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
                self.db.conn.execute("DELETE FROM runs WHERE id = ?", [run_id])
        return len(empty)

    def thin_samples(self, pairs: list[tuple[str, str]], points: int) -> int:
        """Replace the raw samples of these results by `points` quantiles. Returns how many were thinned."""
        thinned = 0
        with transaction(self.db.conn):
            for run_id, series_id in pairs:
                row = self.db.execute(
                    """SELECT samples_ms, samples_encoding FROM benchmarks
                       WHERE run_id = ? AND series_id = ? AND samples_kept = 'all'""",
                    [run_id, series_id],
                ).fetchone()
                if row is None:
                    continue
                samples = decode_stored_samples(row[0], row[1])
                if len(samples) <= points:
                    continue
                blob, encoding = encode_for_store(quantile_sketch(samples, points))
                self.db.conn.execute(
                    """UPDATE benchmarks SET samples_ms = ?, samples_encoding = ?, samples_kept = 'quantiles'
                       WHERE run_id = ? AND series_id = ?""",
                    [blob, encoding, run_id, series_id],
                )
                thinned += 1
        return thinned

    def vacuum(self) -> None:
        """Give the space of deleted rows back to the file system."""
        self.db.execute("VACUUM")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

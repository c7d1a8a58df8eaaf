"""An existing results database opened read-only: the listings and exports of `trtci db runs|series|export`.

The connection is opened with `?mode=ro` and only lets statements read (an SQLite authorizer), so a user's
`--sql` can neither change a byte of the file nor write another one (`VACUUM INTO`, `ATTACH`). Rows come
back as dicts in column order, values as SQLite holds them (booleans 0/1, JSON as text, BLOBs as bytes).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from trtci.errors import ConfigError, StoreError
from trtci.store.connection import DatabaseLocked, open_connection
from trtci.store.migrations import MIGRATIONS_TABLE


class ReadOnlyStore:
    """A trtci database at `path`, which must exist and be one trtci created."""

    def __init__(self, path: str | Path):
        self.path = path
        self._conn = _open_readonly(path)

    def runs(self, limit: int) -> list[dict[str, Any]]:
        """The latest `limit` runs, newest first: id, started_at, branch, commit, pr_number, passed."""
        return self.select(
            'SELECT id, started_at, branch, "commit", pr_number, passed FROM runs '
            "ORDER BY started_at DESC, rowid DESC LIMIT ?",
            [limit],
        )

    def series(self) -> list[dict[str, Any]]:
        """Every series with its device name, how many results it has and the latest one's start time."""
        return self.select(
            """SELECT series.id, series.model, devices.name AS device, series.precision, series.quantization,
                      series.batch, series.backend, count(b.run_id) AS results, max(runs.started_at) AS latest
               FROM series JOIN devices ON devices.id = series.device_id
               LEFT JOIN benchmarks AS b ON b.series_id = series.id LEFT JOIN runs ON runs.id = b.run_id
               GROUP BY series.id ORDER BY series.model, devices.name, series.precision, series.batch"""
        )

    def table_names(self) -> set[str]:
        return {row["name"] for row in self.select("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def table(self, name: str) -> list[dict[str, Any]]:
        """Every row of table `name`. Raises ConfigError listing the tables when there is no such table."""
        names = self.table_names()
        if name not in names:
            raise ConfigError(f"no table {name!r} in {self.path}; tables: {', '.join(sorted(names))}")
        return self.select(f'SELECT * FROM "{name}"')

    def select(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """The rows of a query (a user's `--sql` too). Raises ConfigError when SQLite refuses it, writes included."""
        try:
            cursor = self._conn.execute(sql, params or [])
            names = [d[0] for d in cursor.description or []]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        except sqlite3.Error as e:
            raise ConfigError(f"{self.path}: query failed ({e}); the database is opened read-only, SELECT only") from e

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReadOnlyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing trtci database, refusing missing, non-SQLite and foreign files."""
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"{path}: no such database; pass the --db path your runs wrote")
    try:
        conn = open_connection(f"{file.absolute().as_uri()}?mode=ro", str(path), uri=True)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the database ({e}); pass the --db path your runs wrote") from e
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"{path}: not a SQLite database ({e}); pass the --db path your runs wrote") from e
    except DatabaseLocked:
        conn.close()
        raise
    if MIGRATIONS_TABLE not in names:
        conn.close()
        raise StoreError(f"{path}: a SQLite database that trtci did not create (no {MIGRATIONS_TABLE} table)")
    # mode=ro keeps this file's bytes, but ATTACH (and VACUUM INTO, which attaches) would write another file:
    # statements may only read.
    conn.set_authorizer(_read_only)
    return conn


_READS = (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE)


def _read_only(action: int, *_: object) -> int:
    return sqlite3.SQLITE_OK if action in _READS else sqlite3.SQLITE_DENY

"""Opening a results file, and the transaction every write of the store runs in.

Several processes may share one file (parallel jobs on a persistent runner). Every statement waits for another
process's lock, with SQLite's own backoff, up to the lock timeout (`TRTCI_DB_TIMEOUT` seconds, default 120); a
lock still held after that is a DatabaseLocked naming the file, never a raw SQLite error. Writes take the write
lock when their transaction starts (BEGIN IMMEDIATE), so two writers never deadlock half-way. Errors say which
path failed and what to do: a missing directory, a file that is not SQLite, a locked file.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from trtci.errors import StoreError

TIMEOUT_ENV = "TRTCI_DB_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class DatabaseLocked(StoreError):
    """Another process held the database's lock for longer than the lock timeout."""


def lock_timeout_s() -> float:
    """The lock timeout: `TRTCI_DB_TIMEOUT` seconds when set, else DEFAULT_TIMEOUT_S."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 86_400):
        raise StoreError(f"{TIMEOUT_ENV}={raw!r}: give the seconds to wait for a locked database, 0 to 86400")
    return value


class _Connection(sqlite3.Connection):
    """A connection whose lock errors (after the busy timeout ran out) are DatabaseLocked naming the file."""

    path = ""
    timeout_s = 0.0

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as e:
            raise self._locked(e) from e

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as e:
            raise self._locked(e) from e

    def _locked(self, error: sqlite3.OperationalError) -> Exception:
        if getattr(error, "sqlite_errorcode", 0) & 0xFF not in _BUSY_CODES:
            return error
        return DatabaseLocked(
            f"{self.path}: another process held the database's lock for over {self.timeout_s:g} s ({error}); "
            f"run again when it has finished, or wait longer with {TIMEOUT_ENV}=SECONDS"
        )


def open_connection(target: str, path: str, timeout_s: float | None = None, *, uri: bool = False) -> sqlite3.Connection:
    """A plain sqlite3 connection to `target` (a URI when `uri`), whose statements wait up to `timeout_s` (default:
    `lock_timeout_s()`) for another process's lock and then raise DatabaseLocked naming `path`."""
    timeout = lock_timeout_s() if timeout_s is None else timeout_s
    conn = sqlite3.connect(target, timeout=timeout, factory=_Connection, uri=uri)
    conn.path, conn.timeout_s = path, timeout
    return conn


def connect(path: str, timeout_s: float | None = None) -> sqlite_utils.Database:
    """Open the file with foreign keys enforced, refusing paths that cannot hold a database and files that are
    not SQLite. Statements wait up to `timeout_s` (default: `lock_timeout_s()`) for another process's lock."""
    if path != ":memory:":
        parent = Path(path).absolute().parent
        if not parent.is_dir():
            raise StoreError(f"{path}: {parent} is not an existing directory; create it or choose another path")
    try:
        conn = open_connection(path, path, timeout_s)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the database ({e}); check the directory is writable") from e
    try:
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA foreign_keys = ON")
        # Reading the schema is the first access to the file: this is where a non-SQLite file fails.
        db.table_names()
    except DatabaseLocked:
        conn.close()
        raise
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(
            f"{path}: not a SQLite database ({e}); point --db at a trtci results file or a new path"
        ) from e
    return db


@contextmanager
def transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """Commit everything inside the block, or roll all of it back on any exception, Ctrl-C included.

    IMMEDIATE (the default) takes the write lock at BEGIN, waiting for it like any statement: a transaction that
    only later asked for it could meet another writer half-way and fail at once instead of waiting."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (busy, disk full) can leave the transaction open; a RAISE(ROLLBACK) has closed it.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

"""Opening a results file, and the transaction every write of the store runs in.

Errors say which path failed and what to do: a missing directory, a file that is not SQLite, a locked file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from trtci.errors import StoreError


def connect(path: str) -> sqlite_utils.Database:
    """Open the file with foreign keys enforced, refusing paths that cannot hold a database and files that are
    not SQLite."""
    if path != ":memory:":
        parent = Path(path).absolute().parent
        if not parent.is_dir():
            raise StoreError(f"{path}: {parent} is not an existing directory; create it or choose another path")
    try:
        db = sqlite_utils.Database(path)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the database ({e}); check the directory is writable") from e
    try:
        db.execute("PRAGMA foreign_keys = ON")
        # Reading the schema is the first access to the file: this is where a non-SQLite file fails.
        db.table_names()
    except sqlite3.DatabaseError as e:
        db.close()
        raise StoreError(
            f"{path}: not a SQLite database ({e}); point --db at a trtci results file or a new path"
        ) from e
    return db


@contextmanager
def transaction(conn: sqlite3.Connection, mode: str = "DEFERRED") -> Iterator[None]:
    """Commit everything inside the block, or roll all of it back on any exception, Ctrl-C included."""
    conn.execute(f"BEGIN {mode}")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (busy, disk full) can leave the transaction open; a RAISE(ROLLBACK) has closed it.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise

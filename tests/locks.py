"""Another process holding the database's lock, as a concurrent writer would."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def lock_held(path: Path, mode: str = "IMMEDIATE", seconds: float = 60.0) -> Iterator[subprocess.Popen]:
    """Another process holding `BEGIN <mode>` on the database until the block ends (or `seconds` pass).
    IMMEDIATE blocks writers; EXCLUSIVE blocks readers too."""
    script = textwrap.dedent(
        f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN {mode}")
        conn.execute("INSERT INTO _trtci_migrations (name, applied_at) VALUES ('held', '')")
        print("locked", flush=True)
        sys.stdin.read() if {seconds} <= 0 else time.sleep({seconds})
        conn.execute("ROLLBACK")
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


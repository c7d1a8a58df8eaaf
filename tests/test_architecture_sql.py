"""Only the store runs SQL: no module of trtci outside trtci/store/ imports sqlite3 or sqlite_utils or executes a
statement. import-linter ("Only the store runs SQL" in pyproject.toml) checks the imports; this also catches SQL
run through an object another module handed over (`store.db.execute(...)`)."""

from __future__ import annotations

import re
from pathlib import Path

import trtci

SQL_USES = {
    "imports sqlite3": re.compile(r"^\s*(import|from)\s+sqlite3\b", re.MULTILINE),
    "uses sqlite_utils": re.compile(r"\bsqlite_utils\b"),
    "executes SQL": re.compile(r"\.execute(many|script)?\("),
}


def sql_outside_the_store(package: Path) -> list[str]:
    """'path: what' for every module under `package`, outside its store/, that touches SQL."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "store":
            continue
        text = path.read_text(encoding="utf-8")
        found += [f"{relative}: {what}" for what, pattern in SQL_USES.items() if pattern.search(text)]
    return found


def test_only_the_store_runs_sql():
    assert sql_outside_the_store(Path(trtci.__file__).parent) == []


def test_the_check_finds_sql_outside_the_store(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "database.py").write_text("import sqlite3\nimport sqlite_utils\ndb.execute('SELECT 1')\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "db.py").write_text("from sqlite3 import connect\nrows = store.db.execute('SELECT 1')\n")
    (tmp_path / "report.py").write_text("def f():\n    import sqlite_utils\n    conn.executemany('DELETE', [])\n")
    assert sql_outside_the_store(tmp_path) == [
        "cli/db.py: imports sqlite3",
        "cli/db.py: executes SQL",
        "report.py: uses sqlite_utils",
        "report.py: executes SQL",
    ]

"""The results database (the only place that runs SQL), run files and history on a git branch.

database.py   Store: open (migrated), record and load runs, history and listing queries, prune
migrations.py the schema as named migrations m001.. and their runner
rows.py       a RunResult as table rows and back
samples.py    the latency sample codec (float32, ticks, quantile sketch): no SQL
connection.py opening a file, the transaction every write runs in
queries.py    the base branch's history that compare judges against (read-only SQL)
readonly.py   ReadOnlyStore: `trtci db runs|series|export` on a read-only connection
retention.py  what to delete and thin; Store does it
runfile.py    one run as a gzip JSON file; git_history.py: run files on a git data branch

Only these modules import sqlite3 or sqlite_utils (import-linter, tests/test_architecture_sql.py). Store is
imported from trtci.store.database, not from here, so that reading a run file (trtci.store.runfile) loads no
SQLite code.
"""

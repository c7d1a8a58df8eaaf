"""History commands for the `trtci` group: `trtci history push|pull`, `trtci db ...` and `trtci dashboard`.

They parse flags, call trtci.store.git_history, trtci.store.database, trtci.store.readonly,
trtci.store.retention and trtci.report.dashboard, and leave typed errors to their classes (trtci.cli.exits: one
line, the exit code); they run no SQL themselves. The lead registers them with `register(cli)`.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import sys
from pathlib import Path

import click

from trtci.cli.exits import TrtciCommand, TrtciGroup
from trtci.errors import ConfigError, StoreError

DB_OPTION = click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("trtci.db"),
    show_default=True,
    help="SQLite results database (a persistent path on self-hosted runners works as history by itself).",
)
REPO_OPTIONS = (
    click.option(
        "--repo-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("."),
        show_default=True,
        help="A clone of the repository that holds the data branch.",
    ),
    click.option("--branch", default="trtci-data", show_default=True, help="Data branch (created if missing)."),
    click.option("--remote", default="origin", show_default=True, help="Git remote to fetch from and push to."),
    click.option(
        "--token-env",
        default="GITHUB_TOKEN",
        show_default=True,
        help="Variable holding a token that git sends to an https remote for this command only (never written to "
        ".git/config), when the checkout did not persist credentials (persist-credentials: false).",
    ),
)


def _repo_options(fn):
    for option in reversed(REPO_OPTIONS):
        fn = option(fn)
    return fn


@click.group("history", cls=TrtciGroup)
def history() -> None:
    """Keep results across CI runs as run files on a git data branch."""


@history.command("push")
@_repo_options
@DB_OPTION
@click.option("--run", "run_id", default="latest", show_default=True, help="Run id in --db to push, or 'latest'.")
@click.option(
    "--file",
    "run_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Push this run file instead of a run from --db (e.g. one a failed push kept).",
)
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the run file is written and kept if the push fails [default: trtci-history/ in the git directory].",
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 50),
    default=10,
    show_default=True,
    help="Pushes to try; one rejected because another job pushed first is retried after fetching, with backoff.",
)
def history_push(
    repo_dir: Path,
    branch: str,
    remote: str,
    token_env: str,
    db_path: Path,
    run_id: str,
    run_file: Path | None,
    out_dir: Path | None,
    attempts: int,
) -> None:
    """Commit a run as a uniquely named run file to the data branch and push it; the checkout is never touched.
    Exit 5 when the push failed (at once, or after --attempts rejections); the message names the kept run file."""
    from trtci.store.database import Store
    from trtci.store.git_history import push_from_store, push_run

    token = _token(token_env)
    if run_file is not None:
        result = push_run(repo_dir, run_file, branch=branch, remote=remote, attempts=attempts, token=token)
    else:
        with Store(_existing(db_path)) as store:
            result = push_from_store(
                repo_dir, store, run_id, out_dir, branch=branch, remote=remote, attempts=attempts, token=token
            )
    retried = f" after {result.attempts} attempts" if result.attempts > 1 else ""
    click.echo(f"pushed {result.path} to {remote} {branch} ({result.commit[:12]}){retried}")


@history.command("pull")
@_repo_options
@DB_OPTION
def history_pull(repo_dir: Path, branch: str, remote: str, token_env: str, db_path: Path) -> None:
    """Fetch the data branch and import every run the database lacks (creates the database if needed).
    Exit 2 when a run file could not be read; the others are imported."""
    from trtci.store.database import Store
    from trtci.store.git_history import pull_runs

    with Store(db_path) as store:
        store.check_writable()
        result = pull_runs(repo_dir, store, branch=branch, remote=remote, token=_token(token_env))
    click.echo(f"imported {len(result.imported)} runs into {db_path}, {result.known} already there")
    if result.refused:
        for line in result.refused:
            click.echo(f"refused: {line}", err=True)
        raise StoreError(f"{len(result.refused)} run files on {branch} were not imported (see above)")


@click.group("db", cls=TrtciGroup)
def db() -> None:
    """Query, export and prune the results database (open it in Datasette too: docs/schema.md)."""


@db.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@DB_OPTION
def db_import(files: tuple[Path, ...], db_path: Path) -> None:
    """Record run files in the database (creating it if needed): a run kept beside the database when it could
    not be recorded, or a leg's run file. Runs already there are skipped. Exit 2 when a file could not be read
    or recorded; the others are imported."""
    from trtci.store.database import Store

    with Store(db_path) as store:
        store.check_writable()
        recorded, known, refused = store.import_runfiles(list(files))
    click.echo(f"imported {len(recorded)} runs into {db_path}, {known} already there")
    if refused:
        for line in refused:
            click.echo(f"refused: {line}", err=True)
        raise StoreError(f"{len(refused)} run files were not imported (see above)")


@db.command("runs")
@DB_OPTION
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def db_runs(db_path: Path, limit: int, as_json: bool) -> None:
    """The latest runs, newest first."""
    from trtci.store.readonly import ReadOnlyStore

    with ReadOnlyStore(db_path) as store:
        rows = store.runs(limit)
    _print_rows(rows, as_json)


@db.command("series")
@DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def db_series(db_path: Path, as_json: bool) -> None:
    """Every series: model, device, precision, batch, backend, how many results and the latest."""
    from trtci.store.readonly import ReadOnlyStore

    with ReadOnlyStore(db_path) as store:
        rows = store.series()
    _print_rows(rows, as_json)


@db.command("export")
@DB_OPTION
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--table", help="Table to export, e.g. benchmarks.")
@click.option("--sql", help="A SELECT to export, e.g. \"select * from comparisons where verdict = 'regression'\".")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("-"),
    show_default=True,
    help="File to write; - is standard output.",
)
def db_export(db_path: Path, fmt: str, table: str | None, sql: str | None, output: Path) -> None:
    """Export a table or a query as CSV or JSON. The database is opened read-only; BLOBs are written as base64."""
    if (table is None) == (sql is None):
        raise ConfigError("give exactly one of --table NAME or --sql 'select ...'")
    from trtci.store.readonly import ReadOnlyStore

    with ReadOnlyStore(db_path) as store:
        if table is not None:
            rows = store.table(table)
        else:
            assert sql is not None  # exactly one of the two, checked above
            rows = store.select(sql)
    text = _to_csv(rows) if fmt == "csv" else _to_json(rows)
    if str(output) == "-":
        click.echo(text, nl=False)
    else:
        try:
            output.write_text(text)
        except OSError as e:
            raise ConfigError(f"{output}: cannot write ({e.strerror}); choose a writable -o path") from e


@db.command("prune")
@DB_OPTION
@click.option("--keep-runs", type=click.IntRange(1), default=500, show_default=True, help="Results kept per series.")
@click.option("--keep-days", type=click.FloatRange(min=0, min_open=True), help="Also keep results younger than this.")
@click.option(
    "--full-samples-runs",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Newest results per series that keep every raw sample; older ones keep a quantile sketch.",
)
@click.option("--sketch-points", type=click.IntRange(2, 100_000), default=201, show_default=True)
@click.option("--vacuum/--no-vacuum", default=True, show_default=True, help="Shrink the file afterwards.")
def db_prune(
    db_path: Path, keep_runs: int, keep_days: float | None, full_samples_runs: int, sketch_points: int, vacuum: bool
) -> None:
    """Apply retention: delete results beyond --keep-runs (unless younger than --keep-days), thin old samples."""
    from trtci.config import HistorySettings
    from trtci.store.database import Store
    from trtci.store.retention import apply_retention

    settings = HistorySettings(
        keep_runs=keep_runs, keep_days=keep_days, full_samples_runs=full_samples_runs, sketch_points=sketch_points
    )
    with Store(_existing(db_path)) as store:
        report = apply_retention(store, settings, vacuum=vacuum)
    click.echo(
        f"deleted {report.results_deleted} results ({report.runs_deleted} runs), thinned {report.results_thinned}; "
        f"{report.bytes_before / 1024:.0f} KB -> {report.bytes_after / 1024:.0f} KB"
    )


@click.command("dashboard", cls=TrtciCommand)
@DB_OPTION
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("dashboard.html"),
    show_default=True,
    help="The HTML file to write (self-contained: publish it to GitHub Pages as is).",
)
@click.option("--branch", help="Only runs on this branch (default: every branch).")
@click.option("--last", type=click.IntRange(1), default=200, show_default=True, help="Runs per series to draw.")
@click.option("--title", default="trtci dashboard", show_default=True)
def dashboard(db_path: Path, output: Path, branch: str | None, last: int, title: str) -> None:
    """Write one self-contained HTML page: latency, throughput and accuracy over commits for every series,
    regressions and change points marked, filters by model, device and precision."""
    from trtci.report.dashboard import write_dashboard
    from trtci.store.database import Store

    with Store(_existing(db_path)) as store:
        count = write_dashboard(store, output, branch=branch, last=last, title=title)
    click.echo(f"dashboard of {count} series: {output}")


def register(group: click.Group) -> None:
    """Add `history`, `db` and `dashboard` to the main `trtci` group."""
    group.add_command(history)
    group.add_command(db)
    group.add_command(dashboard)


def _token(variable: str) -> str | None:
    """The token in `variable`, masked in the log first inside GitHub Actions (with the header git sends)."""
    from trtci.github import actions
    from trtci.store.git_history import basic_credential

    token = os.environ.get(variable, "").strip() or None
    if token is not None and actions.in_actions():
        for secret in (token, basic_credential(token)):
            actions.print_command(actions.add_mask(secret))
    return token


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise StoreError(f"{path}: no such database; pass the --db path your runs wrote")
    return path


def _plain(value):
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value


def _to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _plain(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def _to_json(rows: list[dict]) -> str:
    return json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=1) + "\n"


def _print_rows(rows: list[dict], as_json: bool) -> None:
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*(rows[0] if rows else ["(empty)"]))
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    Console(file=sys.stdout).print(table)

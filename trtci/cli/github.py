"""GitHub commands for the `trtci` group: `comment`, `preflight`, `merge`, `status` and `baseline fetch`.

Parses flags and the Actions environment and calls trtci.github and trtci.pipeline.fanin; their typed errors
end as every command's do (trtci.cli.exits: one line, the documented exit code). `register(group)` adds them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from trtci.cli.exits import TrtciCommand, TrtciGroup
from trtci.context.event import EventContext, load_event
from trtci.errors import EXIT_INPUT, TrtciError
from trtci.github import actions
from trtci.github.comment import COMMENT_MODES
from trtci.verdict.gate import FAIL_ON

if TYPE_CHECKING:
    from trtci.github.api import GitHubClient


@dataclass(frozen=True)
class ClientOptions:
    """How `trtci comment` builds its GitHub client; tests pass one as the click context object."""

    sleep: Callable[[float], None] = time.sleep
    timeout_s: float = 30.0


TWO_WORKFLOW_HINT = (
    "The token cannot write comments here (a pull request from a fork gets a read-only GITHUB_TOKEN), so the "
    "report is only in the job summary. To comment on fork pull requests, upload the results as an artifact and "
    "post them from a workflow_run workflow: see examples/workflows/fork-safe.yml and docs/action.md."
)


@click.command("comment", cls=TrtciCommand)
@click.option("--report", type=click.Path(path_type=Path), required=True, help="The markdown report to post.")
@click.option("--repo", help="owner/name; defaults to $GITHUB_REPOSITORY.")
@click.option("--pr", "pr_number", type=int, help="Pull request number; defaults to the event's.")
@click.option(
    "--mode",
    type=click.Choice(COMMENT_MODES),
    default="always",
    show_default=True,
    help="always: create or update; on-change: skip when the body is unchanged; never: post nothing.",
)
@click.option("--token-env", default="GITHUB_TOKEN", show_default=True, help="Variable that holds the token.")
@click.option("--marker-id", help="Keeps a separate sticky comment per id (e.g. one per trtci job).")
@click.option(
    "--author",
    "authors",
    multiple=True,
    help="Login the token posts as, when not github-actions[bot] (a personal or app token). Repeatable.",
)
@click.option(
    "--summary/--no-summary",
    "job_summary_fallback",
    default=True,
    show_default=True,
    help="Append the report to the job summary when the token cannot comment (off when a step already did).",
)
def comment(
    report: Path,
    repo: str | None,
    pr_number: int | None,
    mode: str,
    token_env: str,
    marker_id: str | None,
    authors: tuple[str, ...],
    job_summary_fallback: bool,
) -> None:
    """Post the report as the pull request's sticky comment, or update the one trtci posted before.

    Under workflow_run, --pr (or the event's) is a claim, as the benchmark job's run files make it: trtci posts
    only when GitHub confirms that pull request is open at the run's head commit. A newer run's report already
    on the pull request is left alone ("stale")."""
    from trtci.github.api import GitHubError
    from trtci.github.comment import DEFAULT_AUTHORS, StaleClaim, publish_comment, pull_request_to_comment, run_order

    env = os.environ
    text = _read_report(report)
    try:
        if mode == "never":
            click.echo("comment mode is never: nothing posted")
            return
        client, repo, event = _connect(env, token_env, repo)
        try:
            number = pull_request_to_comment(client, repo, event, pr_number)
        except StaleClaim as exc:
            actions.print_command(actions.notice(str(exc), title="trtci comment stale"))
            actions.set_output("comment-action", "stale", env)
            return
        if number is None:
            note = "not a pull request: no comment posted; the report is in the job summary"
            actions.print_command(actions.notice(note))
            return
        result = publish_comment(
            client,
            repo,
            number,
            text,
            mode=mode,
            marker_id=marker_id,
            authors=authors or DEFAULT_AUTHORS,
            summary_url=_summary_url(env),
            order=run_order(event, env),
        )
    except GitHubError as exc:
        if not exc.read_only:
            raise
        if job_summary_fallback:
            actions.append_summary(text, env)
        actions.print_command(actions.warning(TWO_WORKFLOW_HINT, title="trtci could not comment"))
        actions.set_output("comment-action", "read-only", env)
        return
    for name, value in (
        ("comment-action", result.action),
        ("comment-id", result.comment_id),
        ("comment-url", result.url),
    ):
        if value is not None:
            actions.set_output(name, str(value), env)
    where = result.url or f"pull request #{number}"
    if result.action == "stale":
        click.echo(f"comment stale: a newer run's report is already there ({where}); this run's was not posted")
    elif result.action == "superseded":
        click.echo(f"comment superseded: a newer run's comment was kept ({where}); duplicates were removed")
    else:
        note = " (cut to fit; full report in the job summary)" if result.truncated else ""
        click.echo(f"comment {result.action}: {where}{note}")


@click.command("preflight", cls=TrtciCommand)
@click.option(
    "--allow-fork-code/--no-allow-fork-code",
    default=None,
    help="Run a fork's code under pull_request_target or workflow_run. Defaults to $TRTCI_ALLOW_FORK_CODE.",
)
def preflight(allow_fork_code: bool | None) -> None:
    """Check the triggering event before running anything: refuse fork code under privileged triggers."""
    from trtci.github.preflight import run_preflight

    raise SystemExit(run_preflight(allow_fork_code=allow_fork_code))


@click.command("merge", cls=TrtciCommand)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), help="Record each leg's run here.")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="Markdown report to write.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), help="JSON summary to write.")
@click.option(
    "--expect",
    multiple=True,
    help="A leg (directory name) or device (part of its name) that must be there; repeatable or comma-separated.",
)
@click.option("--template-dir", type=click.Path(path_type=Path, file_okay=False), help="Templates that override ours.")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default="both", show_default=True, help="What fails the gate.")
@click.pass_context
def merge(
    ctx: click.Context,
    paths: tuple[Path, ...],
    db: Path | None,
    report: Path | None,
    json_path: Path | None,
    expect: tuple[str, ...],
    template_dir: Path | None,
    fail_on: str,
) -> None:
    """Merge the run files of matrix legs (searched recursively under PATHS) into one report with a GPU x
    precision grid; record each leg in --db (legs already there are skipped). Exit 1 when the gate fails,
    2 when a leg's file could not be read or its run recorded (it is named and left out; the others merge)."""
    from trtci.cli.finish import finish
    from trtci.pipeline.fanin import merge_runs
    from trtci.store.database import Store
    from trtci.verdict.gate import judge

    expected = [name for value in expect for name in value.split(",") if name.strip()]
    if db is not None:
        with Store(db) as store:
            store.check_writable()  # before reading any leg: a read-only or damaged database fails at once
            merged = merge_runs(paths, store, expected)
    else:
        merged = merge_runs(paths, None, expected)
    for line in merged.problems:
        _say("error", f"could not merge {line}")
    if merged.missing:
        _say("warning", "missing legs: " + "; ".join(f"{m.name} ({m.reason})" for m in merged.missing))
    verdict = judge(merged.run, fail_on)
    recorded = f"{len(merged.recorded)} recorded, {len(merged.already_recorded)} already recorded"
    code = finish(
        merged.run,
        verdict,
        report=report,
        json_path=json_path,
        template_dir=template_dir,
        extra={"legs": merged.leg_rows()},
        json_fields=merged.json_fields(),
        outputs={
            **_pr_number_output(merged.legs),
            "missing-legs": ",".join(m.name for m in merged.missing),
            "verdict": "error" if merged.problems else "pass" if verdict else "fail",
        },
        where=[f"merged {len(merged.legs)} legs ({recorded if db else 'no --db'})"],
    )
    ctx.exit(EXIT_INPUT if merged.problems else code)


def _pr_number_output(legs) -> dict[str, int]:
    """`pr-number`: the pull request every leg's run names, when they agree. It is the runs' claim, untrusted
    (a fork wrote it): `trtci comment --pr` under workflow_run checks it with GitHub before posting."""
    numbers = {leg.run.context.pr_number for leg in legs}
    number = numbers.pop() if len(numbers) == 1 else None
    return {"pr-number": number} if isinstance(number, int) and number > 0 else {}


@click.command("status", cls=TrtciCommand)
@click.option("--json", "json_path", type=click.Path(path_type=Path), required=True, help="The run's JSON summary.")
@click.option("--report", type=click.Path(path_type=Path), help="Markdown shown in the check run.")
@click.option("--repo", help="owner/name; defaults to $GITHUB_REPOSITORY.")
@click.option("--sha", help="Commit to mark; defaults to the pull request's head, else $GITHUB_SHA.")
@click.option("--commit-status/--no-commit-status", default=True, show_default=True, help="Post a commit status.")
@click.option("--check-run/--no-check-run", default=False, show_default=True, help="Also create a check run.")
@click.option("--context", "status_context", default="trtci", show_default=True, help="Status context, check name.")
@click.option("--token-env", default="GITHUB_TOKEN", show_default=True, help="Variable that holds the token.")
def status(
    json_path: Path,
    report: Path | None,
    repo: str | None,
    sha: str | None,
    commit_status: bool,
    check_run: bool,
    status_context: str,
    token_env: str,
) -> None:
    """Put the gate's verdict on the commit: a commit status (needs `statuses: write`) and/or a check run
    (`checks: write`). A read-only token (fork pull requests) gives a warning, not a failure."""
    from trtci.github.api import GitHubError
    from trtci.github.checks import (
        post_check_run,
        post_status,
        status_description,
        status_state,
        verdict_from_json_summary,
    )

    env = os.environ
    verdict = verdict_from_json_summary(json_path)
    text = _read_report(report) if report is not None else f"trtci: {verdict.words}"
    try:
        client, repo, event = _connect(env, token_env, repo)
        sha = sha or event.head_sha or env.get("GITHUB_SHA", "")
        url = _summary_url(env)
        if commit_status:
            post_status(client, repo, sha, verdict, context=status_context, target_url=url)
            click.echo(f"commit status {status_state(verdict)} on {sha[:12]}: {status_description(verdict)}")
        if check_run:
            created = post_check_run(client, repo, sha, verdict, text, name=status_context, details_url=url)
            click.echo(f"check run {status_state(verdict)}: {created.get('html_url') or created.get('id')}")
    except GitHubError as exc:
        if not exc.read_only:
            raise
        note = f"{exc}; the verdict is still this job's exit code"
        actions.print_command(actions.warning(note, title="trtci status"))


@click.group("baseline", cls=TrtciGroup)
def baseline() -> None:
    """Get the base branch's latest results into this job."""


@baseline.command("fetch")
@click.option("--repo", help="owner/name; defaults to $GITHUB_REPOSITORY.")
@click.option("--branch", required=True, help="Branch whose newest results artifact to take, e.g. main.")
@click.option("--artifact-name", default="trtci-results", show_default=True, help="Name of the results artifact.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Directory to fill.")
@click.option("--token-env", default="GITHUB_TOKEN", show_default=True, help="Variable that holds the token.")
def baseline_fetch(repo: str | None, branch: str, artifact_name: str, out: Path, token_env: str) -> None:
    """Download the run files of BRANCH's newest results artifact into --out (needs `actions: read`). Load
    them with `trtci merge OUT --db results.db --fail-on none` before `trtci run --db results.db`. Finding no
    artifact is a notice, not an error: the PR's series are then new."""
    from trtci.github.artifacts import fetch_baseline

    env = os.environ
    client, repo, _ = _connect(env, token_env, repo)
    fetched = fetch_baseline(client, repo, branch, artifact_name, out)
    for line in fetched.skipped:
        _say("error", f"skipped {line}")
    if fetched.artifact is None:
        note = f"no unexpired {artifact_name} artifact from branch {branch}: no baseline"
        actions.print_command(actions.notice(note))
        actions.set_output("baseline-files", "0")
        return
    actions.set_output("baseline-files", str(len(fetched.files)))
    artifact = fetched.artifact
    click.echo(
        f"baseline: {len(fetched.files)} run files from artifact {artifact.id} "
        f"({branch} at {(artifact.head_sha or '?')[:12]}, {artifact.created_at}) into {out}"
    )


def _connect(env: Mapping[str, str], token_env: str, repo: str | None) -> tuple[GitHubClient, str, EventContext]:
    """What every GitHub command does first: mask the token before anything prints, read the event, settle the
    repository, and build the client (with the test's sleep and timeout when a ClientOptions is the context
    object)."""
    from trtci.github.api import GitHubClient

    token = env.get(token_env, "")
    if token and actions.in_actions(env):
        actions.print_command(actions.add_mask(token))
    event = load_event(env)
    repo = repo or event.repository
    if not repo:
        raise TrtciError("no repository: pass --repo owner/name or set GITHUB_REPOSITORY")
    options = click.get_current_context().find_object(ClientOptions) or ClientOptions()
    client = GitHubClient.from_env(token_env, env, sleep=options.sleep, timeout_s=options.timeout_s)
    return client, repo, event


def register(group: click.Group) -> None:
    """Add the GitHub commands to the main `trtci` group."""
    group.add_command(comment)
    group.add_command(preflight)
    group.add_command(merge)
    group.add_command(status)
    group.add_command(baseline)


def _read_report(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrtciError(f"cannot read the report {path}: {exc}") from None


def _say(level: str, text: str) -> None:
    """A problem the command goes on after: a workflow command (`level` error or warning) inside GitHub Actions,
    else `level: text`, on stderr."""
    if actions.in_actions():
        actions.print_command(actions.command(level, text, title="trtci"), err=True)
    else:
        click.echo(f"{level}: {text}", err=True)


def _summary_url(env: Mapping[str, str]) -> str | None:
    from trtci.context.run import run_url

    return run_url(env)

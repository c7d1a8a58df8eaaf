"""GitHub commands for the `trtci` group: `trtci comment` and `trtci preflight`.

Parses flags and the Actions environment, calls trtci.github, and turns its typed errors into one line and the
documented exit code (0 ok, 2 bad input, 5 publishing failed). The lead registers them with `register(main)`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from trtci.errors import EXIT_INPUT, TrtciError
from trtci.github import actions
from trtci.github.api import GitHubClient, GitHubError
from trtci.github.comment import COMMENT_MODES, DEFAULT_AUTHORS, publish_comment, pull_request_for_commit
from trtci.github.event import check_safety, load_event


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


@click.command("comment")
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
    "summary_fallback",
    default=True,
    show_default=True,
    help="Append the report to the job summary when the token cannot comment (off when a step already did).",
)
@click.pass_context
def comment(
    ctx: click.Context,
    report: Path,
    repo: str | None,
    pr_number: int | None,
    mode: str,
    token_env: str,
    marker_id: str | None,
    authors: tuple[str, ...],
    summary_fallback: bool,
) -> None:
    """Post the report as the pull request's sticky comment, or update the one trtci posted before."""
    env = os.environ
    try:
        text = _read_report(report)
        if mode == "never":
            click.echo("comment mode is never: nothing posted")
            return
        token = env.get(token_env, "")
        if token and actions.in_actions(env):
            click.echo(actions.add_mask(token))
        event = load_event(env)
        repo = repo or event.repository
        if not repo:
            raise TrtciError("no repository: pass --repo owner/name or set GITHUB_REPOSITORY")
        options = ctx.find_object(ClientOptions) or ClientOptions()
        client = GitHubClient.from_env(token_env, env, sleep=options.sleep, timeout_s=options.timeout_s)
        number = pr_number or event.pr_number
        if number is None and event.name == "workflow_run" and event.head_sha:
            number = pull_request_for_commit(client, repo, event.head_sha)
        if number is None:
            click.echo(actions.notice("not a pull request: no comment posted; the report is in the job summary"))
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
        )
    except GitHubError as exc:
        if exc.read_only:
            if summary_fallback:
                actions.append_summary(text, env)
            click.echo(actions.warning(TWO_WORKFLOW_HINT, title="trtci could not comment"))
            actions.set_output("comment-action", "read-only", env)
            return
        _fail(exc)
    except TrtciError as exc:
        _fail(exc)
    for name, value in (
        ("comment-action", result.action),
        ("comment-id", result.comment_id),
        ("comment-url", result.url),
    ):
        if value is not None:
            actions.set_output(name, str(value), env)
    note = " (cut to fit; full report in the job summary)" if result.truncated else ""
    click.echo(f"comment {result.action}: {result.url or f'pull request #{number}'}{note}")


@click.command("preflight")
@click.option(
    "--allow-fork-code/--no-allow-fork-code",
    default=None,
    help="Run a fork's code under pull_request_target or workflow_run. Defaults to $TRTCI_ALLOW_FORK_CODE.",
)
def preflight(allow_fork_code: bool | None) -> None:
    """Check the triggering event before running anything: refuse fork code under privileged triggers."""
    env = os.environ
    if allow_fork_code is None:
        allow_fork_code = _flag(env.get("TRTCI_ALLOW_FORK_CODE", ""))
    try:
        event = load_event(env)
        warnings = check_safety(event, env, allow_fork_code=allow_fork_code)
    except TrtciError as exc:
        _fail(exc)
    for text in warnings:
        click.echo(actions.warning(text, title="trtci security"))
    for name, value in (("pr-number", event.pr_number), ("head-sha", event.head_sha), ("base-ref", event.base_ref)):
        if value is not None:
            actions.set_output(name, str(value), env)
    actions.set_output("is-fork", "true" if event.is_fork else "false", env)
    click.echo(f"event {event.name or 'local'}: ok")


def register(group: click.Group) -> None:
    """Add the GitHub commands to the main `trtci` group."""
    group.add_command(comment)
    group.add_command(preflight)


def _read_report(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrtciError(f"cannot read the report {path}: {exc}") from None


def _summary_url(env: Mapping[str, str]) -> str | None:
    server, repo, run = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    if not (server and repo and run):
        return None
    attempt = env.get("GITHUB_RUN_ATTEMPT")
    return f"{server}/{repo}/actions/runs/{run}" + (f"/attempts/{attempt}" if attempt else "")


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("", "false", "0", "no"):
        return False
    if lowered in ("true", "1", "yes"):
        return True
    raise click.BadParameter(f"TRTCI_ALLOW_FORK_CODE={value!r}: use true or false")


def _fail(exc: TrtciError) -> None:
    message = str(exc)
    if actions.in_actions():
        click.echo(actions.error(message, title="trtci"))
    else:
        click.echo(f"error: {message}", err=True)
    raise SystemExit(getattr(exc, "exit_code", EXIT_INPUT))

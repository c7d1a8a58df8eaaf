"""Where and why a run happened: the commit, branch, pull request and workflow run behind its numbers.

In GitHub Actions the facts come from the GITHUB_* variables and the event payload; elsewhere from git in the
working directory. Nothing here fails a run: a fact that cannot be found is None.
"""

from __future__ import annotations

import datetime
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trtci.context.event import PULL_REQUEST_EVENTS, EventContext, load_event
from trtci.context.git import Git, GitError
from trtci.errors import ConfigError
from trtci.results import RunContext

OVERRIDABLE = ("commit", "branch", "base_branch", "pr_number")
GIT_QUERY_TIMEOUT_S = 10.0  # local queries (rev-parse, merge-base): a run never waits long for its context


def utc_now() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. '2026-11-27T08:00:00Z'."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_context(
    env: Mapping[str, str] | None = None, cwd: Path | None = None, *, overrides: dict[str, Any] | None = None
) -> RunContext:
    """A new run's context with a fresh run id and start time.

    Facts come from GitHub Actions when GITHUB_ACTIONS=true, else from git in `cwd`; non-None `overrides`
    (commit, branch, base_branch, pr_number, from command-line flags) win over both.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    facts = _from_github(env) if env.get("GITHUB_ACTIONS") == "true" else _from_git(cwd)
    unknown = set(overrides or {}) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"run_context overrides accept {', '.join(OVERRIDABLE)}, not {', '.join(sorted(unknown))}")
    facts.update({key: value for key, value in (overrides or {}).items() if value is not None})
    if facts.get("pr_number") is not None:
        facts["pr_number"] = int(facts["pr_number"])
    if facts.get("base_branch"):
        facts["merge_base"] = _merge_base(cwd, facts.get("commit"), facts["base_branch"])
    return RunContext(run_id=uuid.uuid4().hex, started_at=utc_now(), **facts)


def _from_github(env: Mapping[str, str]) -> dict[str, Any]:
    """Facts of a GitHub Actions run. For a pull request the commit is the PR head, not the merge commit."""
    event = _event(env)
    commit = env.get("GITHUB_SHA") or None
    head_ref = env.get("GITHUB_HEAD_REF") or None
    base_branch = env.get("GITHUB_BASE_REF") or None
    pr_number = None
    if event.name in PULL_REQUEST_EVENTS:
        commit = event.head_sha or commit
        head_ref = head_ref or event.head_ref
        base_branch = base_branch or event.base_ref
        pr_number = event.pr_number
    branch = head_ref or env.get("GITHUB_REF_NAME") or None
    if event.name == "workflow_run":
        # GITHUB_SHA and GITHUB_REF_NAME name the default branch here; the run being reported is the trigger's.
        commit = event.head_sha or commit
        branch = event.head_ref or branch
        pr_number = event.pr_number
        base_branch = base_branch or event.base_ref
    if pr_number is None:
        match = re.fullmatch(r"refs/pull/(\d+)/(?:merge|head)", env.get("GITHUB_REF", ""))
        pr_number = int(match.group(1)) if match else None
    return {
        "commit": commit,
        "branch": branch,
        "base_branch": base_branch,
        "pr_number": pr_number,
        "event": event.name,
        "repository": env.get("GITHUB_REPOSITORY") or None,
        "run_url": run_url(env),
        "labels": list(event.labels),
    }


def run_url(env: Mapping[str, str]) -> str | None:
    """The Actions page of this workflow run, or None outside Actions (GITHUB_SERVER_URL, GITHUB_REPOSITORY or
    GITHUB_RUN_ID unset).

    A re-run links its attempt (`.../actions/runs/<id>/attempts/<n>`), as GitHub's own links do: the job summary
    and the numbers belong to that attempt, not to a later one. The first attempt links the run itself, GitHub's
    canonical URL and what run files have always held; that page shows the newest attempt, and a re-run that
    comments or posts a status replaces the link with its own.
    """
    server, repository, run_id = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    if not (server and repository and run_id):
        return None
    url = f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"
    attempt = env.get("GITHUB_RUN_ATTEMPT", "")
    if attempt.isdigit() and int(attempt) > 1:
        url += f"/attempts/{attempt}"
    return url


def _event(env: Mapping[str, str]) -> EventContext:
    """The triggering event; only its name when the payload cannot be read, which must not fail a run."""
    try:
        return load_event(env)
    except ConfigError:
        return EventContext(env.get("GITHUB_EVENT_NAME") or None, env.get("GITHUB_REPOSITORY") or None)


def _from_git(cwd: Path) -> dict[str, Any]:
    """Commit and branch of the checkout in `cwd`; None for what git cannot say (no git, no repo, detached)."""
    branch = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD")
    return {
        "commit": _git(cwd, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"),
        "branch": None if branch == "HEAD" else branch,
    }


def _merge_base(cwd: Path, commit: str | None, base_branch: str) -> str | None:
    """Where this commit forked from the base branch, trying the local branch and then origin's."""
    for ref in (base_branch, f"origin/{base_branch}"):
        if _git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"):
            return _git(cwd, "merge-base", commit or "HEAD", ref)
    return None


def _git(cwd: Path, *args: str) -> str | None:
    """Stripped stdout of a git command, or None if git is missing, fails or says nothing."""
    try:
        return Git(cwd, timeout_s=GIT_QUERY_TIMEOUT_S)(*args) or None
    except GitError:
        return None

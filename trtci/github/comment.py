"""The sticky pull-request comment: one comment per PR (per marker id) that each run updates in place.

A comment is ours when it carries the hidden marker AND was written by one of the expected authors (the token's
identity, `github-actions[bot]` by default), so a marker pasted by someone else cannot make trtci overwrite
their comment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from trtci.errors import ConfigError
from trtci.github.api import GitHubClient, GitHubError

log = logging.getLogger(__name__)

CommentMode = Literal["always", "on-change", "never"]
COMMENT_MODES: tuple[str, ...] = ("always", "on-change", "never")
DEFAULT_AUTHORS = ("github-actions[bot]",)
MAX_COMMENT_CHARS = 65_536
# GitHub's limit is measured on its side after its own normalisation; stay well below it.
COMMENT_MARGIN_CHARS = 1_536
_MARKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


@dataclass(frozen=True)
class CommentResult:
    """What publishing did: action is "created", "updated", "unchanged" or "skipped"."""

    action: str
    comment_id: int | None = None
    url: str | None = None
    truncated: bool = False


def marker(marker_id: str | None = None) -> str:
    """The hidden marker line; an id keeps separate comments for several trtci jobs on one PR."""
    if not marker_id:
        return "<!-- trtci:report -->"
    if not _MARKER_ID.match(marker_id):
        raise ConfigError(f"marker id {marker_id!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-'")
    return f"<!-- trtci:report id={marker_id} -->"


def truncate(report: str, limit: int, summary_url: str | None = None) -> tuple[str, bool]:
    """`report` cut at a line boundary to at most `limit` characters, with a note pointing to the summary.

    Returns the text and whether it was cut. A code fence left open by the cut is closed.
    """
    if len(report) <= limit:
        return report, False
    where = f"the [job summary]({summary_url})" if summary_url else "the job summary"
    note = (
        f"\n\n> [!NOTE]\n> This report was cut to fit GitHub's {MAX_COMMENT_CHARS:,}-character comment limit. "
        f"The full report is in {where}.\n"
    )
    budget = limit - len(note) - len("\n```")
    if budget <= 0:
        raise ConfigError(f"comment limit {limit} is too small to hold the truncation note")
    cut = report[:budget]
    newline = cut.rfind("\n")
    if newline > budget // 2:
        cut = cut[:newline]
    if len(_FENCE.findall(cut)) % 2:
        cut += "\n```"
    return cut + note, True


def comment_body(report: str, marker_id: str | None = None, summary_url: str | None = None) -> tuple[str, bool]:
    """The full comment: marker first (so truncation never drops it), then the report, within GitHub's limit."""
    head = marker(marker_id) + "\n"
    report = report.removeprefix(marker() + "\n")  # the default template starts with the plain marker
    text, cut = truncate(report, MAX_COMMENT_CHARS - COMMENT_MARGIN_CHARS - len(head), summary_url)
    return head + text, cut


def find_comment(
    client: GitHubClient,
    repo: str,
    number: int,
    marker_id: str | None = None,
    authors: Collection[str] = DEFAULT_AUTHORS,
) -> dict[str, Any] | None:
    """The first comment on the PR whose first line is the marker and whose author is expected, or None.

    Only the first line counts, so the plain marker inside another job's comment (or quoted in a reply) never
    makes this job overwrite it.
    """
    tag = marker(marker_id)
    for comment in client.paginate(f"/repos/{repo}/issues/{number}/comments"):
        if (comment.get("body") or "").split("\n", 1)[0].strip() != tag:
            continue
        login = (comment.get("user") or {}).get("login")
        if login in authors:
            return comment
        log.warning("ignoring comment %s: it has the trtci marker but was written by %s", comment.get("id"), login)
    return None


def publish_comment(
    client: GitHubClient,
    repo: str,
    number: int,
    report: str,
    *,
    mode: str = "always",
    marker_id: str | None = None,
    authors: Collection[str] = DEFAULT_AUTHORS,
    summary_url: str | None = None,
) -> CommentResult:
    """Create or update the sticky comment on PR `number` of `repo` ("owner/name").

    "always" writes every time, "on-change" skips when the body is already the same, "never" does nothing.
    A POST whose outcome is unknown (timeout, 5xx) is never blindly repeated: the comments are listed again
    and an existing one is updated instead, so a run leaves at most one comment.
    """
    if mode not in COMMENT_MODES:
        raise ConfigError(f"comment mode {mode!r} is unknown: use one of {', '.join(COMMENT_MODES)}")
    if mode == "never":
        return CommentResult("skipped")
    _check_repo(repo)
    body, truncated = comment_body(report, marker_id, summary_url)
    attempt = 0
    while True:
        existing = find_comment(client, repo, number, marker_id, authors)
        if existing is not None:
            if mode == "on-change" and existing.get("body") == body:
                return CommentResult("unchanged", existing["id"], existing.get("html_url"), truncated)
            updated = client.patch(f"/repos/{repo}/issues/comments/{existing['id']}", {"body": body})
            return CommentResult("updated", updated["id"], updated.get("html_url"), truncated)
        try:
            created = client.post(f"/repos/{repo}/issues/{number}/comments", {"body": body})
        except GitHubError as exc:
            if not exc.transient or attempt + 1 >= client.retry.attempts:
                raise
            client.sleep(client.retry.backoff(attempt))
            attempt += 1
            continue
        login = (created.get("user") or {}).get("login")
        if login not in authors:
            log.warning(
                "the comment was posted as %s: pass --author %s so the next run updates it instead of adding one",
                login,
                login,
            )
        return CommentResult("created", created["id"], created.get("html_url"), truncated)


def _check_repo(repo: str) -> None:
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise ConfigError(f"repository {repo!r} is not 'owner/name': pass --repo or set GITHUB_REPOSITORY")


def pull_request_for_commit(client: GitHubClient, repo: str, sha: str) -> int | None:
    """The open pull request whose head is `sha`, for workflow_run events from forks (pull_requests is empty)."""
    for pull in client.paginate(f"/repos/{repo}/commits/{sha}/pulls"):
        if pull.get("state") == "open" and (pull.get("head") or {}).get("sha") == sha:
            return int(pull["number"])
    return None

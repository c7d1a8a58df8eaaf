"""The sticky pull-request comment: one comment per PR (per marker id) that each run updates in place.

A comment is ours when it carries the hidden marker AND was written by one of the expected authors (the token's
identity, `github-actions[bot]` by default), so a marker pasted by someone else cannot make trtci overwrite
their comment.

Runs of one PR can race (a push while the last run still posts). Each body carries the run's order (its Actions
run id and attempt) in a second hidden line: a run never overwrites a newer run's report, and after writing it
reconciles, so one comment survives, the newest report's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from trtci.context.event import EventContext
from trtci.errors import ConfigError
from trtci.github.api import GitHubClient, GitHubError

log = logging.getLogger(__name__)

CommentMode = Literal["always", "on-change", "never"]
COMMENT_MODES: tuple[str, ...] = ("always", "on-change", "never")
DEFAULT_AUTHORS = ("github-actions[bot]",)
MAX_COMMENT_CHARS = 65_536
# GitHub's limit is measured on its side after its own normalisation (a body of emoji fails at far fewer code points
# than 65,536: it counts UTF-16 units or more). Sizes here are UTF-8 bytes, the strictest count, less a margin.
COMMENT_MARGIN_CHARS = 1_536
_ORDER = re.compile(r"^<!-- trtci:order (\d+)\.(\d+) -->$")
Order = tuple[int, int]  # (Actions run id, attempt): later runs have larger run ids
_MARKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


@dataclass(frozen=True)
class CommentResult:
    """What publishing did: action is "created", "updated", "unchanged", "skipped", "stale" (a newer run's report
    is there) or "superseded" (a newer run's comment was kept instead of this one)."""

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
    if _size(report) <= limit:
        return report, False
    where = f"the [job summary]({summary_url})" if summary_url else "the job summary"
    note = (
        f"\n\n> [!NOTE]\n> This report was cut to fit GitHub's {MAX_COMMENT_CHARS:,}-character comment limit. "
        f"The full report is in {where}.\n"
    )
    budget = limit - _size(note) - len("\n```")
    if budget <= 0:
        raise ConfigError(f"comment limit {limit} is too small to hold the truncation note")
    cut = report.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    newline = cut.rfind("\n")
    if newline > budget // 2:
        cut = cut[:newline]
    if len(_FENCE.findall(cut)) % 2:
        cut += "\n```"
    return cut + note, True


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def comment_body(
    report: str, marker_id: str | None = None, summary_url: str | None = None, order: Order | None = None
) -> tuple[str, bool]:
    """The full comment: marker first (so truncation never drops it), the run's order, then the report, within
    GitHub's limit."""
    head = marker(marker_id) + "\n" + (f"<!-- trtci:order {order[0]}.{order[1]} -->\n" if order else "")
    report = report.removeprefix(marker() + "\n")  # the default template starts with the plain marker
    text, cut = truncate(report, MAX_COMMENT_CHARS - COMMENT_MARGIN_CHARS - _size(head), summary_url)
    return head + text, cut


def order_of(comment: dict[str, Any]) -> Order:
    """The run order a comment's body carries; (0, 0) for bodies without one (older trtci, runs outside Actions)."""
    lines = (comment.get("body") or "").split("\n", 2)
    match = _ORDER.match(lines[1].strip()) if len(lines) > 1 else None
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _without_order(body: str) -> str:
    first, _, rest = body.partition("\n")
    second, _, tail = rest.partition("\n")
    return first + "\n" + tail if _ORDER.match(second.strip()) else body


def find_comment(
    client: GitHubClient,
    repo: str,
    number: int,
    marker_id: str | None = None,
    authors: Collection[str] = DEFAULT_AUTHORS,
) -> dict[str, Any] | None:
    """The first comment on the PR whose first line is the marker and whose author is expected, or None."""
    return next(iter(find_comments(client, repo, number, marker_id, authors)), None)


def find_comments(
    client: GitHubClient,
    repo: str,
    number: int,
    marker_id: str | None = None,
    authors: Collection[str] = DEFAULT_AUTHORS,
) -> list[dict[str, Any]]:
    """Every comment on the PR whose first line is the marker and whose author is expected, oldest first.

    Only the first line counts, so the plain marker inside another job's comment (or quoted in a reply) never
    makes this job overwrite it.
    """
    tag = marker(marker_id)
    ours = []
    for comment in client.paginate(f"/repos/{repo}/issues/{number}/comments"):
        body = comment.get("body") if isinstance(comment, dict) else None
        if not isinstance(body, str) or body.split("\n", 1)[0].strip() != tag:
            continue
        login = _login(comment)
        if login in authors:
            ours.append(_checked(comment, "listed a comment"))
        else:
            log.warning("ignoring comment %s: it has the trtci marker but was written by %s", comment.get("id"), login)
    return ours


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
    order: Order | None = None,
) -> CommentResult:
    """Create or update the sticky comment on PR `number` of `repo` ("owner/name").

    "always" writes every time, "on-change" skips when the body is already the same, "never" does nothing.
    A POST whose outcome is unknown (timeout, 5xx) is never blindly repeated: the comments are listed again
    and an existing one is updated instead. A comment deleted meanwhile (404 on update) is created again. With
    `order`, a comment holding a newer run's report is left alone ("stale"), and duplicates left by runs that
    raced are deleted afterwards, keeping the newest report.
    """
    if mode not in COMMENT_MODES:
        raise ConfigError(f"comment mode {mode!r} is unknown: use one of {', '.join(COMMENT_MODES)}")
    if mode == "never":
        return CommentResult("skipped")
    _check_repo(repo)
    body, truncated = comment_body(report, marker_id, summary_url, order)
    attempt = 0
    while True:
        ours = find_comments(client, repo, number, marker_id, authors)
        newest = max(ours, key=order_of, default=None)
        if newest is not None and order is not None and order_of(newest) > order:
            return CommentResult("stale", newest["id"], newest.get("html_url"), truncated)
        if ours:
            existing = ours[0]
            if mode == "on-change" and _without_order(existing.get("body") or "") == _without_order(body):
                result = CommentResult("unchanged", existing["id"], existing.get("html_url"), truncated)
                return _reconcile(client, repo, number, marker_id, authors, result) if len(ours) > 1 else result
            try:
                updated = _checked(client.patch(f"/repos/{repo}/issues/comments/{existing['id']}", {"body": body}))
            except GitHubError as exc:
                if exc.status != 404 or attempt + 1 >= client.retry.attempts:
                    raise  # a listing that keeps showing a comment GitHub says is gone must not loop forever
                attempt += 1
                continue  # deleted meanwhile: list again, then update another or create
            result = CommentResult("updated", updated["id"], updated.get("html_url"), truncated)
            return _reconcile(client, repo, number, marker_id, authors, result) if len(ours) > 1 else result
        try:
            created = _checked(client.post(f"/repos/{repo}/issues/{number}/comments", {"body": body}))
        except GitHubError as exc:
            if not exc.transient or attempt + 1 >= client.retry.attempts:
                raise
            client.sleep(client.retry.backoff(attempt))
            attempt += 1
            continue
        login = _login(created)
        if login not in authors:
            log.warning(
                "the comment was posted as %s: pass --author %s so the next run updates it instead of adding one",
                login,
                login,
            )
        result = CommentResult("created", created["id"], created.get("html_url"), truncated)
        return _reconcile(client, repo, number, marker_id, authors, result)


def _reconcile(
    client: GitHubClient,
    repo: str,
    number: int,
    marker_id: str | None,
    authors: Collection[str],
    result: CommentResult,
) -> CommentResult:
    """Leave one comment: the newest report (highest order, then the newest comment), deleting the others.

    Called after creating (two runs that both found no comment both create one; each then sees both and keeps the
    same one) and after updating when duplicates were already there. An update needs no check of its own: a
    comment created meanwhile is reconciled by the run that created it.
    """
    ours = find_comments(client, repo, number, marker_id, authors)
    if len(ours) < 2:
        return result
    keep = max(ours, key=lambda c: (order_of(c), int(c["id"])))
    for comment in ours:
        if comment is not keep:
            try:
                client.request("DELETE", f"/repos/{repo}/issues/comments/{comment['id']}")
            except GitHubError as exc:
                if exc.status != 404:  # the other run deleted it first
                    raise
    if keep["id"] == result.comment_id:
        return result
    return CommentResult("superseded", keep["id"], keep.get("html_url"), result.truncated)


def _checked(comment: dict[str, Any], what: str = "answered") -> dict[str, Any]:
    """`comment` when it has what trtci uses (an integer id; a string html_url or none), else GitHubError."""
    cid, url = comment.get("id"), comment.get("html_url")
    if not isinstance(cid, int) or isinstance(cid, bool) or not (url is None or isinstance(url, str)):
        raise GitHubError(f"GitHub {what} without an integer id and a link: not the documented shape")
    return comment


def _login(comment: dict[str, Any]) -> str | None:
    user = comment.get("user")
    login = user.get("login") if isinstance(user, dict) else None
    return login if isinstance(login, str) else None


def _check_repo(repo: str) -> None:
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise ConfigError(f"repository {repo!r} is not 'owner/name': pass --repo or set GITHUB_REPOSITORY")


def pull_request_for_commit(client: GitHubClient, repo: str, sha: str) -> int | None:
    """The open pull request of `repo` whose head is `sha`, as the commit's pulls list it. That list holds pull
    requests from branches of `repo` only: it is empty for a fork's head commit."""
    for pull in client.paginate(f"/repos/{repo}/commits/{sha}/pulls"):
        head = pull.get("head") if isinstance(pull, dict) else None
        number = pull.get("number") if isinstance(pull, dict) else None
        if not isinstance(head, dict) or not isinstance(number, int) or isinstance(number, bool) or number < 1:
            continue  # not a pull request as GitHub documents one
        if pull.get("state") == "open" and head.get("sha") == sha:
            return number
    return None


class StaleClaim(ConfigError):
    """The pull request the results name is not open at the run's head commit: closed since, moved on to a newer
    commit (a newer run reports on that), or not the run's pull request at all. Nothing may be posted there."""


def pull_request_for_run(client: GitHubClient, repo: str, head_sha: str, claimed: int | None = None) -> int | None:
    """The pull request a workflow_run should comment on: found by its head commit, or else `claimed` (the number
    the benchmark job recorded, untrusted data from a fork) once the API confirms that pull request is open with
    exactly this head commit. Raises StaleClaim when it is not, ConfigError when no such pull request exists."""
    found = pull_request_for_commit(client, repo, head_sha)
    if found is not None or claimed is None:
        return found
    if isinstance(claimed, bool) or not isinstance(claimed, int) or claimed < 1:
        raise ConfigError(f"the results name pull request {claimed!r}, which is not a pull request number")
    try:
        pull = client.get(f"/repos/{repo}/pulls/{claimed}")
    except GitHubError as exc:
        if exc.status != 404:
            raise
        raise ConfigError(f"the results name pull request #{claimed}, which {repo} does not have") from None
    pull = pull if isinstance(pull, dict) else {}
    head_of = pull.get("head")
    state, head = pull.get("state"), head_of.get("sha") if isinstance(head_of, dict) else None
    if state != "open" or head != head_sha:
        raise StaleClaim(
            f"the results name pull request #{claimed}, which is {state} at {str(head)[:12]}, not open at this "
            f"run's head {head_sha[:12]}: nothing posted (a newer push has its own run, or the number is wrong)"
        )
    return claimed


def pull_request_to_comment(
    client: GitHubClient, repo: str, event: EventContext, claimed: int | None = None
) -> int | None:
    """The pull request a report goes to: `claimed` (--pr), else the event's. Under workflow_run either is only a
    claim, confirmed by pull_request_for_run against the run's head commit (a fork's pull request, missing from
    the event, is found that way only); None when there is no pull request."""
    claimed = claimed if claimed is not None else event.pr_number
    if event.name != "workflow_run":
        return claimed
    if not event.head_sha:
        if claimed is None:
            return None
        raise ConfigError(f"cannot check pull request #{claimed}: the workflow_run event names no head commit")
    return pull_request_for_run(client, repo, event.head_sha, claimed)


def run_order(event: EventContext, env: Mapping[str, str]) -> Order | None:
    """Which benchmark run a report comes from, as publish_comment orders them: under workflow_run the triggering
    run's id and attempt (from the event), else this run's (GITHUB_RUN_ID, GITHUB_RUN_ATTEMPT); None when unknown."""
    if event.name == "workflow_run":
        return (event.run_id, event.run_attempt or 1) if event.run_id is not None else None
    run_id, attempt = env.get("GITHUB_RUN_ID", ""), env.get("GITHUB_RUN_ATTEMPT", "")
    if not re.fullmatch(r"[0-9]{1,20}", run_id):
        return None
    return int(run_id), int(attempt) if re.fullmatch(r"[0-9]{1,9}", attempt) else 1

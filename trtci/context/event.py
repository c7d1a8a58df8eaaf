"""The event a workflow run answers, from GITHUB_EVENT_NAME and the payload at GITHUB_EVENT_PATH, and the
safety policy that follows from it. This is trtci's one reader of event payloads: the run context and the
preflight both take the pull request, refs, SHAs and labels from here.

Privileged triggers (`pull_request_target`, `workflow_run`, `issue_comment`) run with secrets and a write token;
running a fork's code there is a "pwn request". trtci refuses that unless the workflow opts in, and warns when a
public repository's pull requests reach a self-hosted runner. Where a privileged event does not say where its
head commit comes from (a `workflow_run` without `head_repository`, a comment on a pull request, a payload that
is missing or of another shape) the head counts as foreign: the policy fails closed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trtci.errors import ConfigError

# Events whose payload carries the pull request: its number, head, base and labels. A review or a review comment
# runs on the PR's merge ref just as pull_request does, so what it measures is the PR head too.
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment")
# `issue_comment` is how ChatOps workflows start ("/benchmark"): it runs the default branch's YAML with secrets and
# a write token, and its payload never says which repository a commented pull request's head comes from.
PRIVILEGED_EVENTS = ("pull_request_target", "workflow_run", "issue_comment")
MAX_EVENT_BYTES = 64 * 1024 * 1024
UNKNOWN_HEAD = "(an unknown repository)"  # head_repository where a privileged event does not say: foreign


@dataclass(frozen=True)
class EventContext:
    """What the triggering event says about the code under test. Fields are None when the event lacks them."""

    name: str | None  # GITHUB_EVENT_NAME
    repository: str | None  # owner/name of the repository the workflow runs in
    pr_number: int | None = None
    base_sha: str | None = None
    head_sha: str | None = None
    base_ref: str | None = None  # the PR's base branch, e.g. "main"
    head_ref: str | None = None
    head_repository: str | None = None  # owner/name the head commit comes from
    public: bool | None = None
    triggered_by: str | None = None  # for workflow_run: the event of the run that triggered this one
    labels: tuple[str, ...] = ()  # a pull request event's labels, in the payload's order
    run_id: int | None = None  # for workflow_run: the triggering run's id and attempt
    run_attempt: int | None = None

    @property
    def is_fork(self) -> bool:
        """True when the event has a head commit (pull requests, workflow runs, comments on pull requests) and it
        does not come from the repository the workflow runs in, or either repository is unknown."""
        if self.head_repository is None:
            return False
        return self.repository is None or self.head_repository != self.repository

    @property
    def privileged(self) -> bool:
        return self.name in PRIVILEGED_EVENTS


def load_event(environ: Mapping[str, str] | None = None) -> EventContext:
    """The event context of this run; outside Actions (no GITHUB_EVENT_PATH) only the names from the env."""
    env = os.environ if environ is None else environ
    name = env.get("GITHUB_EVENT_NAME") or None
    repository = env.get("GITHUB_REPOSITORY") or None
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return parse_event(name, {}, repository)  # no payload: a privileged event's head is then unknown
    if os.path.exists(path) and not os.path.isfile(path):  # reading a FIFO would wait for a writer forever
        raise ConfigError(f"cannot read the event payload GITHUB_EVENT_PATH={path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_EVENT_BYTES + 1)
        if len(data) > MAX_EVENT_BYTES:
            raise ValueError(f"larger than {MAX_EVENT_BYTES} bytes, far beyond GitHub's 25 MB webhook limit")
        payload = json.loads(data.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested beyond Python's stack
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ConfigError(f"cannot read the event payload GITHUB_EVENT_PATH={path}: {reason}") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"the event payload {path} is not a JSON object")
    return parse_event(name, payload, repository)


def parse_event(name: str | None, payload: dict[str, Any], repository: str | None = None) -> EventContext:
    """The context from a webhook payload as GitHub writes it to GITHUB_EVENT_PATH. A part of the payload that
    is missing or not of the shape GitHub documents gives None (no labels), never an error; under a privileged
    event, a head repository that the payload does not name is UNKNOWN_HEAD."""
    repo = _dict(payload.get("repository"))
    repository = repository or _str(repo.get("full_name"))
    public = _public(repo)
    pr = payload.get("pull_request")
    if name in PULL_REQUEST_EVENTS and isinstance(pr, dict):
        base, head = _dict(pr.get("base")), _dict(pr.get("head"))
        return EventContext(
            name,
            repository,
            pr_number=_int(pr.get("number", payload.get("number"))),
            base_sha=_str(base.get("sha")),
            head_sha=_str(head.get("sha")),
            base_ref=_str(base.get("ref")),
            head_ref=_str(head.get("ref")),
            # A fork that was deleted leaves head.repo null: treat it as foreign.
            head_repository=_str(_dict(head.get("repo")).get("full_name")) or "(deleted fork)",
            public=public,
            labels=tuple(pull_request_labels(name, payload)),
        )
    run = payload.get("workflow_run")
    if name == "workflow_run" and isinstance(run, dict):
        # workflow_run.repository, not the top-level one, is where the triggering run ran.
        repository = _str(_dict(run.get("repository")).get("full_name")) or repository
        pulls = run.get("pull_requests")
        pull = _dict(pulls[0]) if isinstance(pulls, list) and pulls else {}
        return EventContext(
            name,
            repository,
            pr_number=_int(pull.get("number")),
            base_sha=_str(_dict(pull.get("base")).get("sha")),
            head_sha=_str(run.get("head_sha")),
            base_ref=_str(_dict(pull.get("base")).get("ref")),
            head_ref=_str(run.get("head_branch")),
            head_repository=_str(_dict(run.get("head_repository")).get("full_name")) or UNKNOWN_HEAD,
            public=public,
            triggered_by=_str(run.get("event")),
            run_id=_int(run.get("id")),
            run_attempt=_int(run.get("run_attempt")),
        )
    issue = payload.get("issue")
    if name == "issue_comment" and isinstance(issue, dict) and "pull_request" not in issue:
        return EventContext(name, repository, public=public)  # a comment on an issue: no pull request's code
    if name == "issue_comment" and isinstance(issue, dict):
        number = _int(issue.get("number"))
        return EventContext(name, repository, pr_number=number, head_repository=UNKNOWN_HEAD, public=public)
    if name == "push":
        ref = _str(payload.get("ref")) or ""
        return EventContext(
            name,
            repository,
            base_sha=_str(payload.get("before")),
            head_sha=_str(payload.get("after")),
            head_ref=ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None,
            public=public,
        )
    unknown = UNKNOWN_HEAD if name in PRIVILEGED_EVENTS else None  # the payload lacks what the event must carry
    return EventContext(name, repository, public=public, head_repository=unknown)


def pull_request_labels(name: str | None, payload: dict[str, Any]) -> list[str]:
    """The names of the pull request's labels as the payload of a pull request event lists them, in its order.

    The payload holds the labels of the moment the event fired: a label added later shows in the next event
    (`labeled`, `synchronize`). Other events, and malformed entries, give no labels.
    """
    pr = payload.get("pull_request")
    if name not in PULL_REQUEST_EVENTS or not isinstance(pr, dict) or not isinstance(pr.get("labels"), list):
        return []
    return [label["name"] for label in pr["labels"] if isinstance(label, dict) and isinstance(label.get("name"), str)]


def check_safety(
    event: EventContext, environ: Mapping[str, str] | None = None, *, allow_fork_code: bool = False
) -> list[str]:
    """Raise ConfigError when fork code would run under a privileged trigger; return warnings to show."""
    env = os.environ if environ is None else environ
    warnings = []
    if event.privileged and event.is_fork:
        origin = (
            "a head commit whose repository the event does not name (counted as a fork's)"
            if event.head_repository == UNKNOWN_HEAD
            else f"the fork {event.head_repository}"
        )
        if not allow_fork_code:
            raise ConfigError(
                f"refusing to benchmark code from {origin} under {event.name}: that trigger has secrets and a "
                "write token. Benchmark in a pull_request workflow and comment from workflow_run "
                "(docs/action.md), or set allow-fork-code: true if you accept the risk"
            )
        warnings.append(
            f"running code from {origin} under {event.name} because allow-fork-code is set: that code can read "
            "this job's secrets and token"
        )
    if env.get("RUNNER_ENVIRONMENT") == "self-hosted" and event.public:
        warnings.append(
            "this public repository runs trtci on a self-hosted runner: anyone who opens a pull request may run "
            "code on it. Require approval for outside contributors and use ephemeral runners (docs/action.md)"
        )
    return warnings


def _public(repo: dict[str, Any]) -> bool | None:
    if isinstance(repo.get("private"), bool):
        return not repo["private"]
    visibility = repo.get("visibility")
    return visibility == "public" if isinstance(visibility, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

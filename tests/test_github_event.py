"""Event context from real webhook payloads (tests/data/events-gh/) and the fork/self-hosted safety policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trtci.context.event import PULL_REQUEST_EVENTS, check_safety, load_event, parse_event, pull_request_labels
from trtci.errors import ConfigError

EVENTS = Path(__file__).parent / "data" / "events-gh"


def payload(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def env_for(tmp_path: Path, event_name: str, data: dict, **extra: str) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(data))
    return {"GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(path), **extra}


def as_fork(data: dict, owner: str = "mallory/Hello-World") -> dict:
    data["pull_request"]["head"]["repo"]["full_name"] = owner
    return data


@pytest.mark.parametrize(
    "name", ["pull_request.opened.json", "pull_request.synchronize.json", "pull_request.reopened.2.json"]
)
def test_pull_request_payloads(tmp_path, name):
    data = payload(name)
    event = load_event(env_for(tmp_path, "pull_request", data, GITHUB_REPOSITORY="Codertocat/Hello-World"))
    pr = data["pull_request"]
    assert event.pr_number == data["number"]
    assert (event.base_sha, event.head_sha) == (pr["base"]["sha"], pr["head"]["sha"])
    assert event.base_ref == pr["base"]["ref"] and event.head_ref == pr["head"]["ref"]
    assert event.public is (not data["repository"]["private"])
    assert not event.is_fork and not event.privileged


def test_fork_is_detected_by_the_head_repository(tmp_path):
    event = load_event(env_for(tmp_path, "pull_request", as_fork(payload("pull_request.opened.json"))))
    assert event.is_fork and event.head_repository == "mallory/Hello-World"
    assert event.repository == "Codertocat/Hello-World"


def test_deleted_fork_counts_as_a_fork(tmp_path):
    data = payload("pull_request.opened.json")
    data["pull_request"]["head"]["repo"] = None
    assert load_event(env_for(tmp_path, "pull_request_target", data)).is_fork


def test_workflow_run_uses_the_triggering_runs_repository_and_sha():
    data = payload("workflow_run.completed.2.json")
    event = parse_event("workflow_run", data)
    run = data["workflow_run"]
    assert event.head_sha == run["head_sha"] and event.head_ref == run["head_branch"]
    assert event.repository == run["repository"]["full_name"]
    assert event.triggered_by == run["event"]
    assert event.pr_number is None and not event.is_fork and event.privileged


def test_workflow_run_from_a_fork_pull_request():
    data = payload("workflow_run.completed.json")
    data["workflow_run"]["head_repository"]["full_name"] = "mallory/octo-repo"
    data["workflow_run"]["pull_requests"] = [
        {"number": 17, "base": {"ref": "main", "sha": "b" * 40}, "head": {"ref": "x", "sha": "a" * 40}}
    ]
    event = parse_event("workflow_run", data)
    assert event.is_fork and event.pr_number == 17 and event.base_ref == "main"


def test_push_payload():
    data = payload("push.json")
    event = parse_event("push", data)
    assert event.head_sha == data["after"] and event.base_sha == data["before"]
    assert data["ref"].startswith("refs/tags/") and event.head_ref is None  # a tag is not a branch
    assert event.pr_number is None
    data["ref"] = "refs/heads/feature/x"
    assert parse_event("push", data).head_ref == "feature/x"


def test_outside_actions_there_is_no_payload():
    event = load_event({"GITHUB_REPOSITORY": "o/r"})
    assert event.name is None and event.repository == "o/r" and event.pr_number is None


def test_unreadable_payload_is_an_input_error(tmp_path):
    bad = tmp_path / "event.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="GITHUB_EVENT_PATH"):
        load_event({"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(bad)})
    with pytest.raises(ConfigError, match="GITHUB_EVENT_PATH"):
        load_event({"GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(tmp_path / "missing.json")})


@pytest.mark.parametrize("trigger", ["pull_request_target", "workflow_run"])
def test_fork_code_under_a_privileged_trigger_is_refused(trigger):
    if trigger == "workflow_run":
        data = payload("workflow_run.completed.json")
        data["workflow_run"]["head_repository"]["full_name"] = "mallory/octo-repo"
    else:
        data = as_fork(payload("pull_request.opened.json"))
    event = parse_event(trigger, data)
    with pytest.raises(ConfigError, match="allow-fork-code"):
        check_safety(event, {})
    warnings = check_safety(event, {}, allow_fork_code=True)
    assert len(warnings) == 1 and "secrets" in warnings[0]


def test_fork_under_plain_pull_request_is_fine():
    event = parse_event("pull_request", as_fork(payload("pull_request.opened.json")))
    assert check_safety(event, {}) == []


def test_same_repository_pull_request_target_is_fine():
    assert check_safety(parse_event("pull_request_target", payload("pull_request.opened.json")), {}) == []


def test_self_hosted_runner_in_a_public_repository_warns():
    event = parse_event("pull_request", payload("pull_request.opened.json"))
    assert event.public is True
    warnings = check_safety(event, {"RUNNER_ENVIRONMENT": "self-hosted"})
    assert len(warnings) == 1 and "self-hosted" in warnings[0]
    assert check_safety(event, {"RUNNER_ENVIRONMENT": "github-hosted"}) == []


def test_self_hosted_runner_in_a_private_repository_is_quiet():
    data = payload("pull_request.opened.json")
    data["repository"]["private"] = True
    assert check_safety(parse_event("pull_request", data), {"RUNNER_ENVIRONMENT": "self-hosted"}) == []


@pytest.mark.parametrize(
    "name", ["pull_request.opened.json", "pull_request.opened.2.json", "pull_request.synchronize.json"]
)
def test_pull_request_labels_are_read_from_the_payload(name):
    data = payload(name)
    expected = [label["name"] for label in data["pull_request"]["labels"]]
    assert pull_request_labels("pull_request", data) == expected
    data["pull_request"]["labels"].append({"id": 1, "name": "trtci:accept-regression", "color": "ededed"})
    data["pull_request"]["labels"].append({"id": 2})  # malformed: skipped
    assert pull_request_labels("pull_request_target", data) == [*expected, "trtci:accept-regression"]


@pytest.mark.parametrize("name", ["push.json", "workflow_dispatch.json", "workflow_run.completed.json"])
def test_other_events_have_no_pull_request_labels(name):
    event_name = name.split(".")[0]
    assert pull_request_labels(event_name, payload(name)) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pull_request.opened.json", (2, "changes", "master", "Codertocat/Hello-World", True, ())),
        ("pull_request.opened.2.json", (2, "changes", "master", "Codertocat/Hello-World", True, ("bug",))),
        ("pull_request.reopened.json", (2, "changes", "master", "Codertocat/Hello-World", True, ("bug",))),
        ("pull_request.reopened.2.json", (2, "changes", "master", "Codertocat/Hello-World", True, ("bug",))),
        ("pull_request.synchronize.json", (2, "changes", "master", "Codertocat/Hello-World", True, ("bug",))),
        ("push.json", (None, None, None, "Codertocat/Hello-World", True, ())),
        ("push.2.json", (None, None, None, "Codertocat/Hello-World", True, ())),
        ("workflow_dispatch.json", (None, None, None, "octo-org/octo-repo", True, ())),
        ("workflow_dispatch.2.json", (None, None, None, "octo-org/octo-repo", False, ())),
        ("workflow_run.completed.json", (None, "main", None, "octo-org/octo-repo", False, ())),
        ("workflow_run.completed.2.json", (None, "master", None, "octo-org/octo-repo", True, ())),
    ],
)
def test_every_real_payload(name, expected):
    """(PR number, head ref, base ref, repository, public, labels) of each recorded payload, pinned."""
    event = parse_event(name.split(".")[0], payload(name))
    assert (event.pr_number, event.head_ref, event.base_ref, event.repository, event.public, event.labels) == expected


@pytest.mark.parametrize(
    "event_name", ["pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"]
)
def test_every_pull_request_event_reads_the_pull_request(event_name):
    """Reviews and review comments too: their runs, like pull_request's, are about the PR head."""
    data = payload("pull_request.synchronize.json")
    event = parse_event(event_name, data)
    assert event_name in PULL_REQUEST_EVENTS
    assert (event.pr_number, event.head_sha, event.base_ref) == (2, data["pull_request"]["head"]["sha"], "master")
    assert event.labels == tuple(pull_request_labels(event_name, data)) == ("bug",)


@pytest.mark.parametrize(
    ("event_name", "data"),
    [
        ("pull_request", {"pull_request": {"head": None, "base": [], "number": "7", "labels": "bug"}}),
        ("pull_request", {"pull_request": {"head": {"sha": 5, "repo": "x"}}, "repository": "o/r"}),
        ("workflow_run", {"workflow_run": {"pull_requests": ["#7"], "head_repository": [], "repository": None}}),
        ("workflow_run", {"workflow_run": {"pull_requests": None, "head_sha": ["x"]}}),
        ("push", {"ref": None, "after": 1, "repository": {"private": "yes"}}),
    ],
)
def test_a_payload_of_an_unexpected_shape_gives_none_not_an_error(event_name, data):
    event = parse_event(event_name, data)
    assert (event.pr_number, event.head_sha, event.head_ref, event.base_ref) == (None, None, None, None)
    assert event.labels == () and event.repository is None and event.public is None


def workflow_run_with_head(head_repository: object, missing: bool = False) -> dict:
    data = payload("workflow_run.completed.json")
    if missing:
        del data["workflow_run"]["head_repository"]
    else:
        data["workflow_run"]["head_repository"] = head_repository
    return data


@pytest.mark.parametrize(
    "data",
    [
        workflow_run_with_head(None),
        workflow_run_with_head(None, missing=True),
        workflow_run_with_head({"full_name": None}),
        workflow_run_with_head({"full_name": ""}),
        workflow_run_with_head(["octo-org/octo-repo"]),
        {"workflow_run": None},
        {},
    ],
    ids=["null", "missing", "null-name", "empty-name", "a-list", "no-run", "empty-payload"],
)
def test_workflow_run_that_does_not_name_its_head_repository_counts_as_a_fork(data):
    event = parse_event("workflow_run", data, "octo-org/octo-repo")
    assert event.is_fork and event.privileged
    with pytest.raises(ConfigError, match="does not name"):
        check_safety(event, {})
    assert len(check_safety(event, {}, allow_fork_code=True)) == 1


def test_a_privileged_event_without_a_payload_counts_as_a_fork():
    for name in ("workflow_run", "pull_request_target", "issue_comment"):
        assert load_event({"GITHUB_EVENT_NAME": name, "GITHUB_REPOSITORY": "o/r"}).is_fork, name
    assert not load_event({"GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "o/r"}).is_fork


def test_a_privileged_event_whose_repository_is_unknown_counts_as_a_fork():
    data = payload("workflow_run.completed.json")
    data["workflow_run"]["repository"] = None
    del data["repository"]
    event = parse_event("workflow_run", data)
    assert event.repository is None and event.is_fork


def issue_comment(on_pull_request: bool) -> dict:
    """An issue_comment payload as GitHub documents it: the issue, with `pull_request` when it is one."""
    data = payload("pull_request.opened.json")
    issue = {"number": 2, "title": "Update the README", "state": "open", "user": data["sender"]}
    if on_pull_request:
        issue["pull_request"] = {"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/2"}
    comment = {"id": 1, "body": "/benchmark", "user": data["sender"], "author_association": "OWNER"}
    return {"action": "created", "issue": issue, "comment": comment, "repository": data["repository"]}


def test_issue_comment_on_a_pull_request_is_privileged_and_its_head_is_unknown():
    event = parse_event("issue_comment", issue_comment(on_pull_request=True))
    assert event.privileged and event.is_fork and event.pr_number == 2
    with pytest.raises(ConfigError, match="under issue_comment"):
        check_safety(event, {})


def test_issue_comment_on_an_issue_runs_no_pull_request_code():
    event = parse_event("issue_comment", issue_comment(on_pull_request=False))
    assert event.privileged and not event.is_fork and event.pr_number is None
    assert check_safety(event, {}) == []


def test_workflow_run_carries_the_triggering_runs_id_and_attempt():
    data = payload("workflow_run.completed.2.json")
    event = parse_event("workflow_run", data)
    assert (event.run_id, event.run_attempt) == (data["workflow_run"]["id"], data["workflow_run"]["run_attempt"])
    assert not event.is_fork  # the real payload names its head repository: the repository itself

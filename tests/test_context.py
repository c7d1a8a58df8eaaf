from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path

import pytest

from trtci.context.run import run_context, run_url

EVENTS = Path(__file__).parent / "data" / "events-gh"  # webhook payloads as GitHub's docs show them
MERGE_SHA = "d" * 40  # GITHUB_SHA of a pull_request run: the test merge commit, never the PR head


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def actions_env(event_name: str, event_path: Path | str, **extra: str) -> dict[str, str]:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_REPOSITORY": "Codertocat/Hello-World",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "1234567",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_HEAD_REF": "",
        "GITHUB_BASE_REF": "",
    }
    env.update(extra)
    return env


def pull_request_env(name: str, event_name: str = "pull_request") -> dict[str, str]:
    payload = load(name)
    number = payload["pull_request"]["number"]
    return actions_env(
        event_name,
        EVENTS / name,
        GITHUB_SHA=MERGE_SHA,
        GITHUB_REF=f"refs/pull/{number}/merge",
        GITHUB_REF_NAME=f"{number}/merge",
        GITHUB_HEAD_REF=payload["pull_request"]["head"]["ref"],
        GITHUB_BASE_REF=payload["pull_request"]["base"]["ref"],
    )


@pytest.mark.parametrize(
    "name", ["pull_request.opened.json", "pull_request.synchronize.json", "pull_request.reopened.2.json"]
)
@pytest.mark.parametrize("event_name", ["pull_request", "pull_request_target"])
def test_pull_request_records_the_head_commit_not_the_merge_commit(tmp_path, name, event_name):
    payload = load(name)
    context = run_context(pull_request_env(name, event_name), tmp_path)
    assert context.commit == payload["pull_request"]["head"]["sha"] != MERGE_SHA
    assert context.branch == payload["pull_request"]["head"]["ref"]
    assert context.base_branch == payload["pull_request"]["base"]["ref"]
    assert context.pr_number == payload["number"]
    assert context.event == event_name
    assert context.repository == "Codertocat/Hello-World"
    assert context.run_url == "https://github.com/Codertocat/Hello-World/actions/runs/1234567"
    assert context.merge_base is None  # tmp_path is no git checkout
    assert context.labels == [label["name"] for label in payload["pull_request"]["labels"]]


def test_pull_request_labels_reach_the_run_context(tmp_path):
    payload = load("pull_request.synchronize.json")
    payload["pull_request"]["labels"].append({"id": 7, "name": "trtci:accept-regression"})
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    env = pull_request_env("pull_request.synchronize.json")
    env["GITHUB_EVENT_PATH"] = str(path)
    assert "trtci:accept-regression" in run_context(env, tmp_path).labels


def test_pull_request_without_head_and_base_variables_reads_the_payload(tmp_path):
    payload = load("pull_request.opened.json")
    env = pull_request_env("pull_request.opened.json")
    del env["GITHUB_HEAD_REF"], env["GITHUB_BASE_REF"]
    context = run_context(env, tmp_path)
    assert context.branch == payload["pull_request"]["head"]["ref"]
    assert context.base_branch == payload["pull_request"]["base"]["ref"]


def test_push_uses_github_sha_and_ref_name(tmp_path):
    payload = load("push.json")
    env = actions_env(
        "push", EVENTS / "push.json", GITHUB_SHA=payload["after"], GITHUB_REF=payload["ref"], GITHUB_REF_NAME="main"
    )
    context = run_context(env, tmp_path)
    assert (context.commit, context.branch, context.event) == (payload["after"], "main", "push")
    assert context.base_branch is None and context.pr_number is None and context.labels == []


def test_workflow_dispatch(tmp_path):
    payload = load("workflow_dispatch.json")
    env = actions_env(
        "workflow_dispatch",
        EVENTS / "workflow_dispatch.json",
        GITHUB_SHA="a" * 40,
        GITHUB_REF=payload["ref"],
        GITHUB_REF_NAME=payload["ref"].removeprefix("refs/heads/"),
    )
    context = run_context(env, tmp_path)
    assert (context.commit, context.branch, context.pr_number) == ("a" * 40, "main", None)


def test_workflow_run_reports_the_triggering_run(tmp_path):
    payload = load("workflow_run.completed.json")
    env = actions_env(
        "workflow_run",
        EVENTS / "workflow_run.completed.json",
        GITHUB_SHA="b" * 40,  # the default branch's tip, not what was measured
        GITHUB_REF_NAME="main",
    )
    context = run_context(env, tmp_path)
    assert context.commit == payload["workflow_run"]["head_sha"]
    assert context.branch == payload["workflow_run"]["head_branch"]
    assert context.pr_number is None  # this payload's pull_requests is empty, as for a fork


def test_workflow_run_of_a_pull_request_takes_its_number_and_base(tmp_path):
    payload = load("workflow_run.completed.json")
    pull_request = load("pull_request.opened.json")["pull_request"]
    payload["workflow_run"]["event"] = "pull_request"
    payload["workflow_run"]["pull_requests"] = [
        {
            "id": pull_request["id"],
            "number": pull_request["number"],
            "url": pull_request["url"],
            "head": {key: pull_request["head"][key] for key in ("ref", "sha")},
            "base": {key: pull_request["base"][key] for key in ("ref", "sha")},
        }
    ]
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(payload))
    context = run_context(actions_env("workflow_run", event_path, GITHUB_SHA="b" * 40), tmp_path)
    assert context.pr_number == pull_request["number"]
    assert context.base_branch == pull_request["base"]["ref"]


HEAD_SHA, BASE_REF, HEAD_REF = "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "master", "changes"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pull_request.opened.json", (HEAD_SHA, HEAD_REF, BASE_REF, 2, [])),
        ("pull_request.opened.2.json", (HEAD_SHA, HEAD_REF, BASE_REF, 2, ["bug"])),
        ("pull_request.reopened.json", (HEAD_SHA, HEAD_REF, BASE_REF, 2, ["bug"])),
        ("pull_request.reopened.2.json", (HEAD_SHA, HEAD_REF, BASE_REF, 2, ["bug"])),
        ("pull_request.synchronize.json", (HEAD_SHA, HEAD_REF, BASE_REF, 2, ["bug"])),
        ("push.json", ("6113728f27ae82c7b1a177c8d03f9e96e0adf246", "simple-tag", None, None, [])),
        ("push.2.json", ("0000000000000000000000000000000000000000", "simple-tag", None, None, [])),
        ("workflow_dispatch.json", ("a" * 40, "main", None, None, [])),
        ("workflow_dispatch.2.json", ("a" * 40, "master", None, None, [])),
        ("workflow_run.completed.json", ("5779607b49aab1200488439f02372c57b4f75444", "main", None, None, [])),
        ("workflow_run.completed.2.json", ("3484a3fb816e0859fd6e1cea078d76385ff50625", "master", None, None, [])),
    ],
)
def test_every_real_payload_gives_the_context_it_always_gave(tmp_path, name, expected):
    """(commit, branch, base branch, PR number, labels) with the variables GitHub sets for that event."""
    path = EVENTS / name
    payload = json.loads(path.read_text())
    event_name = name.split(".")[0]
    if event_name == "pull_request":
        env = pull_request_env(name)
        env["GITHUB_EVENT_PATH"] = str(path)
    elif event_name == "workflow_run":  # GITHUB_SHA and GITHUB_REF name the default branch's tip
        env = actions_env(event_name, path, GITHUB_SHA="b" * 40, GITHUB_REF="refs/heads/trunk", GITHUB_REF_NAME="trunk")
    else:
        sha = payload.get("after", "a" * 40)
        env = actions_env(event_name, path, GITHUB_SHA=sha, GITHUB_REF=payload["ref"])
        env["GITHUB_REF_NAME"] = payload["ref"].split("/", 2)[2]
    context = run_context(env, tmp_path)
    assert (context.commit, context.branch, context.base_branch, context.pr_number, context.labels) == expected
    assert (context.event, context.repository) == (event_name, "Codertocat/Hello-World")


@pytest.mark.parametrize("event_name", ["pull_request_review", "pull_request_review_comment"])
def test_a_review_event_records_the_pull_requests_head_too(tmp_path, event_name):
    """A review's run checks out the PR's merge ref, as pull_request does (GITHUB_HEAD_REF and GITHUB_BASE_REF
    are set for pull_request and pull_request_target only): the payload names the PR head and base."""
    payload = load("pull_request.synchronize.json")
    env = pull_request_env("pull_request.synchronize.json", event_name)
    env.update(GITHUB_HEAD_REF="", GITHUB_BASE_REF="")
    context = run_context(env, tmp_path)
    pr = payload["pull_request"]
    assert (context.commit, context.branch, context.base_branch) == (pr["head"]["sha"], pr["head"]["ref"], "master")
    assert context.pr_number == 2 and context.labels == ["bug"] and context.event == event_name


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"pull_request": "not an object", "repository": "o/r"},
        {"pull_request": {"head": None, "base": [], "number": "7", "labels": "bug"}},
        {"workflow_run": {"pull_requests": ["not an object"], "head_sha": 5, "repository": None}},
    ],
)
@pytest.mark.parametrize("event_name", ["pull_request", "workflow_run"])
def test_a_payload_of_an_unexpected_shape_is_not_fatal(tmp_path, payload, event_name):
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    env = actions_env(event_name, path, GITHUB_SHA=MERGE_SHA, GITHUB_REF="refs/pull/7/merge", GITHUB_REF_NAME="7/merge")
    context = run_context(env, tmp_path)
    assert (context.commit, context.branch, context.base_branch) == (MERGE_SHA, "7/merge", None)
    assert context.pr_number == 7 and context.labels == []


@pytest.mark.parametrize("event_file", ["missing", "not-json"])
def test_missing_or_broken_event_file_is_not_fatal(tmp_path, event_file):
    path = tmp_path / "event.json"
    if event_file == "not-json":
        path.write_text("{truncated")
    env = actions_env(
        "pull_request",
        path,
        GITHUB_SHA=MERGE_SHA,
        GITHUB_REF="refs/pull/7/merge",
        GITHUB_HEAD_REF="feature",
        GITHUB_BASE_REF="main",
    )
    context = run_context(env, tmp_path)
    assert (context.commit, context.branch, context.base_branch) == (MERGE_SHA, "feature", "main")
    assert context.pr_number == 7  # from GITHUB_REF when the payload cannot say


@pytest.mark.parametrize(("attempt", "suffix"), [("1", ""), ("3", "/attempts/3"), ("", "")])
def test_run_url_names_the_attempt_after_the_first(tmp_path, attempt, suffix):
    env = actions_env(
        "push", tmp_path / "none.json", GITHUB_RUN_ATTEMPT=attempt, GITHUB_SERVER_URL="https://ghe.example"
    )
    assert (
        run_context(env, tmp_path).run_url == f"https://ghe.example/Codertocat/Hello-World/actions/runs/1234567{suffix}"
    )


@pytest.mark.parametrize("attempt", ["1", "2", ""])
def test_the_comments_summary_link_is_the_run_url(tmp_path, attempt):
    """`trtci comment` and `trtci status` link the job summary of the attempt that measured, as the run does."""
    from trtci.cli.github import _summary_url

    env = actions_env("pull_request", tmp_path / "none.json", GITHUB_RUN_ATTEMPT=attempt)
    assert _summary_url(env) == run_url(env) == run_context(env, tmp_path).run_url
    assert run_url(env).endswith("/actions/runs/1234567" + ("/attempts/2" if attempt == "2" else ""))


def test_run_url_is_none_without_a_run_id(tmp_path):
    env = actions_env("push", tmp_path / "none.json")
    del env["GITHUB_RUN_ID"]
    assert run_context(env, tmp_path).run_url is None


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=trtci", "-c", "user.email=trtci@example.com", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> dict:
    """main with two commits, and feature forked from the first main commit with one of its own."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("1")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "one")
    fork_point = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "-q", "-b", "feature")
    (path / "b.txt").write_text("2")
    git(path, "add", "b.txt")
    git(path, "commit", "-q", "-m", "feature work")
    feature_head = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "-q", "main")
    (path / "a.txt").write_text("3")
    git(path, "commit", "-q", "-am", "main moves on")
    git(path, "checkout", "-q", "feature")
    return {"path": path, "fork_point": fork_point, "feature_head": feature_head}


def test_git_checkout_gives_commit_and_branch(repo):
    context = run_context({}, repo["path"])
    assert (context.commit, context.branch) == (repo["feature_head"], "feature")
    assert context.base_branch is None and context.merge_base is None
    assert context.event is None and context.run_url is None


def test_merge_base_with_a_known_base_branch(repo):
    context = run_context({}, repo["path"], overrides={"base_branch": "main"})
    assert context.merge_base == repo["fork_point"]


def test_merge_base_falls_back_to_the_remote_branch(repo):
    path = repo["path"]
    git(path, "update-ref", "refs/remotes/origin/trunk", "main")
    assert run_context({}, path, overrides={"base_branch": "trunk"}).merge_base == repo["fork_point"]
    assert run_context({}, path, overrides={"base_branch": "no-such-branch"}).merge_base is None


def test_detached_head_has_no_branch(repo):
    git(repo["path"], "checkout", "-q", "--detach")
    context = run_context({}, repo["path"])
    assert (context.commit, context.branch) == (repo["feature_head"], None)


def test_outside_git_everything_is_none(tmp_path):
    context = run_context({}, tmp_path)
    assert (context.commit, context.branch, context.merge_base) == (None, None, None)


def test_repository_without_commits(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    context = run_context({}, tmp_path)
    assert (context.commit, context.branch) == (None, None)


def test_without_git_installed_everything_is_none(repo, monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    context = run_context({}, repo["path"], overrides={"base_branch": "main"})
    assert (context.commit, context.branch, context.merge_base) == (None, None, None)


def test_overrides_win_and_none_is_ignored(repo):
    overrides = {"commit": "c" * 40, "branch": "release", "base_branch": None, "pr_number": "42"}
    context = run_context(pull_request_env("pull_request.opened.json"), repo["path"], overrides=overrides)
    assert (context.commit, context.branch, context.pr_number) == ("c" * 40, "release", 42)
    assert context.base_branch == load("pull_request.opened.json")["pull_request"]["base"]["ref"]


def test_unknown_override_is_a_bug(tmp_path):
    with pytest.raises(ValueError, match="not comit"):
        run_context({}, tmp_path, overrides={"comit": "abc"})


def test_run_id_and_start_time(tmp_path):
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    first, second = run_context({}, tmp_path), run_context({}, tmp_path)
    assert re.fullmatch(r"[0-9a-f]{32}", first.run_id) and first.run_id != second.run_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first.started_at)
    started = datetime.datetime.strptime(first.started_at, "%Y-%m-%dT%H:%M:%S%z")
    assert before <= started <= datetime.datetime.now(datetime.timezone.utc)

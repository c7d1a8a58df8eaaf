"""The sticky comment against a local GitHub double: one comment per PR and marker, author check, faults."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from github_server import Fault, github_fixture  # noqa: F401  (the `github` fixture)

from trtci.cli.github import ClientOptions
from trtci.cli.github import comment as comment_command
from trtci.errors import EXIT_INPUT, EXIT_PUBLISH, ConfigError
from trtci.github.api import GitHubClient, GitHubError, RetryPolicy
from trtci.github.comment import (
    MAX_COMMENT_CHARS,
    comment_body,
    find_comment,
    marker,
    publish_comment,
    truncate,
)

REPO = "octo-org/hello"
REPORT = "## trtci\n\n| model | median |\n|---|---|\n| digits | 1.0 ms |\n"


def client(server, sleeps=None, **kwargs) -> GitHubClient:
    return GitHubClient(server.token, server.url, sleep=(sleeps if sleeps is not None else []).append, **kwargs)


def test_first_run_creates_second_run_updates_the_same_comment(github):
    first = publish_comment(client(github), REPO, 5, REPORT)
    second = publish_comment(client(github), REPO, 5, REPORT + "\nsecond run\n")
    comments = github.issue_comments(REPO, 5)
    assert (first.action, second.action) == ("created", "updated")
    assert first.comment_id == second.comment_id == comments[0]["id"]
    assert len(comments) == 1
    assert comments[0]["body"].startswith(marker())
    assert comments[0]["body"].endswith("second run\n")


def test_on_change_skips_an_identical_body(github):
    publish_comment(client(github), REPO, 5, REPORT, mode="on-change")
    again = publish_comment(client(github), REPO, 5, REPORT, mode="on-change")
    assert again.action == "unchanged"
    assert github.requests("PATCH") == [] and len(github.requests("POST")) == 1
    changed = publish_comment(client(github), REPO, 5, REPORT + "x", mode="on-change")
    assert changed.action == "updated"


def test_always_rewrites_an_identical_body(github):
    publish_comment(client(github), REPO, 5, REPORT)
    assert publish_comment(client(github), REPO, 5, REPORT, mode="always").action == "updated"
    assert len(github.requests("PATCH")) == 1


def test_never_sends_nothing(github):
    assert publish_comment(client(github), REPO, 5, REPORT, mode="never").action == "skipped"
    assert github.seen == []


def test_unknown_mode_is_an_input_error(github):
    with pytest.raises(ConfigError, match="on-change"):
        publish_comment(client(github), REPO, 5, REPORT, mode="sometimes")


def test_marker_ids_keep_separate_comments(github):
    publish_comment(client(github), REPO, 5, "cpu report", marker_id="cpu")
    publish_comment(client(github), REPO, 5, "gpu report", marker_id="gpu")
    publish_comment(client(github), REPO, 5, "cpu report 2", marker_id="cpu")
    bodies = sorted(c["body"] for c in github.issue_comments(REPO, 5))
    assert bodies == [marker("cpu") + "\ncpu report 2", marker("gpu") + "\ngpu report"]


def test_rendered_report_with_the_plain_marker_does_not_capture_other_jobs(github):
    rendered = marker() + "\n" + REPORT  # the default comment template starts with the plain marker
    publish_comment(client(github), REPO, 5, rendered, marker_id="gpu-a100")
    plain = publish_comment(client(github), REPO, 5, rendered)
    comments = github.issue_comments(REPO, 5)
    assert plain.action == "created" and len(comments) == 2
    assert comments[0]["body"].count("trtci:report") == 1


@pytest.mark.parametrize("bad", ["a b", "x-->", "", "-lead", "z" * 65])
def test_marker_id_cannot_break_out_of_the_html_comment(bad):
    if bad == "":
        assert marker(bad) == "<!-- trtci:report -->"
        return
    with pytest.raises(ConfigError):
        marker(bad)


def test_pasted_marker_from_another_author_is_not_hijacked(github):
    pasted = github.add_comment(REPO, 5, marker() + "\nI copied your marker", login="mallory")
    result = publish_comment(client(github), REPO, 5, REPORT)
    assert result.action == "created" and result.comment_id != pasted["id"]
    assert github.comments[pasted["id"]]["body"].endswith("I copied your marker")
    assert len(github.issue_comments(REPO, 5)) == 2


def test_extra_author_is_accepted_for_personal_tokens(github):
    mine = github.add_comment(REPO, 5, marker() + "\nold", login=github.login)
    found = find_comment(client(github), REPO, 5, authors=("someone-else", github.login))
    assert found is not None and found["id"] == mine["id"]
    assert find_comment(client(github), REPO, 5, authors=("someone-else",)) is None


def test_finds_the_marker_beyond_the_first_page(github):
    for i in range(120):
        github.add_comment(REPO, 5, f"chatter {i}", login="octocat")
    existing = github.add_comment(REPO, 5, marker() + "\nold")
    assert publish_comment(client(github), REPO, 5, REPORT).comment_id == existing["id"]
    assert len(github.requests("GET")) == 2


def test_long_report_is_truncated_below_the_limit_and_points_to_the_summary(github):
    rows = "".join(f"| model-{i} | {i} ms |\n" for i in range(6000))
    report = "## trtci\n\n| model | median |\n|---|---|\n" + rows
    assert len(report) > MAX_COMMENT_CHARS
    url = "https://github.com/octo-org/hello/actions/runs/1"
    result = publish_comment(client(github), REPO, 5, report, summary_url=url)
    body = github.issue_comments(REPO, 5)[0]["body"]
    assert result.truncated
    assert len(body) < MAX_COMMENT_CHARS
    assert body.startswith(marker()) and f"[job summary]({url})" in body
    kept = body.split("\n\n> [!NOTE]")[0].splitlines()
    assert kept[-1].startswith("| model-") and kept[-1].endswith("|")


def test_truncation_closes_an_open_code_fence():
    report = "intro\n```\n" + "line\n" * 100
    text, cut = truncate(report, 200)
    assert cut and len(text) <= 200
    assert text.split("\n\n> [!NOTE]")[0].endswith("```")


def test_short_report_is_left_alone():
    body, cut = comment_body(REPORT, "gpu")
    assert not cut and body == marker("gpu") + "\n" + REPORT


def test_too_long_body_422_is_not_retried_and_leaves_no_comment(github):
    github.inject(Fault(422, "Validation Failed", method="POST"))
    sleeps: list[float] = []
    with pytest.raises(GitHubError) as info:
        publish_comment(client(github, sleeps), REPO, 5, REPORT)
    assert info.value.status == 422 and sleeps == []
    assert github.issue_comments(REPO, 5) == []


def test_post_that_landed_but_timed_out_is_not_posted_twice(github):
    github.inject(Fault(None, method="POST", delay_s=0.4, apply=True))
    sleeps: list[float] = []
    result = publish_comment(client(github, sleeps, timeout_s=0.1), REPO, 5, REPORT)
    assert len(github.issue_comments(REPO, 5)) == 1
    assert result.action == "updated" and len(github.requests("POST")) == 1
    assert sleeps == [1.0]


def test_post_that_failed_with_5xx_is_posted_again_once(github):
    github.inject(Fault(500, method="POST", times=1))
    sleeps: list[float] = []
    result = publish_comment(client(github, sleeps), REPO, 5, REPORT)
    assert result.action == "created"
    assert len(github.issue_comments(REPO, 5)) == 1 and len(github.requests("POST")) == 2


def test_persistent_5xx_gives_up_without_a_comment(github):
    github.inject(Fault(503, times=100))
    with pytest.raises(GitHubError) as info:
        publish_comment(client(github, retry=RetryPolicy(attempts=3)), REPO, 5, REPORT)
    assert info.value.transient and info.value.status == 503
    assert github.issue_comments(REPO, 5) == []


def test_rate_limited_post_is_retried_after_retry_after(github):
    github.inject(Fault(429, method="POST", headers={"Retry-After": "3"}))
    sleeps: list[float] = []
    assert publish_comment(client(github, sleeps), REPO, 5, REPORT).action == "created"
    assert sleeps == [3.0] and len(github.issue_comments(REPO, 5)) == 1


def test_bad_repository_is_an_input_error(github):
    with pytest.raises(ConfigError, match="owner/name"):
        publish_comment(client(github), "just-a-name", 5, REPORT)


# `trtci comment` driven as a workflow step: GITHUB_* variables, a real event payload, runner files.

EVENTS = Path(__file__).parent / "data" / "events-gh"


def actions_env(server, tmp_path: Path, event: str = "pull_request.opened.json", **extra: str) -> dict[str, str]:
    data = json.loads((EVENTS / event).read_text())
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(data))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event.split(".")[0],
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_REPOSITORY": data["repository"]["full_name"],
        "GITHUB_API_URL": server.url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_TOKEN": server.token,
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        **extra,
    }


def run_comment(env: dict[str, str], *args: str, sleeps: list[float] | None = None):
    options = ClientOptions(sleep=(sleeps if sleeps is not None else []).append)
    return CliRunner().invoke(comment_command, list(args), env=env, obj=options, catch_exceptions=False)


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.md"
    path.write_text(REPORT)
    return path


def test_cli_posts_then_updates_one_comment(github, tmp_path, report_file):
    env = actions_env(github, tmp_path)
    first = run_comment(env, "--report", str(report_file))
    report_file.write_text(REPORT + "\nrun 2\n")
    second = run_comment(env, "--report", str(report_file))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    comments = github.issue_comments("Codertocat/Hello-World", 2)  # the payload's repository and PR number
    assert len(comments) == 1 and comments[0]["body"].endswith("run 2\n")
    outputs = (tmp_path / "output").read_text()
    assert f"comment-id={comments[0]['id']}" in outputs
    assert "comment-action=created" in outputs and "comment-action=updated" in outputs
    assert f"::add-mask::{github.token}" in first.output
    assert first.output.count(github.token) == 1  # only inside the mask command


def test_cli_read_only_token_writes_the_summary_and_warns(github, tmp_path, report_file):
    github.inject(Fault(403, "Resource not accessible by integration", method="POST"))
    env = actions_env(github, tmp_path)
    result = run_comment(env, "--report", str(report_file))
    assert result.exit_code == 0
    assert "::warning title=trtci could not comment::" in result.output
    assert "workflow_run" in result.output
    assert (tmp_path / "summary.md").read_text().startswith(REPORT)
    assert github.issue_comments("Codertocat/Hello-World", 2) == []


@pytest.mark.parametrize("status", [401, 404, 422])
def test_cli_publish_failure_exits_5_without_a_comment(github, tmp_path, report_file, status):
    github.inject(Fault(status, "nope", method="POST"))
    result = run_comment(actions_env(github, tmp_path), "--report", str(report_file))
    assert result.exit_code == EXIT_PUBLISH
    assert f"::error title=trtci::GitHub {status}" in result.output
    assert github.issue_comments("Codertocat/Hello-World", 2) == []


def test_cli_unreachable_api_exits_5(tmp_path, report_file):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = type("Closed", (), {"url": f"http://127.0.0.1:{port}", "token": "t"})()
    env = actions_env(server, tmp_path)
    sleeps: list[float] = []
    result = run_comment(env, "--report", str(report_file), sleeps=sleeps)
    assert result.exit_code == EXIT_PUBLISH
    assert "cannot reach GitHub" in result.output
    assert sleeps == [1.0, 2.0, 4.0, 8.0]


def test_cli_missing_report_or_token_is_an_input_error(github, tmp_path, report_file):
    env = actions_env(github, tmp_path)
    assert run_comment(env, "--report", str(tmp_path / "missing.md")).exit_code == EXIT_INPUT
    no_token = {**env, "GITHUB_TOKEN": ""}
    result = run_comment(no_token, "--report", str(report_file))
    assert result.exit_code == EXIT_INPUT and "GITHUB_TOKEN" in result.output
    assert run_comment(env, "--report", str(report_file), "--mode", "sometimes").exit_code == EXIT_INPUT
    assert github.seen == []


def test_cli_push_event_posts_nothing(github, tmp_path, report_file):
    result = run_comment(actions_env(github, tmp_path, "push.json"), "--report", str(report_file))
    assert result.exit_code == 0 and "::notice::not a pull request" in result.output
    assert github.seen == []


def test_cli_workflow_run_finds_the_pr_by_head_sha(github, tmp_path, report_file):
    env = actions_env(github, tmp_path, "workflow_run.completed.json")
    data = json.loads(Path(env["GITHUB_EVENT_PATH"]).read_text())
    sha = data["workflow_run"]["head_sha"]
    repo = data["workflow_run"]["repository"]["full_name"]
    github.pulls_by_sha[sha] = [31]
    result = run_comment({**env, "GITHUB_REPOSITORY": repo}, "--report", str(report_file), "--marker-id", "gpu")
    assert result.exit_code == 0, result.output
    [posted] = github.issue_comments(repo, 31)
    assert posted["body"].startswith(marker("gpu"))


def test_cli_explicit_repo_and_pr_win(github, tmp_path, report_file):
    env = actions_env(github, tmp_path)
    result = run_comment(env, "--report", str(report_file), "--repo", "other/repo", "--pr", "9", "--mode", "never")
    assert result.exit_code == 0 and github.seen == []
    assert run_comment(env, "--report", str(report_file), "--repo", "other/repo", "--pr", "9").exit_code == 0
    assert len(github.issue_comments("other/repo", 9)) == 1


def test_cli_read_only_without_summary_fallback_leaves_the_summary_alone(github, tmp_path, report_file):
    github.inject(Fault(403, "Resource not accessible by integration", method="POST"))
    result = run_comment(actions_env(github, tmp_path), "--report", str(report_file), "--no-summary")
    assert result.exit_code == 0 and "::warning" in result.output
    assert not (tmp_path / "summary.md").exists()
    assert "comment-action=read-only" in (tmp_path / "output").read_text()

"""`trtci comment` under workflow_run from a fork, and racing runs: which pull request, which report survives.

Real payload shapes (tests/data/events-gh/workflow_run.completed*.json, made a fork's by changing
head_repository) against the GitHub double, where a fork's pull request is missing from
GET /commits/{sha}/pulls as on GitHub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from github_server import github_fixture  # noqa: F401  (the `github` fixture)

from trtci.cli.github import ClientOptions
from trtci.cli.github import comment as comment_command
from trtci.context.event import parse_event
from trtci.errors import EXIT_INPUT
from trtci.github.comment import marker, order_of, run_order

EVENTS = Path(__file__).parent / "data" / "events-gh"
REPORT = "## trtci\n\n| model | median |\n|---|---|\n| digits | 1.0 ms |\n"


def fork_run_event(name: str = "workflow_run.completed.json") -> dict:
    """A workflow_run payload for a fork's pull_request run: empty pull_requests, a foreign head repository."""
    data = json.loads((EVENTS / name).read_text())
    run = data["workflow_run"]
    run["event"] = "pull_request"
    run["head_repository"]["full_name"] = "mallory/" + run["repository"]["name"]
    run["pull_requests"] = []
    return data


def env_for(server, tmp_path: Path, data: dict, name: str = "workflow_run", **extra: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(data))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": name,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": data["repository"]["full_name"],
        "GITHUB_API_URL": server.url,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "99",
        "GITHUB_TOKEN": server.token,
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        **extra,
    }


def comment(env: dict[str, str], tmp_path: Path, *args: str):
    report = tmp_path / "report.md"
    report.write_text(REPORT)
    options = ClientOptions(sleep=[].append)
    return CliRunner().invoke(comment_command, ["--report", str(report), *args], env=env, obj=options)


@pytest.mark.parametrize("payload", ["workflow_run.completed.json", "workflow_run.completed.2.json"])
def test_a_forks_pull_request_is_commented_once_github_confirms_the_claimed_number(github, tmp_path, payload):
    data = fork_run_event(payload)
    repo, sha = data["workflow_run"]["repository"]["full_name"], data["workflow_run"]["head_sha"]
    github.add_pull(repo, 7, sha, fork=True)
    env = env_for(github, tmp_path, data)
    unclaimed = comment(env, tmp_path)
    assert unclaimed.exit_code == 0 and "not a pull request" in unclaimed.output  # commits/{sha}/pulls is empty
    assert github.issue_comments(repo, 7) == []
    result = comment(env, tmp_path, "--pr", "7")
    assert result.exit_code == 0, result.output
    [posted] = github.issue_comments(repo, 7)
    run = data["workflow_run"]
    assert posted["body"].startswith(marker() + f"\n<!-- trtci:order {run['id']}.{run['run_attempt']} -->\n")
    assert any(s.method == "GET" and s.path.endswith("/pulls/7") for s in github.seen)


def test_a_claim_for_a_pull_request_at_another_commit_posts_nothing(github, tmp_path):
    data = fork_run_event()
    repo = data["workflow_run"]["repository"]["full_name"]
    github.add_pull(repo, 8, "f" * 40, fork=True)  # moved on to a newer push, or another pull request entirely
    github.add_pull(repo, 9, data["workflow_run"]["head_sha"], fork=True, state="closed")
    for number in ("8", "9"):
        result = comment(env_for(github, tmp_path, data), tmp_path, "--pr", number)
        assert result.exit_code == 0, result.output
        assert f"::notice title=trtci comment stale::the results name pull request #{number}" in result.output
        assert github.issue_comments(repo, int(number)) == []
    assert "comment-action=stale" in (tmp_path / "output").read_text()
    assert github.requests("POST") == [] and github.requests("PATCH") == []


@pytest.mark.parametrize("claim", ["12345", "0", "-3"])
def test_a_claim_for_a_pull_request_that_does_not_exist_is_an_input_error(github, tmp_path, claim):
    data = fork_run_event()
    result = comment(env_for(github, tmp_path, data), tmp_path, "--pr", claim)
    assert result.exit_code == EXIT_INPUT, result.output
    assert len(result.output.strip().splitlines()) == 2  # the token's mask, then one error line
    assert "::error title=trtci::the results name pull request" in result.output
    assert github.requests("POST") == []


def test_a_claim_needs_the_runs_head_commit(github, tmp_path):
    data = fork_run_event()
    del data["workflow_run"]["head_sha"]
    result = comment(env_for(github, tmp_path, data), tmp_path, "--pr", "7")
    assert result.exit_code == EXIT_INPUT and "names no head commit" in result.output


def test_an_older_benchmark_run_never_overwrites_a_newer_runs_report(github, tmp_path):
    data = fork_run_event()
    run = data["workflow_run"]
    repo = run["repository"]["full_name"]
    github.add_pull(repo, 7, run["head_sha"], fork=True)
    newer = github.add_comment(repo, 7, f"{marker()}\n<!-- trtci:order {run['id'] + 1}.1 -->\nnewer report\n")
    result = comment(env_for(github, tmp_path, data), tmp_path, "--pr", "7")
    assert result.exit_code == 0, result.output
    assert "comment stale: a newer run's report is already there" in result.output
    assert [c["body"] for c in github.issue_comments(repo, 7)] == [newer["body"]]
    assert "comment-action=stale" in (tmp_path / "output").read_text()
    rerun = {**run, "id": run["id"] + 1, "run_attempt": 2}  # a re-run of the newer run wins over its first attempt
    result = comment(env_for(github, tmp_path, {**data, "workflow_run": rerun}), tmp_path, "--pr", "7")
    assert result.exit_code == 0 and "comment updated" in result.output
    [kept] = github.issue_comments(repo, 7)
    assert order_of(kept) == (run["id"] + 1, 2)


def test_racing_comments_of_a_pull_request_event_are_reconciled_to_the_newest(github, tmp_path):
    data = json.loads((EVENTS / "pull_request.opened.json").read_text())
    repo, number = data["repository"]["full_name"], data["number"]
    github.add_comment(repo, number, f"{marker()}\n<!-- trtci:order 120.1 -->\nnewest\n")
    github.add_comment(repo, number, f"{marker()}\n<!-- trtci:order 100.1 -->\nolder\n")
    env = env_for(github, tmp_path, data, "pull_request", GITHUB_RUN_ID="110", GITHUB_RUN_ATTEMPT="3")
    assert "comment stale" in comment(env, tmp_path).output  # run 110 is older than the report of run 120
    result = comment({**env, "GITHUB_RUN_ID": "130"}, tmp_path)
    assert result.exit_code == 0 and "comment updated" in result.output
    [kept] = github.issue_comments(repo, number)
    assert order_of(kept) == (130, 3) and kept["body"].endswith(REPORT)


def test_run_order_comes_from_the_triggering_run_under_workflow_run():
    data = fork_run_event()
    run = data["workflow_run"]
    env = {"GITHUB_RUN_ID": "5", "GITHUB_RUN_ATTEMPT": "2"}
    assert run_order(parse_event("workflow_run", data), env) == (run["id"], run["run_attempt"])
    pull_request = parse_event("pull_request", json.loads((EVENTS / "pull_request.opened.json").read_text()))
    assert run_order(pull_request, env) == (5, 2)
    assert run_order(pull_request, {"GITHUB_RUN_ID": "5"}) == (5, 1)
    assert run_order(pull_request, {"GITHUB_RUN_ID": "²"}) is None
    assert run_order(pull_request, {}) is None


def test_merge_writes_the_pr_number_its_legs_agree_on(tmp_path):
    from dataclasses import replace

    from tests.sample_runs import passing_run
    from trtci.cli.github import merge as merge_command
    from trtci.store.runfile import write_runfile

    def merged_outputs(*numbers: int | None) -> str:
        legs = tmp_path / f"legs-{'-'.join(map(str, numbers))}"
        for i, number in enumerate(numbers):
            run = passing_run()
            run.context = replace(run.context, run_id=f"run-{i}", pr_number=number)
            write_runfile(run, legs / f"leg{i}")
        output = tmp_path / f"output-{legs.name}"
        env = {"GITHUB_OUTPUT": str(output)}
        result = CliRunner().invoke(merge_command, [str(legs), "--fail-on", "none"], env=env)
        assert result.exit_code == 0, result.output
        return output.read_text()

    assert "pr-number=42\n" in merged_outputs(42, 42)
    assert "pr-number" not in merged_outputs(42, 43)  # legs that disagree name no pull request
    assert "pr-number" not in merged_outputs(None)

"""`trtci status`: the gate's verdict as a commit status and a check run, against the local GitHub double
(validated against github.com's and GHES's API descriptions); a read-only token warns instead of failing."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner
from github_server import Fault, github_fixture  # noqa: F401  (the `github` fixture)

from tests.sample_runs import passing_run, sample_run
from trtci.cli.github import register
from trtci.report.json_summary import write_summary
from trtci.verdict.gate import judge

REPO = "octo-org/hello"
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"


def invoke(github, *args: str, token: str | None = None):
    group = click.Group("trtci")
    register(group)
    env = {"GITHUB_TOKEN": token or github.token, "GITHUB_API_URL": github.url, "GITHUB_ACTIONS": ""}
    return CliRunner().invoke(group, ["status", "--repo", REPO, "--sha", SHA, *args], env=env)


def test_failing_run_posts_failure_status_and_check_run(github, tmp_path):
    run = sample_run()
    write_summary(run, tmp_path / "summary.json")
    (tmp_path / "report.md").write_text("## trtci report\n" + "x" * 70_000)
    result = invoke(
        github, "--json", str(tmp_path / "summary.json"), "--report", str(tmp_path / "report.md"), "--check-run"
    )
    assert result.exit_code == 0, result.output
    words = judge(run).words
    [status] = github.statuses
    assert status["state"] == "failure" and status["context"] == "trtci" and status["sha"] == SHA
    assert status["description"].startswith(words) and len(status["description"]) <= 140
    [check] = github.check_runs
    assert (
        check["conclusion"] == "failure" and check["head_sha"] == SHA and check["output"]["title"] == f"trtci: {words}"
    )
    assert len(check["output"]["summary"]) <= 65_535 and check["output"]["summary"].startswith("## trtci report")


def test_passing_run_posts_success(github, tmp_path):
    write_summary(passing_run(), tmp_path / "summary.json")
    result = invoke(github, "--json", str(tmp_path / "summary.json"))
    assert result.exit_code == 0, result.output
    assert [s["state"] for s in github.statuses] == ["success"] and github.check_runs == []


def test_read_only_token_warns_and_exits_0(github, tmp_path):
    write_summary(passing_run(), tmp_path / "summary.json")
    github.inject(Fault(403, "Resource not accessible by integration", method="POST"))
    result = invoke(github, "--json", str(tmp_path / "summary.json"))
    assert result.exit_code == 0 and "warning" in result.output.lower()
    assert github.statuses == []


def test_bad_token_is_a_publish_failure(github, tmp_path):
    write_summary(passing_run(), tmp_path / "summary.json")
    result = invoke(github, "--json", str(tmp_path / "summary.json"), token="wrong")
    assert result.exit_code == 5 and "wrong" not in result.output


def test_a_file_that_is_not_a_summary_is_bad_input(github, tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"passed": "yes"}))
    result = invoke(github, "--json", str(tmp_path / "x.json"))
    assert result.exit_code == 2 and "not a trtci JSON summary" in result.output
    assert github.requests() == []

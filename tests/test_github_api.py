"""The REST client against a local GitHub double: headers, pagination, GitHub's retry rules, errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from github_server import Fault, github_fixture  # noqa: F401  (the `github` fixture)

from trtci.errors import EXIT_PUBLISH, ConfigError
from trtci.github.api import GitHubClient, GitHubError, RetryPolicy

REPO = "octo-org/hello"
ROOT = Path(__file__).resolve().parent.parent


def client_for(server, sleeps: list[float], **kwargs) -> GitHubClient:
    return GitHubClient(server.token, server.url, sleep=sleeps.append, **kwargs)


def test_sends_githubs_headers_and_token(github):
    sleeps: list[float] = []
    github.add_comment(REPO, 1, "hello")
    assert client_for(github, sleeps).get(f"/repos/{REPO}/issues/1/comments")[0]["body"] == "hello"
    seen = github.requests("GET")[0]
    assert seen.headers["Accept"] == "application/vnd.github+json"
    assert seen.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert seen.headers["Authorization"] == f"Bearer {github.token}"
    assert seen.path.startswith(github.prefix + "/repos/")


def test_token_is_not_in_repr_or_errors(github):
    client = GitHubClient("ghs_secret-value", github.url, sleep=lambda s: None)
    assert "ghs_secret-value" not in repr(client)
    with pytest.raises(GitHubError) as info:
        client.get(f"/repos/{REPO}/issues/1/comments")
    assert info.value.status == 401
    assert "ghs_secret-value" not in str(info.value)
    assert info.value.exit_code == EXIT_PUBLISH


def test_base_url_and_token_from_environment(github):
    client = GitHubClient.from_env("MY_TOKEN", {"MY_TOKEN": github.token, "GITHUB_API_URL": github.url + "/"})
    assert client.base_url == github.url
    assert GitHubClient.from_env("T", {"T": "x"}).base_url == "https://api.github.com"
    with pytest.raises(ConfigError, match=r"\$MY_TOKEN"):
        GitHubClient.from_env("MY_TOKEN", {"GITHUB_API_URL": github.url})


def test_paginates_with_link_next(github):
    for i in range(250):
        github.add_comment(REPO, 7, f"comment {i}")
    github.add_comment(REPO, 8, "other issue")
    bodies = [c["body"] for c in client_for(github, []).paginate(f"/repos/{REPO}/issues/7/comments")]
    assert bodies == [f"comment {i}" for i in range(250)]
    gets = github.requests("GET")
    assert len(gets) == 3
    assert gets[0].query == {"per_page": "100"}
    assert gets[2].query == {"per_page": "100", "page": "3"}


def test_retry_after_is_honoured(github):
    sleeps: list[float] = []
    github.inject(Fault(429, "slow down", headers={"Retry-After": "7"}, times=2))
    client_for(github, sleeps).get(f"/repos/{REPO}/issues/1/comments")
    assert sleeps == [7.0, 7.0]
    assert len(github.requests("GET")) == 3


def test_exhausted_primary_rate_limit_waits_until_reset(github):
    sleeps: list[float] = []
    now = 1_700_000_000.0
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 42)}
    github.inject(Fault(403, "API rate limit exceeded for installation.", headers=headers))
    client_for(github, sleeps, clock=lambda: now).get(f"/repos/{REPO}/issues/1/comments")
    assert sleeps == [43.0]


def test_secondary_rate_limit_without_headers_backs_off_from_a_minute(github):
    sleeps: list[float] = []
    github.inject(Fault(403, "You have exceeded a secondary rate limit.", times=2))
    client_for(github, sleeps).get(f"/repos/{REPO}/issues/1/comments")
    assert sleeps == [60.0, 120.0]


def test_rate_limit_reset_too_far_away_fails_instead_of_stalling(github):
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(10**10)}
    github.inject(Fault(403, "API rate limit exceeded", headers=headers))
    with pytest.raises(GitHubError, match="rate limit resets in"):
        client_for(github, []).get(f"/repos/{REPO}/issues/1/comments")


def test_server_errors_back_off_exponentially_with_a_cap(github):
    sleeps: list[float] = []
    github.inject(Fault(502, "Bad Gateway", times=4))
    policy = RetryPolicy(attempts=5, backoff_s=1.0, backoff_cap_s=3.0)
    client_for(github, sleeps, retry=policy).get(f"/repos/{REPO}/issues/1/comments")
    assert sleeps == [1.0, 2.0, 3.0, 3.0]


def test_server_errors_give_up_after_the_attempts(github):
    sleeps: list[float] = []
    github.inject(Fault(500, "boom", times=10))
    with pytest.raises(GitHubError) as info:
        client_for(github, sleeps, retry=RetryPolicy(attempts=3)).get(f"/repos/{REPO}/issues/1/comments")
    assert info.value.status == 500 and info.value.transient
    assert len(github.requests("GET")) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_client_errors_are_never_retried(github, status):
    sleeps: list[float] = []
    github.inject(Fault(status, "nope", times=5))
    with pytest.raises(GitHubError) as info:
        client_for(github, sleeps).post(f"/repos/{REPO}/issues/1/comments", {"body": "x"})
    assert info.value.status == status
    assert sleeps == [] and len(github.requests("POST")) == 1
    assert github.issue_comments(REPO, 1) == []


def test_read_only_token_is_recognised(github):
    github.inject(Fault(403, "Resource not accessible by integration"))
    with pytest.raises(GitHubError) as info:
        client_for(github, []).post(f"/repos/{REPO}/issues/1/comments", {"body": "x"})
    assert info.value.read_only
    assert "two-workflow" in str(info.value)


def test_timeout_on_get_is_retried(github):
    sleeps: list[float] = []
    github.inject(Fault(None, delay_s=0.5, apply=True))
    github.add_comment(REPO, 1, "hi")
    comments = client_for(github, sleeps, timeout_s=0.1).get(f"/repos/{REPO}/issues/1/comments")
    assert [c["body"] for c in comments] == ["hi"]
    assert sleeps == [1.0]


def test_timeout_on_post_is_not_repeated_by_the_client(github):
    github.inject(Fault(None, method="POST", delay_s=0.5, apply=True))
    with pytest.raises(GitHubError) as info:
        client_for(github, [], timeout_s=0.1).post(f"/repos/{REPO}/issues/1/comments", {"body": "x"})
    assert info.value.transient
    assert len(github.requests("POST")) == 1


def test_refused_connection_is_retried_then_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    client = GitHubClient("t", f"http://127.0.0.1:{port}", sleep=sleeps.append, retry=RetryPolicy(attempts=3))
    with pytest.raises(GitHubError, match="cannot reach GitHub") as info:
        client.post(f"/repos/{REPO}/issues/1/comments", {"body": "x"})
    assert info.value.transient and info.value.status is None
    assert sleeps == [1.0, 2.0]


def test_server_rejects_requests_that_break_the_description(github):
    """The double is strict: a request GitHub's description rejects is recorded as a violation."""
    client = client_for(github, [])
    with pytest.raises(GitHubError) as info:
        client.post(f"/repos/{REPO}/issues/1/comments", {"text": "no body field"})
    assert info.value.status == 400
    assert len(github.violations) == 1 and "body" in github.violations[0]
    github.violations.clear()


def test_importing_the_github_commands_loads_no_http_library():
    """`trtci --help` registers these commands: requests is imported only when a client is made."""
    code = (
        "import sys, trtci.cli.github, trtci.github.api, trtci.github.comment, trtci.github.checks, "
        "trtci.github.artifacts\n"
        "print(sorted(m for m in ('requests', 'urllib3') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"

"""Publishing under faults and races, against the local GitHub double: concurrent comment runs leave one comment with
the newest report, a deleted comment is created again, bodies fit however GitHub counts, a transient failure of an
idempotent write is retried, and a fork's pull request is found from the claimed number, verified."""

from __future__ import annotations

import threading

import pytest
from github_server import Answer, Fault, github_fixture  # noqa: F401  (the `github` fixture)

from trtci.errors import ConfigError
from trtci.github.api import GitHubClient, GitHubError
from trtci.github.checks import post_status
from trtci.github.comment import (
    MAX_COMMENT_CHARS,
    comment_body,
    marker,
    order_of,
    publish_comment,
    pull_request_for_run,
)
from trtci.verdict.gate import RunVerdict

REPO = "octo-org/hello"
SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"


def client(server) -> GitHubClient:
    return GitHubClient(server.token, server.url, sleep=lambda s: None)


def test_two_runs_racing_leave_one_comment_with_the_newest_report(github):
    barrier = threading.Barrier(2)
    results = {}

    def run(order: tuple[int, int]) -> None:
        barrier.wait()
        results[order] = publish_comment(client(github), REPO, 5, f"report of run {order[0]}\n", order=order)

    threads = [threading.Thread(target=run, args=(o,)) for o in ((100, 1), (101, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [survivor] = github.issue_comments(REPO, 5)
    assert survivor["body"].endswith("report of run 101\n") and order_of(survivor) == (101, 1)
    assert {r.action for r in results.values()} <= {"created", "updated", "stale", "superseded"}


def test_an_older_run_never_overwrites_a_newer_report(github):
    publish_comment(client(github), REPO, 5, "new\n", order=(200, 1))
    stale = publish_comment(client(github), REPO, 5, "old\n", order=(199, 3))
    [comment] = github.issue_comments(REPO, 5)
    assert stale.action == "stale" and comment["body"].endswith("new\n")
    assert publish_comment(client(github), REPO, 5, "rerun\n", order=(200, 2)).action == "updated"
    assert github.issue_comments(REPO, 5)[0]["body"].endswith("rerun\n")


def test_duplicates_left_by_older_versions_are_reconciled_on_the_next_update(github):
    for text in ("first", "second"):
        github.add_comment(REPO, 5, comment_body(text + "\n")[0])
    result = publish_comment(client(github), REPO, 5, "third\n", order=(300, 1))
    [comment] = github.issue_comments(REPO, 5)
    assert comment["id"] == result.comment_id and comment["body"].endswith("third\n")


def test_a_comment_deleted_meanwhile_is_created_again(github):
    existing = github.add_comment(REPO, 5, comment_body("old\n")[0])
    github.inject(Fault(404, "Not Found", method="PATCH", path=r"/issues/comments/\d+$", apply=False))
    result = publish_comment(client(github), REPO, 5, "new\n")
    # The PATCH failed as if the comment had gone; trtci listed again and updated what it found.
    assert result.action == "updated" and result.comment_id == existing["id"]
    del github.comments[existing["id"]]  # now really gone between listing and writing
    github.inject(Fault(404, "Not Found", method="PATCH", path=r"/issues/comments/\d+$", apply=False))
    again = publish_comment(client(github), REPO, 5, "newer\n")
    assert again.action == "created" and github.issue_comments(REPO, 5)[0]["body"].endswith("newer\n")


@pytest.mark.parametrize("char", ["😀", "é", "字"], ids=["emoji", "latin", "cjk"])
def test_a_long_body_of_wide_characters_fits_however_github_counts(github, char):
    report = (char * 99 + "\n") * 1_300  # about 130,000 code points
    body, cut = comment_body(report)
    assert cut and len(body.encode("utf-8")) <= MAX_COMMENT_CHARS  # bytes >= UTF-16 units >= code points
    result = publish_comment(client(github), REPO, 5, report)
    assert result.truncated and result.action == "created"  # the double refuses > 65,536 UTF-16 units


def test_one_502_on_a_commit_status_is_retried(github):
    github.inject(Fault(502, "Bad Gateway", method="POST", path=r"/statuses/", apply=True))
    verdict = RunVerdict(True, 1, 1, *[0] * 9)
    post_status(client(github), REPO, SHA, verdict, target_url=None)
    assert len(github.statuses) == 2  # the first landed although its answer was a 502; the repeat replaces it


def test_a_forks_pull_request_is_found_from_the_claimed_number_and_verified(github):
    github.add_pull(REPO, 7, SHA, fork=True)
    assert pull_request_for_run(client(github), REPO, SHA) is None  # commits/{sha}/pulls lists no fork PR
    assert pull_request_for_run(client(github), REPO, SHA, claimed=7) == 7
    github.add_pull(REPO, 8, "f" * 40, fork=True)
    with pytest.raises(ConfigError, match="pull request #8, which is open at ffffffffffff, not open at this run"):
        pull_request_for_run(client(github), REPO, SHA, claimed=8)
    github.add_pull(REPO, 9, SHA, fork=True, state="closed")
    with pytest.raises(ConfigError, match="#9, which is closed"):
        pull_request_for_run(client(github), REPO, SHA, claimed=9)
    github.add_pull(REPO, 10, SHA)
    assert pull_request_for_run(client(github), REPO, SHA, claimed=7) == 10  # the repository's own PR wins


def test_a_comment_that_is_listed_but_always_gone_ends_the_update_with_an_error(github):
    """A listing that keeps showing a comment whose update always answers 404 must not loop forever."""
    seeded = github.add_comment(REPO, 1, marker() + "\nold\n")
    github.answer(Answer(404, b'{"message": "Not Found"}', method="PATCH", path=rf"/comments/{seeded['id']}$"))
    with pytest.raises(GitHubError, match="404"):
        publish_comment(client(github), REPO, 1, "new report")
    assert len(github.requests("PATCH")) == client(github).retry.attempts

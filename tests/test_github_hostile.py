"""Property tests: whatever an event payload or the GitHub API says, a trtci command ends with a documented exit
code and one line, never a traceback, a hang or a workflow command of someone else's making.

Event payloads come from the runner's file; API answers from GitHub, a proxy in between, or (on GHES) a server
someone else runs. Both are generated here: any JSON, any bytes, and the real shapes with any part replaced. The
API is the local double (tests/github_server.py) told to answer anything (`Answer`); the requests trtci sends are
still checked against GitHub's description. Exit codes: 0 done (or nothing to do), 2 input (the event, a claim),
5 publishing (GitHub's answer could not be used); never 4.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from github_server import Answer, GitHubServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.log_lines import OWN_COMMAND, commands_in
from trtci.cli.github import ClientOptions, baseline_fetch, comment, status
from trtci.context.event import PRIVILEGED_EVENTS, parse_event
from trtci.github.checks import COUNTS
from trtci.github.preflight import run_preflight

EVENTS = Path(__file__).parent / "data" / "events-gh"
PAYLOADS = {path.name: json.loads(path.read_text()) for path in sorted(EVENTS.glob("*.json"))}
EVENT_NAMES = ["pull_request", "pull_request_target", "workflow_run", "issue_comment", "push", "workflow_dispatch"]
PROPERTY = settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """`document` with a few of its parts (any depth) replaced by any JSON, or removed."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, 4))):
        node, key = document, None
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            parent, node = node, node[key]
        if key is None:
            continue
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(json_values)
    return document


class Deep(bytes):
    """JSON nested beyond Python's recursion limit, with a short repr for hypothesis' reports."""

    def __new__(cls, depth: int = 100_000) -> Deep:
        return super().__new__(cls, b"[" * depth + b"]" * depth)

    def __repr__(self) -> str:
        return "Deep()"


def deep() -> bytes:
    return Deep()


def raw_bodies(shape: Any) -> st.SearchStrategy[bytes]:
    """What an answer's body can be: the documented shape with parts changed, any JSON, any bytes, deep nesting."""
    as_json = st.one_of(mutated(shape), json_values).map(lambda value: json.dumps(value).encode())
    return st.one_of(as_json, as_json, st.binary(max_size=64), st.just(deep()))


statuses = st.sampled_from([200, 200, 200, 201, 204, 301, 400, 403, 404, 410, 422, 429, 500, 502])
links = st.sampled_from([None, "self", "elsewhere"])


def one_outcome(result, also_said: tuple[str, ...] = ()) -> None:
    """A documented exit code (0, 2 or 5); on failure exactly one error line; no traceback; no workflow command
    but trtci's own. Lines starting with `also_said` are expected on the way, like the token's mask."""
    output = result.output
    assert result.exit_code in (0, 2, 5), output
    assert "Traceback" not in output and not isinstance(result.exception, AssertionError), output
    assert all(OWN_COMMAND.match(line) for line in commands_in(output)), commands_in(output)
    said = ("::add-mask::", "GitHub API: ", *also_said)  # the mask first; a line per retry, as they happen
    lines = [line for line in output.splitlines() if line and not line.startswith(said)]
    if result.exit_code:
        assert len(lines) == 1 and lines[0].startswith("::error title=trtci::"), output


# Event payloads: parsing and the preflight.


def head_named_and_ours(name: str, payload: Any) -> bool:
    """Independently of trtci: does the payload name a head repository equal to the repository (or, for a
    comment, is it on an issue rather than a pull request)? Only then may a privileged event pass."""
    if not isinstance(payload, dict):
        return False
    repo = payload.get("repository")
    full_name = repo.get("full_name") if isinstance(repo, dict) else None
    if name == "issue_comment":
        issue = payload.get("issue")
        return isinstance(issue, dict) and "pull_request" not in issue
    if name == "workflow_run":
        run = payload.get("workflow_run")
        run = run if isinstance(run, dict) else {}
        inner = run.get("repository")
        full_name = inner.get("full_name") if isinstance(inner, dict) and inner.get("full_name") else full_name
        head = run.get("head_repository")
    else:
        pull = payload.get("pull_request")
        head = pull.get("head") if isinstance(pull, dict) else None
        head = head.get("repo") if isinstance(head, dict) else None
    head_name = head.get("full_name") if isinstance(head, dict) else None
    return isinstance(full_name, str) and bool(full_name) and head_name == full_name


payloads = st.one_of(
    st.sampled_from(sorted(PAYLOADS)).flatmap(lambda name: mutated(PAYLOADS[name])),
    json_values,
)


@PROPERTY
@given(name=st.sampled_from(EVENT_NAMES), payload=payloads)
def test_any_payload_parses_to_typed_fields(name, payload):
    event = parse_event(name, payload) if isinstance(payload, dict) else None
    if event is None:
        return
    for value in (event.repository, event.head_sha, event.base_ref, event.head_ref, event.head_repository):
        assert value is None or (isinstance(value, str) and value)
    for value in (event.pr_number, event.run_id, event.run_attempt):
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
    assert all(isinstance(label, str) for label in event.labels)


@PROPERTY
@given(
    name=st.sampled_from(EVENT_NAMES),
    content=st.one_of(payloads.map(lambda p: json.dumps(p).encode()), st.binary(max_size=40), st.just(deep())),
    in_actions=st.booleans(),
)
def test_preflight_on_any_payload_passes_only_what_it_can_vouch_for(tmp_path_factory, name, content, in_actions):
    folder = tmp_path_factory.mktemp("event")
    (folder / "event.json").write_bytes(content)
    env = {"GITHUB_EVENT_NAME": name, "GITHUB_EVENT_PATH": str(folder / "event.json"), "RUNNER_ENVIRONMENT": "x"}
    if in_actions:
        env.update(GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(folder / "output"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_preflight(env)
    output = out.getvalue() + err.getvalue()
    assert code in (0, 2) and "Traceback" not in output
    assert all(OWN_COMMAND.match(line) for line in commands_in(output)), commands_in(output)
    if code == 2:
        assert len(output.strip().splitlines()) == 1
    try:
        payload = json.loads(content)
    except (ValueError, RecursionError):
        payload = None
    if name in PRIVILEGED_EVENTS and code == 0:
        assert head_named_and_ours(name, payload), payload


# API answers: `trtci comment`, `trtci status` and `trtci baseline fetch` against a double that answers anything.


@pytest.fixture(scope="module")
def api():
    with GitHubServer() as server:
        yield server


def reset(server: GitHubServer) -> None:
    server.comments.clear()
    server.pulls.clear()
    server.pulls_by_sha.clear()
    server.answers.clear()
    server.faults.clear()
    server.seen.clear()
    server.artifacts.clear()
    server.blobs.clear()


def answer(server: GitHubServer, path: str, status: int, body: bytes, link: str | None) -> None:
    """Answer GET `path` (an API path) with `body`, and a Link header to the same page again or to another host."""
    headers = {}
    if link == "self":  # a next page that is the same page: pagination must still end
        headers["Link"] = f'<{server.url}{path}?per_page=100&page=2>; rel="next"'
    elif link == "elsewhere":  # a next page on another host, which would receive the token
        headers["Link"] = '<https://attacker.example/steal?page=2>; rel="next"'
    server.answer(Answer(status, body, method="GET", path=re.escape(path) + "$", headers=headers))


def cli(command, args: list[str], env: dict[str, str]):
    options = ClientOptions(sleep=lambda seconds: None, timeout_s=5.0)
    return CliRunner().invoke(command, args, env=env, obj=options)


def actions_env(server: GitHubServer, folder: Path, event: str, payload: dict) -> dict[str, str]:
    (folder / "event.json").write_text(json.dumps(payload))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(folder / "event.json"),
        "GITHUB_REPOSITORY": "Codertocat/Hello-World",
        "GITHUB_API_URL": server.url,
        "GITHUB_RUN_ID": "77",
        "GITHUB_TOKEN": server.token,
        "GITHUB_OUTPUT": str(folder / "output"),
        "GITHUB_STEP_SUMMARY": str(folder / "summary.md"),
    }


COMMENT = {
    "id": 1,
    "body": "<!-- trtci:report -->\n<!-- trtci:order 5.1 -->\nold",
    "html_url": "https://github.com/o/r/pull/2#issuecomment-1",
    "user": {"login": "github-actions[bot]"},
}


@PROPERTY
@given(
    listing=raw_bodies([COMMENT, {**COMMENT, "id": 2}]),
    listing_status=statuses,
    link=links,
    write=st.one_of(st.none(), raw_bodies(COMMENT)),
    write_status=statuses,
)
def test_comment_ends_cleanly_whatever_github_answers(
    api, tmp_path_factory, listing, listing_status, link, write, write_status
):
    reset(api)
    answer(api, "/repos/Codertocat/Hello-World/issues/2/comments", listing_status, listing, link)
    if write is not None:
        api.answer(Answer(write_status, write, method="POST"))
        api.answer(Answer(write_status, write, method="PATCH"))
    folder = tmp_path_factory.mktemp("comment")
    (folder / "report.md").write_text("## trtci\n")
    env = actions_env(api, folder, "pull_request", PAYLOADS["pull_request.opened.json"])
    result = cli(comment, ["--report", str(folder / "report.md")], env)
    one_outcome(result, also_said=("ignoring comment ",))  # a marker in someone else's comment, named


PULL = {"number": 7, "state": "open", "head": {"sha": "5779607b49aab1200488439f02372c57b4f75444"}}


@PROPERTY
@given(
    commit_pulls=raw_bodies([PULL]),
    commit_status=statuses,
    pull=raw_bodies(PULL),
    pull_status=statuses,
    link=links,
    claim=st.sampled_from([[], ["--pr", "7"], ["--pr", "0"]]),
)
def test_a_workflow_run_claim_ends_cleanly_whatever_github_answers(
    api, tmp_path_factory, commit_pulls, commit_status, pull, pull_status, link, claim
):
    reset(api)
    sha = PULL["head"]["sha"]
    answer(api, f"/repos/Codertocat/Hello-World/commits/{sha}/pulls", commit_status, commit_pulls, link)
    api.answer(Answer(pull_status, pull, method="GET", path=r"/pulls/\d+$"))
    folder = tmp_path_factory.mktemp("claim")
    (folder / "report.md").write_text("## trtci\n")
    payload = copy.deepcopy(PAYLOADS["workflow_run.completed.json"])
    payload["workflow_run"]["head_repository"]["full_name"] = "mallory/octo-repo"
    env = actions_env(api, folder, "workflow_run", payload)
    result = cli(comment, ["--report", str(folder / "report.md"), "--repo", "Codertocat/Hello-World", *claim], env)
    one_outcome(result, also_said=("ignoring comment ",))
    posted = [s for s in api.seen if s.method == "POST"]
    if posted:  # a comment is only ever posted on the pull request GitHub confirmed at the run's head
        assert all(s.path.endswith("/issues/7/comments") for s in posted)


MEMBERS = ["a.trtci.json.gz", "../up.trtci.json.gz", "/abs.trtci.json.gz", "d/b.trtci.json.gz", "notes.txt", "x:y"]


def zipped(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"\x1f\x8b not really a run file")
    return buffer.getvalue()


ARTIFACT = {
    "id": 11,
    "name": "trtci-results",
    "size_in_bytes": 100,
    "expired": False,
    "created_at": "2025-01-01T00:00:00Z",
    "workflow_run": {"id": 5, "repository_id": 1, "head_repository_id": 1, "head_branch": "main", "head_sha": "a"},
}


@PROPERTY
@given(
    listing=raw_bodies({"total_count": 1, "artifacts": [ARTIFACT]}),
    listing_status=statuses,
    link=links,
    archive=st.one_of(st.binary(max_size=64), st.lists(st.sampled_from(MEMBERS), max_size=3, unique=True).map(zipped)),
    archive_status=statuses,
)
def test_baseline_fetch_ends_cleanly_whatever_github_answers(
    api, tmp_path_factory, listing, listing_status, link, archive, archive_status
):
    reset(api)
    answer(api, "/repos/Codertocat/Hello-World/actions/artifacts", listing_status, listing, link)
    api.answer(Answer(archive_status, archive, method="GET", path=r"/artifacts/\d+/zip$"))
    folder = tmp_path_factory.mktemp("baseline")
    env = actions_env(api, folder, "pull_request", PAYLOADS["pull_request.opened.json"])
    result = cli(baseline_fetch, ["--branch", "main", "--out", str(folder / "out")], env)
    one_outcome(result, also_said=("::error title=trtci::skipped ",))  # each archive member left out, named
    written = list((folder / "out").glob("*")) if (folder / "out").exists() else []
    assert all(path.parent == folder / "out" and path.is_file() for path in written)


@PROPERTY
@given(answer_body=raw_bodies({"id": 1, "state": "success"}), answer_status=statuses, check_run=st.booleans())
def test_status_ends_cleanly_whatever_github_answers(api, tmp_path_factory, answer_body, answer_status, check_run):
    reset(api)
    api.answer(Answer(answer_status, answer_body, method="POST"))
    folder = tmp_path_factory.mktemp("status")
    (folder / "summary.json").write_text(json.dumps({"passed": True, "counts": dict.fromkeys(COUNTS, 0)}))
    env = actions_env(api, folder, "pull_request", PAYLOADS["pull_request.opened.json"])
    args = ["--json", str(folder / "summary.json"), *(["--check-run"] if check_run else [])]
    one_outcome(cli(status, args, env))


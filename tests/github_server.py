"""A real local HTTP server that plays the GitHub REST API for issue comments, commit statuses, check runs and
Actions artifacts, for tests.

It keeps state (comments per issue, ids, authors), paginates with a Link header as GitHub does, and can be told
to fail, `server.inject(Fault(...))`, or to answer anything at all, `server.answer(Answer(...))`. Every request
it receives is validated against GitHub's published OpenAPI description (github.com or GHES 3.19, copied into
tests/data/github/), and so is every comment response it sends (an Answer's excepted); a mismatch is answered
with 400 and recorded in `server.violations`, which the `github` fixture asserts is empty after each test.

One operation trtci uses is not in the published subset: "List artifacts for a repository"
(`GET /repos/{owner}/{repo}/actions/artifacts`). `openapi()` adds it, built from the subset's own "List workflow
run artifacts" (same response schema) with the query parameters GitHub's documentation gives it: per_page, page,
name. An artifact's zip is served as GitHub serves it: a 302 to blob storage on another host name (`localhost`),
which must not receive the token.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

DATA = Path(__file__).parent / "data" / "github"
SPECS = {
    "github.com": DATA / "rest-api.github.com.subset.json",
    "ghes": DATA / "rest-api.ghes-3.19.subset.json",
}
GITHUB_COM_HOST = "https://api.github.com"
TOO_LONG = "Body is too long (maximum is 65536 characters)"

_COMMENTS = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<number>\d+)/comments$")
_COMMENT = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)$")
_COMMIT_PULLS = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/commits/(?P<sha>[0-9a-f]+)/pulls$")
_PULL = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/pulls/(?P<number>\d+)$")
_STATUSES = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/statuses/(?P<sha>[0-9a-f]+)$")
_CHECK_RUNS = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/check-runs$")
_ARTIFACTS = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/actions/artifacts$")
_ARTIFACT_ZIP = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/actions/artifacts/(?P<id>\d+)/(?P<format>[^/]+)$")
_BLOB = re.compile(r"^/_blobs/(?P<id>\d+)\.zip$")
_VALIDATED_RESPONSES = (_COMMENTS, _COMMENT, _PULL, _STATUSES, _CHECK_RUNS, _ARTIFACTS, _ARTIFACT_ZIP)
REPO_LIST_ARTIFACTS = "/repos/{owner}/{repo}/actions/artifacts"


@cache
def openapi(flavor: str) -> OpenAPI:
    """GitHub's REST description for `flavor` ("github.com" or "ghes"), parsed once per test session, plus
    "List artifacts for a repository", which the subset lacks (see the module docstring)."""
    spec = json.loads(SPECS[flavor].read_text())
    run_artifacts = spec["paths"]["/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"]["get"]
    refs = ("#/components/parameters/owner", "#/components/parameters/repo", "#/components/parameters/per-page")
    params = [p for p in run_artifacts["parameters"] if p.get("$ref") in refs or p.get("$ref", "").endswith("/page")]
    params.append({"$ref": "#/components/parameters/artifact-name"})
    spec["paths"].setdefault(
        REPO_LIST_ARTIFACTS,
        {"get": {**run_artifacts, "operationId": "actions/list-artifacts-for-repo", "parameters": params}},
    )
    return OpenAPI.from_dict(spec)


@dataclass
class Fault:
    """Answer the next `times` matching requests with `status` (after `delay_s`) instead of serving them.

    With `apply=True` the request is carried out first and only the answer is delayed or replaced (a POST
    that lands although the client gave up).
    """

    status: int | None = None
    message: str = "injected fault"
    method: str | None = None
    path: str | None = None  # a regex matched against the API path
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    apply: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or re.search(self.path, path) is not None
        )


@dataclass
class Answer:
    """Answer matching requests with `body` as it is (any status, any headers, any bytes), without validating it
    against the API description: what a broken proxy, a changed API or a hostile server could send."""

    status: int
    body: bytes
    method: str | None = None
    path: str | None = None  # a regex matched against the API path
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or re.search(self.path, path) is not None
        )


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class _Request:
    """openapi-core's Request protocol over what the handler read."""

    def __init__(self, host_url: str, path: str, method: str, query: list, headers: Headers, body: bytes | None):
        self.host_url = host_url
        self.path = path
        self.method = method.lower()
        self.body = body
        self.content_type = headers.get("Content-Type", "")
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query), header=headers, cookie=ImmutableMultiDict()
        )


class _Response:
    def __init__(self, status: int, data: bytes, headers: dict[str, str]):
        self.status_code = status
        self.data = data
        self.content_type = "application/json"
        self.headers = Headers(headers)


class GitHubServer:
    """A GitHub API double on 127.0.0.1 that validates against the real API description."""

    def __init__(self, flavor: str = "github.com", token: str = "ghs_test-token", login: str = "github-actions[bot]"):
        self.flavor = flavor
        self.token = token
        self.login = login
        self.prefix = "/api/v3" if flavor == "ghes" else ""
        self.comments: dict[int, dict[str, Any]] = {}
        self.pulls_by_sha: dict[str, list[int]] = {}
        self.pulls: dict[tuple[str, int], dict[str, Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.check_runs: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self.blobs: dict[int, bytes] = {}
        self.faults: list[Fault] = []
        self.answers: list[Answer] = []
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self._next_id = 1000
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    @property
    def url(self) -> str:
        """The value GITHUB_API_URL takes for this server."""
        return self.host + self.prefix

    def __enter__(self) -> GitHubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def answer(self, answer: Answer) -> None:
        """Serve `answer` to every matching request from now on (the first matching answer wins)."""
        with self._lock:
            self.answers.append(answer)

    def add_comment(self, repo: str, number: int, body: str, login: str | None = None) -> dict[str, Any]:
        """Seed a comment as if someone had posted it (no request, no validation)."""
        with self._lock:
            return self._create(repo, number, body, login or self.login)

    def add_artifact(
        self,
        name: str,
        archive: bytes,
        *,
        branch: str = "main",
        created_at: str = "2025-01-01T00:00:00Z",
        expired: bool = False,
        fork: bool = False,
    ) -> dict[str, Any]:
        """Seed an artifact (its zip bytes) made by a workflow run on `branch`, in a fork when `fork`."""
        with self._lock:
            self._next_id += 1
            aid = self._next_id
            repo_url = f"{self.url}/repos/o/r/actions/artifacts/{aid}"
            artifact = {
                "id": aid,
                "node_id": f"MDg6QXJ0aWZhY3Q{aid}",
                "name": name,
                "size_in_bytes": len(archive),
                "url": repo_url,
                "archive_download_url": f"{repo_url}/zip",
                "expired": expired,
                "created_at": created_at,
                "expires_at": "2099-01-01T00:00:00Z",
                "updated_at": created_at,
                "workflow_run": {
                    "id": aid + 5000,
                    "repository_id": 42,
                    "head_repository_id": 4242 if fork else 42,
                    "head_branch": branch,
                    "head_sha": f"{aid:040x}",
                },
            }
            self.artifacts.append(artifact)
            self.blobs[aid] = archive
            return artifact

    def add_pull(self, repo: str, number: int, head_sha: str, *, fork: bool = False, state: str = "open") -> None:
        """A pull request as GET /pulls/{n} returns it (GitHub's own example, renumbered). A fork's pull request is
        missing from GET /commits/{sha}/pulls, as on GitHub."""
        pull = json.loads(json.dumps(_spec_example(self.flavor, "pull-request")))
        pull.update(number=number, state=state, requested_teams=[])  # the example's team lacks a required `type`
        pull["head"]["sha"] = head_sha
        pull["head"]["repo"]["full_name"] = f"mallory/{repo.split('/')[1]}" if fork else repo
        self.pulls[(repo, number)] = pull
        if not fork:
            self.pulls_by_sha.setdefault(head_sha, []).append(number)

    def issue_comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["issue_url"].endswith(f"/repos/{repo}/issues/{number}")]

    def requests(self, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if method is None or s.method == method]

    def _create(self, repo: str, number: int, body: str, login: str) -> dict[str, Any]:
        self._next_id += 1
        cid = self._next_id
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        comment = {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"{self.url}/repos/{repo}/issues/comments/{cid}",
            "html_url": f"https://github.com/{repo}/pull/{number}#issuecomment-{cid}",
            "issue_url": f"{self.url}/repos/{repo}/issues/{number}",
            "body": body,
            "user": _user(login),
            "created_at": now,
            "updated_at": now,
            "author_association": "NONE",
        }
        self.comments[cid] = comment
        return comment

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _violate(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def handle(self, method: str, raw_path: str, headers: Headers, raw_body: bytes | None):
        """Serve one request: (status, JSON-able body, extra headers)."""
        parts = urlsplit(raw_path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        body = json.loads(raw_body) if raw_body and not _BLOB.match(parts.path) else None
        self.seen.append(Seen(method, parts.path, dict(query), dict(headers), body))
        if m := _BLOB.match(parts.path):
            # Blob storage, not the API: no GitHub headers, no token, raw bytes.
            blob = self.blobs.get(int(m["id"]))
            return (200, blob, {"Content-Type": "application/zip"}) if blob is not None else (404, None, {})
        problem = self._validate_request(method, parts.path, query, headers, raw_body)
        if problem:
            self._violate(f"{method} {raw_path}: {problem}")
            return 400, {"message": f"request does not match GitHub's API description: {problem}"}, {}
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials", "status": "401"}, {}
        path = parts.path[len(self.prefix) :]
        answer = next((a for a in self.answers if a.matches(method, path)), None)
        if answer is not None:
            return answer.status, answer.body, {"Content-Type": "application/json; charset=utf-8", **answer.headers}
        fault = self._take_fault(method, path)
        if fault is not None and not fault.apply:
            time.sleep(fault.delay_s)
            return fault.status, {"message": fault.message, "status": str(fault.status)}, fault.headers
        with self._lock:
            result = self._route(method, path, dict(query), body)
        if fault is not None:
            # The change has landed; only the answer is slow or lost, as when GitHub times out mid-request.
            time.sleep(fault.delay_s)
            if fault.status is not None:
                return fault.status, {"message": fault.message, "status": str(fault.status)}, fault.headers
        return result

    def _validate_request(self, method: str, path: str, query: list, headers: Headers, raw: bytes | None) -> str:
        if not path.startswith(self.prefix + "/"):
            return f"path {path} lacks the API prefix {self.prefix!r}"
        if headers.get("Accept") != "application/vnd.github+json":
            return f"Accept is {headers.get('Accept')!r}, GitHub asks for application/vnd.github+json"
        if headers.get("X-GitHub-Api-Version") != "2022-11-28":
            return f"X-GitHub-Api-Version is {headers.get('X-GitHub-Api-Version')!r}"
        if not headers.get("User-Agent"):
            return "no User-Agent: GitHub rejects such requests"
        host = GITHUB_COM_HOST if self.flavor == "github.com" else self.host
        try:
            openapi(self.flavor).validate_request(_Request(host, path, method, query, headers, raw))
        except Exception as exc:  # openapi-core raises a family of errors; every one is a violation
            return f"{type(exc).__name__}: {exc}"
        return ""

    def validate_response(self, method: str, path: str, status: int, data: Any, headers: dict[str, str]) -> None:
        """Check a 2xx comment response against the description, so the double answers as GitHub does."""
        api_path = path[len(self.prefix) :]
        if status >= 400 or isinstance(data, bytes) or not any(p.match(api_path) for p in _VALIDATED_RESPONSES):
            return  # an error, or raw bytes: a blob, or an Answer that is off the description on purpose
        host = GITHUB_COM_HOST if self.flavor == "github.com" else self.host
        request = _Request(host, path, method, [], Headers({"Content-Type": "application/json"}), None)
        response = _Response(status, json.dumps(data).encode() if data is not None else b"", headers)
        if data is None:
            response.content_type = ""  # a redirect has no body
        try:
            openapi(self.flavor).validate_response(request, response)
        except Exception as exc:
            self._violate(f"response to {method} {path}: {type(exc).__name__}: {exc}")

    def _route(self, method: str, path: str, query: dict[str, str], body: Any):
        if m := _COMMENTS.match(path):
            repo, number = m["repo"], int(m["number"])
            if method == "GET":
                return self._page(path, self.issue_comments(repo, number), query)
            if method == "POST":
                if _github_length(body["body"]) > 65_536:
                    return 422, _validation_failed(TOO_LONG), {}
                comment = self._create(repo, number, body["body"], self.login)
                return 201, comment, {"Location": comment["url"]}
        if m := _COMMENT.match(path):
            comment = self.comments.get(int(m["id"]))
            if comment is None:
                return 404, {"message": "Not Found", "status": "404"}, {}
            if method == "GET":
                return 200, comment, {}
            if method == "PATCH":
                if _github_length(body["body"]) > 65_536:
                    return 422, _validation_failed(TOO_LONG), {}
                if comment["user"]["login"] != self.login:
                    return 403, {"message": "Must have admin rights to Repository.", "status": "403"}, {}
                comment["body"] = body["body"]
                comment["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                return 200, comment, {}
            if method == "DELETE":
                del self.comments[comment["id"]]
                return 204, None, {}
        if m := _PULL.match(path):
            pull = self.pulls.get((m["repo"], int(m["number"])))
            if pull is None:
                return 404, {"message": "Not Found", "status": "404"}, {}
            return 200, pull, {}
        if m := _STATUSES.match(path):
            return self._create_status(m["repo"], m["sha"], body)
        if _CHECK_RUNS.match(path) and method == "POST":
            return self._create_check_run(_repo_of(path), body)
        if _ARTIFACTS.match(path):
            found = [a for a in self.artifacts if "name" not in query or a["name"] == query["name"]]
            found.sort(key=lambda a: a["created_at"], reverse=True)
            status, chunk, headers = self._page(path, found, query)
            return status, {"total_count": len(found), "artifacts": chunk}, headers
        if m := _ARTIFACT_ZIP.match(path):
            if int(m["id"]) not in self.blobs:
                return 404, {"message": "Not Found", "status": "404"}, {}
            # Another host name than the API's, as blob storage is: the client must drop the token.
            return 302, None, {"Location": f"http://localhost:{self._httpd.server_port}/_blobs/{m['id']}.zip"}
        if m := _COMMIT_PULLS.match(path):
            numbers = self.pulls_by_sha.get(m["sha"], [])
            return 200, [{"number": n, "state": "open", "head": {"sha": m["sha"]}} for n in numbers], {}
        return 404, {"message": "Not Found", "status": "404"}, {}

    def _create_status(self, repo: str, sha: str, body: dict[str, Any]):
        self._next_id += 1
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "url": f"{self.url}/repos/{repo}/statuses/{sha}",
            "avatar_url": None,
            "id": self._next_id,
            "node_id": f"SC_{self._next_id}",
            "state": body["state"],
            "description": body.get("description"),
            "target_url": body.get("target_url"),
            "context": body.get("context", "default"),
            "created_at": now,
            "updated_at": now,
            "creator": _user(self.login),
            "sha": sha,
        }
        self.statuses.append(status)
        return 201, {k: v for k, v in status.items() if k != "sha"}, {"Location": status["url"]}

    def _create_check_run(self, repo: str, body: dict[str, Any]):
        self._next_id += 1
        cid = self._next_id
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        output = body.get("output") or {}
        run = {
            "id": cid,
            "node_id": f"CR_{cid}",
            "head_sha": body["head_sha"],
            "name": body["name"],
            "url": f"{self.url}/repos/{repo}/check-runs/{cid}",
            "html_url": f"https://github.com/{repo}/runs/{cid}",
            "details_url": body.get("details_url"),
            "status": body.get("status", "queued"),
            "conclusion": body.get("conclusion"),
            "started_at": now,
            "completed_at": now if body.get("status") == "completed" else None,
            "external_id": body.get("external_id"),
            "check_suite": {"id": 1},
            "output": {
                "title": output.get("title"),
                "summary": output.get("summary"),
                "text": output.get("text"),
                "annotations_count": 0,
                "annotations_url": f"{self.url}/repos/{repo}/check-runs/{cid}/annotations",
            },
            "app": None,
            "pull_requests": [],
        }
        self.check_runs.append(run)
        return 201, run, {}

    def _page(self, path: str, items: list, query: dict[str, str]):
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            nxt = urlencode({**query, "per_page": per_page, "page": page + 1})
            headers["Link"] = f'<{self.url}{path}?{nxt}>; rel="next"'
        return 200, chunk, headers


def _repo_of(path: str) -> str:
    """owner/name from an API path /repos/{owner}/{repo}/..."""
    return "/".join(path.split("/")[2:4])


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the client dropped mid-request (a timeout test): nothing to print. The default prints a
        traceback to sys.stderr, which a test capturing a command's output would take for the command's."""


def _handler(server: GitHubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else None
            headers = Headers(list(self.headers.items()))
            status, data, extra = server.handle(self.command, self.path, headers, raw)
            server.validate_response(self.command, urlsplit(self.path).path, status, data, extra)
            if isinstance(data, bytes):
                payload, content_type = data, extra.pop("Content-Type")
            else:
                payload = json.dumps(data).encode() if data is not None else b""
                content_type = "application/json; charset=utf-8"
            if status in (204, 304):
                payload = b""  # HTTP gives these no body: one sent anyway would be read as the next response
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); the state change, if any, stands

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean; requests are recorded in server.seen

    return Handler


def _github_length(body: str) -> int:
    """GitHub measures a body after its own normalisation, not in code points: a body of 63,964 emoji (126,464
    UTF-16 units) is refused. The double counts UTF-16 units."""
    return len(body.encode("utf-16-le")) // 2


@cache
def _spec_example(flavor: str, name: str) -> dict[str, Any]:
    return json.loads(SPECS[flavor].read_text())["components"]["examples"][name]["value"]


def _user(login: str) -> dict[str, Any]:
    base = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": abs(hash(login)) % 10**8,
        "node_id": f"U_{login}",
        "avatar_url": "https://avatars.githubusercontent.com/u/1",
        "gravatar_id": "",
        "url": base,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": "Bot" if login.endswith("[bot]") else "User",
        "site_admin": False,
    }


def _validation_failed(message: str) -> dict[str, Any]:
    return {
        "message": "Validation Failed",
        "errors": [{"resource": "IssueComment", "code": "custom", "field": "body", "message": message}],
        "documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
        "status": "422",
    }


@pytest.fixture(name="github", params=["github.com", "ghes"])
def github_fixture(request: pytest.FixtureRequest):
    """A running GitHub double, once per API flavour; fails the test if any request broke the description."""
    with GitHubServer(request.param) as server:
        yield server
    assert server.violations == [], "requests or responses that do not match GitHub's API description"

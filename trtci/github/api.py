"""A small GitHub REST client: one base URL, GitHub's headers, Link pagination and GitHub's retry rules.

Works against github.com and GitHub Enterprise Server (`GITHUB_API_URL=https://HOST/api/v3`). The token only
ever lives in the session's Authorization header: it is not in the repr, in log lines or in error messages.

Retry rules, from GitHub's "Best practices for using the REST API":
- a rate-limit answer (429, or 403 that says so): wait `Retry-After` seconds if given; else, when
  `x-ratelimit-remaining` is 0, until `x-ratelimit-reset`; else back off exponentially from one minute;
- 5xx, timeouts and connection errors: exponential backoff with a cap;
- every other 4xx (401, 403, 404, 422...) is final and never retried.
A request that is not idempotent (POST) is retried only when GitHub cannot have acted on it (a rate-limit
answer, a refused connection); otherwise the error is raised with `transient=True` and the caller decides,
so that a timed-out POST that did land is not posted twice.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from trtci import __version__
from trtci.errors import ConfigError, PublishError

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100
MAX_PAGES = 30  # 3,000 items: GitHub caps a conversation at 2,500 comments; a Link loop must end
READ_ONLY_MESSAGE = "Resource not accessible by integration"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})


class GitHubError(PublishError):
    """GitHub answered with an error, or could not be reached. The message says what to check."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient

    @property
    def read_only(self) -> bool:
        """True when the token may read but not write: a fork's pull_request run or `permissions:` too tight."""
        return self.status == 403 and READ_ONLY_MESSAGE.lower() in str(self).lower()


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to wait. Rate-limit waits beyond `max_wait_s` fail instead of stalling the job."""

    attempts: int = 5
    backoff_s: float = 1.0  # first wait after a 5xx, timeout or connection error; doubles each time
    backoff_cap_s: float = 60.0
    rate_limit_backoff_s: float = 60.0  # first wait after a secondary rate limit without headers
    max_wait_s: float = 900.0

    def backoff(self, attempt: int) -> float:
        """Wait before retry number `attempt` (0-based) after a server or network failure."""
        return min(self.backoff_s * 2**attempt, self.backoff_cap_s)


class GitHubClient:
    """Sends requests to one GitHub API base URL with one token."""

    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ConfigError("no GitHub token: set GITHUB_TOKEN or pass the action's github-token input")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        import requests  # only when a client is made: `trtci --help` and every import stay light

        self._session = requests.Session()
        self._session.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "Authorization": f"Bearer {token}",
                "User-Agent": f"trtci/{__version__}",
            }
        )

    @classmethod
    def from_env(
        cls, token_env: str = "GITHUB_TOKEN", environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> GitHubClient:
        """A client for `GITHUB_API_URL` (github.com when unset) with the token in the variable `token_env`."""
        env = os.environ if environ is None else environ
        token = env.get(token_env, "")
        if not token:
            raise ConfigError(f"no GitHub token in ${token_env}: set it, or pass the action's github-token input")
        return cls(token, env.get("GITHUB_API_URL") or DEFAULT_API_URL, **kwargs)

    def __repr__(self) -> str:
        return f"GitHubClient(base_url={self.base_url!r})"

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as `/repos/o/r/issues/1/comments`."""
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send one request, retrying by GitHub's rules; returns a 2xx response or raises GitHubError.

        `idempotent` marks a POST that is safe to repeat (a commit status replaces the one of the same context);
        by default only GET, PUT, PATCH, DELETE and the like are repeated after a failure that may have landed.
        """
        import requests

        method = method.upper()
        url = self.url(path)
        idempotent = method in _IDEMPOTENT if idempotent is None else idempotent
        server_failures = 0
        rate_limit_hits = 0
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = self._session.request(method, url, params=params, json=json, timeout=self.timeout_s)
            except requests.ConnectionError as exc:
                # A refused or failed connection sent nothing, so even a POST is safe to repeat.
                sent = not isinstance(exc, requests.ConnectTimeout) and _maybe_sent(exc)
                failure = GitHubError(
                    f"cannot reach GitHub at {self.base_url} ({type(exc).__name__}): check GITHUB_API_URL "
                    "and the runner's network",
                    transient=True,
                )
                if last or (sent and not idempotent):
                    raise failure from None
                self._wait(self.retry.backoff(server_failures), f"{method} {url}: {type(exc).__name__}")
                server_failures += 1
                continue
            except requests.Timeout:
                failure = GitHubError(
                    f"GitHub did not answer {method} {url} within {self.timeout_s:g} s", transient=True
                )
                if last or not idempotent:
                    raise failure from None
                self._wait(self.retry.backoff(server_failures), f"{method} {url}: timeout")
                server_failures += 1
                continue

            if response.ok:
                return response
            wait = self._rate_limit_wait(response, rate_limit_hits)
            if wait is not None:
                if last:
                    raise _error(response, method, url)
                self._wait(wait, f"{method} {url}: rate limited ({response.status_code})")
                rate_limit_hits += 1
                continue
            if response.status_code >= 500:
                if last or not idempotent:
                    raise _error(response, method, url, transient=True)
                self._wait(self.retry.backoff(server_failures), f"{method} {url}: {response.status_code}")
                server_failures += 1
                continue
            raise _error(response, method, url)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def get(self, path: str, **params: Any) -> Any:
        """GET a path and return its JSON."""
        return json_of(self.request("GET", path, params=params or None), "GET", path)

    def post(self, path: str, body: Any, *, idempotent: bool = False) -> dict[str, Any]:
        return _object(self.request("POST", path, json=body, idempotent=idempotent), "POST", path)

    def patch(self, path: str, body: Any) -> dict[str, Any]:
        return _object(self.request("PATCH", path, json=body), "PATCH", path)

    def paginate(self, path: str, **params: Any) -> Iterator[Any]:
        """Yield the items of a list endpoint, page by page (per_page=100), following the Link header's next on
        this API's host only, for at most MAX_PAGES pages."""
        response = self.request("GET", path, params={"per_page": PER_PAGE, **params})
        for _ in range(MAX_PAGES):
            page = json_of(response, "GET", path)
            if not isinstance(page, list):
                raise GitHubError(f"GitHub answered {path} with {type(page).__name__}, expected a list")
            yield from page
            next_url = self.next_page(response)
            if not next_url:
                return
            response = self.request("GET", next_url)
        raise GitHubError(f"GitHub lists more than {MAX_PAGES} pages of {path}: refusing to read them all")

    def next_page(self, response: requests.Response) -> str | None:
        """The Link header's next page, or None. A next page on another host than the API's would receive the
        token, so it is an error."""
        link = response.links.get("next") or {}
        url = link.get("url") if isinstance(link, dict) else None
        if not url:
            return None
        if urlsplit(self.url(url))[:2] != urlsplit(self.base_url)[:2]:
            raise GitHubError(f"GitHub's next page is on another host ({urlsplit(url).netloc}): not following it")
        return url

    def _rate_limit_wait(self, response: requests.Response, hits: int) -> float | None:
        """Seconds to wait when `response` is a rate-limit answer, else None."""
        status = response.status_code
        headers = response.headers
        if status not in (403, 429):
            return None
        retry_after = headers.get("retry-after")
        remaining = headers.get("x-ratelimit-remaining")
        if retry_after is not None:
            wait = _number(retry_after)
        elif remaining == "0" and headers.get("x-ratelimit-reset"):
            wait = _number(headers["x-ratelimit-reset"]) - self.clock() + 1
        elif status == 429 or "rate limit" in _message(response).lower():
            wait = min(self.retry.rate_limit_backoff_s * 2**hits, self.retry.max_wait_s)
        else:
            return None
        wait = max(wait, 0.0)
        if wait > self.retry.max_wait_s:
            raise GitHubError(
                f"GitHub's rate limit resets in {wait:.0f} s, longer than the {self.retry.max_wait_s:.0f} s "
                "trtci waits: run again later or use a token with a larger quota",
                status=status,
            )
        return wait

    def _wait(self, seconds: float, why: str) -> None:
        log.warning("GitHub API: %s; retrying in %.1f s", why, seconds)
        self.sleep(seconds)


def _maybe_sent(exc: requests.ConnectionError) -> bool:
    """False when the connection was never made (refused, DNS), so the server cannot have seen the request."""
    text = str(exc).lower()
    return not any(s in text for s in ("connection refused", "name or service not known", "failed to establish"))


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 60.0
    return value if math.isfinite(value) else 60.0


def json_of(response: requests.Response, method: str, path: str) -> Any:
    """The response's JSON; GitHubError when it is not JSON (a proxy's error page, a truncated answer)."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise GitHubError(f"GitHub answered {method} {path} with something that is not JSON") from None


def _object(response: requests.Response, method: str, path: str) -> dict[str, Any]:
    data = json_of(response, method, path)
    if not isinstance(data, dict):
        raise GitHubError(f"GitHub answered {method} {path} with {type(data).__name__}, expected an object")
    return data


def _message(response: requests.Response) -> str:
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return " ".join(response.text[:200].split())
    message = data.get("message", "") if isinstance(data, dict) else ""
    return " ".join(str(message)[:500].split())  # one line, whatever GitHub (or a proxy) answered


_HINTS = {
    401: "the token is invalid or expired: check the github-token input or $GITHUB_TOKEN",
    403: "the token lacks permission: grant `pull-requests: write` (or `issues: write`) to the job",
    404: "check the repository and pull request number, and that the token can see the repository",
    410: "the resource is gone (issues disabled or the PR deleted)",
    422: "GitHub refused the content",
}


def _error(response: requests.Response, method: str, url: str, *, transient: bool = False) -> GitHubError:
    status = response.status_code
    message = _message(response) or response.reason or "no message"
    hint = _HINTS.get(status, "see GitHub's status page if this persists")
    if status == 403 and READ_ONLY_MESSAGE.lower() in message.lower():
        hint = "the token is read-only here (a fork's pull_request run): use the two-workflow pattern"
    return GitHubError(f"GitHub {status} on {method} {url}: {message}: {hint}", status=status, transient=transient)

"""Durable history in git: one run file per run, committed to a data branch, imported into SQLite on demand.

CI runners are throwaway and artifacts expire, so each run is kept as a uniquely named run file
(`runs/<YYYY-MM>/<started_at>-<run_id>.trtci.json.gz`) on a branch of its own (`trtci-data` by default). Files
are added with git plumbing against a private index, and scratch files live in the repository's git directory,
so the user's checkout, index and branches are never touched. Two jobs never write the same file, so a push
rejected because another job pushed first only needs the new tip: fetch, commit the file on top of it again and
push, with backoff (github-action-benchmark retries the same way). Any other failure (no access, a protected
branch, an unreachable remote) is final at once. A push that fails leaves the run file on disk and says where.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from trtci.context.git import Git, GitError, redact
from trtci.errors import DataError, PublishError, StoreError
from trtci.results import RunResult
from trtci.store.connection import DatabaseLocked
from trtci.store.database import Store
from trtci.store.runfile import MAX_BYTES, SUFFIX, one_line, read_runfile, write_runfile

DEFAULT_BRANCH = "trtci-data"
RUNS_DIR = "runs"
IDENTITY = {"GIT_AUTHOR_NAME": "trtci", "GIT_AUTHOR_EMAIL": "trtci@users.noreply.github.com"}
GIT_TIMEOUT_S = 600.0  # a fetch of a long data branch over a slow link


@dataclass
class PushResult:
    path: str  # the run file's path inside the data branch
    commit: str
    attempts: int


@dataclass
class PullResult:
    imported: list[str]  # run ids newly recorded
    known: int  # run files whose run was already in the database
    refused: list[str]  # one line per run file not imported: unreadable (newer format, damaged) or refused by the store


def branch_path(run: RunResult, name: str) -> str:
    """Where a run file lives on the data branch: by month, so no folder grows without bound."""
    return f"{RUNS_DIR}/{run.context.started_at[:7]}/{name}"


def push_run(
    repo_dir: Path,
    run_file: Path,
    *,
    branch: str = DEFAULT_BRANCH,
    remote: str = "origin",
    attempts: int = 10,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    token: str | None = None,
) -> PushResult:
    """Commit `run_file` to `branch` on `remote` and push; create the branch (orphan) if it does not exist.

    With `token`, git authenticates to an http(s) remote with it for these commands only (see `auth_env`).

    A push rejected as not a fast-forward (another job pushed first) is retried after a fetch, up to `attempts`
    pushes, waiting `backoff_s`, 2x, 4x... (capped at 30 s) between them. Raises PublishError naming the kept run
    file, with git's message, at once for any other failure, or when every push was rejected.
    """
    git = _Git(repo_dir, remote=remote, token=token)
    run = read_runfile(run_file)
    path = branch_path(run, run_file.name)
    blob = git("hash-object", "-w", str(run_file))
    kept = f"the run is kept in {run_file}: push it later with `trtci history push --file {run_file}`"
    last_rejection = ""
    for attempt in range(1, attempts + 1):
        try:
            tip = _fetch(git, remote, branch)
        except GitError as e:
            raise PublishError(f"could not push to {redact(remote)} {branch} ({e}); {kept}") from e
        if tip is not None and git.exists(f"{tip}:{path}"):
            return PushResult(path, tip, attempt)  # already there: an earlier attempt landed after all
        commit = _commit_file(git, tip, path, blob, f"trtci: run {run.context.run_id} ({run.context.commit or '?'})")
        rejected = _push(git, remote, commit, branch)
        if rejected is None:
            return PushResult(path, commit, attempt)
        if not rejected.retry:
            raise PublishError(f"could not push to {redact(remote)} {branch} ({rejected.message}); {kept}")
        last_rejection = rejected.message
        if attempt < attempts:
            sleep(min(30.0, backoff_s * 2 ** (attempt - 1)))
    raise PublishError(
        f"could not push to {redact(remote)} {branch}: rejected {attempts} times, other jobs kept pushing first "
        f"({last_rejection}); {kept}"
    )


def push_from_store(repo_dir: Path, store: Store, run_id: str, out_dir: Path | None = None, **options) -> PushResult:
    """Write run `run_id` ("latest" for the newest) from the database as a run file in `out_dir` and push it.

    `out_dir` defaults to `trtci-history/` in the repository's git directory, so the checkout stays untouched.
    The run file is removed once pushed; a failed push keeps it (PublishError names it).
    """
    if run_id == "latest":
        latest = store.runs(limit=1)
        if not latest:
            raise DataError(f"{store.path}: no runs recorded yet; run `trtci run --db {store.path}` first")
        run_id = latest[0]["id"]
    if out_dir is None:
        out_dir = _Git(repo_dir).git_dir() / "trtci-history"
    run_file = write_runfile(store.load_run(run_id), out_dir)
    result = push_run(repo_dir, run_file, **options)
    run_file.unlink()
    return result


def pull_runs(
    repo_dir: Path, store: Store, *, branch: str = DEFAULT_BRANCH, remote: str = "origin", token: str | None = None
) -> PullResult:
    """Fetch `branch` and import every run file whose run the database lacks. A file that cannot be read or
    recorded is named in `refused` and the others are still imported. A missing branch imports nothing.
    `token` authenticates the fetch as in `push_run`."""
    git = _Git(repo_dir, remote=remote, token=token)
    tip = _fetch(git, remote, branch)
    result = PullResult(imported=[], known=0, refused=[])
    if tip is None:
        return result
    with tempfile.TemporaryDirectory(prefix="trtci-pull-") as tmp:
        for name, blob, size in _run_files(git, tip):
            if store.has_run(_run_id_of(name)):
                result.known += 1
                continue
            if size is None or size > MAX_BYTES:  # not read: a huge blob would fill memory before any check
                what = "not a file" if size is None else f"{size} bytes, larger than a trtci run file can be"
                result.refused.append(one_line(f"{branch}:{name}: {what}"))
                continue
            local = Path(tmp) / "run" / SUFFIX
            local.parent.mkdir(exist_ok=True)
            local.write_bytes(git.bytes("cat-file", "blob", blob))
            try:
                run = read_runfile(local)
                imported = store.import_run(run)
            except DatabaseLocked:
                raise  # every later file would wait as long: stop; the branch still holds them for the next pull
            except (DataError, StoreError) as e:
                result.refused.append(one_line(str(e).replace(str(local), f"{branch}:{name}")))  # names from git
                continue
            if imported:
                result.imported.append(run.context.run_id)
            else:
                result.known += 1
    return result


def _run_files(git: _Git, tip: str) -> list[tuple[str, str, int | None]]:
    """(path, object id, size) of every run file under RUNS_DIR at `tip`, by path; size is None for what is not a
    plain file (a link, a submodule). Names are read NUL-separated, as git stores them, whatever they hold."""
    found = []
    for entry in git("ls-tree", "-r", "-z", "-l", tip, "--", RUNS_DIR).split("\0"):
        meta, _, name = entry.partition("\t")
        if not name.endswith(SUFFIX):
            continue
        mode, kind, blob, size = meta.split()
        plain = kind == "blob" and mode in ("100644", "100755") and size.isdigit()
        found.append((name, blob, int(size) if plain else None))
    return sorted(found)


def _run_id_of(name: str) -> str:
    """The run id in a run file's name (`<stamp>-<run_id><SUFFIX>`): lets a pull skip known runs unread."""
    return Path(name).name.removesuffix(SUFFIX).split("-", 1)[-1]


@dataclass(frozen=True)
class _Rejected:
    message: str  # git's own words
    retry: bool  # another push landed first: fetch the new tip and try again


# How git (`push --porcelain`: `!<TAB>src:dst<TAB>[rejected] (fetch first)`) and servers say that another push
# landed first: locally, before sending, or on the server between its ref advertisement and the update (GitHub
# says "cannot lock ref ... but expected", git's receive-pack "failed to update ref").
RACED = ("(fetch first)", "(non-fast-forward)", "(failed to update ref)", "(cannot lock ref", "(incorrect old value")


def _push(git: _Git, remote: str, commit: str, branch: str) -> _Rejected | None:
    """Push `commit` as `branch`; None when it landed. Only a rejection because another push landed first is
    retried; anything else (no access, a declining hook, no such remote) is final."""
    try:
        git("push", "--porcelain", "--quiet", remote, f"{commit}:refs/heads/{branch}")
    except GitError as pushed:
        statuses = [line.split("\t")[-1] for line in pushed.stdout.splitlines() if line.startswith("!\t")]
        retry = any(marker in status for status in statuses for marker in RACED)
        errors = [line for line in pushed.stderr.splitlines() if line.strip() and not line.startswith("hint:")]
        return _Rejected("; ".join(statuses or errors) or str(pushed), retry)
    return None


def _fetch(git: _Git, remote: str, branch: str) -> str | None:
    """The remote branch's tip after fetching it, or None when the remote has no such branch yet."""
    try:
        listed = git("ls-remote", "--heads", remote, f"refs/heads/{branch}")
    except GitError as e:
        said = "; ".join(line for line in e.stderr.splitlines() if line.strip()) or str(e)
        raise GitError(f"cannot reach git remote {redact(remote)!r} from {git.cwd}: {said}") from None
    if not listed:
        return None
    tracking = f"refs/trtci/{remote}/{branch}"
    git("fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{branch}:{tracking}")
    return git("rev-parse", tracking)


def _commit_file(git: _Git, parent: str | None, path: str, blob: str, message: str) -> str:
    """A commit of `parent`'s tree plus the file, made in a private index so no checkout changes."""
    with tempfile.TemporaryDirectory(prefix="trtci-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if parent is not None:
            git("read-tree", parent, env=env)
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = git("write-tree", env=env)
    parents = ["-p", parent] if parent is not None else []
    return git("commit-tree", tree, *parents, "-m", message, env=git.identity())


def basic_credential(token: str) -> str:
    """The HTTP Basic credential git sends for `token`, as GitHub takes an installation or workflow token."""
    return base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")


def auth_env(git: Git, remote: str, token: str | None) -> dict[str, str]:
    """Environment variables that make git send `token` to `remote` as an HTTP header, for the commands given
    them only: git reads GIT_CONFIG_COUNT/KEY/VALUE as config, so the token is never on a command line, never in
    .git/config and never in a URL that an error message could show. Empty without a token, for a remote that
    is not http(s) or carries its own credentials, and where the repository's config already sends a header to
    it (actions/checkout with persisted credentials): a second Authorization header would be refused."""
    if not token:
        return {}
    url = git.query("remote", "get-url", remote) or remote
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return {}
    if git.query("config", "--get-urlmatch", "http.extraheader", url):
        return {}
    count = os.environ.get("GIT_CONFIG_COUNT", "")
    index = int(count) if count.isdigit() else 0  # keep the environment's own config entries
    return {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": f"http.{parts.scheme}://{parts.netloc}/.extraheader",
        f"GIT_CONFIG_VALUE_{index}": f"AUTHORIZATION: basic {basic_credential(token)}",
    }


class _Git(Git):
    """git in one repository, checked to be one; failures raise GitError with git's own words. With a `token`,
    every command authenticates to `remote` with it (`auth_env`)."""

    def __init__(self, repo_dir: Path, *, remote: str = "origin", token: str | None = None):
        super().__init__(repo_dir, timeout_s=GIT_TIMEOUT_S)
        self._auth: dict[str, str] = {}
        if self.query("rev-parse", "--git-dir") is None:
            raise GitError(f"{repo_dir}: not a git repository; pass --repo-dir of a clone with the remote")
        self._auth = auth_env(self, remote, token)

    def bytes(self, *args: str, env: Mapping[str, str] | None = None) -> bytes:
        return super().bytes(*args, env={**self._auth, **(env or {})})

    def git_dir(self) -> Path:
        """The repository's git directory (`.git` of a clone), where trtci keeps its scratch files."""
        return Path(self("rev-parse", "--absolute-git-dir"))

    def exists(self, spec: str) -> bool:
        return self.query("cat-file", "-e", spec) is not None

    def identity(self) -> dict[str, str]:
        """trtci as author and committer where neither the environment nor git config names one (CI runners)."""
        if os.environ.get("GIT_AUTHOR_EMAIL") or self.query("config", "user.email"):
            return {}
        return {
            **IDENTITY,
            "GIT_COMMITTER_NAME": IDENTITY["GIT_AUTHOR_NAME"],
            "GIT_COMMITTER_EMAIL": IDENTITY["GIT_AUTHOR_EMAIL"],
        }

"""Durable history in git: one run file per run, committed to a data branch, imported into SQLite on demand.

CI runners are throwaway and artifacts expire, so each run is kept as a uniquely named run file
(`runs/<YYYY-MM>/<started_at>-<run_id>.trtci.json.gz`) on a branch of its own (`trtci-data` by default). Files
are added with git plumbing against a private index, so the user's checkout, index and branches are never
touched. Two jobs never write the same file, so a rejected push only needs the new tip: fetch, commit the file
on top of it again and push, with backoff (github-action-benchmark retries the same way). A push that keeps
failing leaves the run file on disk and says where.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trtci.errors import DataError, PublishError, TrtciError
from trtci.results import RunResult
from trtci.runfile import SUFFIX, read_runfile, write_runfile
from trtci.store import Store

DEFAULT_BRANCH = "trtci-data"
RUNS_DIR = "runs"
IDENTITY = {"GIT_AUTHOR_NAME": "trtci", "GIT_AUTHOR_EMAIL": "trtci@users.noreply.github.com"}


class GitError(TrtciError):
    """A git command failed where trtci expected it to work (not a repository, no such remote)."""


@dataclass
class PushResult:
    path: str  # the run file's path inside the data branch
    commit: str
    attempts: int


@dataclass
class PullResult:
    imported: list[str]  # run ids newly recorded
    known: int  # run files whose run was already in the database
    refused: list[str]  # one line per run file this trtci cannot read (newer format, damaged), not imported


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
) -> PushResult:
    """Commit `run_file` to `branch` on `remote` and push; create the branch (orphan) if it does not exist.

    A rejected push is retried after a fetch, up to `attempts` pushes, waiting `backoff_s`, 2x, 4x... (capped
    at 30 s) between them. Raises PublishError naming the kept run file when every push failed.
    """
    git = _Git(repo_dir)
    run = read_runfile(run_file)
    path = branch_path(run, run_file.name)
    blob = git("hash-object", "-w", str(run_file))
    last_error = ""
    for attempt in range(1, attempts + 1):
        try:
            tip = _fetch(git, remote, branch)
        except GitError as e:  # the network or the server may be back on the next attempt
            last_error = str(e)
            if attempt < attempts:
                sleep(min(30.0, backoff_s * 2 ** (attempt - 1)))
            continue
        if tip is not None and git.exists(f"{tip}:{path}"):
            return PushResult(path, tip, attempt)  # already there: an earlier attempt landed after all
        commit = _commit_file(git, tip, path, blob, f"trtci: run {run.context.run_id} ({run.context.commit or '?'})")
        pushed = git.run("push", "--quiet", remote, f"{commit}:refs/heads/{branch}")
        if pushed.returncode == 0:
            return PushResult(path, commit, attempt)
        last_error = pushed.stderr.strip().splitlines()[-1] if pushed.stderr.strip() else f"exit {pushed.returncode}"
        if attempt < attempts:
            sleep(min(30.0, backoff_s * 2 ** (attempt - 1)))
    raise PublishError(
        f"could not push to {remote} {branch} after {attempts} attempts ({last_error}); the run is kept in "
        f"{run_file}: push it later with `trtci history push --file {run_file}`"
    )


def push_from_store(repo_dir: Path, store: Store, run_id: str, out_dir: Path, **options) -> tuple[Path, PushResult]:
    """Write run `run_id` ("latest" for the newest) from the database as a run file in `out_dir`, then push it."""
    if run_id == "latest":
        latest = store.runs(limit=1)
        if not latest:
            raise DataError(f"{store.path}: no runs recorded yet; run `trtci run --db {store.path}` first")
        run_id = latest[0]["id"]
    run_file = write_runfile(store.load_run(run_id), out_dir)
    return run_file, push_run(repo_dir, run_file, **options)


def pull_runs(repo_dir: Path, store: Store, *, branch: str = DEFAULT_BRANCH, remote: str = "origin") -> PullResult:
    """Fetch `branch` and import every run file whose run the database lacks. A missing branch imports nothing."""
    git = _Git(repo_dir)
    tip = _fetch(git, remote, branch)
    result = PullResult(imported=[], known=0, refused=[])
    if tip is None:
        return result
    names = git("ls-tree", "-r", "--name-only", tip, "--", RUNS_DIR).splitlines()
    with tempfile.TemporaryDirectory(prefix="trtci-pull-") as tmp:
        for name in sorted(n for n in names if n.endswith(SUFFIX)):
            if store.has_run(_run_id_of(name)):
                result.known += 1
                continue
            local = Path(tmp) / Path(name).name
            local.write_bytes(git.bytes("cat-file", "blob", f"{tip}:{name}"))
            try:
                run = read_runfile(local)
            except DataError as e:
                result.refused.append(str(e).replace(str(local), f"{branch}:{name}"))
                continue
            if store.import_run(run):
                result.imported.append(run.context.run_id)
            else:
                result.known += 1
    return result


def _run_id_of(name: str) -> str:
    """The run id in a run file's name (`<stamp>-<run_id><SUFFIX>`): lets a pull skip known runs unread."""
    return Path(name).name.removesuffix(SUFFIX).split("-", 1)[-1]


def _fetch(git: _Git, remote: str, branch: str) -> str | None:
    """The remote branch's tip after fetching it, or None when the remote has no such branch yet."""
    listed = git.run("ls-remote", "--heads", remote, f"refs/heads/{branch}")
    if listed.returncode != 0:
        raise GitError(f"cannot reach git remote {remote!r} from {git.repo_dir}: {listed.stderr.strip()}")
    if not listed.stdout.strip():
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


class _Git:
    """git in one repository; failures of commands that must work raise GitError with git's own words."""

    def __init__(self, repo_dir: Path):
        self.repo_dir = repo_dir
        check = self.run("rev-parse", "--git-dir")
        if check.returncode != 0:
            raise GitError(f"{repo_dir}: not a git repository; pass --repo-dir of a clone with the remote")

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(self.repo_dir), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        )

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = self.run(*args, env=env)
        if done.returncode != 0:
            raise GitError(f"git {' '.join(args[:2])} failed in {self.repo_dir}: {done.stderr.strip()}")
        return done.stdout.strip()

    def bytes(self, *args: str) -> bytes:
        done = subprocess.run(["git", "-C", str(self.repo_dir), *args], capture_output=True)
        if done.returncode != 0:
            raise GitError(f"git {' '.join(args[:2])} failed in {self.repo_dir}: {done.stderr.decode().strip()}")
        return done.stdout

    def exists(self, spec: str) -> bool:
        return self.run("cat-file", "-e", spec).returncode == 0

    def identity(self) -> dict[str, str]:
        """trtci as author and committer where neither the environment nor git config names one (CI runners)."""
        if os.environ.get("GIT_AUTHOR_EMAIL") or self.run("config", "user.email").stdout.strip():
            return {}
        return {
            **IDENTITY,
            "GIT_COMMITTER_NAME": IDENTITY["GIT_AUTHOR_NAME"],
            "GIT_COMMITTER_EMAIL": IDENTITY["GIT_AUTHOR_EMAIL"],
        }

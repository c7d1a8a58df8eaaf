"""`trtci history push|pull` with credentials that actions/checkout did not persist (`persist-credentials: false`):
the token goes to git for that one command, through the environment, to a real smart-HTTP server that requires
it. It must land, and appear nowhere: not in .git/config, not on a command line, not in any output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from git_http_server import git_http_server

from tests.git_repos import git
from tests.recorded_runs import full_run
from trtci.context.git import Git
from trtci.store.database import Store
from trtci.store.git_history import auth_env, basic_credential

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ghs_" + "Q7x" * 12  # the shape of an installation token


@pytest.fixture
def served(tmp_path, origin):  # noqa: F811
    """The test origin served over HTTP (requiring TOKEN) and a clone made the way checkout does it without
    persisting credentials: the header given for the clone only, the remote URL without a token."""
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(origin), str(root / "project.git")], check=True)
    with git_http_server(root, TOKEN) as server:
        url = server.url + "project.git"
        work = tmp_path / "work"
        header = {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{server.url}.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic_credential(TOKEN)}",
        }
        subprocess.run(["git", "clone", "-q", url, str(work)], check=True, env={**os.environ, **header})
        yield server, work, root / "project.git"


def logging_git(tmp_path: Path) -> tuple[Path, Path]:
    """A `git` first on PATH that logs its arguments, then runs the real git: proves what is on command lines."""
    bin_dir, log = tmp_path / "bin", tmp_path / "git-argv.log"
    bin_dir.mkdir()
    shim = bin_dir / "git"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{shutil.which("git")}" "$@"\n')
    shim.chmod(0o755)
    return bin_dir, log


def trtci(tmp_path: Path, *args: str, token: str | None, actions: bool = False) -> subprocess.CompletedProcess:
    bin_dir, _ = logging_git(tmp_path) if not (tmp_path / "bin").exists() else (tmp_path / "bin", None)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_CONFIG", "GITHUB_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", PYTHONPATH=str(ROOT), GITHUB_ACTIONS="true" if actions else ""
    )
    if token is not None:
        env["GITHUB_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "trtci.cli", *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )


def test_push_authenticates_for_that_push_only_and_the_token_shows_nowhere(tmp_path, served):
    server, work, bare = served
    db = tmp_path / "results.db"
    with Store(db) as store:
        store.record_run(full_run("r1"))
    config_before = (work / ".git" / "config").read_text()
    assert TOKEN not in config_before and basic_credential(TOKEN) not in config_before

    refused = trtci(tmp_path, "history", "push", "--db", str(db), "--repo-dir", str(work), token=None)
    assert refused.returncode == 5, refused.stderr  # the server requires the token: nothing else gets in

    pushed = trtci(tmp_path, "history", "push", "--db", str(db), "--repo-dir", str(work), token=TOKEN)
    assert pushed.returncode == 0, pushed.stderr
    assert any(
        name.endswith("-r1.trtci.json.gz") for name in git(bare, "ls-tree", "-r", "--name-only", "trtci-data").split()
    )
    assert any(method == "POST" and "receive-pack" in path and ok for method, path, ok in server.requests)

    argv = (tmp_path / "git-argv.log").read_text()
    for secret in (TOKEN, basic_credential(TOKEN)):
        for where, text in [("stdout", pushed.stdout), ("stderr", pushed.stderr), ("refused", refused.stderr),
                            ("argv", argv), (".git/config", (work / ".git" / "config").read_text())]:  # fmt: skip
            assert secret not in text, f"the token is in {where}"
    assert (work / ".git" / "config").read_text() == config_before
    assert "push" in argv  # the log did see git's command lines


def test_pull_authenticates_the_same_way(tmp_path, served):
    server, work, _ = served
    db = tmp_path / "results.db"
    with Store(db) as store:
        store.record_run(full_run("r1"))
    assert trtci(tmp_path, "history", "push", "--db", str(db), "--repo-dir", str(work), token=TOKEN).returncode == 0
    fresh = tmp_path / "fresh.db"
    pulled = trtci(tmp_path, "history", "pull", "--db", str(fresh), "--repo-dir", str(work), token=TOKEN)
    assert pulled.returncode == 0, pulled.stderr
    assert "imported 1 runs" in pulled.stdout and TOKEN not in pulled.stdout + pulled.stderr


def test_inside_actions_the_token_and_its_header_are_masked_first(tmp_path, served):
    _, work, _ = served
    db = tmp_path / "results.db"
    with Store(db) as store:
        store.record_run(full_run("r1"))
    pushed = trtci(tmp_path, "history", "push", "--db", str(db), "--repo-dir", str(work), token=TOKEN, actions=True)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    lines = pushed.stdout.splitlines()
    assert lines[:2] == [f"::add-mask::{TOKEN}", f"::add-mask::{basic_credential(TOKEN)}"]
    assert TOKEN not in "\n".join(lines[2:]) + pushed.stderr


def test_no_header_is_added_where_the_checkout_already_sends_one(tmp_path, origin):  # noqa: F811
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True)
    git(work, "remote", "set-url", "origin", "https://github.example/o/r.git")
    repo = Git(work)
    assert auth_env(repo, "origin", None) == {}
    added = auth_env(repo, "origin", TOKEN)
    assert added["GIT_CONFIG_KEY_0"] == "http.https://github.example/.extraheader"
    git(work, "config", "http.https://github.example/.extraheader", "AUTHORIZATION: basic persisted")
    assert auth_env(repo, "origin", TOKEN) == {}  # a second Authorization header would be refused
    git(work, "remote", "set-url", "origin", str(origin))
    assert auth_env(repo, "origin", TOKEN) == {}  # a local path: nothing to authenticate

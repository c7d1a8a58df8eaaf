"""The one git wrapper, trtci.context.git.Git: how it runs git, what it raises, and that nothing else runs git."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from trtci.context.git import Git, GitError, file_at, redact
from trtci.errors import TrtciError

TRTCI = Path(__file__).resolve().parent.parent / "trtci"
WRAPPER = TRTCI / "context" / "git.py"
TOKEN = "ghs_s3cr3tT0ken"


def fake_git(tmp_path: Path, monkeypatch, script: str) -> None:
    """Put a `git` that runs the shell `script` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = bin_dir / "git"
    git.write_text(f"#!/bin/sh\n{script}\n")
    git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def repo(tmp_path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "a.txt").write_text("one\n")
    subprocess.run(["git", "-C", str(path), "add", "a.txt"], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"], check=True
    )
    return path


def test_stdout_as_bytes_and_as_stripped_text(repo):
    git = Git(repo)
    commit = git("rev-parse", "HEAD")
    assert len(commit) == 40 and git.bytes("rev-parse", "HEAD") == f"{commit}\n".encode()
    assert git.bytes("show", "HEAD:a.txt") == b"one\n"
    assert file_at(repo / "a.txt", commit) == b"one\n" and file_at(repo / "b.txt", commit) is None


def test_runs_in_cwd_without_a_prompt_and_with_stdin_closed(tmp_path, monkeypatch):
    fake_git(tmp_path, monkeypatch, 'echo "$*"; echo "prompt=$GIT_TERMINAL_PROMPT extra=$EXTRA"; cat; echo end')
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "1")
    said = Git(tmp_path)("status", "--short", env={"EXTRA": "x", "GIT_TERMINAL_PROMPT": "1"})
    # `cat` ends at once: git never waits on (or reads) the terminal or the caller's input.
    assert said.splitlines() == [f"-C {tmp_path} status --short", "prompt=0 extra=x", "end"]


def test_a_failing_command_raises_with_gits_words_and_exit_status(tmp_path):
    with pytest.raises(GitError, match=f"git rev-parse HEAD failed in {tmp_path}: fatal: not a git repository") as info:
        Git(tmp_path)("rev-parse", "HEAD")
    assert isinstance(info.value, TrtciError)
    assert info.value.returncode == 128 and "not a git repository" in info.value.stderr


def test_query_is_none_where_git_says_no(repo):
    git = Git(repo)
    assert git.query("rev-parse", "--verify", "--quiet", "no-such-branch") is None
    assert git.query("rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_missing_git_says_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for call in (lambda: Git(tmp_path)("status"), lambda: Git(tmp_path).query("status")):
        with pytest.raises(GitError, match="install git and put it on PATH") as info:
            call()
        assert info.value.returncode is None
    assert file_at(tmp_path / "a.txt", "HEAD") is None


def test_a_git_that_hangs_is_stopped_at_the_time_limit(tmp_path, monkeypatch):
    fake_git(tmp_path, monkeypatch, "exec sleep 30")
    with pytest.raises(GitError, match=r"git fetch origin did not finish within 0.2 s .*interactive login") as info:
        Git(tmp_path, timeout_s=0.2)("fetch", "origin")
    assert info.value.returncode is None


def test_credentials_in_urls_are_never_in_an_error(tmp_path, monkeypatch):
    url = f"https://x-access-token:{TOKEN}@github.com/o/r.git"
    fake_git(tmp_path, monkeypatch, f"echo 'To {url}'; echo \"fatal: unable to access '{url}/'\" >&2; exit 128")
    with pytest.raises(GitError) as info:
        Git(tmp_path)("ls-remote", url)
    error = info.value
    assert TOKEN not in f"{error} {error.stdout} {error.stderr}"
    assert "https://***@github.com/o/r.git" in str(error) and error.stdout == "To https://***@github.com/o/r.git\n"


def test_redact_masks_only_the_credentials_of_a_url():
    assert redact(f"push to https://user:{TOKEN}@ghe.example/o/r.git failed") == (
        "push to https://***@ghe.example/o/r.git failed"
    )
    plain = "git@github.com:o/r.git and https://github.com/o/r"
    assert redact(plain) == plain


def git_commands(source: str) -> list[int]:
    """Lines where `source` spells a git command line: a list or tuple that starts with "git" (what subprocess and
    os.exec* take), or a string that starts with `git ` given to subprocess or os (a shell command)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and Path(first.value).name == "git":
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).startswith(("subprocess.", "os.")):
            shell = [arg for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
            lines += [arg.lineno for arg in shell if arg.value.startswith("git ")]
    return sorted(lines)


def test_the_scan_finds_git_command_lines():
    source = (
        "import os, subprocess\n"
        "subprocess.run(['git', 'status'])\n"
        "command = ('/usr/bin/git', '-C', '.', 'log')\n"
        "os.system('git push')\n"
        "print('git is missing')\n"
    )
    assert git_commands(source) == [2, 3, 4]


def test_only_the_wrapper_runs_git():
    """Every git command trtci runs goes through trtci.context.git.Git: one timeout, no prompt, one error."""
    offenders = [
        f"{path.relative_to(TRTCI.parent)}:{line}"
        for path in sorted(TRTCI.rglob("*.py"))
        if path != WRAPPER
        for line in git_commands(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert git_commands(WRAPPER.read_text(encoding="utf-8")) != []  # the scan does see the wrapper's own

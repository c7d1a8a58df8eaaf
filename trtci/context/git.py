"""git for all of trtci: the one way to run it (`Git`), and what a commit had: a file as committed there
(`file_at`) and the trtci.yml of that commit (`config_at`).

A PR that changes a model file or its build settings starts a series with no history; the pipeline then builds
what the merge-base had and times both in alternating rounds. Files the merge-base did not have (a model or a
config the PR adds, or a tree outside git) come back as None: there is nothing to compare with.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from trtci.errors import ConfigError, TrtciError

if TYPE_CHECKING:
    from trtci.config import Config

GIT_TIMEOUT_S = 120.0

# The user:password (or token) part of a URL such as https://x-access-token:<token>@github.com/o/r.git.
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


class GitError(TrtciError):
    """git is missing, did not finish in time, or a command failed. `returncode` is None when git never
    finished; `stdout` and `stderr` are what git said, with credentials in URLs masked."""

    def __init__(self, message: str, *, returncode: int | None = None, stdout: str = "", stderr: str = ""):
        super().__init__(redact(message))
        self.returncode = returncode
        self.stdout = redact(stdout)
        self.stderr = redact(stderr)


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by ***, so it can be printed or logged."""
    return _CREDENTIALS.sub("***@", text)


class Git:
    """git run in one directory: no shell, stdin closed, never a password prompt, and a time limit."""

    def __init__(self, cwd: Path, *, timeout_s: float = GIT_TIMEOUT_S):
        self.cwd = Path(cwd)
        self.timeout_s = timeout_s

    def bytes(self, *args: str, env: Mapping[str, str] | None = None) -> bytes:
        """What `git <args>` writes to stdout, run in `cwd` with `env` added to this process's environment.

        Raises GitError when git is not installed, runs past the time limit or exits non-zero (with git's
        exit status, stdout and stderr)."""
        command = ["git", "-C", str(self.cwd), *args]
        shown = " ".join(args[:2])
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout_s,
                env={**os.environ, **(env or {}), "GIT_TERMINAL_PROMPT": "0"},
                check=False,
            )
        except OSError as exc:
            raise GitError(f"cannot run git ({exc.strerror or exc}): install git and put it on PATH") from None
        except subprocess.TimeoutExpired:
            raise GitError(
                f"git {shown} did not finish within {self.timeout_s:g} s in {self.cwd}: check that the remote is "
                "reachable and that git needs no interactive login (a credential helper or a token in the remote)"
            ) from None
        if done.returncode != 0:
            stdout, stderr = _text(done.stdout), _text(done.stderr).strip()
            said = stderr or f"exit status {done.returncode}"
            raise GitError(
                f"git {shown} failed in {self.cwd}: {said}", returncode=done.returncode, stdout=stdout, stderr=stderr
            )
        return done.stdout

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """What `git <args>` writes to stdout, as text without the surrounding whitespace; raises as `bytes`."""
        return _text(self.bytes(*args, env=env)).strip()

    def query(self, *args: str) -> str | None:
        """As calling it, but None where git ran and exited non-zero (it has no such ref, object or key).
        Raises GitError only when git cannot run or runs past the time limit."""
        try:
            return self(*args)
        except GitError as e:
            if e.returncode is None:
                raise
            return None


def file_at(path: Path, commit: str) -> bytes | None:
    """The bytes of `path` as committed at `commit`, or None where git does not have it there (or cannot run)."""
    path = Path(path)
    try:
        return Git(path.parent).bytes("show", f"{commit}:./{path.name}")
    except GitError:
        return None


def config_at(path: Path, commit: str) -> Config | None:
    """trtci.yml as it was at `commit`, relative paths taken from the file's directory today; None where git does
    not have it there. Raises ConfigError when that version does not parse (an older trtci's keys, say)."""
    import yaml

    from trtci.config import parse_config  # pydantic: loaded only where a config is read, not for every git call

    raw = file_at(path, commit)
    if raw is None:
        return None
    source = f"{path} at {commit[:12]}"
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {getattr(e, 'problem', e)}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level is not a mapping of keys")
    return parse_config(data, source, Path(path).parent)


def _text(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")

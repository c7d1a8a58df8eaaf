"""What the pull request's merge-base had: a file as committed there (git show), and the trtci.yml of that commit.

A PR that changes a model file or its build settings starts a series with no history; the pipeline then builds
what the merge-base had and times both in alternating rounds. Files the merge-base did not have (a model or a
config the PR adds, or a tree outside git) come back as None: there is nothing to compare with.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from trtci.config import Config, parse_config
from trtci.errors import ConfigError

GIT_TIMEOUT_S = 120


def file_at(path: Path, commit: str) -> bytes | None:
    """The bytes of `path` as committed at `commit`, or None where git does not have it there."""
    path = Path(path)
    try:
        shown = subprocess.run(
            ["git", "-C", str(path.parent), "show", f"{commit}:./{path.name}"],
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shown.stdout if shown.returncode == 0 else None


def config_at(path: Path, commit: str) -> Config | None:
    """trtci.yml as it was at `commit`, relative paths taken from the file's directory today; None where git does
    not have it there. Raises ConfigError when that version does not parse (an older trtci's keys, say)."""
    import yaml

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

"""The GitHub Actions runner's file and stdout protocols: step outputs, the job summary, workflow commands.

Functions that write files take the environment as a mapping, so tests pass their own; workflow commands are
returned as strings for the CLI to echo.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

SUMMARY_LIMIT_BYTES = 1024 * 1024  # GitHub rejects a step summary above 1 MiB


def in_actions(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("GITHUB_ACTIONS") == "true"


def set_output(name: str, value: str, environ: Mapping[str, str] | None = None) -> bool:
    """Append `name=value` to GITHUB_OUTPUT (a heredoc with a random delimiter when multiline).

    Returns False when GITHUB_OUTPUT is not set (outside Actions).
    """
    return _append_pair("GITHUB_OUTPUT", name, value, environ)


def set_env(name: str, value: str, environ: Mapping[str, str] | None = None) -> bool:
    """Export `name=value` to the job's later steps through GITHUB_ENV; False outside Actions."""
    return _append_pair("GITHUB_ENV", name, value, environ)


def append_summary(markdown: str, environ: Mapping[str, str] | None = None) -> bool:
    """Append markdown to the step summary, cut to GitHub's 1 MiB per step; False outside Actions."""
    env = os.environ if environ is None else environ
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    target = Path(path)
    used = target.stat().st_size if target.exists() else 0
    data = markdown.encode("utf-8")
    room = SUMMARY_LIMIT_BYTES - used - 200
    if len(data) > room:
        note = b"\n\n> [!NOTE]\n> The summary was cut at GitHub's 1 MiB limit.\n"
        data = data[: max(room - len(note), 0)].decode("utf-8", errors="ignore").encode("utf-8") + note
    with target.open("ab") as handle:
        handle.write(data if data.endswith(b"\n") else data + b"\n")
    return True


def escape_data(text: str) -> str:
    """A workflow command's message: `%`, CR and LF escaped as the runner expects."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as data, plus `:` and `,`."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: str | int | None) -> str:
    """One workflow command line, e.g. `::error file=a.py,line=3,title=T::message`."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def error(message: str, *, title: str | None = None, file: str | None = None, line: int | None = None) -> str:
    return command("error", message, title=title, file=file, line=line)


def warning(message: str, *, title: str | None = None, file: str | None = None, line: int | None = None) -> str:
    return command("warning", message, title=title, file=file, line=line)


def notice(message: str, *, title: str | None = None, file: str | None = None, line: int | None = None) -> str:
    return command("notice", message, title=title, file=file, line=line)


def add_mask(value: str) -> str:
    """The command that makes the runner mask `value` in every later log line."""
    return command("add-mask", value)


def _append_pair(variable: str, name: str, value: str, environ: Mapping[str, str] | None) -> bool:
    env = os.environ if environ is None else environ
    path = env.get(variable)
    if not path:
        return False
    if not name or any(c in name for c in "=\r\n<"):
        raise ValueError(f"invalid name for {variable}: {name!r}")
    if "\n" in value or "\r" in value:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        while delimiter in value:
            delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        line = f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
    else:
        line = f"{name}={value}\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
    return True

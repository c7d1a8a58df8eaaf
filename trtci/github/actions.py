"""The GitHub Actions runner's file and stdout protocols: step outputs, the job summary, workflow commands.

Functions that write files take the environment as a mapping, so tests pass their own; workflow commands are
returned as strings, and `print_command` is the one way to print one.

Everything else a command prints is data, and data must never become a workflow command: a model name or a
warning from another job's run file that starts a log line with `::` could add masks, fake annotations or stop
command processing in a privileged job. How the runner reads a step's output (actions/runner, ProcessInvoker and
ActionCommandManager.TryProcessCommand): stdout and stderr, line by line, a line ending at LF, CR or CRLF; a line
is a command when, its leading white space trimmed, it starts with `::` (ActionCommand.TryParseV2), or when it
holds `##[` anywhere (ActionCommand.TryParse, the older form, still tried second). Both checks are .NET's
culture-aware StartsWith and IndexOf, which skip characters that collation ignores (`\u200b::` can count as
`::`). `plain` makes a text safe against all of it, and `guarded_output` puts every line a process prints
through `plain`, whatever printed it (rich, click, logging, a traceback), so no field needs escaping on its own.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import stat
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TextIO, cast

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


# Characters .NET's culture-aware comparisons may skip: controls, format characters (U+200B...), unassigned code
# points, line and paragraph separators, and the default-ignorable letters and marks (Unicode's
# Default_Ignorable_Code_Point). Tab stays, and so does ESC when it starts an ANSI sequence (`ESC [`, colours).
_IGNORABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Cs", "Zl", "Zp"})
_IGNORABLE_RANGES = (
    *((0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x3164, 0x3164)),
    *((0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0000, 0xE0FFF)),
)
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")
_ORDINARY = re.compile(r"[\t\x20-\x7e]*")
REPLACEMENT = "\ufffd"


def plain(text: str) -> str:
    """`text` as log output that the runner cannot read as a workflow command, line by line as it splits them:
    characters that .NET collation may ignore become U+FFFD, a `::` that would start the line once its leading
    white space is trimmed becomes `\\::`, and `##[` becomes `##\\[`. Line breaks, tabs, ANSI colour sequences
    and every text that could not be a command are kept as they are."""
    parts = _LINE_BREAK.split(text)
    for i in range(0, len(parts), 2):  # the odd items are the line breaks themselves
        parts[i] = _plain_line(parts[i])
    return "".join(parts)


def _plain_line(line: str) -> str:
    if not _ORDINARY.fullmatch(line):
        # An ANSI sequence (ESC [) stays, unless its ESC follows "##": ignoring the ESC would leave "##[".
        line = "".join(
            REPLACEMENT
            if _ignorable(ch) and not (ch == "\x1b" and line[i + 1 : i + 2] == "[" and not line[:i].endswith("##"))
            else ch
            for i, ch in enumerate(line)
        )
    stripped = line.lstrip()  # Python's white space includes every character .NET's TrimStart removes
    if stripped.startswith("::"):
        at = len(line) - len(stripped)
        line = line[:at] + "\\" + stripped
    return line.replace("##[", "##\\[")


def _ignorable(ch: str) -> bool:
    if ch == "\t":
        return False
    if unicodedata.category(ch) in _IGNORABLE_CATEGORIES:
        return True
    code = ord(ch)
    return any(low <= code <= high for low, high in _IGNORABLE_RANGES)


class CommandSafeStream(io.TextIOBase):
    """A text stream in front of stdout or stderr on which nothing written becomes a workflow command: each line
    goes out through `plain` once it is complete (so text written in pieces is judged as the runner will read
    it), and `command` is the only way to write one. A line still open is held back until it ends, a command is
    written or the stream is finished. It has no binary `buffer`, so nothing can write around it."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw
        self._open = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._open += text
        end = max(self._open.rfind("\n"), self._open.rfind("\r"))
        if end >= 0:
            done, self._open = self._open[: end + 1], self._open[end + 1 :]
            self.raw.write(plain(done))
        return len(text)

    def command(self, line: str) -> None:
        """Write one workflow command, as `command` builds it, on a line of its own."""
        if not line.startswith("::") or "\n" in line or "\r" in line:
            raise ValueError(f"not one workflow command line: {line[:40]!r}")
        if self._open:
            self.write("\n")
        self.raw.write(line + "\n")
        self.raw.flush()

    def finish(self) -> None:
        """Write the line still open, if any (the runner reads it as a line when the process ends)."""
        if self._open:
            self.raw.write(plain(self._open))
            self._open = ""
        self.raw.flush()

    def flush(self) -> None:
        self.raw.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "errors", None) or "strict"


def print_command(line: str, *, err: bool = False) -> None:
    """Print a workflow command (from `command`, `error`, `add_mask`...) on a line of its own, to stdout, or to
    stderr with `err`. Under `guarded_output` this is the one way a line can start with `::`."""
    stream = sys.stderr if err else sys.stdout
    if isinstance(stream, CommandSafeStream):
        stream.command(line)
    else:
        stream.write(line + "\n")
        stream.flush()


@contextlib.contextmanager
def guarded_output() -> Iterator[None]:
    """While it lasts, sys.stdout and sys.stderr are CommandSafeStreams wherever the runner could read them as a
    log: a pipe, a socket, or a stream without a file descriptor (captured in-process). A terminal is left alone
    (progress bars need it, and the runner never reads one), and so is a regular file (an export redirected with
    `>` keeps its exact bytes; files trtci writes are data, never to be printed raw into a log). Nested uses
    share the outer guard; whatever is left of an open line is written when the outermost one ends."""
    saved = sys.stdout, sys.stderr
    made: list[CommandSafeStream] = []

    def guard(stream: TextIO | None) -> TextIO | None:
        if stream is None or isinstance(stream, CommandSafeStream) or not _could_be_a_log(stream):
            return stream
        made.append(CommandSafeStream(stream))
        return cast(TextIO, made[-1])

    sys.stdout, sys.stderr = guard(saved[0]), guard(saved[1])  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        for stream in made:
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be read anyway
                stream.finish()


def _could_be_a_log(stream: TextIO) -> bool:
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return True
    try:
        return not os.isatty(fd) and not stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return True

"""The end of `trtci run` and `trtci merge`: what a finished run leaves behind, and the gate's exit code.

Both commands end the same way once they hold a RunResult and the gate's verdict on it: the markdown report,
the JSON summary, the job summary, the step outputs, the console table and one line. This lives in the CLI,
not in trtci.github, because it is the command's ending: it prints to the terminal and picks the exit code,
and GitHub's step outputs and job summary are only two of the things it writes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.text import Text

from trtci.cli.console import make_console
from trtci.errors import ConfigError, TemplateError
from trtci.github import actions
from trtci.report import markdown
from trtci.report.json_summary import write_summary
from trtci.results import RunResult
from trtci.verdict.gate import RunVerdict

RUNNER_FILES = ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")  # files the Actions runner names for a step to append to


def finish(
    run: RunResult,
    verdict: RunVerdict,
    *,
    report: Path | None,
    json_path: Path | None,
    template_dir: Path | None,
    extra: Mapping[str, Any] | None = None,
    json_fields: Mapping[str, Any] | None = None,
    outputs: Mapping[str, object] | None = None,
    where: Iterable[str] = (),
) -> int:
    """Write what the run leaves behind and return the exit code of `verdict` (the gate's on `run`).

    In order: the report (comment.md.j2) to `report`, the JSON summary with `json_fields` added to `json_path`,
    the long report (summary.md.j2) to the job summary inside GitHub Actions, the step outputs `regressions`,
    `accuracy-failures` and `accuracy-regressions` and then `outputs`, the console table on stdout, and the
    verdict's line with `where` (where the results went) on stderr. `extra` goes to the templates. Raises
    ConfigError or TemplateError when the report or the JSON summary cannot be written.
    """
    check_runner_files()
    if report is not None:
        _write_report(report, _render(run, "comment.md.j2", template_dir, extra))
    if json_path is not None:
        write_summary(run, json_path, json_fields)
    gate_outputs = {
        "regressions": verdict.regressions,
        "accuracy-failures": verdict.failed_series,
        "accuracy-regressions": verdict.accuracy_regressions,
    }
    try:
        if os.environ.get("GITHUB_STEP_SUMMARY"):  # the job summary: the long report, cut to GitHub's 1 MiB
            actions.append_summary(_render(run, "summary.md.j2", template_dir, extra))
        for name, value in {**gate_outputs, **(outputs or {})}.items():
            actions.set_output(name, str(value))
    except OSError as e:
        raise ConfigError(f"cannot write the job summary or step outputs ({e}); check the runner's disk") from e
    markdown.print_table(run, make_console())
    line = Text(verdict.line, style="bold green" if verdict else "bold red")
    line.append("".join(f" · {part}" for part in where))  # plain text: paths are never read as markup
    make_console(stderr=True).print(line, highlight=False)
    return verdict.exit_code


def check_runner_files(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError when a file the runner names (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) cannot be appended to:
    a directory, a FIFO (appending to one waits for a reader forever) or a path in a missing folder."""
    env = os.environ if environ is None else environ
    for variable in RUNNER_FILES:
        value = env.get(variable)
        if not value:
            continue
        path = Path(value)
        if path.exists() and not path.is_file() or not path.exists() and not path.parent.is_dir():
            raise ConfigError(
                f"{variable}={value} is not a file trtci can append to; the runner sets it to a file: "
                "unset it outside GitHub Actions"
            )


def _render(run: RunResult, template: str, template_dir: Path | None, extra: Mapping[str, Any] | None) -> str:
    try:
        return markdown.render(run, template, template_dir, extra=dict(extra or {}))
    except RecursionError as e:  # a template that includes itself, or a macro that calls itself without end
        raise TemplateError(f"template {template!r} recurses without end ({e}); check its include and macros") from e
    except OSError as e:  # a template file that cannot be read
        raise TemplateError(f"template {template!r}: cannot read it ({e.strerror or e}) in {template_dir}") from e


def _write_report(path: Path, text: str) -> None:
    """Write the report atomically: a full disk or a kill leaves the previous report whole, never a part of one."""
    temp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8"
        ) as handle:
            temp = Path(handle.name)
            os.fchmod(handle.fileno(), 0o644)  # mkstemp creates 0600; a report is meant to be read by others
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as e:
        if temp is not None:
            temp.unlink(missing_ok=True)
        reason = e.strerror or str(e)
        raise ConfigError(f"{path}: cannot write the report ({reason}); choose a writable --report path") from e

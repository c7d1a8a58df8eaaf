"""The end of `trtci run` and `trtci merge`: what a finished run leaves behind, and the gate's exit code.

Both commands end the same way once they hold a RunResult and the gate's verdict on it: the markdown report,
the JSON summary, the job summary, the step outputs, the console table and one line. This lives in the CLI,
not in trtci.github, because it is the command's ending: it prints to the terminal and picks the exit code,
and GitHub's step outputs and job summary are only two of the things it writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.text import Text

from trtci.cli.console import make_console
from trtci.errors import ConfigError
from trtci.github import actions
from trtci.report import markdown
from trtci.report.json_summary import write_summary
from trtci.results import RunResult
from trtci.verdict.gate import RunVerdict


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
    if report is not None:
        _write_report(report, markdown.render(run, "comment.md.j2", template_dir, extra=dict(extra or {})))
    if json_path is not None:
        write_summary(run, json_path, json_fields)
    if os.environ.get("GITHUB_STEP_SUMMARY"):  # the job summary: the long report, cut to GitHub's 1 MiB
        actions.append_summary(markdown.render(run, "summary.md.j2", template_dir, extra=dict(extra or {})))
    gate_outputs = {
        "regressions": verdict.regressions,
        "accuracy-failures": verdict.failed_series,
        "accuracy-regressions": verdict.accuracy_regressions,
    }
    for name, value in {**gate_outputs, **(outputs or {})}.items():
        actions.set_output(name, str(value))
    markdown.print_table(run, make_console())
    line = Text(verdict.line, style="bold green" if verdict else "bold red")
    line.append("".join(f" · {part}" for part in where))  # plain text: paths are never read as markup
    make_console(stderr=True).print(line, highlight=False)
    return verdict.exit_code


def _write_report(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the report ({e.strerror}); choose a writable --report path") from e

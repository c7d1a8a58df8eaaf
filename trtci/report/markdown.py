"""Render a run as markdown (PR comment, job summary) from jinja2 templates, and as a console table.

Templates are data: the defaults live in templates/, and a user's directory overrides any of them by file
name. Every template renders in jinja2's immutable sandbox with StrictUndefined, so a user template cannot
reach Python internals or change the run, and a typo fails loudly with the template's file and line
(docs/templates.md).
"""

from __future__ import annotations

import math
import re
import traceback
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from rich.console import Console
from rich.table import Table
from rich.text import Text

from trtci import __version__
from trtci.config import ALL_PRECISIONS
from trtci.errors import TemplateError
from trtci.results import Comparison, DeviceInfo, RunResult, SeriesResult
from trtci.verdict.gate import RunVerdict, comparisons_by_series, judge
from trtci.verdict.recommend import recommend
from trtci.verdict.speedup import cross_backend, slower_than_fp32, speedups_vs_fp32


def _default_template_dir() -> Path:
    package = Path(__file__).resolve().parent.parent
    packaged = package / "templates"  # a wheel force-includes templates/ here
    return packaged if packaged.is_dir() else package.parent / "templates"


DEFAULT_TEMPLATE_DIR: Path = _default_template_dir()

NONE_TEXT = "—"
MD_MAX_CHARS = 500

_MD_ESCAPES = {
    "\\": "\\\\",
    "|": "\\|",
    "`": "\\`",
    "*": "\\*",
    "_": "\\_",
    "[": "\\[",
    "]": "\\]",
    "~": "\\~",
    "$": "\\$",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    # A zero-width space after these keeps "@user" from pinging and "#123" from linking an issue.
    "@": "@&#8203;",
    "#": "#&#8203;",
}
# Bidirectional overrides can make a name display as something else ("Trojan Source").
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_SAFE_URL = re.compile(r"https?://[^\s<>()\[\]\"'`|\\]+")


def md(value: Any, limit: int = MD_MAX_CHARS) -> str:
    """`value` as plain text inside GitHub markdown (table cells included): markup characters are escaped,
    mentions and issue references defused, line breaks and control characters turned into spaces, and text
    longer than `limit` characters cut with an ellipsis. None becomes the em dash."""
    if value is None:
        return NONE_TEXT
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    out = []
    for ch in text:
        if ch in _BIDI_CONTROLS:
            continue
        if unicodedata.category(ch) == "Cc":
            out.append(" ")
        else:
            out.append(_MD_ESCAPES.get(ch, ch))
    return "".join(out)


def safe_url(value: Any) -> str:
    """`value` when it is a plain http(s) URL that cannot break out of a markdown link, else ''."""
    text = "" if value is None else str(value)
    return text if _SAFE_URL.fullmatch(text) else ""


def _number(value: float | None, finite: Callable[[float], str]) -> str:
    """NONE_TEXT for None, 'NaN' or '±∞' for non-finite values, else `finite(value)`: every number filter's frame."""
    if value is None:
        return NONE_TEXT
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return finite(value)


def sig(value: float | None, digits: int = 3) -> str:
    """`value` with `digits` significant digits: 0.0123, 1.23, 12.3, 123, 4568; below 0.001 as 1.23e-05."""
    return _number(value, lambda v: _significant(v, digits))


def _significant(value: float, digits: int) -> str:
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value:.{digits - 1}e}"
    rounded = float(f"{value:.{digits - 1}e}")  # the magnitude after rounding, so 9.996 gives 10.0, not 10.00
    decimals = max(digits - 1 - math.floor(math.log10(abs(rounded))), 0)
    return f"{value:.{decimals}f}"


def count(value: float | None) -> str:
    """A rate or count: thousands separated above 1000 ('12,345'), else three significant digits."""
    return _number(value, lambda v: f"{v:,.0f}" if abs(v) >= 1000 else _significant(v, 3))


def fixed(value: float | None, decimals: int = 4) -> str:
    """`value` with a fixed number of decimals (cosine similarity: 0.9991)."""
    return _number(value, lambda v: f"{v:.{decimals}f}")


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal: 0.0312 -> '3.1%'."""
    return _number(value, lambda v: f"{v * 100:.1f}%")


def change(ratio: float | None) -> str:
    """A current/baseline ratio as a signed percent change: 1.218 -> '+21.8%'."""
    return _number(ratio, lambda r: f"{(r - 1) * 100:+.1f}%")


def points(value: float | None, unit: bool = True) -> str:
    """A difference of two fractions in percentage points, signed: -0.0021 -> '-0.2 pt' ('-0.2' without unit)."""

    def signed(v: float) -> str:
        # Adding 0.0 turns a rounded -0.0 into 0.0, so a tiny negative difference reads "+0.0", not "-0.0".
        text = f"{round(v * 100, 1) + 0.0:+.1f}"
        return f"{text} pt" if unit else text

    return _number(value, signed)


def times(value: float | None) -> str:
    """A speed ratio: 2.7 -> '2.70x'."""
    return _number(value, lambda v: f"{v:.2f}x")


def decibels(value: float | None) -> str:
    """An SQNR: '38.2 dB', infinity (identical outputs) as '∞'."""
    return _number(value, lambda v: f"{v:.1f} dB")


def plain(value: Any) -> str:
    """Any value from a free-form dict (device details, build facts), escaped with `md`: numbers with three
    significant digits, lists joined by commas, dicts as 'key: value' pairs."""
    if value is None:
        return NONE_TEXT
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return sig(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{md(k)}: {plain(v)}" for k, v in value.items())
    return md(value)


FILTERS = {
    "md": md,
    "safe_url": safe_url,
    "sig": sig,
    "ms": sig,
    "count": count,
    "fixed": fixed,
    "percent": percent,
    "change": change,
    "times": times,
    "points": points,
    "db": decibels,
    "plain": plain,
}


@dataclass(frozen=True)
class Row:
    """One series as a report row, with what was decided about it."""

    series: SeriesResult
    comparison: Comparison | None
    verdict: str  # the gate's label for the series (trtci.verdict.gate.SERIES_VERDICTS)
    speedup_vs_fp32: float | None  # FP32 median / this median; None without a benchmarked FP32 partner


@dataclass(frozen=True)
class DeviceGroup:
    """The rows measured on one device. `device` is None when the run lists no device with that id."""

    device_id: str
    device: DeviceInfo | None
    rows: list[Row]

    @property
    def name(self) -> str:
        return self.device.name if self.device is not None else f"unknown device {self.device_id}"

    @property
    def kind(self) -> str:
        return self.device.kind if self.device is not None else "unknown"


def _row_order(row: Row) -> tuple:
    key = row.series.key
    precision = ALL_PRECISIONS.index(key.precision) if key.precision in ALL_PRECISIONS else len(ALL_PRECISIONS)
    return (key.model, key.backend, key.batch, precision, key.precision, key.quantization)


def group_by_device(run: RunResult, verdict: RunVerdict) -> list[DeviceGroup]:
    """The run's series as rows, each with its label from the gate's `verdict`, grouped per device, devices in
    run order, rows by model, backend, batch and precision (fp32, fp16, int8)."""
    comparisons = comparisons_by_series(run)
    speedups = speedups_vs_fp32(run)
    devices = {d.id: d for d in run.devices}
    rows: dict[str, list[Row]] = {d.id: [] for d in run.devices}
    for s, label in zip(run.series, verdict.labels):
        row = Row(s, comparisons.get(s.key.id), label, speedups.get(s.key.id))
        rows.setdefault(s.key.device_id, []).append(row)
    return [
        DeviceGroup(device_id, devices.get(device_id), sorted(group, key=_row_order))
        for device_id, group in rows.items()
        if group
    ]


def _context(run: RunResult, extra: dict | None) -> dict[str, Any]:
    verdict = judge(run)
    by_device = group_by_device(run, verdict)
    rows = {row.series.key.id: row for group in by_device for row in group.rows}
    return {
        "run": run,
        "by_device": by_device,
        "rows": rows,
        "comparisons": comparisons_by_series(run),
        "verdict": verdict,
        "slower_than_fp32": slower_than_fp32(run),
        "recommendation": recommend(run),
        "cross_backend": cross_backend(run),
        "trtci_version": __version__,
        "extra": extra or {},
    }


def _environment(search_path: list[Path]) -> ImmutableSandboxedEnvironment:
    # Immutable: a template must not be able to empty run.comparisons and so turn a failed gate into a pass.
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(d)) for d in search_path])
    env = ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # markdown, not HTML: untrusted strings go through the md filter instead
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def _template_frame(error: BaseException, search_path: list[Path]) -> str | None:
    """'file line N' of the innermost template frame in the error's traceback (jinja2 rewrites tracebacks so
    template code appears with the template's own file and line)."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        if path.is_absolute() and any(path.is_relative_to(root) for root in search_path):
            return f"{path} line {frame.lineno}"
    return None


def render(
    run: RunResult,
    template: str = "comment.md.j2",
    template_dir: Path | None = None,
    *,
    extra: dict | None = None,
) -> str:
    """Render `template` for `run`. A template in `template_dir` wins over the default one of the same name.

    The context is `run`, `by_device`, `rows`, `comparisons`, `verdict`, `slower_than_fp32`, `trtci_version`
    and `extra` (docs/templates.md). Raises TemplateError naming the template, line and problem when a
    template is missing, does not parse, uses an undefined name or reaches for something the sandbox forbids.
    """
    search_path = [DEFAULT_TEMPLATE_DIR]
    if template_dir is not None:
        template_dir = Path(template_dir).resolve()
        if not template_dir.is_dir():
            raise TemplateError(
                f"{template_dir}: template directory not found; pass an existing directory or leave it out "
                "to use the default templates"
            )
        search_path.insert(0, template_dir)
    env = _environment(search_path)
    try:
        return env.get_template(template).render(_context(run, extra))
    except jinja2.TemplateNotFound as e:
        searched = ", ".join(str(d) for d in search_path)
        raise TemplateError(f"template {e.name!r} not found in {searched}; check its file name") from e
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{e.filename or e.name} line {e.lineno}: {e.message}") from e
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as e:
        where = _template_frame(e, search_path) or f"template {template!r}"
        raise TemplateError(f"{where}: {type(e).__name__}: {e}") from e


_VERDICT_STYLES = {
    "error": "bold red",
    "fail-accuracy": "bold red",
    "regression": "bold red",
    "flagged-improvement": "bold red",
    "acknowledged": "magenta",
    "warning": "magenta",
    "inconclusive": "yellow",
    "improvement": "green",
    "new": "cyan",
}


def _accuracy_text(series: SeriesResult) -> Text:
    accuracy = series.accuracy
    if series.error is not None:
        return Text("error", style="red")
    if accuracy is None:
        return Text("reference" if series.key.precision == "fp32" else NONE_TEXT, style="dim")
    facts = []
    if accuracy.ratio is not None:
        facts.append(f"top-1 ratio {fixed(accuracy.ratio, 3)}")
        if accuracy.delta is not None and accuracy.delta_low is not None:
            low, high = points(accuracy.delta_low, False), points(accuracy.delta_high, False)
            facts.append(f"(Δ {points(accuracy.delta)}, CI {low}..{high})")
    elif accuracy.outputs:
        facts.append(f"cos {fixed(min(o.cosine for o in accuracy.outputs))}")
        facts.append(f"SQNR {decibels(min(o.sqnr_db for o in accuracy.outputs))}")
    word = "pass" if accuracy.passed else "fail"
    return Text(" ".join([word, *facts]), style="green" if accuracy.passed else "bold red")


def _line(text: str) -> Text:
    """Untrusted text (model names, warnings from another leg's run file) as one plain line: never rich markup,
    and no line breaks of its own. That alone cannot keep a workflow command (`::...`) from starting a log line
    (the console wraps long lines): the CLI prints through trtci.github.actions.guarded_output, which does."""
    return Text(" ".join(text.split()))  # str.split() breaks at every Unicode line break


def print_table(run: RunResult, console: Console) -> None:
    """Print a short table of the run (series, latency median/p99, throughput, accuracy, verdict) and the
    gate's verdict. Names are printed as plain single lines, never parsed as rich markup."""
    verdict = judge(run)
    table = Table(title=f"trtci: {verdict.words}", title_justify="left")
    table.add_column("Series")
    table.add_column("Device")
    table.add_column("Median ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("Throughput/s", justify="right")
    table.add_column("Accuracy")
    table.add_column("Verdict")
    for group in group_by_device(run, verdict):
        for row in group.rows:
            stats = row.series.bench.stats if row.series.bench is not None else None
            table.add_row(
                _line(row.series.key.label),
                _line(group.name),
                sig(stats.median) if stats else NONE_TEXT,
                sig(stats.p99) if stats else NONE_TEXT,
                count(stats.throughput) if stats else NONE_TEXT,
                _accuracy_text(row.series),
                Text(row.verdict, style=_VERDICT_STYLES.get(row.verdict, "")),
            )
    console.print(table)
    for finding in slower_than_fp32(run):
        precision = finding.series.key.precision.upper()
        line = _line(
            f"{finding.series.key.label}: {precision} is {times(finding.speedup)} of FP32 "
            f"(median {sig(finding.median_ms)} ms vs {sig(finding.fp32_median_ms)} ms): slower, not a win"
        )
        line.stylize("yellow")
        console.print(line)
    for warning in dict.fromkeys(run.warnings):
        line = _line(warning)
        line.stylize("yellow")
        console.print(line)

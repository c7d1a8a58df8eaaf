"""The dashboard: one self-contained HTML page of every series' history, and the trend of the PR comment.

Python computes the geometry of each chart (SVG path data, marker positions, axis ticks) from the database;
`templates/dashboard.html.j2` draws it as inline SVG with a few lines of inline JavaScript for the filters. The
page loads nothing from anywhere, so it works from a file, an artifact or GitHub Pages alike.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from trtci import __version__
from trtci.errors import ConfigError
from trtci.report.markdown import DEFAULT_TEMPLATE_DIR
from trtci.results import RunResult
from trtci.store.database import Store
from trtci.store.queries import canary_trend
from trtci.verdict.changepoints import change_points

WIDTH, HEIGHT = 360, 150
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 52, 10, 10, 22


@dataclass
class Line:
    css: str  # "median", "p99", "throughput", "accuracy"
    name: str
    d: str  # SVG path data


@dataclass
class Marker:
    x: float
    y: float
    css: str  # "regression", "improvement", "latest"
    title: str


@dataclass
class Chart:
    title: str
    unit: str
    lines: list[Line] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    change_xs: list[float] = field(default_factory=list)  # vertical lines where a new level starts
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    low: float = 0.0  # value range of the y axis
    high: float = 1.0


@dataclass
class Card:
    """One series on the dashboard: its names for the filters, its charts and its latest numbers."""

    series_id: str
    label: str
    model: str
    device: str
    precision: str
    batch: int
    backend: str
    points: int
    charts: list[Chart]
    latest: dict[str, Any]
    regressions: int
    change_points: int


def build_cards(store: Store, *, branch: str | None = None, last: int = 200) -> list[Card]:
    """A card per series with at least one benchmark on `branch` (any branch when None), its latest `last` runs."""
    history = store.history(branch=branch, limit=last)
    cards = []
    for meta in store.series():
        points = history.get(meta["id"])
        if not points:
            continue
        medians = [p["latency_median_ms"] for p in points]
        changes = change_points(medians)
        precision = f"{meta['precision']}({meta['quantization']})" if meta["quantization"] else meta["precision"]
        cards.append(
            Card(
                series_id=meta["id"],
                label=f"{meta['model']} {precision} b{meta['batch']} {meta['backend']}",
                model=meta["model"],
                device=meta["device"],
                precision=precision,
                batch=meta["batch"],
                backend=meta["backend"],
                points=len(points),
                charts=_charts(points, changes),
                latest=points[-1],
                regressions=sum(p["verdict"] == "regression" for p in points),
                change_points=len(changes),
            )
        )
    return cards


def machine_charts(store: Store, *, branch: str | None = None, last: int = 200) -> list[Chart]:
    """One chart per backend and device model: the canary's median per run (the machine's speed), runs whose
    canary moved beyond its noise marked."""
    charts = []
    for (backend, device), points in canary_trend(store, branch=branch, last=last).items():
        commits = [run[:7] for run, _, _ in points]
        medians = [median for _, median, _ in points]
        chart = _chart(f"canary, {backend} on {device}", "ms", [("median", "canary", list(medians))], commits)
        n = len(points)
        for i, (_, median, moved) in enumerate(points):
            if moved:
                title = f"moved at {commits[i]}"
                chart.markers.append(Marker(_x(i, n), _y(median, chart.low, chart.high), "regression", title))
        charts.append(chart)
    return charts


def render_dashboard(
    cards: list[Card],
    *,
    title: str = "trtci dashboard",
    generated_at: str | None = None,
    machine: list[Chart] | None = None,
) -> str:
    """The page as HTML text: every value escaped, nothing fetched from elsewhere. `machine`: machine_charts."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(DEFAULT_TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["sig"] = _sig
    generated_at = generated_at or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return env.get_template("dashboard.html.j2").render(
        cards=cards,
        title=title,
        generated_at=generated_at,
        trtci_version=__version__,
        models=sorted({c.model for c in cards}),
        devices=sorted({c.device for c in cards}),
        precisions=sorted({c.precision for c in cards}),
        machine=machine or [],
    )


def write_dashboard(
    store: Store, output: Path, *, branch: str | None = None, last: int = 200, title: str = "trtci dashboard"
) -> int:
    """Write the dashboard of `store` to `output`. Returns the number of series drawn."""
    cards = build_cards(store, branch=branch, last=last)
    machine = machine_charts(store, branch=branch, last=last)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render_dashboard(cards, title=title, machine=machine))
    except OSError as e:
        raise ConfigError(f"{output}: cannot write the dashboard ({e.strerror}); choose a writable -o path") from e
    return len(cards)


def trend_extra(
    store: Store, run: RunResult, *, branch: str | None = None, last: int = 12, dashboard_url: str | None = None
) -> dict[str, Any]:
    """What `templates/_trend.md.j2` reads from `extra`: for each regressed series (failing, or only reported as
    after a merge) its latest medians on the baseline branch, then this run's, and the commits where a new level
    starts (change points); and the dashboard URL. Pass it as `report.render(..., extra=...)`."""
    branch = branch or run.context.base_branch or run.context.branch
    trends = []
    for comparison in [c for c in run.comparisons if c.verdict == "regression"]:
        points = [
            {"commit": (p["commit"] or p["run_id"])[:7], "median_ms": p["latency_median_ms"]}
            for p in store.series_history(comparison.series_id, branch=branch, limit=last)
            if p["run_id"] != run.context.run_id
        ]
        # change points of the base branch's history only: this run's own jump is the regression, shown anyway
        changes = [points[i]["commit"] for i in change_points([p["median_ms"] for p in points])]
        if comparison.current is not None:
            points.append({"commit": (run.context.commit or "this run")[:7], "median_ms": comparison.current})
        trends.append({"label": comparison.label, "points": points, "changes": changes})
    return {"trends": trends, "dashboard_url": dashboard_url}


def _charts(points: list[dict[str, Any]], changes: list[int]) -> list[Chart]:
    n = len(points)
    commits = [(p["commit"] or p["run_id"])[:7] for p in points]
    latency = _chart(
        "latency",
        "ms",
        [
            ("median", "median", [p["latency_median_ms"] for p in points]),
            ("p99", "p99", [p["latency_p99_ms"] for p in points]),
        ],
        commits,
    )
    for i, p in enumerate(points):
        if p["verdict"] in ("regression", "improvement") and p["latency_median_ms"] is not None:
            latency.markers.append(
                Marker(
                    _x(i, n),
                    _y(p["latency_median_ms"], latency.low, latency.high),
                    p["verdict"],
                    f"{p['verdict']} at {commits[i]}: {_sig(p['latency_median_ms'])} ms"
                    + (f" ({(p['ratio'] - 1) * 100:+.1f}%)" if p["ratio"] else ""),
                )
            )
    latency.change_xs = [_x(i, n) - (_x(1, n) - _x(0, n)) / 2 if n > 1 else _x(i, n) for i in changes]
    throughput = _chart(
        "throughput", "inf/s", [("throughput", "throughput", [p["throughput"] for p in points])], commits
    )
    top1 = [p["top1"] for p in points]
    if any(v is not None for v in top1):
        accuracy = _chart("accuracy", "top-1", [("accuracy", "top-1", top1)], commits)
    else:
        accuracy = _chart("accuracy", "min cosine", [("accuracy", "cosine", [p["cosine"] for p in points])], commits)
    return [latency, throughput, accuracy]


def _chart(title: str, unit: str, lines: list[tuple[str, str, list[float | None]]], commits: list[str]) -> Chart:
    n = len(commits)
    values = [v for _, _, vs in lines for v in vs if v is not None and math.isfinite(v)]
    chart = Chart(title=title, unit=unit)
    if not values:
        return chart
    low, high = chart.low, chart.high = _range(values)
    for css, name, series in lines:
        chart.lines.append(Line(css, name, _path(series, low, high)))
        last = next(((i, v) for i, v in reversed(list(enumerate(series))) if v is not None), None)
        if last is not None and css != "p99":
            chart.markers.append(
                Marker(
                    _x(last[0], n),
                    _y(last[1], low, high),
                    "latest",
                    f"{name} at {commits[last[0]]}: {_sig(last[1])} {unit}",
                )
            )
    ticks = (low, (low + high) / 2, high)
    # Enough digits that the three labels differ: a narrow range (top-1 0.969 to 0.971) needs more than three.
    digits = next((d for d in range(3, 8) if len({_sig(v, d) for v in ticks}) == 3), 8)
    chart.y_ticks = [(_y(v, low, high), _sig(v, digits)) for v in ticks]
    chart.x_labels = [(_x(0, n), commits[0])] + ([(_x(n - 1, n), commits[-1])] if n > 1 else [])
    return chart


def _range(values: Sequence[float | None]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low, high = min(finite), max(finite)
    margin = (high - low) * 0.08 or abs(high) * 0.05 or 1.0
    return low - margin, high + margin


def _x(i: int, n: int) -> float:
    span = WIDTH - PAD_LEFT - PAD_RIGHT
    return round(PAD_LEFT + (span * i / (n - 1) if n > 1 else span / 2), 1)


def _y(value: float, low: float, high: float) -> float:
    span = HEIGHT - PAD_TOP - PAD_BOTTOM
    return round(PAD_TOP + span * (1 - (value - low) / (high - low)), 1)


def _path(values: list[float | None], low: float, high: float) -> str:
    """Path data through the finite values; a missing value breaks the line instead of bridging it."""
    parts, pen_down = [], False
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{_x(i, len(values))},{_y(v, low, high)}")
        pen_down = True
    return "".join(parts)


def _sig(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if abs(value) < 10**digits:
        return f"{value:.{digits}g}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:  # axis labels must fit the chart's left margin: 1.29M, not 1,293,931
            return f"{value / scale:.{digits}g}{suffix}"
    return f"{value:,.0f}"

"""`trtci explain int8`: why INT8 fails its accuracy gate, by ONNX node, and the nodes to keep in float.

Parses flags and calls trtci.pipeline.explain; prints the ranking and a trtci.yml snippet to commit. Exit 0 when
INT8 passes (as configured, or with the nodes found kept in float), 1 when no such set was found within the
budget. `register(group)` adds it.
"""

from __future__ import annotations

from pathlib import Path

import click

from trtci.cli.exits import TrtciGroup
from trtci.errors import EXIT_GATE_FAILED, EXIT_OK


@click.group("explain", cls=TrtciGroup)
def explain() -> None:
    """Explain a precision's accuracy failure."""


@explain.command("int8")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True, help="trtci.yml to read.")
@click.option("--model", help="Model name in the config (default: every model with int8).")
@click.option(
    "--scheme", type=click.Choice(["onnxruntime", "tensorrt"]), help="Q/DQ scheme (default: the first backend's)."
)
@click.option("--trials", type=click.IntRange(2), help="Quantizations the search may run (default 16).")
@click.option("--budget", type=click.FloatRange(min=1), help="Seconds the search may take (default 600).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the diagnosis as JSON.")
@click.pass_context
def int8(
    ctx: click.Context,
    config_path: Path,
    model: str | None,
    scheme: str | None,
    trials: int | None,
    budget: float | None,
    json_path: Path | None,
) -> None:
    """Rank ONNX nodes by how much their INT8 rounding hurts the outputs (each tensor alone in INT8, against
    FP32), then find the fewest nodes to keep in float (calibration.nodes_to_exclude) that pass the accuracy gate."""
    import json
    from dataclasses import asdict

    from trtci.cli import _Progress
    from trtci.cli.console import make_console
    from trtci.config import load_config
    from trtci.pipeline.explain import explain_models
    from trtci.report.json_summary import json_safe

    config = load_config(config_path)
    console = make_console()
    limits: dict = {"trials": trials, "budget_s": budget}
    given = {name: value for name, value in limits.items() if value is not None}  # else the library's defaults
    found = explain_models(config, model, scheme, progress=_Progress(make_console(stderr=True)), **given)
    for outcome in found:
        for line in _lines(outcome):
            console.print(line, highlight=False, markup=False)
    if json_path is not None:
        data = [{**asdict(o), "resolved": o.resolved} for o in found]
        json_path.write_text(json.dumps(json_safe(data), indent=2) + "\n")
    ctx.exit(EXIT_OK if all(o.resolved for o in found) else EXIT_GATE_FAILED)


def _lines(outcome) -> list[str]:
    head = f"{outcome.model} int8({outcome.scheme})"
    cause = outcome.cause
    if outcome.error:
        return [f"{head}: {outcome.error}"]
    assert cause is not None
    if not cause.ranking:
        return [f"{head}: {cause.note}"]
    lines = [f"{head}: fails its accuracy gate. Nodes by their effect on the outputs (that tensor alone in INT8):"]
    for rank, s in enumerate(cause.ranking, 1):
        ratio = f", top-1 ratio {s.ratio:#.5g}" if s.ratio is not None else ""
        lines.append(f"  {rank:2}. {s.node} ({s.op_type}) via {s.tensor}: outputs {s.sqnr_db:.1f} dB SQNR{ratio}")
    if not cause.passed:
        return [*lines, f"  {cause.note}"]
    measured = f"top-1 ratio {cause.ratio:#.5g}" if cause.ratio is not None else f"SQNR {cause.sqnr_db:.1f} dB"
    speed = f", {cause.speedup_vs_fp32:.2f}x the speed of FP32" if cause.speedup_vs_fp32 is not None else ""
    kept = len(cause.nodes_to_exclude)
    lines.append(f"  Keeping {kept} node{'s' if kept != 1 else ''} in float passes ({measured}{speed}; "
                 f"{cause.trials} quantizations). Add to trtci.yml:")  # fmt: skip
    lines.extend(f"    {line}" for line in outcome.snippet)
    if cause.note:
        lines.append(f"  {cause.note}")
    return lines


def register(group: click.Group) -> None:
    """Add `explain` to the trtci command group."""
    group.add_command(explain)

"""Statistics commands for the `trtci` group: `trtci ingest pytest-benchmark FILE` and `trtci ab`.

Parses flags and calls trtci.pipeline.ingest, trtci.verdict.latency and the store; exit 1 on a regression. Typed
errors end as every command's do (trtci.cli.exits: one line, the documented exit code). `register(group)` adds them.
"""

from __future__ import annotations

from pathlib import Path

import click

from trtci.cli.exits import TrtciCommand, TrtciGroup
from trtci.config import CompareSettings
from trtci.context.run import run_context
from trtci.errors import EXIT_GATE_FAILED, StoreError
from trtci.pipeline.ab import ab_onnx
from trtci.pipeline.ingest import benchmark_run
from trtci.store.database import Store
from trtci.verdict.gate import judge
from trtci.verdict.latency import compare, decide_ab


@click.group("ingest", cls=TrtciGroup)
def ingest() -> None:
    """Record results of other benchmark tools as trtci series, judged like engines."""


@ingest.command("pytest-benchmark")
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--db", type=click.Path(path_type=Path), default=Path("trtci.db"), show_default=True,
              help="SQLite results database.")  # fmt: skip
@click.option("--branch", help="Branch of this run; defaults to git's or GitHub's.")
@click.option("--base-branch", help="Branch to compare with; defaults to the pull request's target.")
@click.option("--commit", help="Commit of this run; defaults to git's or GitHub's.")
@click.option("--threshold", type=float, default=CompareSettings().threshold, show_default=True,
              help="Smallest relative change of the median that counts.")  # fmt: skip
@click.option("--min-history", type=click.IntRange(1), default=CompareSettings().min_history, show_default=True,
              help="Base runs needed before a change is judged (1: judge on the two runs' samples alone).")  # fmt: skip
def pytest_benchmark(
    results: Path,
    db: Path,
    branch: str | None,
    base_branch: str | None,
    commit: str | None,
    threshold: float,
    min_history: int,
) -> None:
    """Record RESULTS (pytest --benchmark-json, best with --benchmark-save-data) and compare with the base branch.

    Times in the file are seconds; trtci stores milliseconds. Exits 1 on a regression, 2 on a bad file or a
    database that cannot take the run (then kept as a run file beside it, for `trtci db import`).
    """
    context = run_context(overrides={"branch": branch, "base_branch": base_branch, "commit": commit})
    run = benchmark_run(results, context)
    with Store(db) as store:
        try:
            store.check_writable()
            run.comparisons = compare(run, store, CompareSettings(threshold=threshold, min_history=min_history))
            store.record_run(run)
        except StoreError as e:  # locked for too long, read-only: the results are kept, and the line says where
            raise StoreError(store.keep_unrecorded(run, e)) from e
    for c in run.comparisons:
        change = f"{(c.ratio - 1) * 100:+.1f}%" if c.ratio is not None else "—"
        click.echo(f"{c.verdict:<12} {change:>8}  {c.label}: {c.reason}")
    click.echo(f"{len(run.series)} benchmarks recorded in {db} (run {run.context.run_id})")
    if not judge(run):
        raise SystemExit(EXIT_GATE_FAILED)


@click.command("ab", cls=TrtciCommand)
@click.option("--model-a", type=click.Path(path_type=Path), required=True, help="The base model (A).")
@click.option("--model-b", type=click.Path(path_type=Path), required=True, help="The changed model (B).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size.")
@click.option("--budget", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds of measurement at most.")  # fmt: skip
@click.option("--min-effect", type=click.FloatRange(min=0.001, max=10), default=0.05, show_default=True,
              help="Smallest relative change that matters; exit 1 when B is slower by it.")  # fmt: skip
@click.option("--data", help="Inputs: a .npz, a directory of .npy files or module:function; default random.")
@click.option(
    "--threads", type=click.IntRange(min=0), default=0, help="ONNX Runtime intra-op threads; 0: ORT's choice."
)
def ab(
    model_a: Path, model_b: Path, batch_size: int, budget: float, min_effect: float, data: str | None, threads: int
) -> None:
    """Time two ONNX models in alternating rounds (A B A B ...) on ONNX Runtime: a paired ratio B / A.

    Alternating cancels what drifts on a busy machine, so this resolves smaller changes than two separate
    runs. Each round times a block of calls of each side (enough calls for a few milliseconds); rounds go on
    until the interval is narrower than half of --min-effect, or decides the verdict at --min-effect, or --budget
    is spent, and the interval's error rate
    holds however often it was looked at (docs/statistics.md). Exits 1 when B is slower (a regression under
    compare's rule with threshold --min-effect), 2 on bad input.
    """
    result = ab_onnx(
        model_a, model_b, batch=batch_size, data=data, threads=threads, time_budget_s=budget,
        min_effect=min_effect / 2, threshold=min_effect,
    )  # fmt: skip
    verdict = decide_ab(result, min_effect)
    click.echo(f"ratio B/A    {result.ratio:.4f} ({(result.ratio - 1) * 100:+.1f}%)")
    click.echo(
        f"interval     {(result.low - 1) * 100:+.1f}%..{(result.high - 1) * 100:+.1f}% "
        f"({result.confidence:.2%} confidence at look {result.looks}: valid however many looks)"
    )
    click.echo(
        f"rounds       {result.rounds} of {result.calls_per_round} calls a side in {result.elapsed_s:.1f} s"
        + ("" if result.converged else " (budget spent)")
    )
    click.echo(f"resolution   changes above {max(result.resolution, min_effect / 2) * 100:.1f}% would have been seen")
    click.echo(f"verdict      {verdict} (min effect {min_effect * 100:g}%)")
    if verdict == "regression":
        raise SystemExit(EXIT_GATE_FAILED)


def register(group: click.Group) -> None:
    """Add `ingest` and `ab` to the trtci command group."""
    group.add_command(ingest)
    group.add_command(ab)

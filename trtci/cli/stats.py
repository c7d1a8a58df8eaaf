"""Statistics commands for the `trtci` group: `trtci ingest pytest-benchmark FILE` and `trtci ab`, and the options
and recording every `trtci ingest` command shares (trtci.cli.interop adds the trtexec and perf_analyzer ones).

Parses flags and calls trtci.pipeline.ingest, trtci.verdict.latency and the store; exit 1 on a regression. Typed
errors end as every command's do (trtci.cli.exits: one line, the documented exit code). `register(group)` adds them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trtci.cli.exits import TrtciCommand, TrtciGroup
from trtci.config import CompareSettings
from trtci.context.run import run_context
from trtci.errors import EXIT_GATE_FAILED, StoreError
from trtci.pipeline.ab import ab_onnx
from trtci.pipeline.ingest import benchmark_run
from trtci.results import MEDIAN, METRICS, RunContext, RunResult
from trtci.store.database import Store
from trtci.verdict.gate import judge
from trtci.verdict.latency import compare, decide_ab


@click.group("ingest", cls=TrtciGroup)
def ingest() -> None:
    """Record results of other benchmark tools as trtci series, judged like engines."""


def recording_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every ingest shares: where to record, what to compare with, and how to judge."""
    for option in reversed([
        click.option("--db", type=click.Path(path_type=Path), default=Path("trtci.db"), show_default=True,
                     help="SQLite results database."),
        click.option("--branch", help="Branch of this run; defaults to git's or GitHub's."),
        click.option("--base-branch", help="Branch to compare with; defaults to the pull request's target."),
        click.option("--commit", help="Commit of this run; defaults to git's or GitHub's."),
        click.option("--metric", type=click.Choice(list(METRICS)), default=MEDIAN.name, show_default=True,
                     help="What each series is judged on: median or p99 latency (lower is better) or throughput "
                          "(higher is better)."),
        click.option("--threshold", type=float, default=CompareSettings().threshold, show_default=True,
                     help="Smallest relative change of the metric that counts."),
        click.option("--alert", type=click.Choice(["worse", "either"]), default=CompareSettings().alert,
                     show_default=True, help="'either' also fails on a change for the better beyond the threshold."),
        click.option("--min-history", type=click.IntRange(1), default=CompareSettings().min_history,
                     show_default=True,
                     help="Base runs needed before a change is judged (1: judge on the two runs alone)."),
    ]):  # fmt: skip
        command = option(command)
    return command


def ingest_context(options: dict[str, Any]) -> RunContext:
    """The run context of an ingest: git's or GitHub's, with --branch, --base-branch and --commit applied."""
    return run_context(overrides={k: options[k] for k in ("branch", "base_branch", "commit")})


def record_ingested(run: RunResult, options: dict[str, Any], what: str) -> None:
    """Compare with the base branch on --metric, record, print one line per series; exit 1 when the gate fails.
    A database that cannot take the run (locked, read-only) keeps it as a run file beside it and says where.

    Ingested series are judged against history, not attributed: their keys name the model (a file's name, a Triton
    model and version) but cannot see what the numbers depend on (the engine's bytes, the server's configuration,
    the benchmarked code), so "nothing changed" could not be told from an unseen change."""
    settings = CompareSettings(
        threshold=options["threshold"], min_history=options["min_history"], alert=options["alert"], attribute=False
    )
    with Store(options["db"]) as store:
        try:
            store.check_writable()
            run.comparisons = compare(run, store, settings, metric=METRICS[options["metric"]])
            store.record_run(run)
        except StoreError as e:
            raise StoreError(store.keep_unrecorded(run, e)) from e
    for c in run.comparisons:
        change = f"{(c.ratio - 1) * 100:+.1f}%" if c.ratio is not None else "—"
        click.echo(f"{c.verdict:<12} {change:>8}  {c.label}: {c.reason}")
    for warning in run.warnings:
        click.echo(f"warning: {warning}")
    click.echo(f"{len(run.series)} {what} recorded in {options['db']} (run {run.context.run_id})")
    if not judge(run):
        raise SystemExit(EXIT_GATE_FAILED)


@ingest.command("pytest-benchmark")
@click.argument("results", type=click.Path(path_type=Path))
@recording_options
def pytest_benchmark(results: Path, **options: Any) -> None:
    """Record RESULTS (pytest --benchmark-json, best with --benchmark-save-data) and compare with the base branch.

    Times in the file are seconds; trtci stores milliseconds. Exits 1 on a regression, 2 on a bad file or a
    database that cannot take the run (then kept as a run file beside it, for `trtci db import`).
    """
    record_ingested(benchmark_run(results, ingest_context(options)), options, "benchmarks")


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

"""Commands that speak TensorRT users' tools: `trtci ingest trtexec`, `trtci ingest perf-analyzer`,
`trtci diff layers`, `trtci export triton` and `trtci export trtexec`.

Parses flags and calls trtci.pipeline (ingest_trtexec, ingest_perf_analyzer, diff_layers, export_triton) and
trtci.report.trtexec_command; ingests are recorded and judged as `trtci ingest pytest-benchmark` is (exit 1 on a
regression). Typed errors end as every command's do (trtci.cli.exits). `register(group)` adds them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trtci.cli.exits import TrtciCommand, TrtciGroup
from trtci.cli.stats import ingest, ingest_context, record_ingested, recording_options
from trtci.errors import DataError

PRECISIONS = click.Choice(["fp32", "fp16", "int8"])
FILE = click.Path(path_type=Path)


@click.command("trtexec", cls=TrtciCommand)
@click.argument("paths", nargs=-1, type=FILE)
@click.option("--times", type=FILE, help="trtexec --exportTimes file.")
@click.option("--profile", type=FILE, help="trtexec --exportProfile file (per-layer times).")
@click.option("--layer-info", type=FILE, help="trtexec --exportLayerInfo file, or the engine inspector's JSON.")
@click.option("--build-metadata", type=FILE, help="TREx *.build.metadata.json (build options, precision).")
@click.option("--profile-metadata", type=FILE, help="TREx *.profile.metadata.json (summary, options, GPU).")
@click.option("--device-metadata", type=FILE, help="TREx *.metadata.json (GPU properties).")
@click.option("--name", help="Model name of the series; default: the files' shared name without .engine/.onnx.")
@click.option("--gpu", help="GPU that ran it, e.g. 'NVIDIA A100 80GB PCIe' (checked against the files).")
@click.option("--compute", help="Its compute capability, e.g. 8.0 (checked against the files).")
@click.option("--tensorrt-version", help="TensorRT version trtexec ran (no trtexec file records it).")
@click.option("--batch", type=click.IntRange(1), help="Batch size (checked against the timed shapes).")
@click.option("--precision", type=PRECISIONS, help="Precision (checked against the layers' tensor types).")
@click.option("--warmup-ms", type=click.FloatRange(0), help="trtexec's --warmUp; default: the files' or 200.")
@click.option("--base", type=FILE, multiple=True, help="Base engine's exports: print and keep a per-layer diff.")
@click.option("--report", type=FILE, help="Write the per-layer diff as markdown (the _layers.md.j2 partial).")
@click.option("--template-dir", type=FILE, help="Directory whose templates override the defaults.")
@recording_options
def ingest_trtexec(paths: tuple[Path, ...], **options: Any) -> None:
    """Record trtexec results as series: the files in PATHS (files or directories; one engine's files share a
    name such as resnet.onnx.engine.timing.json) and those given by kind.

    Each engine becomes one series judged like trtci's own: --exportTimes' per-inference latencies are the
    samples (warm-up inferences dropped as trtexec drops them). Exits 1 on a regression, 2 on a bad file.
    """
    from trtci.pipeline.diff_layers import diff_exports, render_layer_diffs
    from trtci.pipeline.ingest_trtexec import Claims, read_export, trtexec_run
    from trtci.pipeline.trtexec_files import ExportSet, engine_name, find_sets

    sets = find_sets(list(paths)) if paths else []
    given = {kind: options[kind.replace("-", "_")] for kind in _KINDS if options[kind.replace("-", "_")]}
    if given:
        if len(sets) > 1:
            raise DataError("files given by kind belong to one engine, but PATHS hold several: pass one engine")
        first = Path(next(iter(given.values())))
        target = sets[0] if sets else ExportSet(engine_name(first) or first.stem)
        if not sets:
            sets.append(target)
        for kind, path in given.items():
            if kind in target.files:
                raise DataError(f"{path}: a second {kind} file for {target.name} (first: {target.files[kind]})")
            target.files[kind] = path
    claims = Claims(**{k: options[k] for k in Claims.__dataclass_fields__})
    exports = [read_export(export) for export in sets]
    run = trtexec_run(exports, ingest_context(options), claims)
    if options["base"]:
        diffs = diff_exports([read_export(e) for e in find_sets(list(options["base"]))], exports)
        for diff in diffs:
            click.echo(diff.summary())
            for change in diff.top(5):
                click.echo(f"  {change.describe()}")
        if options["report"] is not None:
            options["report"].write_text(render_layer_diffs(run, diffs, options["template_dir"]))
            click.echo(f"layer diff written to {options['report']}")
    record_ingested(run, options, "trtexec engines")


_KINDS = ("times", "profile", "layer-info", "build-metadata", "profile-metadata", "device-metadata")


@click.command("perf-analyzer", cls=TrtciCommand)
@click.argument("results", type=FILE)
@click.option("--model", required=True, help="The model perf_analyzer measured (its -m); the CSV does not name it.")
@click.option("--model-version", default="", help="Its version (-x), when you track versions apart.")
@click.option("--precision", default="n/a", show_default=True, help="Precision of the deployed model.")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="perf_analyzer's -b.")
@click.option("--gpu", default="", help="GPU the server ran on, e.g. 'NVIDIA L4'.")
@recording_options
def ingest_perf_analyzer(results: Path, **options: Any) -> None:
    """Record RESULTS (perf_analyzer -f, with or without --verbose-csv) as one series per concurrency or request
    rate, judged against the same model's at the same load on the base branch.

    Times in the file are microseconds; trtci stores milliseconds. Exits 1 on a regression, 2 on a bad file.
    """
    from trtci.pipeline.ingest_perf_analyzer import perf_analyzer_run

    run = perf_analyzer_run(
        results, ingest_context(options), model=options["model"], version=options["model_version"],
        precision=options["precision"], batch=options["batch"], gpu=options["gpu"],
    )  # fmt: skip
    record_ingested(run, options, "load levels")


@click.group("diff", cls=TrtciGroup)
def diff() -> None:
    """Compare engines."""


@diff.command("layers")
@click.argument("base", type=FILE)
@click.argument("head", type=FILE)
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, help="Changes to print (0: all).")
@click.option("--json", "json_path", type=FILE, help="Write the whole diff as JSON.")
def diff_layers(base: Path, head: Path, top: int, json_path: Path | None) -> None:
    """Which layers changed from the engine at BASE to the one at HEAD: added, removed, renamed by fusion,
    precision, tactic and implementation changes, and time changes ranked by their share of the total.

    BASE and HEAD are an engine's trtexec exports (--exportLayerInfo, with --exportProfile for times; a file or
    a directory of one engine's files) or the engine inspector's JSON.
    """
    from trtci.pipeline.diff_layers import diff_paths

    result = diff_paths(base, head)
    click.echo(result.summary())
    for change in result.changes[: top or None]:
        click.echo(f"  {change.describe()}")
    if top and len(result.changes) > top:
        click.echo(f"  ... {len(result.changes) - top} more (--top 0 shows all)")
    if json_path is not None:
        json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n")


@click.group("export", cls=TrtciGroup)
def export() -> None:
    """Hand what trtci built and measured to other tools."""


def _onnx_models(pairs: tuple[str, ...]) -> dict[str, Path]:
    models = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=PATH.onnx, got {pair!r}", param_hint="--model")
        models[name] = Path(path)
    return models


_SOURCES = [
    click.argument("sources", nargs=-1, type=FILE),
    click.option("--db", type=FILE, help="Results database: export its run --run-id (default: the latest run)."),
    click.option("--run-id", help="Run of --db to export."),
    click.option("--model", "models", multiple=True, help="NAME=PATH: the FP32 ONNX file of trtci model NAME."),
]


def _with_sources(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SOURCES):
        command = option(command)
    return command


@export.command("triton")
@_with_sources
@click.option("--out", type=FILE, required=True, help="Model repository folder to write (created).")
@click.option("--backend", type=click.Choice(["tensorrt", "tensorrt-rtx", "onnxruntime"]),
              help="Whose models to export; default: the first of these the runs hold.")  # fmt: skip
@click.option("--precision", "precisions", multiple=True, type=PRECISIONS, help="Only these precisions.")
@click.option("--engines", type=FILE, multiple=True, help="Folder holding plans of matrix legs (searched by name).")
@click.option("--cache-dir", type=FILE, default=Path(".trtci-cache"), show_default=True,
              help="trtci's cache (where an FP16 conversion for ONNX Runtime is found or made).")  # fmt: skip
@click.option("--version", type=click.IntRange(1), default=1, show_default=True, help="Model version folder.")
def export_triton(sources: tuple[Path, ...], **options: Any) -> None:
    """Write a Triton model repository from SOURCES (run files or folders of them: a matrix's legs) or --db:
    one model per trtci model and precision that passed, with config.pbtxt (tensorrt_plan with one plan per
    compute capability of the matrix, or onnxruntime_onnx) and its version folder. Exits 2 when a GPU of the
    matrix has no plan (it is named), a model file is not the one measured, or Triton would refuse a name.
    """
    from trtci.pipeline.export_triton import load_runs, triton_repository, write_repository

    runs = load_runs(list(sources), options["db"], options["run_id"])
    held = {s.key.backend for run in runs for s in run.series}
    backend = options["backend"] or next((b for b in ("tensorrt", "tensorrt-rtx", "onnxruntime") if b in held), None)
    if backend is None:
        raise DataError(f"the runs hold no series trtci exports to Triton ({', '.join(sorted(held)) or 'none'})")
    repository = triton_repository(
        runs, _onnx_models(options["models"]), backend, precisions=list(options["precisions"]),
        engine_dirs=list(options["engines"]), cache_dir=options["cache_dir"],
    )  # fmt: skip
    for note in repository.notes:
        click.echo(f"note: {note}")
    for path in write_repository(repository, options["out"], options["version"]):
        click.echo(f"wrote {path}")


@export.command("trtexec")
@_with_sources
@click.option("--export-prefix", default="", help="Also write --exportTimes/Profile/LayerInfo files with this prefix.")
def export_trtexec(sources: tuple[Path, ...], **options: Any) -> None:
    """Print, for each TensorRT series of the run(s), the trtexec (or tensorrt_rtx) command that rebuilds and
    re-measures it by hand: strongly typed, its shapes and profile, CUDA graphs, data transfers."""
    from trtci.pipeline.export_triton import load_runs
    from trtci.report.trtexec_command import TOOLS, trtexec_command

    models = _onnx_models(options["models"])
    found = 0
    for run in load_runs(list(sources), options["db"], options["run_id"]):
        for series in run.series:
            if series.key.backend not in TOOLS or series.error is not None:
                continue
            key = series.key
            fp32 = models.get(key.model)
            model = str(fp32) if fp32 is not None and key.precision == "fp32" else f"{key.model}.{key.precision}.onnx"
            command = trtexec_command(series, model, export_prefix=options["export_prefix"])
            click.echo(f"# {key.label}" + "".join(f"; {note}" for note in command.notes))
            click.echo(command.line)
            found += 1
    if not found:
        raise DataError("the run(s) hold no TensorRT series without errors: nothing to rebuild with trtexec")


def register(group: click.Group) -> None:
    """Add `ingest trtexec`, `ingest perf-analyzer`, `diff layers`, `export triton` and `export trtexec`."""
    ingest.add_command(ingest_trtexec)
    ingest.add_command(ingest_perf_analyzer)
    group.add_command(diff)
    group.add_command(export)

"""Ingest every trtexec export under a folder and diff the layers of every pair of its engines.

Each JSON file is read as the kind its content says (--exportTimes, --exportProfile, --exportLayerInfo, TREx
metadata); the files of one engine are then ingested together as `trtci ingest trtexec` does (every cross-check
included), so a file counts as ingested when it reads and its engine ingests. Every pair of engines that ran on
one GPU and have layer information is diffed (trtci.verdict.layer_diff). Prints a table of the engines, one line
per diff, and as the last line:

  interop: ingested=<files ok>/<files> layer_diffs=<pairs diffed>

Run from the repository root: python -m benchmarks.interop [FOLDER]   (default: ../shared/trtexec)
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from trtci.errors import DataError
from trtci.pipeline.ingest_trtexec import TrtexecExport, read_export, trtexec_run
from trtci.pipeline.trtexec_files import ExportSet, find_sets, kind_of, load_json
from trtci.results import RunContext, SeriesResult
from trtci.verdict.layer_diff import diff_layers

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "trtexec"
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}  # diffs read from the wider precision to the narrower


def ingest_folder(folder: Path) -> tuple[int, int, list[tuple[TrtexecExport, SeriesResult, str]], list[str]]:
    """(files read and ingested, files, each ingested engine with its series and GPU, problems)."""
    files = sorted(p for p in folder.rglob("*.json") if p.is_file())
    problems = []
    readable = []
    for file in files:
        try:
            if kind_of(load_json(file)) is None:
                raise DataError(f"{file}: not a trtexec or TREx export")
            readable.append(file)
        except DataError as e:
            problems.append(str(e))
    sets: list[ExportSet] = []
    try:
        sets = find_sets(readable)
    except DataError as e:
        problems.append(str(e))
    engines = []
    ok = 0
    for export in sets:
        try:
            read = read_export(export)
            run = trtexec_run([read], RunContext(run_id=export.name, started_at="benchmark"))
        except DataError as e:
            problems.append(str(e))
            continue
        ok += len(export.files)
        engines.append((read, run.series[0], run.devices[0].name))
    return ok, len(files), engines, problems


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not folder.is_dir():
        raise SystemExit(f"interop: {folder} is not a folder of trtexec exports")
    ok, total, engines, problems = ingest_folder(folder)
    print(f"{'engine':<34} {'precision':<9} {'batch':>5} {'GPU':<24} {'iters':>6} {'median ms':>10} {'p99 ms':>9} "
          f"{'qps':>9} {'layers':>6}")  # fmt: skip
    for read, series, gpu in engines:
        stats = series.bench.stats  # type: ignore[union-attr]
        layers = len(read.engine.layers) if read.engine is not None else 0
        print(f"{read.label:<34} {series.key.precision:<9} {series.key.batch:>5} {gpu[:24]:<24} "
              f"{stats.iterations:>6} {stats.median:>10.5f} {stats.p99:>9.5f} "
              f"{stats.throughput / series.key.batch:>9.1f} {layers:>6}")  # fmt: skip
    diffs = 0
    by_precision = sorted(engines, key=lambda e: (PRECISION_ORDER.get(e[1].key.precision, 9), e[0].label))
    for (a, _, gpu_a), (b, _, gpu_b) in itertools.combinations(by_precision, 2):
        if gpu_a != gpu_b or a.engine is None or b.engine is None:
            continue
        diff = diff_layers(a.engine, b.engine, a.label, b.label)
        changed = ", ".join(c.name for c in diff.precision_changes[:2])
        print(f"{diff.summary()}; precision changed in {len(diff.precision_changes)} layers (e.g. {changed})")
        diffs += 1
    for problem in problems:
        print(f"problem: {problem}")
    print(f"interop: ingested={ok}/{total} layer_diffs={diffs}")


if __name__ == "__main__":
    main()

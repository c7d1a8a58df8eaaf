"""Turn Triton perf_analyzer's CSV (`perf_analyzer -f FILE`, with or without `--verbose-csv`) into a trtci run.

Each row is one load level: a concurrency (`--concurrency-range`) or a request rate (`--request-rate-range`),
and becomes one series, so a deployed model's latency at concurrency 4 is judged against the same model's at
concurrency 4 on the base branch. perf_analyzer writes averages and percentiles, not per-request times, in
microseconds; trtci stores milliseconds:

- median = `p50 latency`, p90/p95/p99 from their columns; mean = `Avg latency` (`--verbose-csv`), else the sum
  of the latency components (client send, network + server send/recv, server queue, compute input, infer and
  output, cache hit/miss, client recv), which is how perf_analyzer splits its average; min, max and the spread
  are unknown (NaN); throughput = `Inferences/Second`.
- With no samples a series is compared by its median against the base branch's history, without a within-run
  interval (as pytest-benchmark results without raw data are).

The key: model `<model> concurrency <N>` (or `request rate <R>`), model_hash from the model name and version,
precision (`--precision`, default "n/a") and batch (`-b`, which the CSV does not record) from flags, backend
`triton`, the device named by `--gpu`. Every other column is kept in `bench.extra["perf_analyzer"]`.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from trtci.errors import DataError
from trtci.results import (
    BenchResult,
    DeviceInfo,
    LatencyStats,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
    stable_hash,
)

BACKEND = "triton"
LEVELS = {"Concurrency": "concurrency", "Request Rate": "request rate"}
PERCENTILES = {"p50 latency": "median", "p90 latency": "p90", "p95 latency": "p95", "p99 latency": "p99"}
COMPONENTS = (
    "Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input", "Server Compute Infer",
    "Server Compute Output", "Server Cache Hit", "Server Cache Miss", "Client Recv",
)  # fmt: skip
REQUIRED = ("Inferences/Second", "Client Send", "Client Recv", *PERCENTILES)
US_TO_MS = 1e-3


def read_perf_analyzer(path: Path) -> tuple[str, list[dict[str, float]]]:
    """(load column, rows of numbers by column) of the CSV, rows sorted by load level. DataError names the file
    and what is wrong: not perf_analyzer's CSV, a missing column, a short row, a value that is not a number."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e.reason}); pass the CSV written by perf_analyzer -f") from e
    lines = list(csv.reader(io.StringIO(text)))
    header = [name.strip() for name in lines[0]] if lines else []
    if not header or header[0] not in LEVELS:
        raise DataError(
            f"{path}: not a perf_analyzer CSV (its first column is {header[0] if header else 'missing'!r}, not "
            "'Concurrency' or 'Request Rate'); pass the file written by perf_analyzer -f"
        )
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise DataError(
            f"{path}: no '{missing[0]}' column; pass the model's own perf_analyzer -f file (an ensemble's composing "
            "model files have no percentiles)"
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in line):
            continue
        if len(line) != len(header):
            raise DataError(f"{path}: line {number} has {len(line)} values for {len(header)} columns; truncated?")
        rows.append({name: _number(path, number, name, cell) for name, cell in zip(header, line)})
    if not rows:
        raise DataError(f"{path}: no measurement rows; perf_analyzer wrote the header only (did it fail?)")
    levels = [row[header[0]] for row in rows]
    if len(set(levels)) != len(levels):
        raise DataError(f"{path}: {header[0].lower()} {levels[0]:g} appears twice; pass one perf_analyzer run")
    return header[0], sorted(rows, key=lambda row: row[header[0]])


def perf_analyzer_run(
    path: Path,
    context: RunContext,
    *,
    model: str,
    version: str = "",
    precision: str = "n/a",
    batch: int = 1,
    gpu: str = "",
) -> RunResult:
    """A RunResult with one series per load level of the CSV."""
    if not model:
        raise DataError("perf_analyzer's CSV does not name the model: pass --model, as given to perf_analyzer -m")
    level, rows = read_perf_analyzer(path)
    device = DeviceInfo(kind="gpu", name=gpu or "Triton Inference Server", details={"source": "perf_analyzer"})
    series = []
    for row in rows:
        value = row[level]
        name = f"{model} {LEVELS[level]} {value:g}"
        key = SeriesKey(
            model=name,
            model_hash=stable_hash({"triton-model": model, "version": version}, 64),
            precision=precision,
            batch=batch,
            backend=BACKEND,
            device_id=device.id,
            options_hash=stable_hash({LEVELS[level]: value}),
        )
        series.append(SeriesResult(key=key, bench=_bench(path, name, row, batch)))
    return RunResult(context=context, devices=[device], series=series)


def _bench(path: Path, name: str, row: dict[str, float], batch: int) -> BenchResult:
    ms = {column: value * US_TO_MS for column, value in row.items()}
    if not ms["p50 latency"] > 0:
        raise DataError(f"{path}: {name}: p50 latency is 0; a load level that took no time cannot be compared")
    if "Avg latency" in ms:
        mean = ms["Avg latency"]
    elif "Server Queue" in ms:
        mean = sum(ms[column] for column in COMPONENTS if column in ms)
    else:
        mean = math.nan  # without server statistics the CSV does not split the average
    unknown = math.nan
    stats = LatencyStats(
        min=unknown,
        mean=mean,
        median=ms["p50 latency"],
        p90=ms["p90 latency"],
        p95=ms["p95 latency"],
        p99=ms["p99 latency"],
        max=unknown,
        std=unknown,
        cv=unknown,
        iterations=0,
        throughput=row["Inferences/Second"],
        unstable=False,
    )
    extra = {"perf_analyzer": {"unit": "ms (converted from the CSV's microseconds)", **ms}}
    return BenchResult(stats=stats, samples_ms=[], warmup_ms=0.0, duration_s=0.0, timer="perf_analyzer", extra=extra)


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path}: line {line}: {column} is {cell.strip()!r}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{path}: line {line}: {column} is {cell.strip()}; it must be a finite number >= 0")
    return value

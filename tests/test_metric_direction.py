"""Judging ingested results on the metric the user picks, the right way up: `trtci ingest ... --metric`.

Real perf_analyzer CSVs (the shape of tests/data/perf_analyzer/inception.csv) and pytest-benchmark JSON files are
written, ingested through the real CLI into a real SQLite file: a base history on `main`, then a pull request's run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trtci.cli import cli
from trtci.config import CompareSettings
from trtci.results import METRICS, BenchResult, Comparison, LatencyStats, SeriesKey, SeriesResult
from trtci.store.database import Store
from trtci.store.queries import HistoryPoint
from trtci.verdict.latency import compare_series

HEADER = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"
)
BASE_RUNS = 4


def perf_csv(path: Path, throughput: float, latency: float, tail: float = 1.0) -> Path:
    """Two load levels; `throughput` in inferences/s at concurrency 1 (twice that at 2), `latency` scales every
    latency column, `tail` the p99 on top of it."""
    rows = []
    for level in (1, 2):
        p50 = 13891 * latency * level
        rows.append(
            f"{level},{throughput * level:.3f},225,2148,64,206,11781,19,0,{p50:.0f},{p50 * 1.3:.0f},"
            f"{p50 * 1.4:.0f},{p50 * 1.5 * tail:.0f}"
        )
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def ingest(tmp_path: Path, csv: Path, *args: str):
    db = tmp_path / "results.db"
    command = ["ingest", "perf-analyzer", str(csv), "--model", "resnet", "--db", str(db), *args]
    return CliRunner().invoke(cli, command)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """Four runs on main, each level's throughput and latencies within 1% of 70 inferences/s and 13.9 ms."""
    jitter = np.random.default_rng(7).uniform(0.99, 1.01, size=(BASE_RUNS, 2))
    for i, (speed, slowness) in enumerate(jitter):
        csv = perf_csv(tmp_path / f"base{i}.csv", 70.0 * speed, slowness)
        done = ingest(tmp_path, csv, "--branch", "main", "--commit", f"{i:040x}")
        assert done.exit_code == 0, done.output
    return tmp_path


def pull_request(tmp_path: Path, csv: Path, *args: str):
    return ingest(tmp_path, csv, "--branch", "pr", "--base-branch", "main", "--commit", "f" * 40, *args)


def verdict_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "resnet concurrency" in line]


def test_lower_throughput_is_a_regression_when_throughput_is_judged(history: Path):
    csv = perf_csv(history / "pr.csv", 70.0 * 0.8, 1.0)  # a fifth fewer inferences a second, same latencies
    done = pull_request(history, csv, "--metric", "throughput")
    assert done.exit_code == 1, done.output
    lines = verdict_lines(done.output)
    assert len(lines) == 2 and all(line.startswith("regression") for line in lines), done.output
    assert "throughput 56.0 inferences/s vs 69.9 inferences/s" in lines[0] and "(-19.9%, interval -2" in lines[0]
    with Store(history / "results.db") as store:
        stored = store.db.execute(
            "SELECT DISTINCT c.metric, c.verdict FROM comparisons AS c JOIN runs ON runs.id = c.run_id "
            "WHERE runs.branch = 'pr'"
        ).fetchall()
    assert stored == [("throughput", "regression")]


def test_the_same_drop_passes_when_latency_is_judged(history: Path):
    csv = perf_csv(history / "pr.csv", 70.0 * 0.8, 1.0)
    done = pull_request(history, csv)  # --metric median, the default
    assert done.exit_code == 0, done.output
    assert all(line.startswith("unchanged") for line in verdict_lines(done.output)), done.output


def test_higher_throughput_is_an_improvement_and_fails_only_with_alert_either(history: Path):
    csv = perf_csv(history / "pr.csv", 70.0 * 1.25, 1.0)
    done = pull_request(history, csv, "--metric", "throughput")
    assert done.exit_code == 0, done.output
    assert all(line.startswith("improvement") and "+25." in line for line in verdict_lines(done.output))
    either = pull_request(history, csv, "--metric", "throughput", "--alert", "either")
    assert either.exit_code == 1 and "improvement" in either.output


def test_a_longer_tail_is_caught_on_p99_and_not_on_the_median(history: Path):
    csv = perf_csv(history / "pr.csv", 70.0, 1.0, tail=1.3)
    assert pull_request(history, csv).exit_code == 0
    done = pull_request(history, csv, "--metric", "p99")
    assert done.exit_code == 1, done.output
    assert all(
        line.startswith("regression") and "p99 " in line and " ms vs " in line for line in verdict_lines(done.output)
    )


def test_a_metric_the_file_does_not_record_is_inconclusive_with_the_reason(tmp_path: Path):
    # pytest-benchmark without --benchmark-save-data has no percentiles
    stats = {"min": 0.001, "max": 0.003, "mean": 0.002, "median": 0.002, "stddev": 0.0002, "rounds": 50, "total": 0.1}
    bench = {"name": "test_pre", "fullname": "tests/test_pre.py::test_pre", "stats": stats, "options": {}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"version": "4.0.0", "machine_info": {}, "benchmarks": [bench]}))
    command = ["ingest", "pytest-benchmark", str(path), "--db", str(tmp_path / "r.db"), "--branch", "main"]
    done = CliRunner().invoke(cli, [*command, "--metric", "p99"])
    assert done.exit_code == 0, done.output
    assert "inconclusive" in done.output and "records no p99: judge it on another metric" in done.output


def test_an_unknown_metric_is_refused_with_the_choices(tmp_path: Path):
    csv = perf_csv(tmp_path / "a.csv", 70.0, 1.0)
    done = ingest(tmp_path, csv, "--metric", "p50")
    assert done.exit_code == 2 and "'median', 'p99', 'throughput'" in done.output


def series_with(throughput: float) -> SeriesResult:
    nan = float("nan")
    stats = LatencyStats(nan, 10.0, 10.0, nan, nan, nan, nan, nan, nan, 100, throughput, False)
    key = SeriesKey("m", "h", "n/a", 1, "triton", "d", "")
    return SeriesResult(
        key=key, bench=BenchResult(stats=stats, samples_ms=[], warmup_ms=0.0, duration_s=1.0, timer="perf_counter")
    )


@pytest.mark.parametrize("change", [0.8, 0.97, 1.03, 1.25])
def test_throughput_interval_brackets_its_ratio_and_the_verdict_follows_its_side(change: float):
    values = [100.0, 101.0, 99.0, 100.5, 99.5]
    points = [HistoryPoint(f"r{i}", None, f"2026-01-0{i + 1}", v) for i, v in enumerate(values)]
    settings = CompareSettings(threshold=0.1)
    comparison = compare_series(series_with(100.0 * change), points, "main", settings, metric=METRICS["throughput"])
    assert comparison.metric == "throughput" and comparison.ratio == pytest.approx(change)
    low, high = comparison.interval
    assert low < comparison.ratio < high
    expected = {0.8: "regression", 1.25: "improvement"}.get(change, "unchanged")
    assert comparison.verdict == expected, comparison.reason
    assert comparison.worse == (change < 1)


def test_worse_follows_the_metric_direction():
    def made(metric: str, ratio: float) -> Comparison:
        return Comparison("s", "l", "unchanged", metric, 1.0, 1.0, ratio, 0.1)

    assert made("latency_median_ms", 1.2).worse and not made("latency_median_ms", 0.8).worse
    assert made("throughput", 0.8).worse and not made("throughput", 1.2).worse
    assert made("latency_p99_ms", 1.2).worse and not made("throughput", None).worse

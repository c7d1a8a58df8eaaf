"""`trtci ingest perf-analyzer` on the CSV of Triton's perf_analyzer documentation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtci.cli import cli
from trtci.errors import DataError
from trtci.pipeline.ingest_perf_analyzer import BACKEND, perf_analyzer_run, read_perf_analyzer
from trtci.results import RunContext
from trtci.store.database import Store

DATA = Path(__file__).parent / "data" / "perf_analyzer"
CSV, VERBOSE = DATA / "inception.csv", DATA / "inception-verbose.csv"


def context(run_id: str = "r1") -> RunContext:
    return RunContext(run_id=run_id, started_at="2026-11-28T08:00:00Z", branch="main")


def test_one_series_per_concurrency_in_milliseconds():
    run = perf_analyzer_run(CSV, context(), model="inception_graphdef", precision="fp32", batch=1, gpu="NVIDIA T4")
    assert [s.key.model for s in run.series] == [f"inception_graphdef concurrency {n}" for n in (1, 2, 3, 4)]
    first = run.series[0]
    assert first.key.backend == BACKEND and first.key.precision == "fp32" and run.devices[0].name == "NVIDIA T4"
    stats = first.bench.stats
    assert (stats.median, stats.p90, stats.p95, stats.p99) == pytest.approx((13.891, 18.795, 19.753, 21.018))
    assert stats.mean == pytest.approx((225 + 2148 + 64 + 206 + 11781 + 19 + 0) / 1e3)
    assert stats.throughput == 69.2 and math.isnan(stats.min) and first.bench.samples_ms == []
    assert first.bench.extra["perf_analyzer"]["Server Compute Infer"] == pytest.approx(11.781)
    assert len({s.key.id for s in run.series}) == 4


def test_verbose_csv_gives_the_average():
    run = perf_analyzer_run(VERBOSE, context(), model="inception_graphdef")
    assert run.series[1].bench.stats.mean == pytest.approx(22.912)
    assert run.series[1].key.precision == "n/a" and run.series[1].key.batch == 1


def test_series_keep_their_identity_across_files():
    ids = [s.key.id for s in perf_analyzer_run(CSV, context(), model="m").series[:2]]
    assert ids == [s.key.id for s in perf_analyzer_run(VERBOSE, context("r2"), model="m").series]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "perf.csv"
    path.write_text(text)
    return path


HEADER = CSV.read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"startEnqMs": 1}]\n', "not a perf_analyzer CSV"),
        ("Concurrency,Inferences/Second,Client Send,Client Recv\n1,2,3,4\n", "no 'p50 latency' column"),
        (HEADER + "\n1,69.2,225\n", "line 2 has 3 values for 13 columns; truncated"),
        (HEADER + "\n1,69.2,x,2148,64,206,11781,19,0,13891,18795,19753,21018\n", "Client Send is 'x', not a number"),
        (HEADER + "\n", "no measurement rows"),
        (HEADER + "\n1,1,1,1,1,1,1,1,1,0,1,1,1\n", "p50 latency is 0"),
        (HEADER + "\n1,1,1,1,1,1,1,1,1,1,1,1,-1\n", "p99 latency is -1"),
        (HEADER + "\n1,1,1,1,1,1,1,1,1,1,1,1,1\n1,1,1,1,1,1,1,1,1,1,1,1,1\n", "concurrency 1 appears twice"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str):
    with pytest.raises(DataError, match=message):
        perf_analyzer_run(write(tmp_path, text), context(), model="m")


def test_request_rate_files_are_series_per_rate(tmp_path: Path):
    text = CSV.read_text().replace("Concurrency,", "Request Rate,", 1)
    level, rows = read_perf_analyzer(write(tmp_path, text))
    assert level == "Request Rate" and [row[level] for row in rows] == [1, 2, 3, 4]
    assert perf_analyzer_run(write(tmp_path, text), context(), model="m").series[0].key.model == "m request rate 1"


def test_cli_records_and_refuses_in_one_line(tmp_path: Path):
    db = tmp_path / "t.db"
    ok = CliRunner().invoke(cli, ["ingest", "perf-analyzer", str(CSV), "--model", "inception", "--db", str(db)])
    assert ok.exit_code == 0, ok.output
    assert "4 load levels recorded" in ok.output
    with Store(db) as store:
        assert len(store.series()) == 4
    bad = CliRunner().invoke(cli, ["ingest", "perf-analyzer", str(DATA / "README.md"), "--model", "m", "--db", str(db)])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "not a perf_analyzer CSV" in bad.stderr

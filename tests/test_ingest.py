from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trtci.cli_stats import register
from trtci.errors import DataError
from trtci.ingest import BACKEND, benchmark_run, read_pytest_benchmark
from trtci.results import RunContext
from trtci.store import Store

DATA = Path(__file__).parent / "data" / "pytest-benchmark"
WITH_DATA = DATA / "v5-with-data.json"
STATS_ONLY = DATA / "v5-stats-only.json"


def context(run_id: str = "r1", branch: str = "main", base_branch: str | None = None) -> RunContext:
    return RunContext(run_id=run_id, started_at="2026-11-27T08:00:00Z", branch=branch, base_branch=base_branch)


@pytest.fixture
def cli():
    group = click.Group("trtci")
    register(group)
    return group


def test_raw_seconds_become_milliseconds():
    raw = json.loads(WITH_DATA.read_text())
    run = benchmark_run(WITH_DATA, context())
    assert [s.key.model for s in run.series] == [b["fullname"] for b in raw["benchmarks"]]
    first, raw_first = run.series[0], raw["benchmarks"][0]
    assert first.key.backend == BACKEND and first.key.precision == "n/a" and first.key.batch == 1
    assert first.bench.samples_ms == pytest.approx([s * 1e3 for s in raw_first["stats"]["data"]])
    assert first.bench.stats.iterations == len(raw_first["stats"]["data"])
    assert run.devices[0].name == raw["machine_info"]["cpu"]["brand_raw"]


def test_stats_only_files_keep_the_median_and_no_samples():
    raw = json.loads(STATS_ONLY.read_text())
    run = benchmark_run(STATS_ONLY, context())
    bench = run.series[0].bench
    assert bench.samples_ms == [] and bench.stats.median == pytest.approx(raw["benchmarks"][0]["stats"]["median"] * 1e3)


def bad_file(tmp_path: Path, change) -> Path:
    raw = json.loads(WITH_DATA.read_text())
    change(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(version="2.1.0"), "version 2.1.0; trtci reads versions 3.x to 5.x"),
        (lambda r: r.pop("benchmarks"), "no 'benchmarks' list"),
        (lambda r: r["benchmarks"][0]["stats"]["data"].__setitem__(3, 0.0), "values in stats.data are NaN, zero"),
        (lambda r: r["benchmarks"][1].update(fullname=r["benchmarks"][0]["fullname"]), "appears twice"),
    ],
)
def test_bad_files_fail_with_one_line(tmp_path, change, message):
    with pytest.raises(DataError, match="bad.json") as error:
        benchmark_run(bad_file(tmp_path, change), context())
    assert message in str(error.value) and "\n" not in str(error.value)


def test_nan_in_data_is_refused(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text(WITH_DATA.read_text().replace('"data": [', '"data": [NaN, ', 1))
    with pytest.raises(DataError, match="NaN"):
        benchmark_run(path, context())


def test_malformed_json_exits_2_with_one_line(tmp_path, cli):
    path = tmp_path / "broken.json"
    path.write_text('{"benchmarks": [')
    result = CliRunner().invoke(cli, ["ingest", "pytest-benchmark", str(path), "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 2 and "not JSON" in result.output and result.output.count("\n") == 1


def test_ingest_records_then_judges_the_next_file_against_the_base(tmp_path, cli):
    db = tmp_path / "t.db"
    # One base file: the second is judged on the two files' samples alone (the default waits for 3 base runs).
    args = ["ingest", "pytest-benchmark", "--db", str(db), "--commit", "a" * 40, "--min-history", "1"]
    first = CliRunner().invoke(cli, [*args, str(WITH_DATA), "--branch", "main"])
    assert first.exit_code == 0, first.output
    assert first.output.count("new") == 2
    slower = bad_file(tmp_path, lambda r: [b["stats"].update(data=[t * 1.5 for t in b["stats"]["data"]])
                                            for b in r["benchmarks"]])  # fmt: skip
    second = CliRunner().invoke(cli, [*args, str(slower), "--branch", "pr", "--base-branch", "main"])
    assert second.exit_code == 1, second.output
    assert second.output.count("regression") == 2 and "+50.0%" in second.output
    with Store(db) as store:
        assert store.db.execute("SELECT count(*) FROM comparisons WHERE verdict = 'regression'").fetchone() == (2,)


def test_reading_checks_version_before_anything_else(tmp_path):
    path = bad_file(tmp_path, lambda r: r.update(version="9.0.0"))
    with pytest.raises(DataError, match="version 9.0.0"):
        read_pytest_benchmark(path)

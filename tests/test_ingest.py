from __future__ import annotations

import copy
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from trtci.cli.stats import register
from trtci.errors import DataError
from trtci.pipeline.ingest import BACKEND, benchmark_run, read_pytest_benchmark
from trtci.results import DeviceInfo, RunContext
from trtci.store.database import Store

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


# What the trtci_benchmark fixture writes into extra_info["trtci"] (tests/test_pytest_plugin.py runs the fixture).
PROVENANCE = {
    "model": "resnet",
    "model_sha256": "ab" * 32,
    "precision": "fp16",
    "quantization": "",
    "batch": 8,
    "backend": "onnxruntime",
    "device": {"kind": "cpu", "name": "AMD EPYC", "details": {"onnxruntime": "1.20.0", "threads": "default"}},
    "options": {"threads": 0, "shapes": {"input": [8, 3, 224, 224]}},
}


def with_provenance(tmp_path: Path, change=lambda info: None) -> Path:
    """WITH_DATA with the fixture's provenance on its first benchmark, changed by `change`."""
    info = copy.deepcopy(PROVENANCE)
    change(info)
    return bad_file(tmp_path, lambda raw: raw["benchmarks"][0]["extra_info"].update(trtci=info))


def test_fixture_provenance_keys_the_series_and_registers_its_device(tmp_path):
    raw = json.loads(WITH_DATA.read_text())
    run = benchmark_run(with_provenance(tmp_path), context())
    timed, plain = run.series
    device = DeviceInfo(**PROVENANCE["device"])
    assert timed.key.model == raw["benchmarks"][0]["fullname"]  # still unique in the file
    assert (timed.key.model_hash, timed.key.precision, timed.key.batch, timed.key.backend) == (
        "ab" * 32,
        "fp16",
        8,
        "onnxruntime",
    )
    assert timed.key.device_id == device.id and plain.key.backend == BACKEND and plain.key.device_id != device.id
    assert {d.id for d in run.devices} == {device.id, plain.key.device_id}
    # throughput counts inferences: batch 8 per call
    calls_per_s = len(timed.bench.samples_ms) / timed.bench.duration_s
    assert timed.bench.stats.throughput == pytest.approx(8 * calls_per_s)


@pytest.mark.parametrize(
    "change",
    [
        lambda info: info.update(model_sha256="cd" * 32),
        lambda info: info.update(precision="fp32"),
        lambda info: info["device"].update(name="NVIDIA H100"),
        lambda info: info["options"].update(threads=4),
    ],
)
def test_another_model_file_precision_device_or_option_is_another_series(tmp_path, change):
    before = benchmark_run(with_provenance(tmp_path), context()).series[0].key
    after = benchmark_run(with_provenance(tmp_path, change), context()).series[0].key
    assert before.id != after.id and before.model == after.model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda info: info.pop("batch"), "batch: Field required"),
        (lambda info: info.update(batch="8"), "batch: Input should be a valid integer"),
        (lambda info: info.update(batch=0), "batch: Input should be greater than or equal to 1"),
        (lambda info: info.update(model_sha256="abc"), "model_sha256: String should match pattern"),
        (lambda info: info.update(precision="fp8"), "precision: Input should be 'fp32', 'fp16' or 'int8'"),
        (lambda info: info.update(backend="pytest-benchmark"), "backend: Input should be 'onnxruntime'"),
        (lambda info: info["device"].update(kind="tpu"), "device.kind: Input should be 'cpu' or 'gpu'"),
        (lambda info: info["device"].pop("details"), "device.details: Field required"),
        (lambda info: info.update(engine="x"), "engine: unknown key"),
        (lambda info: info.update(options=[]), "options: Input should be a valid dictionary"),
    ],
)
def test_malformed_provenance_names_file_benchmark_and_key(tmp_path, change, message):
    with pytest.raises(DataError) as error:
        benchmark_run(with_provenance(tmp_path, change), context())
    text = str(error.value)
    assert text.startswith(f"{tmp_path / 'bad.json'}: test_x.py::test_sum: extra_info.trtci is malformed (")
    assert message in text and "\n" not in text


def test_provenance_that_is_not_a_mapping_is_refused(tmp_path):
    path = bad_file(tmp_path, lambda raw: raw["benchmarks"][1]["extra_info"].update(trtci="fp16"))
    with pytest.raises(DataError, match="test_x.py::test_sorted: extra_info.trtci is malformed"):
        benchmark_run(path, context())


def test_malformed_provenance_exits_2_with_one_line(tmp_path, cli):
    path = with_provenance(tmp_path, lambda info: info.update(batch=-1))
    result = CliRunner().invoke(cli, ["ingest", "pytest-benchmark", str(path), "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 2 and "extra_info.trtci is malformed" in result.output
    assert result.output.count("\n") == 1


def test_provenance_series_are_recorded_with_their_device(tmp_path, cli):
    db = tmp_path / "t.db"
    args = ["ingest", "pytest-benchmark", str(with_provenance(tmp_path)), "--db", str(db), "--commit", "a" * 40]
    result = CliRunner().invoke(cli, [*args, "--branch", "main"])
    assert result.exit_code == 0, result.output
    assert "test_x.py::test_sum fp16 b8 onnxruntime" in result.output
    with Store(db) as store:
        rows = store.db.execute(
            "SELECT devices.name FROM series JOIN devices ON devices.id = series.device_id WHERE series.batch = 8"
        ).fetchall()
    assert rows == [("AMD EPYC",)]


def stats_only(tmp_path: Path, change) -> Path:
    raw = json.loads(STATS_ONLY.read_text())
    change(raw["benchmarks"][0]["stats"], raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda st, r: st.update(rounds="many"), "stats.rounds is 'many', not a count"),
        (lambda st, r: st.update(rounds=[3]), "stats.rounds is '[3]', not a count"),
        (lambda st, r: st.update(rounds=10**30), "an integer beyond 64 bits"),
        (lambda st, r: st.update(rounds=-1), "stats.rounds is '-1', not a count"),
        (lambda st, r: st.update(total="x"), "stats.total is 'x', not a time in seconds"),
        (lambda st, r: st.update(total=-5.0), "stats.total is '-5.0', not a time in seconds"),
        (lambda st, r: st.update(median=10**300), "an integer beyond 64 bits"),
        (lambda st, r: st.update(median=1e300), "over 1e+06 s"),
        (lambda st, r: st.update(data=5), "stats.data is not a list"),
        (lambda st, r: st.update(data=[1e300, 1e300]), "over 1e+06 s"),
        (lambda st, r: st.update(data=[2**62, 1]), "over 1e+06 s"),
        (lambda st, r: r["benchmarks"][0].update(options=[1, 2]) or st.update(rounds="x"), "stats.rounds"),
        (lambda st, r: r.update(machine_info=["not", "a", "mapping"]) or st.update(rounds="x"), "stats.rounds"),
        (lambda st, r: r.update(deep=json.loads("[" * 500 + "]" * 500)), "nested deeper than"),
    ],
)
def test_damaged_numbers_are_one_line_input_errors(tmp_path, cli, change, message):
    path = stats_only(tmp_path, change)
    db = tmp_path / "t.db"
    result = CliRunner().invoke(cli, ["ingest", "pytest-benchmark", str(path), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert message in result.output and str(path) in result.output and result.output.count("\n") == 1
    assert not db.exists()  # a bad file is refused before the database is opened


def test_a_file_nested_beyond_pythons_recursion_limit_is_an_input_error(tmp_path, cli):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    result = CliRunner().invoke(cli, ["ingest", "pytest-benchmark", str(path), "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 2 and "nested too deep" in result.output and result.output.count("\n") == 1


def test_a_database_locked_too_long_keeps_the_run_beside_it(tmp_path, cli, monkeypatch):
    from tests.locks import lock_held

    db = tmp_path / "t.db"
    Store(db).close()
    with Store(db) as store:
        before = store.db.execute("SELECT count(*) FROM runs").fetchone()
    monkeypatch.setenv("TRTCI_DB_TIMEOUT", "0.3")
    with lock_held(db):  # a writer's lock: ingest opens and reads, but cannot write in time
        result = CliRunner().invoke(cli, ["ingest", "pytest-benchmark", str(WITH_DATA), "--db", str(db)])
    assert result.exit_code == 2, result.output
    kept = next(tmp_path.glob("*.trtci.json.gz"))
    assert result.output.count("\n") == 1 and "was NOT recorded" in result.output
    assert f"trtci db import {kept} --db {db}" in result.output
    with Store(db) as store:
        assert store.db.execute("SELECT count(*) FROM runs").fetchone() == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda st, r: r["benchmarks"][0].update(fullname="x\n::error::fake"), "control characters in its name"),
        (lambda st, r: r.update(version="1\n::error::fake"), "version 1\\n::error::fake"),
        (lambda st, r: r["benchmarks"][0].update(extra_info={"trtci": {"a\nb": 1}}), "a\\nb: unknown key"),
    ],
)
def test_text_from_the_file_cannot_add_a_line_to_the_message(tmp_path, cli, change, message):
    path = stats_only(tmp_path, change)
    result = CliRunner().invoke(cli, ["ingest", "pytest-benchmark", str(path), "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1, result.output


def test_a_pipe_is_refused_not_read_forever(tmp_path, cli):
    import os

    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    result = CliRunner().invoke(cli, ["ingest", "pytest-benchmark", str(fifo), "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 2 and "not a regular file" in result.output

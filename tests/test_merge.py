"""`trtci merge`: run files of two matrix legs (one from a real pipeline run on ONNX Runtime) combined into one
report with a GPU x precision grid, each leg recorded once, bad files named, missing legs reported."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from models import mlp_classifier

from tests.sample_runs import passing_run, sample_run
from trtci.cli.github import register
from trtci.config import parse_config
from trtci.context.run import run_context
from trtci.pipeline.fanin import load_legs, merge_runs, missing_legs
from trtci.report.markdown import render, sig
from trtci.results import RunResult
from trtci.store.database import Store
from trtci.store.runfile import run_to_dict, write_runfile


def as_second_gpu_leg(run: RunResult, name: str, run_id: str) -> RunResult:
    """Simulates a second GPU leg of the matrix: the same run, measured on another device (new name, so a new
    device id and new series ids), under its own run id."""
    devices = {d.id: dataclasses.replace(d, name=name) for d in run.devices}
    series = [
        dataclasses.replace(s, key=dataclasses.replace(s.key, device_id=devices[s.key.device_id].id))
        for s in run.series
        if s.key.device_id in devices
    ]
    ids = {old.key.id: new.key.id for old, new in zip(run.series, series)}
    comparisons = [dataclasses.replace(c, series_id=ids.get(c.series_id, c.series_id)) for c in run.comparisons]
    context = dataclasses.replace(run.context, run_id=run_id)
    return RunResult(context, list(devices.values()), series, comparisons, list(run.warnings))


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> RunResult:
    """A real run: the MLP on ONNX Runtime, FP32 and FP16, with a tiny benchmark."""
    from trtci.pipeline import run as pipeline

    root = tmp_path_factory.mktemp("pipeline")
    model = mlp_classifier(root / "mlp.onnx")
    config = parse_config(
        {
            "models": [{"path": str(model), "precisions": ["fp32", "fp16"], "batch_sizes": [1]}],
            "bench": {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5},
            "database": str(root / "leg.db"),
            "cache_dir": str(root / "cache"),
            "summary_json": None,
        },
        "test",
        root,
    )
    return pipeline.run(config, run_context(overrides={"branch": "feature", "commit": "a" * 40}))


def write_legs(root: Path, first: RunResult) -> tuple[RunResult, RunResult]:
    second = as_second_gpu_leg(first, "NVIDIA L4", "leg-l4-run")
    write_runfile(first, root / "h100")
    write_runfile(second, root / "l4")
    return first, second


def cli() -> click.Group:
    group = click.Group("trtci")
    register(group)
    return group


def invoke(*args: str):
    # COLUMNS: rich's 80-column table, as on a terminal, so a long warning in it wraps and a line names a file
    # only where the command itself names it.
    env = {"GITHUB_ACTIONS": "", "COLUMNS": "80"}
    return CliRunner().invoke(cli(), ["merge", *args], catch_exceptions=False, env=env)


def test_two_legs_merge_into_one_report_with_a_grid_and_record_once(tmp_path, pipeline_run):
    first, second = write_legs(tmp_path / "bundles", pipeline_run)
    db, report, summary = tmp_path / "merged.db", tmp_path / "report.md", tmp_path / "summary.json"
    args = [str(tmp_path / "bundles"), "--db", str(db), "--report", str(report), "--json", str(summary)]
    result = invoke(*args, "--expect", "h100,l4")
    assert result.exit_code == (0 if first.passed else 1), result.output
    text = report.read_text()
    assert "### GPU x precision" in text
    header = next(line for line in text.splitlines() if line.startswith("| Model |") and "fp16" in line)
    for device in [d.name for d in first.devices] + ["NVIDIA L4"]:
        assert f"{device} fp32" in header and f"{device} fp16" in header
    assert first.context.run_id in text and "leg-l4-run" in text
    assert "Missing legs" not in text
    data = json.loads(summary.read_text())
    assert {leg["run_id"] for leg in data["legs"]} == {first.context.run_id, "leg-l4-run"}
    assert len(data["results"]) == len(first.series) + len(second.series)
    assert len(data["devices"]) == 2
    with Store(db) as store:
        assert {r["id"] for r in store.runs()} == {first.context.run_id, "leg-l4-run"}
    again = invoke(*args)
    assert again.exit_code == result.exit_code, again.output
    assert "0 recorded, 2 already recorded" in again.output
    with Store(db) as store:
        assert len(store.runs()) == 2


def test_a_corrupt_file_is_named_and_the_others_still_merge(tmp_path):
    run = passing_run()
    write_legs(tmp_path / "bundles", run)
    bad = tmp_path / "bundles" / "a100" / "20250101T000000Z-bad.trtci.json.gz"
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(b'{"kind": "trtci-run", "format": 1, "run": {"series": 3}}'))
    db = tmp_path / "merged.db"
    result = invoke(str(tmp_path / "bundles"), "--db", str(db), "--report", str(tmp_path / "r.md"))
    assert result.exit_code == 2
    problems = [line for line in result.output.splitlines() if str(bad) in line]
    assert len(problems) == 1 and "damaged trtci run file" in problems[0]
    with Store(db) as store:
        assert len(store.runs()) == 2
    text = (tmp_path / "r.md").read_text()
    assert "could not merge" in text
    assert "a100 (run file unreadable)" in next(line for line in text.splitlines() if "Missing legs" in line)
    assert "missing legs: a100" in result.output


def test_a_leg_with_a_wrongly_typed_field_is_refused_and_the_rest_merge(tmp_path):
    write_legs(tmp_path / "bundles", passing_run())
    data = run_to_dict(as_second_gpu_leg(passing_run(), "NVIDIA A100", "leg-a100-run"))
    data["run"]["context"]["started_at"] = 5  # a leg from a tampered artifact: combine would compare str and int
    bad = tmp_path / "bundles" / "a100" / "20250101T000000Z-leg-a100-run.trtci.json.gz"
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(json.dumps(data).encode()))
    merged = merge_runs([tmp_path / "bundles"], expect=["a100", "h100"])
    assert [leg.name for leg in merged.legs] == ["h100", "l4"]
    assert len(merged.problems) == 1 and "context.started_at" in merged.problems[0]
    assert [(m.name, m.reason) for m in merged.missing] == [("a100", "run file unreadable")]


def test_a_leg_the_database_refuses_is_named_and_the_others_are_merged_and_recorded(tmp_path):
    run = passing_run()
    write_legs(tmp_path / "bundles", run)
    duplicated = as_second_gpu_leg(run, "NVIDIA A100", "leg-a100-run")
    duplicated.series = [duplicated.series[0], duplicated.series[0]]  # one series twice: the store refuses the run
    write_runfile(duplicated, tmp_path / "bundles" / "a100")
    db, report, summary = tmp_path / "merged.db", tmp_path / "r.md", tmp_path / "summary.json"
    result = invoke(str(tmp_path / "bundles"), "--db", str(db), "--report", str(report), "--json", str(summary))
    assert result.exit_code == 2, result.output
    refused = [line for line in result.output.splitlines() if line.startswith("error: could not merge")]
    assert len(refused) == 1 and "leg-a100-run" in refused[0] and "a100" in refused[0]
    assert "missing legs: a100 (could not be recorded)" in result.output
    with Store(db) as store:
        assert {r["id"] for r in store.runs()} == {run.context.run_id, "leg-l4-run"}
    data = json.loads(summary.read_text())
    assert {leg["name"] for leg in data["legs"]} == {"h100", "l4"}
    assert data["missing_legs"] == [{"name": "a100", "reason": "could not be recorded"}]
    assert "leg-l4-run" in report.read_text() and "NVIDIA A100" not in report.read_text()


def test_no_leg_left_after_recording_is_bad_input_naming_the_leg(tmp_path):
    run = passing_run()
    duplicated = dataclasses.replace(run, series=[run.series[0], run.series[0]])
    write_runfile(duplicated, tmp_path / "only")
    result = invoke(str(tmp_path), "--db", str(tmp_path / "merged.db"))
    assert result.exit_code == 2
    assert "no trtci run file could be merged" in result.output and "cannot record run" in result.output


def test_missing_and_all_errored_legs_are_named(tmp_path):
    run = passing_run()
    first, _ = write_legs(tmp_path / "bundles", run)
    broken = as_second_gpu_leg(run, "NVIDIA A100", "leg-a100-run")
    broken.series = [
        dataclasses.replace(s, bench=None, accuracy=None, error="CUDA out of memory") for s in broken.series
    ]
    write_runfile(broken, tmp_path / "bundles" / "a100")
    report = tmp_path / "r.md"
    result = invoke(str(tmp_path / "bundles"), "--report", str(report), "--expect", "h100", "--expect", "l4,t4")
    assert result.exit_code == 1  # the errored leg's series fail the gate
    line = next(line for line in report.read_text().splitlines() if "Missing legs" in line)
    assert "t4 (no run file)" in line and "a100 (every series errored (CUDA out of memory))" in line
    assert "missing legs: t4" in result.output


def test_expect_matches_a_directory_or_part_of_a_device_name(tmp_path):
    write_legs(tmp_path, passing_run())
    legs, left_out = load_legs(sorted(tmp_path.rglob("*.trtci.json.gz")))
    assert left_out == [] and [leg.name for leg in legs] == ["h100", "l4"]
    assert [m.name for m in missing_legs(legs, ["L4", "nvidia l4", "h100", "v100"])] == ["v100"]


def test_one_device_has_no_grid_but_names_its_leg(tmp_path):
    run = passing_run()
    device = run.devices[0]
    run = RunResult(run.context, [device], [s for s in run.series if s.key.device_id == device.id])
    write_runfile(run, tmp_path / "only")
    merged = merge_runs([tmp_path])
    assert len(merged.legs) == 1 and merged.problems == []
    assert [s.key for s in merged.run.series] == [s.key for s in run.series]
    text = render(merged.run, extra={"legs": merged.leg_rows()})
    assert "GPU x precision" not in text and "Merged from 1 leg: **only**" in text


def test_nothing_readable_is_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke(str(tmp_path / "empty"), str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "no trtci run file could be merged" in result.output and "nope: no such file" in result.output


def test_grid_cells_carry_median_and_verdict():
    run = sample_run()
    text = render(run)
    grid = text[text.index("### GPU x precision") :].split("\n\n")[1].splitlines()
    resnet = next(line for line in grid if line.startswith("| resnet18 b1 |"))
    gpu_fp32 = next(s for s in run.series if s.key.model == "resnet18" and s.key.precision == "fp32")
    assert f"{sig(gpu_fp32.bench.stats.median)} ms improvement" in resnet and "error" in resnet


def test_merge_ends_like_run_step_outputs_job_summary_and_the_gates_exit_code(tmp_path):
    write_legs(tmp_path / "bundles", sample_run())
    outputs, job_summary = tmp_path / "github_output", tmp_path / "step_summary.md"
    env = {"GITHUB_ACTIONS": "", "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(job_summary)}
    args = ["merge", str(tmp_path / "bundles"), "--expect", "a100"]
    failed = CliRunner().invoke(cli(), args, env=env)
    assert failed.exit_code == 1 and "gate failed: 4 series failed accuracy" in failed.output
    lines = outputs.read_text().splitlines()
    assert lines == [
        "regressions=2",
        "accuracy-failures=4",
        "accuracy-regressions=1",  # the second leg is built without accuracy changes
        "pr-number=42",  # the pull request both legs name: a claim `trtci comment --pr` checks with GitHub
        "missing-legs=a100",
        "verdict=fail",
    ]
    assert "<summary>Latency statistics</summary>" in job_summary.read_text()
    assert CliRunner().invoke(cli(), [*args, "--fail-on", "none"], env=env).exit_code == 0
    assert outputs.read_text().splitlines()[-1] == "verdict=pass"


def same_device_leg(run: RunResult, run_id: str, factor: float) -> RunResult:
    """Another leg on the very same device (a second runner of one GPU model): the same series ids, its own
    medians (`factor` times the first leg's) and comparisons."""
    leg = dataclasses.replace(run, context=dataclasses.replace(run.context, run_id=run_id))
    leg.series = []
    for s in run.series:
        bench = s.bench
        if bench is not None:
            stats = dataclasses.replace(bench.stats, median=bench.stats.median * factor)
            bench = dataclasses.replace(bench, stats=stats, samples_ms=[x * factor for x in bench.samples_ms])
        leg.series.append(dataclasses.replace(s, bench=bench))
    leg.comparisons = [
        dataclasses.replace(c, current=c.current * factor if c.current is not None else None) for c in run.comparisons
    ]
    return leg


def test_legs_on_one_device_keep_their_own_figures(tmp_path):
    run = sample_run()
    write_runfile(same_device_leg(run, "leg-a", 1.0), tmp_path / "runner-a")
    write_runfile(same_device_leg(run, "leg-b", 3.0), tmp_path / "runner-b")
    summary = tmp_path / "summary.json"
    result = invoke(str(tmp_path), "--json", str(summary), "--report", str(tmp_path / "r.md"), "--fail-on", "none")
    assert result.exit_code == 0, result.output
    data = json.loads(summary.read_text())
    ids = [r["series_id"] for r in data["results"]]
    assert len(ids) == len(set(ids)) == 2 * len(run.series)
    comparisons = {c["series_id"]: c for c in data["comparisons"]}
    rows = {(r["label"], r["device"].endswith("(runner-b)")): r for r in data["results"]}
    compared = 0
    for (label, second), row in rows.items():
        if not second:
            continue
        first = rows[(label, False)]
        if row["latency_ms"] is not None:
            assert row["latency_ms"]["median"] == pytest.approx(3 * first["latency_ms"]["median"])
        if row["speedup_vs_fp32"] is not None:  # against the same leg's FP32: both legs' ratios agree
            assert row["speedup_vs_fp32"] == pytest.approx(first["speedup_vs_fp32"])
        mine, theirs = comparisons.get(row["series_id"]), comparisons.get(first["series_id"])
        if mine is not None and mine["current"] is not None:
            assert mine["current"] == pytest.approx(3 * theirs["current"])
            compared += 1
    assert compared > 0
    names = {d["name"] for d in data["devices"]}
    assert {f"{d.name} (runner-a)" for d in run.devices} | {f"{d.name} (runner-b)" for d in run.devices} == names
    text = (tmp_path / "r.md").read_text()
    assert "(runner-a)" in text and "(runner-b)" in text


def test_a_leg_file_too_deep_or_too_large_for_sqlite_is_refused_and_the_rest_merge(tmp_path):
    write_legs(tmp_path / "bundles", passing_run())
    deep = tmp_path / "bundles" / "deep" / "20250101T000000Z-deep.trtci.json.gz"
    deep.parent.mkdir()
    deep.write_bytes(gzip.compress(b"[" * 200_000 + b"]" * 200_000))
    data = run_to_dict(as_second_gpu_leg(passing_run(), "NVIDIA A100", "leg-a100-run"))
    data["run"]["series"][0]["key"]["batch"] = 2**64
    huge = tmp_path / "bundles" / "huge" / "20250101T000000Z-leg-a100-run.trtci.json.gz"
    huge.parent.mkdir()
    huge.write_bytes(gzip.compress(json.dumps(data).encode()))
    db = tmp_path / "merged.db"
    result = invoke(str(tmp_path / "bundles"), "--db", str(db), "--report", str(tmp_path / "r.md"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert any(str(deep) in line and "nested deeper" in line for line in result.output.splitlines())
    assert any(str(huge) in line and "beyond 64 bits" in line for line in result.output.splitlines())
    with Store(db) as store:
        assert len(store.runs()) == 2


def test_merge_into_a_damaged_database_fails_before_reading_a_leg(tmp_path):
    write_legs(tmp_path / "bundles", passing_run())
    db = tmp_path / "merged.db"
    with Store(db) as store:
        store.db.execute("DROP TABLE run_series")
    result = invoke(str(tmp_path / "bundles"), "--db", str(db), "--report", str(tmp_path / "r.md"))
    assert result.exit_code == 2 and "table run_series is missing" in result.output
    assert not (tmp_path / "r.md").exists()


def test_a_lock_held_too_long_keeps_the_legs_in_the_report_and_says_how_to_record_them(tmp_path):
    from tests.locks import lock_held

    first, second = write_legs(tmp_path / "bundles", passing_run())
    db = tmp_path / "merged.db"
    with Store(db, timeout_s=0.3) as store, lock_held(db):
        merged = merge_runs([tmp_path / "bundles"], store)
    assert {leg.run.context.run_id for leg in merged.legs} == {first.context.run_id, second.context.run_id}
    assert merged.recorded == [] and len(merged.problems) == 1
    line = merged.problems[0]
    assert line.startswith(f"h100, l4 into {db} (another process held the database's lock")
    assert f"--db {db}`" in line and "trtci db import" in line and "\n" not in line

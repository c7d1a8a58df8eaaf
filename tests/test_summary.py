"""The JSON summary: its keys, its verdicts, finite numbers only, and an atomic write."""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path

import pytest

from tests.sample_runs import acknowledged_run, passing_run, sample_run
from trtci.errors import ConfigError
from trtci.report.json_summary import summary_dict, write_summary
from trtci.verdict.gate import SERIES_VERDICTS

RESULT_KEYS = {
    "model",
    "precision",
    "quantization",
    "batch",
    "backend",
    "device",
    "device_id",
    "latency_ms",
    "throughput",
    "cv",
    "unstable",
    "iterations",
    "accuracy",
    "verdict",
    "error",
    "build",
}
LATENCY_KEYS = {"min", "mean", "median", "p90", "p95", "p99", "max"}


def by_label(summary: dict) -> dict[str, dict]:
    return {r["label"]: r for r in summary["results"]}


def test_top_level_and_result_keys():
    run = sample_run()
    summary = summary_dict(run)
    assert summary["schema"] == 1
    assert {"trtci_version", "run", "passed", "devices", "results", "comparisons", "warnings"} <= summary.keys()
    assert summary["run"]["commit"] == run.context.commit and summary["run"]["pr_number"] == 42
    assert [d["id"] for d in summary["devices"]] == [d.id for d in run.devices]
    assert len(summary["results"]) == len(run.series)
    assert len(summary["comparisons"]) == len(run.comparisons)
    assert summary["warnings"] == run.warnings
    for result in summary["results"]:
        assert RESULT_KEYS <= result.keys()
        assert result["latency_ms"] is None or LATENCY_KEYS <= result["latency_ms"].keys()
        assert result["verdict"] in SERIES_VERDICTS


def test_result_values_come_from_the_series():
    run = sample_run()
    results = by_label(summary_dict(run))
    for series in run.series:
        result = results[series.key.label]
        assert result["series_id"] == series.key.id
        assert result["device"] == next(d.name for d in run.devices if d.id == series.key.device_id)
        if series.bench is None:
            assert result["latency_ms"] is None and result["throughput"] is None
        else:
            assert result["latency_ms"]["p99"] == series.bench.stats.p99
            assert result["iterations"] == series.bench.stats.iterations
    int8 = results["digits int8(onnxruntime) b8 onnxruntime"]
    assert int8["quantization"] == "onnxruntime"
    assert int8["accuracy"]["outputs"][0]["name"] == "logits"
    assert int8["speedup_vs_fp32"] == pytest.approx(1.0 / 0.37)
    assert results["digits fp32 b8 onnxruntime"]["quantization"] is None


def test_verdict_combines_error_accuracy_and_comparison():
    results = by_label(summary_dict(sample_run()))
    verdicts = {label: r["verdict"] for label, r in results.items()}
    assert verdicts == {
        "digits fp32 b8 onnxruntime": "unchanged",
        "digits fp16 b8 onnxruntime": "accuracy-regression",  # its latency is unchanged: accuracy outranks it
        "digits int8(onnxruntime) b8 onnxruntime": "regression",
        "digits int8(tensorrt) b8 onnxruntime": "fail-accuracy",  # also "new": accuracy outranks it
        "resnet18 fp32 b1 tensorrt": "improvement",
        "resnet18 fp16 b1 tensorrt": "inconclusive",
        "resnet18 int8(tensorrt) b1 tensorrt": "error",
    }
    assert results["digits int8(tensorrt) b8 onnxruntime"]["comparison"] == "new"
    fp16 = results["digits fp16 b8 onnxruntime"]
    assert (fp16["comparison"], fp16["accuracy_change"]) == ("unchanged", "regression")
    passing = summary_dict(passing_run())
    assert passing["passed"] is True
    assert {r["verdict"] for r in passing["results"]} == {"pass"}


def test_counts_and_gate():
    summary = summary_dict(sample_run())
    assert summary["passed"] is False
    counts = summary["counts"]
    assert (counts["regressions"], counts["accuracy_failures"], counts["errors"]) == (1, 1, 1)
    assert (counts["missing"], counts["new"], counts["slower_than_fp32"]) == (1, 1, 2)


def test_non_finite_numbers_become_null():
    run = sample_run()
    run.series[0].build = {"weird": float("nan"), "nested": [float("-inf"), 1.5]}
    summary = summary_dict(run)
    results = by_label(summary)
    identical = results["resnet18 fp16 b1 tensorrt"]["accuracy"]["outputs"][0]
    assert math.isinf(run.series[5].accuracy.outputs[0].sqnr_db)
    assert identical["sqnr_db"] is None
    assert results["digits fp32 b8 onnxruntime"]["build"] == {"weird": None, "nested": [None, 1.5]}
    json.dumps(summary, allow_nan=False)


def test_write_round_trips_and_leaves_samples_out(tmp_path):
    run = sample_run()
    path = tmp_path / "out" / "trtci-summary.json"
    write_summary(run, path)
    text = path.read_text()
    assert json.loads(text) == summary_dict(run)
    assert "samples_ms" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["trtci-summary.json"]


def test_write_replaces_an_existing_file_whole(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("x" * 1_000_000)
    write_summary(passing_run(), path)
    assert json.loads(path.read_text())["passed"] is True


def test_failed_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "summary.json"
    target.mkdir()  # the rename onto a directory fails after the temporary file is written
    with pytest.raises(ConfigError, match="summary.json: cannot write the JSON summary"):
        write_summary(sample_run(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert target.is_dir() and not any(target.iterdir())


def test_unwritable_path_names_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as error:
        write_summary(sample_run(), blocker / "summary.json")
    assert str(blocker / "summary.json") in str(error.value)


def test_documented_example_has_the_same_keys():
    docs = Path(__file__).parent.parent / "docs" / "json-summary.md"
    text = docs.read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    summary = summary_dict(sample_run())
    assert example.keys() == summary.keys()
    assert example["results"][0].keys() == summary["results"][0].keys()
    assert example["comparisons"][0].keys() == summary["comparisons"][0].keys()
    for name in summary["results"][0]:
        assert f"`{name}`" in text, f"results key {name} is not documented"
    for verdict in SERIES_VERDICTS:
        assert f"| `{verdict}` |" in text, f"verdict {verdict} is not documented"


def test_an_acknowledged_regression_is_counted_apart_and_passes():
    summary = summary_dict(acknowledged_run())
    result = by_label(summary)["digits int8(onnxruntime) b8 onnxruntime"]
    assert result["verdict"] == result["comparison"] == "acknowledged"
    assert (summary["counts"]["regressions"], summary["counts"]["acknowledged"]) == (0, 1)
    (comparison,) = [c for c in summary["comparisons"] if c["verdict"] == "acknowledged"]
    assert comparison["acknowledgement"] == "acknowledged in trtci.yml: new #12 head"
    assert comparison["ratio"] == pytest.approx(1.218)
    assert summary_dict(sample_run())["counts"]["acknowledged"] == 0


def test_accuracy_delta_is_in_the_summary():
    accuracy = by_label(summary_dict(sample_run()))["digits int8(onnxruntime) b8 onnxruntime"]["accuracy"]
    assert accuracy["delta"] == pytest.approx(0.952 - 0.954)
    assert (accuracy["delta_low"], accuracy["delta_high"]) == (-0.0078, 0.0039)

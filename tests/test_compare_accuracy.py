"""Accuracy against the base branch, paired by validation sample: hits, the store, verdicts and the whole pipeline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from tests.models import mlp_classifier
from trtci.config import AccuracyThresholds, CompareSettings, parse_config
from trtci.pipeline import run as pipeline
from trtci.report.json_summary import summary_dict
from trtci.report.markdown import render
from trtci.results import AccuracyResult, DeviceInfo, RunContext, RunResult, SeriesKey, SeriesResult
from trtci.store.database import Store
from trtci.verdict import gate
from trtci.verdict.accuracy import pack_hits, unpack_hits, validate
from trtci.verdict.accuracy_change import compare_accuracy

DEVICE = DeviceInfo(kind="cpu", name="test CPU")
SAMPLES = 400


def key(precision: str = "int8", batch: int = 1, model_hash: str = "a") -> SeriesKey:
    return SeriesKey(
        model="m",
        model_hash=model_hash,
        precision=precision,
        batch=batch,
        backend="onnxruntime",
        device_id=DEVICE.id,
        quantization="onnxruntime" if precision == "int8" else "",
    )


def checked(hits: np.ndarray, validation_hash: str = "val1", metric: str = "top1") -> AccuracyResult:
    return AccuracyResult(
        passed=True,
        reasons=[],
        samples=hits.size,
        top1=float(hits.mean()),
        hits=pack_hits(hits),
        hits_metric=metric,
        validation_hash=validation_hash,
    )


def a_run(run_id: str, branch: str, series: list[SeriesResult], labels: list[str] | None = None) -> RunResult:
    context = RunContext(
        run_id=run_id,
        started_at=f"2026-11-27T08:00:{len(run_id):02d}Z",
        commit=f"{run_id}0000000",
        branch=branch,
        base_branch="main" if branch != "main" else None,
        labels=labels or [],
    )
    return RunResult(context=context, devices=[DEVICE], series=series)


def hits_with(right: int, total: int = SAMPLES) -> np.ndarray:
    hits = np.zeros(total, dtype=bool)
    hits[:right] = True
    return hits


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "results.db")
    base = hits_with(360)  # 90% top-1
    store.record_run(a_run("base", "main", [SeriesResult(key(batch=b), accuracy=checked(base)) for b in (1, 8)]))
    return store


def judge(store: Store, accuracy: AccuracyResult, settings: CompareSettings | None = None, labels=None):
    run = a_run("head", "feature", [SeriesResult(key(batch=b), accuracy=accuracy) for b in (1, 8)], labels)
    run.accuracy_changes = compare_accuracy(run, store, settings or CompareSettings())
    return run


def test_hits_round_trip_and_refuse_another_sample_count():
    hits = np.random.default_rng(0).random(1001) > 0.5
    assert np.array_equal(unpack_hits(pack_hits(hits), 1001), hits)
    assert unpack_hits(pack_hits(hits), 2000) is None
    assert unpack_hits("not base64!", 8) is None
    assert unpack_hits("", 8) is None


def test_validate_keeps_label_hits_and_without_labels_agreement_with_fp32():
    reference = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]]  # top-1: 0 1 2 3 0 1
    candidate = reference.copy()
    candidate[1] = [0.9, 0.1, 0, 0]  # sample 1 now says class 0
    labels = np.array([0, 1, 2, 0, 0, 1])  # sample 3 is wrong for both
    with_labels = validate({"y": reference}, {"y": candidate}, AccuracyThresholds(), labels=labels)
    assert with_labels.hits_metric == "top1"
    assert unpack_hits(with_labels.hits, 6).tolist() == [True, False, True, False, True, True]
    without = validate({"y": reference}, {"y": candidate}, AccuracyThresholds())
    assert without.hits_metric == "top1_agreement"
    assert unpack_hits(without.hits, 6).tolist() == [True, False, True, True, True, True]
    regression_output = validate({"y": reference[:, :1]}, {"y": candidate[:, :1]}, AccuracyThresholds())
    assert regression_output.hits == "" and regression_output.hits_metric == ""


def test_a_drop_beyond_the_threshold_is_a_regression_once_per_variant_and_fails_the_gate(store):
    run = judge(store, checked(hits_with(340)))  # 90% -> 85%
    (change,) = run.accuracy_changes  # batches 1 and 8 share one accuracy check
    assert change.verdict == "regression" and change.label == "m int8(onnxruntime) onnxruntime"
    assert change.delta == pytest.approx(-0.05)
    assert change.interval[1] < 0 < -change.interval[0]
    assert change.baseline == pytest.approx(0.9) and change.baseline_commit == "base0000000"
    assert "20 of 400 samples changed" in change.reason
    assert not run.passed
    assert "1 accuracy regressions" in gate.judge(run, "accuracy").failure
    assert gate.judge(run, "performance").failure == ""


def test_identical_hits_are_unchanged_and_a_gain_is_an_improvement(store):
    assert judge(store, checked(hits_with(360))).accuracy_changes[0].verdict == "unchanged"
    better = judge(store, checked(hits_with(390))).accuracy_changes[0]
    assert better.verdict == "improvement" and better.delta == pytest.approx(0.075)


def test_swapped_samples_cancel_in_the_pairing_but_still_count_as_noise(store):
    # 12 samples flip each way: the same top-1, but 24 discordant samples of 400 leave an interval wider than
    # one point, so "unchanged" cannot be claimed either
    hits = hits_with(360)
    hits[:12], hits[360:372] = False, True
    change = judge(store, checked(hits)).accuracy_changes[0]
    assert change.delta == 0
    assert change.verdict == "inconclusive"
    assert "give more validation samples" in change.reason


def test_another_validation_set_or_metric_is_never_paired(store):
    other_set = judge(store, checked(hits_with(100), validation_hash="val2")).accuracy_changes[0]
    assert other_set.verdict == "new" and "on this validation set" in other_set.reason
    other_metric = judge(store, checked(hits_with(100), metric="top1_agreement")).accuracy_changes[0]
    assert other_metric.verdict == "new"


def test_no_base_history_is_new_and_the_fp32_reference_without_labels_is_skipped(tmp_path):
    store = Store(tmp_path / "empty.db")
    run = a_run("head", "feature", [SeriesResult(key(), accuracy=checked(hits_with(300)))])
    (change,) = compare_accuracy(run, store, CompareSettings())
    assert change.verdict == "new" and "no earlier check of this variant" in change.reason
    reference = a_run(
        "head", "feature", [SeriesResult(key("fp32"), accuracy=checked(hits_with(400), metric="top1_agreement"))]
    )
    assert compare_accuracy(reference, store, CompareSettings()) == []


@pytest.mark.parametrize("name", ["m int8(onnxruntime) onnxruntime", "m int8(onnxruntime) b8 onnxruntime"])
def test_an_accuracy_regression_can_be_acknowledged_by_variant_label_or_pr_label(store, name):
    settings = CompareSettings(acknowledge={name: "retrained on new data"})  # the variant, or any of its series
    run = judge(store, checked(hits_with(340)), settings)
    assert run.accuracy_changes[0].verdict == "acknowledged"
    assert "retrained on new data" in run.accuracy_changes[0].acknowledgement
    assert run.passed
    labelled = judge(store, checked(hits_with(340)), labels=["trtci:accept-regression"])
    assert labelled.accuracy_changes[0].verdict == "acknowledged" and labelled.passed


def test_accuracy_changes_and_hits_survive_the_store_and_reach_report_and_summary(store):
    run = judge(store, checked(hits_with(340)))
    store.record_run(run)
    loaded = store.load_run("head")
    assert loaded.accuracy_changes == run.accuracy_changes
    assert loaded.series[0].accuracy.hits == run.series[0].accuracy.hits
    assert loaded.series[0].accuracy.validation_hash == "val1"
    summary = summary_dict(loaded)
    assert summary["counts"]["accuracy_regressions"] == 1
    assert summary["accuracy_changes"][0]["verdict"] == "regression"
    assert "hits" not in summary["results"][0]["accuracy"]
    comment = render(loaded)
    assert "1 accuracy regression" in comment
    assert "### Accuracy regressions against the base branch" in comment
    assert "top-1 85.00% vs 90.00% on main@" in comment and "(-5.00 pt, interval" in comment


def val_labelled_by(model: Path, path: Path, count: int = SAMPLES) -> Path:
    """Validation data whose labels are `model`'s own top-1: that model scores 100%."""
    x = np.random.default_rng(5).standard_normal((count, 16)).astype(np.float32)
    logits = onnxruntime.InferenceSession(str(model)).run(None, {"input": x})[0]
    np.savez(path, input=x, labels=logits.argmax(axis=1))
    return path


def test_a_pr_whose_retrained_model_loses_accuracy_fails_the_gate_end_to_end(tmp_path):
    model = mlp_classifier(tmp_path / "mlp.onnx", seed=0)
    val_labelled_by(model, tmp_path / "val.npz")
    data = {
        "models": [{"path": "mlp.onnx", "precisions": ["fp32", "fp16"], "batch_sizes": [2]}],
        "database": "results.db",
        "bench": {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5},
    }
    data["models"][0]["validation"] = {"data": "val.npz"}
    config = parse_config(data, "test", tmp_path)
    base = pipeline.run(config, RunContext(run_id="b1", started_at="2026-11-27T08:00:00Z", branch="main"))
    assert base.accuracy_changes and all(c.verdict == "new" for c in base.accuracy_changes)

    pr = RunContext(run_id="p1", started_at="2026-11-27T08:01:00Z", branch="f", base_branch="main")
    same = pipeline.run(config, pr)
    assert {c.verdict for c in same.accuracy_changes} == {"unchanged"}

    mlp_classifier(tmp_path / "mlp.onnx", seed=1)  # "retrained": another model, same inputs and outputs
    pr2 = RunContext(run_id="p2", started_at="2026-11-27T08:02:00Z", branch="f", base_branch="main")
    worse = pipeline.run(config, pr2)
    verdicts = {c.label: c.verdict for c in worse.accuracy_changes}
    assert verdicts == {"mlp fp32 onnxruntime": "regression", "mlp fp16 onnxruntime": "regression"}
    assert worse.accuracy_changes[0].baseline == pytest.approx(1.0)
    assert not worse.passed and worse.regressions == []  # the gate fails on accuracy, not on latency


def test_the_same_device_is_preferred_over_a_newer_run_on_another(store):
    other = DeviceInfo(kind="gpu", name="other GPU")
    elsewhere = SeriesResult(replace(key(), device_id=other.id), accuracy=checked(hits_with(100)))
    store.record_run(replace(a_run("newer-other-device", "main", [elsewhere]), devices=[other]))
    change = judge(store, checked(hits_with(360))).accuracy_changes[0]
    assert change.baseline_run == "base" and change.verdict == "unchanged"
    assert "another device" not in change.reason
    lonely = a_run(
        "head2", "feature", [SeriesResult(replace(key(), device_id="nowhere"), accuracy=checked(hits_with(360)))]
    )
    (fallback,) = compare_accuracy(lonely, store, CompareSettings())
    assert fallback.baseline_run == "newer-other-device" and "another device" in fallback.reason


def test_a_check_on_another_validation_set_never_hides_a_pairable_one(store):
    # the same device's check is older and on another set; a newer check on the current set ran elsewhere
    other = DeviceInfo(kind="gpu", name="other GPU")
    current_set = SeriesResult(replace(key(), device_id=other.id), accuracy=checked(hits_with(400), "val2"))
    store.record_run(replace(a_run("newer-other-device", "main", [current_set]), devices=[other]))
    change = judge(store, checked(hits_with(340), "val2")).accuracy_changes[0]
    assert change.baseline_run == "newer-other-device" and change.verdict == "regression"


def test_the_reason_says_when_the_merge_base_was_not_measured(store):
    run = a_run("head", "feature", [SeriesResult(key(), accuracy=checked(hits_with(360)))])
    run.context.merge_base = "f" * 40
    (change,) = compare_accuracy(run, store, CompareSettings())
    assert "merge-base fffffff was not measured on main" in change.reason

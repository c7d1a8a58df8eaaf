"""The whole pipeline on the embedded ONNX Runtime backend, with real models, data and a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.models import mlp_classifier
from trtci import pipeline
from trtci.config import parse_config
from trtci.errors import ConfigError, DataError, ModelError
from trtci.results import RunContext

FAST_BENCH = {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5}


def context(run_id: str, branch: str = "main", base: str | None = None) -> RunContext:
    return RunContext(run_id=run_id, started_at=f"2026-11-27T08:00:0{run_id[-1]}Z", branch=branch, base_branch=base)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    mlp_classifier(tmp_path / "mlp.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((32, 16)).astype(np.float32))
    np.savez(
        tmp_path / "val.npz",
        input=rng.standard_normal((40, 16)).astype(np.float32),
        labels=rng.integers(0, 10, 40),
    )
    return tmp_path


def config_for(workdir: Path, **model_overrides):
    model = {
        "path": "mlp.onnx",
        "precisions": ["fp32", "fp16", "int8"],
        "batch_sizes": [1, 4],
        "calibration": {"data": "calib.npz", "method": "minmax"},
        "validation": {"data": "val.npz"},
        # random weights and random labels: the label ratio is noise, so gate on agreement only here
        "accuracy": {"min_ratio": 0.01, "min_cosine": 0.9, "min_sqnr_db": 10, "min_top1_agreement": 0.5},
        **model_overrides,
    }
    data = {"models": [model], "database": "results.db", "bench": FAST_BENCH, "cache_dir": "cache"}
    return parse_config(data, "test", workdir)


def table_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return {name: conn.execute(f"select count(*) from [{name}]").fetchone()[0] for name in names}


def test_full_run_measures_validates_and_records_every_series(workdir):
    result = pipeline.run(config_for(workdir), context("run1"))
    labels = sorted(s.key.label for s in result.series)
    # fp32, fp16, int8 in both Q/DQ schemes (the TensorRT one is validated on the CPU), at two batch sizes
    assert len(labels) == 8
    assert "mlp int8(tensorrt) b4 onnxruntime" in labels and "mlp int8(onnxruntime) b1 onnxruntime" in labels
    for series in result.series:
        assert series.error is None, series.error
        assert series.bench.stats.iterations >= 5
        assert len(series.bench.samples_ms) == series.bench.stats.iterations
        assert series.accuracy is not None and series.accuracy.samples == 40
    fp32 = next(s for s in result.series if s.key.precision == "fp32")
    assert fp32.accuracy.ratio == pytest.approx(1.0) and fp32.accuracy.outputs[0].cosine == pytest.approx(1.0)
    int8 = next(s for s in result.series if s.key.quantization == "onnxruntime")
    assert 0.9 < int8.accuracy.outputs[0].cosine < 1.0  # really quantized, and still close
    assert all(c.verdict == "new" for c in result.comparisons)
    counts = table_counts(workdir / "results.db")
    assert counts["runs"] == 1 and counts["benchmarks"] == 8


def test_second_run_compares_with_the_first_on_the_same_branch(workdir):
    config = config_for(workdir, precisions=["fp32"], batch_sizes=[1])
    pipeline.run(config, context("run1"))
    second = pipeline.run(config, context("run2", branch="feature", base="main"))
    (comparison,) = second.comparisons
    assert comparison.verdict in ("unchanged", "regression", "improvement")
    assert comparison.baseline_run == "run1" and comparison.ratio > 0


def test_bad_data_fails_before_any_work_and_keeps_recorded_results(workdir):
    config = config_for(workdir, precisions=["fp32"], batch_sizes=[1])
    pipeline.run(config, context("run1"))
    before = (workdir / "results.db").read_bytes()
    np.savez(workdir / "val.npz", image=np.zeros((4, 16), np.float32))
    with pytest.raises(DataError, match="missing input; unknown image"):
        pipeline.run(config, context("run2"))
    assert (workdir / "results.db").read_bytes() == before


def test_fixed_batch_model_refuses_other_batch_sizes(tmp_path):
    mlp_classifier(tmp_path / "mlp.onnx", dynamic_batch=False)
    data = {"models": [{"path": "mlp.onnx", "precisions": ["fp32"], "batch_sizes": [1, 8]}], "bench": FAST_BENCH}
    with pytest.raises(ConfigError, match="fixed batch of 1, so batch size 8 cannot run"):
        pipeline.run(parse_config(data, "test", tmp_path), context("run1"))
    assert not (tmp_path / "trtci.db").exists()


def test_without_data_benchmarks_on_random_inputs_and_skips_accuracy(tmp_path):
    mlp_classifier(tmp_path / "mlp.onnx")
    data = {"models": [{"path": "mlp.onnx", "precisions": ["fp32", "fp16"]}], "bench": FAST_BENCH}
    result = pipeline.run(parse_config(data, "test", tmp_path), context("run1"))
    assert [s.accuracy for s in result.series] == [None, None]
    assert all(s.bench.stats.median > 0 for s in result.series)


def sqrt_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Sqrt", ["x"], ["y"])],
        "sqrt",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_nan_outputs_are_an_accuracy_failure_with_the_count_not_a_crash(tmp_path):
    sqrt_model(tmp_path / "sqrt.onnx")
    x = np.full((8, 4), 4.0, np.float32)
    x[0, :3] = -1.0  # three NaN outputs per precision
    np.savez(tmp_path / "val.npz", x=x)
    data = {
        "models": [{"path": "sqrt.onnx", "precisions": ["fp32", "fp16"], "validation": {"data": "val.npz"}}],
        "bench": FAST_BENCH,
    }
    result = pipeline.run(parse_config(data, "test", tmp_path), context("run1"))
    assert len(result.accuracy_failures) == 2 and not result
    for series in result.series:
        assert series.error is None and series.bench is not None
        assert series.accuracy.outputs[0].nonfinite == 3
        assert any("3 NaN/Inf" in reason for reason in series.accuracy.reasons)


def test_fp16_conversion_of_an_input_used_twice_gives_a_valid_model(tmp_path):
    """onnxconverter-common casts x once per use in Mul(x, x); trtci must not hand ONNX Runtime the duplicate."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["y"])],
        "square",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "square.onnx")
    np.savez(tmp_path / "val.npz", x=np.full((8, 4), 3.0, np.float32))
    data = {
        "models": [{"path": "square.onnx", "precisions": ["fp32", "fp16"], "validation": {"data": "val.npz"}}],
        "bench": FAST_BENCH,
    }
    result = pipeline.run(parse_config(data, "test", tmp_path), context("run1"))
    fp16 = next(s for s in result.series if s.key.precision == "fp16")
    assert fp16.error is None and fp16.accuracy.passed


def test_an_op_onnxruntime_cannot_run_stops_the_run_before_measuring(tmp_path):
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, tmp_path / "custom.onnx")
    data = {"models": [{"path": "custom.onnx", "precisions": ["fp32", "fp16"]}], "bench": FAST_BENCH}
    with pytest.raises(ModelError, match=r"custom.onnx: the FP32 model does not run on ONNX Runtime .*NoSuchOp"):
        pipeline.run(parse_config(data, "test", tmp_path), context("run1"))
    assert not (tmp_path / "trtci.db").exists() or table_counts(tmp_path / "trtci.db").get("runs", 0) == 0


def test_auto_backend_runs_tensorrt_where_it_can_else_onnxruntime(tmp_path):
    from trtci.backends import get_backend

    mlp_classifier(tmp_path / "mlp.onnx")
    config = parse_config(
        {"models": [{"path": "mlp.onnx", "precisions": ["fp32"]}], "backends": ["auto"]}, "t", tmp_path
    )
    backend = get_backend("auto", config)
    assert backend.can_run
    assert backend.name == "onnxruntime" or backend.name.startswith("tensorrt")

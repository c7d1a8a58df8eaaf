"""The whole pipeline on the embedded ONNX Runtime backend, with real models, data and a real SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from tests.models import mlp_classifier
from trtci.backends.base import LoadRequest
from trtci.backends.onnxruntime import OnnxRuntimeBackend
from trtci.backends.tensorrt import TensorRTBackend
from trtci.config import CompareSettings, parse_config
from trtci.errors import BackendError, DataError, ModelError
from trtci.pipeline import run as pipeline
from trtci.pipeline.confirm import confirm
from trtci.pipeline.plan import ModelPlan, plan_model
from trtci.pipeline.progress import Silent
from trtci.results import (
    BenchResult,
    Comparison,
    DeviceInfo,
    LatencyStats,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
)
from trtci.store.database import Store

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
    # fp32, fp16 and int8 at two batch sizes, plus the TensorRT Q/DQ model, validated once on the CPU
    assert len(labels) == 7
    assert "mlp int8(onnxruntime) b1 onnxruntime" in labels and "mlp int8(onnxruntime) b4 onnxruntime" in labels
    tensorrt_scheme = next(s for s in result.series if s.key.quantization == "tensorrt")
    assert tensorrt_scheme.key.batch == 4 and tensorrt_scheme.bench is None
    assert tensorrt_scheme.error is None and tensorrt_scheme.accuracy.samples == 40
    for series in result.series:
        assert series.error is None, series.error
        assert series.accuracy is not None and series.accuracy.samples == 40
        if series is not tensorrt_scheme:
            assert series.bench.stats.iterations >= 5
            assert len(series.bench.samples_ms) == series.bench.stats.iterations
    fp32 = next(s for s in result.series if s.key.precision == "fp32")
    assert fp32.accuracy.ratio == pytest.approx(1.0) and fp32.accuracy.outputs[0].cosine == pytest.approx(1.0)
    int8 = next(s for s in result.series if s.key.quantization == "onnxruntime")
    assert 0.9 < int8.accuracy.outputs[0].cosine < 1.0  # really quantized, and still close
    assert len(result.comparisons) == 6 and all(c.verdict == "new" for c in result.comparisons)
    counts = table_counts(workdir / "results.db")
    assert counts["runs"] == 1 and counts["benchmarks"] == 6 and counts["accuracy"] == 7
    with Store(workdir / "results.db") as store:
        stored = next(s for s in store.load_run("run1").series if s.key == tensorrt_scheme.key)
    assert stored.bench is None and stored.accuracy.top1 == tensorrt_scheme.accuracy.top1


def test_second_run_compares_with_the_first_on_the_same_branch(workdir):
    config = config_for(workdir, precisions=["fp32"], batch_sizes=[1])
    pipeline.run(config, context("run1"))
    second = pipeline.run(config, context("run2", branch="feature", base="main"))
    (comparison,) = second.comparisons
    # Judged against the first run (not "new"); which verdict depends on this machine's noise at the moment.
    assert comparison.verdict in ("unchanged", "regression", "improvement", "inconclusive")
    assert comparison.baseline_run == "run1" and comparison.ratio > 0


def test_bad_data_fails_before_any_work_and_keeps_recorded_results(workdir):
    config = config_for(workdir, precisions=["fp32"], batch_sizes=[1])
    pipeline.run(config, context("run1"))
    before = (workdir / "results.db").read_bytes()
    np.savez(workdir / "val.npz", image=np.zeros((4, 16), np.float32))
    with pytest.raises(DataError, match="missing input; unknown image"):
        pipeline.run(config, context("run2"))
    assert (workdir / "results.db").read_bytes() == before


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


def with_fixed_batch(path: Path, batch: int) -> Path:
    """The same model with its batch dim fixed at `batch` in every input and output."""
    model = onnx.load(path)
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, path)
    return path


def val_with_known_top1(tmp_path: Path, count: int, wrong: list[int]) -> Path:
    """Validation data for mlp_classifier whose labels are its own top-1 except at the `wrong` indices."""
    x = np.random.default_rng(3).standard_normal((count, 16)).astype(np.float32)
    dynamic = onnx.load(mlp_classifier(tmp_path / "dynamic" / "mlp.onnx"))
    logits = onnxruntime.InferenceSession(dynamic.SerializeToString()).run(None, {"input": x})[0]
    labels = logits.argmax(axis=1)
    labels[wrong] = (labels[wrong] + 1) % 10
    np.savez(tmp_path / "val.npz", input=x, labels=labels)
    return tmp_path / "val.npz"


@pytest.mark.parametrize("count, wrong", [(10, [0, 5, 9]), (3, [2])], ids=["remainder", "fewer-than-a-batch"])
def test_validation_counts_every_sample_of_a_fixed_batch_model(tmp_path, count, wrong):
    with_fixed_batch(mlp_classifier(tmp_path / "mlp.onnx"), 4)
    val_with_known_top1(tmp_path, count, wrong)
    data = {
        "models": [{"path": "mlp.onnx", "precisions": ["fp32"], "batch_sizes": [4], "validation": {"data": "val.npz"}}],
        "bench": FAST_BENCH,
    }
    (series,) = pipeline.run(parse_config(data, "test", tmp_path), context("run1")).series
    assert series.error is None, series.error
    assert series.accuracy.samples == count
    assert series.accuracy.reference_top1 == pytest.approx(1 - len(wrong) / count)  # labels line up with outputs


def test_int8_calibrates_a_fixed_batch_model_in_its_own_batch(tmp_path):
    with_fixed_batch(mlp_classifier(tmp_path / "mlp.onnx"), 4)
    np.savez(tmp_path / "calib.npz", input=np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32))
    data = {
        "models": [
            {
                "path": "mlp.onnx",
                "precisions": ["fp32", "int8"],
                "batch_sizes": [4],
                "calibration": {"data": "calib.npz", "batch_size": 8},
            }
        ],
        "bench": FAST_BENCH,
    }
    result = pipeline.run(parse_config(data, "test", tmp_path), context("run1"))
    assert all(s.error is None and s.bench is not None for s in result.series), [s.error for s in result.series]
    assert [s.key.precision for s in result.series] == ["fp32", "int8"]  # no validation data: no TensorRT Q/DQ


def open_dim_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_series_measured_at_another_input_shape_is_a_new_series(tmp_path):
    open_dim_model(tmp_path / "relu.onnx")

    def config(length: int):
        model = {"path": "relu.onnx", "precisions": ["fp32"], "inputs": [{"name": "x", "shape": [1, length]}]}
        return parse_config({"models": [model], "bench": FAST_BENCH}, "test", tmp_path)

    first = pipeline.run(config(8), context("run1"))
    second = pipeline.run(config(64), context("run2"))
    assert first.series[0].key.id != second.series[0].key.id
    assert [c.verdict for c in second.comparisons] == ["new"]  # not compared with the run at length 8
    same = pipeline.run(config(64), context("run3"))
    assert same.series[0].key.id == second.series[0].key.id


class BoundSession:
    """A session bound to one set of input shapes that must be closed, as a TensorRT execution context is."""

    build = None

    def __init__(self, inner, shapes: dict[str, tuple[int, ...]]) -> None:
        self.inner, self.shapes, self.closed = inner, shapes, False

    def run(self, feeds):
        assert not self.closed, "run after close"
        for name, value in feeds.items():
            if value.shape != self.shapes[name]:
                raise BackendError(f"input '{name}' has shape {value.shape}; the engine was bound for {self.shapes}")
        return self.inner.run(feeds)

    def benchmark(self, feeds, settings, batch, progress=None):
        self.run(feeds)
        return self.inner.benchmark(feeds, settings, batch, progress)

    def close(self) -> None:
        assert not self.closed, "closed twice"
        self.closed = True


class BoundBackend:
    """Stands in for TensorRT, which cannot run here: a fresh session per load, bound to the request's shapes."""

    name = "tensorrt"
    int8_scheme = "tensorrt"
    validation_only_schemes = ()
    builds_engines = True
    can_run = True
    version = why_not_run = ""
    load_options = TensorRTBackend.load_options  # TensorRT's own options and series identity
    identity_options = TensorRTBackend.identity_options

    def __init__(self) -> None:
        self.inner = OnnxRuntimeBackend()
        self.sessions: list[BoundSession] = []

    def device(self) -> DeviceInfo:
        return DeviceInfo(kind="gpu", name="Bound Test GPU")

    def load(self, request: LoadRequest) -> BoundSession:
        self.sessions.append(BoundSession(self.inner.load(request), request.shapes))
        return self.sessions[-1]


def run_on(plan: ModelPlan, config, backend) -> pipeline._RunState:
    state = pipeline._RunState()
    pipeline._run_model(plan, config, [backend], OnnxRuntimeBackend(), state, Silent())
    return state


def test_sessions_bound_to_one_shape_validate_every_sample_and_are_all_closed(workdir):
    val_with_known_top1(workdir, 10, [1])
    config = config_for(workdir, precisions=["fp32", "fp16"], batch_sizes=[1, 3])  # validates at 3: 3+3+3+1
    backend = BoundBackend()
    state = run_on(plan_model(config.models[0]), config, backend)
    assert len(state.series) == 4
    for series in state.series:
        assert series.error is None, series.error
        assert series.accuracy.samples == 10 and series.bench is not None
    assert len(backend.sessions) == 6 and all(s.closed for s in backend.sessions)  # 2 validations, 4 benchmarks

    series = state.series[0]
    result = RunResult(context=context("run1"), devices=[backend.device()], series=state.series)
    result.comparisons = [
        Comparison(series.key.id, series.key.label, "regression", "latency_median_ms", 2.0, 1.0, 2.0, 0.1)
    ]
    with Store(":memory:") as store:
        confirm(result, state.remeasure, store, CompareSettings(confirm_budget_s=0.1))
    assert len(backend.sessions) == 7 and all(s.closed for s in backend.sessions)


def test_tensorrt_profile_ranges_are_part_of_the_series_identity(tmp_path):
    open_dim_model(tmp_path / "relu.onnx")

    def key_id(high: int) -> str:
        spec = {"name": "x", "shape": [1, 8], "min": [1, 4], "opt": [1, 8], "max": [1, high]}
        model = {"path": "relu.onnx", "precisions": ["fp32"], "inputs": [spec]}
        config = parse_config({"models": [model], "bench": FAST_BENCH}, "test", tmp_path)
        (series,) = run_on(plan_model(config.models[0]), config, BoundBackend()).series
        return series.key.id

    assert key_id(16) != key_id(32)
    assert key_id(16) == key_id(16)


def test_a_backend_resolved_twice_runs_once_with_a_warning():
    backends, warnings = pipeline.unique_backends([OnnxRuntimeBackend(), BoundBackend(), OnnxRuntimeBackend()])
    assert [b.name for b in backends] == ["onnxruntime", "tensorrt"]
    assert len(warnings) == 1 and "onnxruntime" in warnings[0] and "once" in warnings[0]


class RecordingProgress:
    def __init__(self) -> None:
        self.tasks: list[str] = []

    @contextlib.contextmanager
    def task(self, description: str) -> Iterator:
        self.tasks.append(description)
        yield lambda fraction: None


def test_fp32_on_the_reference_backend_reuses_the_reference_outputs(workdir):
    progress = RecordingProgress()
    result = pipeline.run(config_for(workdir, precisions=["fp32", "fp16"], batch_sizes=[1]), context("run1"), progress)
    assert any("FP32 reference outputs" in task for task in progress.tasks)
    assert not any("fp32: validating" in task for task in progress.tasks), progress.tasks
    assert any("fp16: validating on onnxruntime" in task for task in progress.tasks)
    fp32 = next(s for s in result.series if s.key.precision == "fp32")
    assert fp32.accuracy.passed and fp32.accuracy.outputs[0].max_abs_err == 0.0 and fp32.accuracy.samples == 40


def test_retention_applies_after_each_recorded_run(workdir):
    config = config_for(workdir, precisions=["fp32"], batch_sizes=[1])
    config = config.model_copy(
        update={"history": config.history.model_copy(update={"keep_runs": 1, "keep_days": None})}
    )
    pipeline.run(config, context("run1"))
    pipeline.run(config, context("run2"))
    with sqlite3.connect(workdir / "results.db") as db:
        assert [r[0] for r in db.execute("select id from runs")] == ["run2"]
        assert db.execute("select count(*) from benchmarks").fetchone()[0] == 1


def test_every_run_times_the_canary_and_the_next_run_reads_the_machine_speed_from_it(workdir):
    config = config_for(workdir, precisions=["fp32"], batch_sizes=[1])
    first = pipeline.run(config, context("run1"))
    (canary,) = first.canaries
    assert canary.backend == "onnxruntime" and canary.start_ms > 0 and canary.end_ms > 0 and canary.iterations > 20
    assert canary.baseline_ms is None and "no canary on main yet" in canary.reason
    second = pipeline.run(config, context("run2", branch="feature", base="main"))
    (again,) = second.canaries
    assert again.history_runs == 1 and again.ratio == pytest.approx(again.median_ms / canary.median_ms)
    (comparison,) = second.comparisons
    assert comparison.changed == [] and comparison.verdict == "unchanged"  # identical inputs: the machine's
    with Store(workdir / "results.db") as store:
        assert store.load_run("run2").canaries == [again]
    quiet = pipeline.run(config.model_copy(update={"compare": CompareSettings(canary_s=0)}), context("run3"))
    assert quiet.canaries == []


def test_unstable_series_are_named_in_one_warning():
    def series(label: str, spread: float) -> SeriesResult:
        stats = LatencyStats(1, 1, 1, 1, 1, 1, 1, 0, spread, 10, 1, spread > 0.025, spread=spread)
        key = SeriesKey(label, "h", "fp32", 1, "onnxruntime", "cpu")
        return SeriesResult(key, BenchResult(stats, [1.0], 0.0, 1.0, "host"))

    config = parse_config({"models": [{"path": "m.onnx", "precisions": ["fp32"]}]}, "test", Path("."))
    (warning,) = pipeline.unstable_warning([series("a", 0.3), series("b", 0.01), series("c", 0.05)], config)
    assert warning.startswith("2 of 3 series unstable, their robust spread above 2.5% (a fp32 b1 onnxruntime (30.0%)")
    assert pipeline.unstable_warning([series("b", 0.01)], config) == []

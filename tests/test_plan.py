"""Planning a model (trtci.pipeline.plan): what the data's labels and the config's shapes must satisfy, checked
before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.models import mlp_classifier
from trtci.config import parse_config
from trtci.errors import ConfigError, DataError
from trtci.pipeline import run as pipeline
from trtci.pipeline.plan import bench_feeds, plan_model
from trtci.results import RunContext

FAST_BENCH = {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5}
STARTED = "2026-11-27T08:00:01Z"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """mlp.onnx and val.npz: 40 samples with labels."""
    mlp_classifier(tmp_path / "mlp.onnx")
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "val.npz",
        input=rng.standard_normal((40, 16)).astype(np.float32),
        labels=rng.integers(0, 10, 40),
    )
    return tmp_path


def config_for(workdir: Path, **model_overrides):
    model = {"path": "mlp.onnx", "precisions": ["fp32"], "validation": {"data": "val.npz"}, **model_overrides}
    data = {"models": [model], "database": "results.db", "bench": FAST_BENCH, "cache_dir": "cache"}
    return parse_config(data, "test", workdir)


def test_fixed_batch_model_refuses_other_batch_sizes(tmp_path):
    mlp_classifier(tmp_path / "mlp.onnx", dynamic_batch=False)
    data = {"models": [{"path": "mlp.onnx", "precisions": ["fp32"], "batch_sizes": [1, 8]}], "bench": FAST_BENCH}
    with pytest.raises(ConfigError, match="fixed batch of 1, so batch size 8 cannot run"):
        pipeline.run(parse_config(data, "test", tmp_path), RunContext(run_id="run1", started_at=STARTED))
    assert not (tmp_path / "trtci.db").exists()


def classifier_with_argmax(path: Path, outputs: tuple[str, ...]) -> Path:
    """mlp_classifier plus an ArgMax output "class" (int64 [N]); `outputs` picks the graph outputs, in order."""
    model = onnx.load(mlp_classifier(path))
    model.graph.node.append(helper.make_node("ArgMax", ["logits"], ["class"], axis=1, keepdims=0))
    declared = {
        "class": helper.make_tensor_value_info("class", TensorProto.INT64, ["N"]),
        "logits": helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
    }
    del model.graph.output[:]
    model.graph.output.extend(declared[name] for name in outputs)
    onnx.save(model, path)
    return path


def labelled_plan(workdir: Path, **validation):
    return plan_model(config_for(workdir, validation={"data": "val.npz", **validation}).models[0])


def test_labels_need_a_class_score_output_before_any_work(workdir):
    classifier_with_argmax(workdir / "mlp.onnx", ("class",))
    with pytest.raises(DataError, match=r"output 'class' .*int64 \[N\].*set validation.label_output.*drop the labels"):
        labelled_plan(workdir)
    mlp_classifier(workdir / "mlp.onnx", classes=1)  # a regression output [N, 1]
    with pytest.raises(DataError, match=r"output 'logits' .*float32 \[N, 1\]"):
        labelled_plan(workdir)


def test_label_output_must_name_class_scores_and_the_default_skips_other_outputs(workdir):
    classifier_with_argmax(workdir / "mlp.onnx", ("class", "logits"))
    with pytest.raises(DataError, match=r"label_output 'class' .*not class scores"):
        labelled_plan(workdir, label_output="class")
    assert labelled_plan(workdir).validation.labels is not None  # the first class-score output is "logits"
    assert labelled_plan(workdir, label_output="logits").validation.labels is not None


def test_symbolic_output_dims_may_hold_class_scores(workdir):
    model = onnx.load(workdir / "mlp.onnx")
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"
    onnx.save(model, workdir / "mlp.onnx")
    result = pipeline.run(config_for(workdir, batch_sizes=[1]), RunContext(run_id="run1", started_at=STARTED))
    assert result.series[0].accuracy.top1 is not None


def test_a_config_shape_that_contradicts_a_fixed_model_dim_is_an_error(workdir):
    with pytest.raises(ConfigError, match=r"inputs\.input\.shape dim 1 is 8 but the model fixes it at 16"):
        plan_model(config_for(workdir, inputs=[{"name": "input", "shape": [1, 8]}]).models[0])


def test_a_rank_one_input_says_its_first_dim_is_fixed(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "vec.onnx")
    config = parse_config({"models": [{"path": "vec.onnx", "precisions": ["fp32"]}]}, "test", tmp_path)
    with pytest.raises(ConfigError, match=r"the first dim of input 'x' is fixed at 4, so batch size 1 cannot run"):
        plan_model(config.models[0])


def test_random_inputs_larger_than_memory_are_refused_when_planning_before_any_allocation(tmp_path):
    mlp_classifier(tmp_path / "mlp.onnx")
    model = {"path": "mlp.onnx", "precisions": ["fp32"], "batch_sizes": [1, 2_000_000_000]}
    config = parse_config({"models": [model], "bench": FAST_BENCH}, "test", tmp_path)
    with pytest.raises(DataError, match=r"mlp: random inputs for a batch of 2000000000 needs .* GiB of memory"):
        plan_model(config.models[0])
    plan = plan_model(config.models[0].model_copy(update={"batch_sizes": [1]}))
    plan.shapes[1] = {"input": (2_000_000_000, 16)}  # as a shape from the config's inputs could ask
    with pytest.raises(DataError, match="lower batch_sizes or the sizes in inputs:"):
        bench_feeds(plan, 1)
    assert bench_feeds(plan_model(config.models[0].model_copy(update={"batch_sizes": [3]})), 3)["input"].shape == (
        3,
        16,
    )

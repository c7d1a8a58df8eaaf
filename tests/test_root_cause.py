"""INT8 root cause on models with a planted fault in one known node: INT8 fails its gate, the root cause names
that node first, and the nodes it keeps in float make the gate pass when committed to trtci.yml.

Automatic in `trtci run` (the reasons and `accuracy.root_cause` of the failing variant) and on demand with
`trtci explain int8`. Also the bad inputs: no failure to explain, a budget too small, a model the quantizer
cannot take, a node name that does not exist.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from tests.planted import planted_cnn, planted_config, planted_mlp, planted_transformer
from trtci.config import load_config
from trtci.errors import ConfigError
from trtci.pipeline import run as pipeline
from trtci.pipeline.explain import explain_models
from trtci.results import RunContext

ROOT = Path(__file__).resolve().parent.parent
PLANTED = {
    "mlp-fc1": (planted_mlp, (32,), "fc1", 0.99),
    "mlp-fc2": (planted_mlp, (32,), "fc2", 0.99),
    "cnn-conv1": (planted_cnn, (3, 8, 8), "conv1", 0.99),
    "cnn-conv2": (planted_cnn, (3, 8, 8), "conv2", 0.99),
    # the feed-forward's first Linear: its MatMul and bias Add, then GELU's Div/Erf/Add/Mul/Mul carry the outlier
    "transformer-linear1": (planted_transformer, (12, 32), "linear1", 0.95),
}
NAMED = {"linear1": "/layers.0/linear1/MatMul"}


def trtci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "trtci.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def run_config(path: Path):
    return pipeline.run(load_config(path), RunContext(run_id=path.parent.name, started_at="2026-01-01T00:00:00Z"))


@pytest.mark.parametrize("case", PLANTED)
@pytest.mark.parametrize("scheme", ["onnxruntime", "tensorrt"])
def test_the_planted_node_is_named_first_and_its_exclusion_set_passes(case, scheme, tmp_path):
    builder, shape, faulty, min_ratio = PLANTED[case]
    config = load_config(planted_config(tmp_path, builder, shape, faulty, min_ratio))
    (explained,) = explain_models(config, scheme=scheme)
    cause = explained.cause
    assert explained.error == "" and cause is not None
    if not cause.ranking:  # this scheme's placement never rounds the outlier: INT8 passes
        assert cause.passed and "no failure to explain" in cause.note
        assert (case, scheme) == ("cnn-conv1", "tensorrt"), f"{case} {scheme}: INT8 was expected to fail"
        return
    assert cause.ranking[0].node == NAMED.get(faulty, faulty)
    assert cause.ranking[0].sqnr_db < 10 and cause.ranking[0].ratio < 0.9
    assert cause.passed and cause.nodes_to_exclude and cause.ratio >= min_ratio
    committed = planted_config(
        tmp_path, builder, shape, faulty, min_ratio, calibration={"nodes_to_exclude": cause.nodes_to_exclude}
    )
    (again,) = explain_models(load_config(committed), scheme=scheme)
    assert again.cause.passed and not again.cause.ranking, "the committed set passes: nothing left to explain"


def test_run_diagnoses_a_failing_int8_variant_automatically(tmp_path):
    result = run_config(planted_config(tmp_path, planted_mlp, (32,), "fc2"))
    int8 = next(s for s in result.series if s.key.quantization == "onnxruntime")
    assert not int8.accuracy.passed
    cause = int8.accuracy.root_cause
    assert cause.ranking[0].node == "fc2" and cause.passed and set(cause.nodes_to_exclude) == {"fc2", "fc3"}
    assert cause.speedup_vs_fp32 is not None and cause.speedup_vs_fp32 > 0  # timed: its own backend's scheme
    line = int8.accuracy.reasons[-1]
    assert line.startswith("root cause: fc2 (Gemm: outputs at ")
    assert "calibration: {nodes_to_exclude: [fc2, fc3]} passes (top-1 ratio 1.0000" in line
    validated_only = next(s for s in result.series if s.key.quantization == "tensorrt")
    assert validated_only.accuracy.root_cause.speedup_vs_fp32 is None
    assert "not timed" in validated_only.accuracy.root_cause.note
    fp32 = next(s for s in result.series if s.key.precision == "fp32")
    assert fp32.accuracy.root_cause is None


def test_committing_the_suggested_nodes_makes_the_run_pass(tmp_path):
    path = planted_config(tmp_path, planted_mlp, (32,), "fc2", calibration={"nodes_to_exclude": ["fc2", "fc3"]})
    result = run_config(path)
    assert all(s.accuracy.passed for s in result.series if s.accuracy is not None)
    assert all(s.accuracy.root_cause is None for s in result.series if s.accuracy is not None)


def test_explain_command_prints_the_ranking_and_a_snippet_to_commit(tmp_path):
    planted_config(tmp_path, planted_cnn, (3, 8, 8), "conv2")
    done = trtci("explain", "int8", "--config", "trtci.yml", "--json", "rc.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "planted int8(onnxruntime): fails its accuracy gate. Nodes by their effect on the outputs "
        "(that tensor alone in INT8):"
    )
    assert lines[1].startswith("   1. conv2 (Conv) via relu2: outputs ")
    assert "      nodes_to_exclude: [conv2, conv3]" in done.stdout
    snippet = done.stdout[done.stdout.index("    models:") :]
    assert yaml.safe_load("\n".join(line[4:] for line in snippet.splitlines()[:4])) == {
        "models": [{"name": "planted", "calibration": {"nodes_to_exclude": ["conv2", "conv3"]}}]
    }
    (data,) = json.loads((tmp_path / "rc.json").read_text())
    assert data["resolved"] and data["cause"]["ranking"][0]["node"] == "conv2"


def test_explain_says_when_there_is_no_failure(tmp_path):
    planted_config(tmp_path, planted_mlp, (32,), "fc3")  # the outlier feeds the float output layer: INT8 passes
    done = trtci("explain", "int8", "--config", "trtci.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "planted int8(onnxruntime): INT8 passes its accuracy gate (top-1 ratio 1.0000): there is no failure to explain"
    )


def test_a_budget_too_small_stops_and_says_so(tmp_path):
    planted_config(tmp_path, planted_mlp, (32,), ("fc1", "fc2"))  # two faults: one set of nodes does not fix both
    done = trtci("explain", "int8", "--config", "trtci.yml", "--trials", "2", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert {line[6:10] for line in done.stdout.splitlines()[1:3]} == {"fc1 ", "fc2 "}
    assert "no set of nodes kept in float passed within 2 quantizations: the budget ran out" in done.stdout
    enough = trtci("explain", "int8", "--config", "trtci.yml", cwd=tmp_path)
    listed = enough.stdout.split("nodes_to_exclude: [")[1].split("]")[0]
    assert enough.returncode == 0 and set(listed.split(", ")) == {"fc1", "fc2", "fc3"}


def _unquantizable(path: Path) -> Path:
    """fc1 -> Relu -> MatMul "bad" -> Relu -> fc2, where one output channel of "bad" has infinite weights: the
    quantizer cannot scale it."""
    rng = np.random.default_rng(0)
    bad = rng.normal(size=(16, 16)).astype(np.float32)
    bad[:, 4] = np.inf
    weights = [
        numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), "fc1.weight"),
        numpy_helper.from_array(bad, "bad.weight"),
        numpy_helper.from_array(rng.normal(size=(10, 16)).astype(np.float32), "fc2.weight"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "bad.weight"], ["b"], name="bad"),
        helper.make_node("Relu", ["b"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "fc2.weight"], ["logits"], name="fc2", transB=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the quantizer's own, on the infinite weights
def test_a_model_the_quantizer_cannot_take_names_the_node_and_keeps_other_precisions(tmp_path):
    _unquantizable(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(16, 8)).astype(np.float32))
    np.savez(tmp_path / "val.npz", x=rng.normal(size=(16, 8)).astype(np.float32))
    config = {
        "models": [
            {"path": "m.onnx", "precisions": ["fp32", "fp16", "int8"], "batch_sizes": [8],
             "calibration": {"data": "calib.npz"}, "validation": {"data": "val.npz"}}
        ],
        "bench": {"warmup_ms": 1, "duration_s": 0.02, "min_iterations": 3},
        "compare": {"confirm_budget_s": 0, "ab_budget_s": 0},
        "report": None,
    }  # fmt: skip
    (tmp_path / "trtci.yml").write_text(yaml.safe_dump(config))
    result = run_config(tmp_path / "trtci.yml")
    errors = {s.key.label: s.error for s in result.series if s.error}
    assert sorted(errors) == ["m int8(onnxruntime) b8 onnxruntime", "m int8(tensorrt) b8 onnxruntime"]
    for error in errors.values():
        assert "node bad outputs NaN or Inf on the calibration data, which no INT8 scale can hold" in error
    assert {s.key.precision for s in result.series if s.error is None} == {"fp32", "fp16"}
    done = trtci("explain", "int8", "--config", "trtci.yml", cwd=tmp_path)
    assert done.returncode == 1 and "node bad outputs NaN or Inf" in done.stdout


def test_nodes_to_exclude_must_name_nodes_of_the_model(tmp_path):
    path = planted_config(tmp_path, planted_mlp, (32,), "fc2", calibration={"nodes_to_exclude": ["fc9"]})
    with pytest.raises(ConfigError, match="calibration.nodes_to_exclude names fc9, not nodes of the model"):
        run_config(path)
    done = trtci("explain", "int8", "--config", "trtci.yml", "--model", "nope", cwd=tmp_path)
    assert done.returncode == 2 and "no model named 'nope'" in done.stderr


def test_a_search_cut_short_reports_the_accuracy_of_the_last_set_tried(tmp_path):
    config = load_config(planted_config(tmp_path, planted_mlp, (32,), ("fc1", "fc2")))
    (explained,) = explain_models(config, trials=2)
    cause = explained.cause
    assert not cause.passed and cause.trials == 2
    assert cause.ratio is not None and cause.ratio < 0.99 and cause.reasons

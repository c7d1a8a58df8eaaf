"""prepare: FP32/FP16 copies and INT8 Q/DQ models of tiny real networks, run in ONNX Runtime, and the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.models import mlp_classifier, small_cnn
from trtci.errors import ConfigError, DataError, ModelError
from trtci.pipeline import cache
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import prepare_fp16, prepare_fp32, prepare_int8


def run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def batches(name, shape, count=4, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal((batch, *shape)).astype(np.float32)} for _ in range(count)]


def initializers(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def nodes(model, op_type):
    return [n for n in model.graph.node if n.op_type == op_type]


@pytest.fixture
def mlp(tmp_path):
    return inspect_model(mlp_classifier(tmp_path / "mlp.onnx"))


@pytest.fixture
def cnn(tmp_path):
    return inspect_model(small_cnn(tmp_path / "cnn.onnx"))


def test_fp32_is_shape_inferred_copy_with_same_outputs(mlp, tmp_path):
    prepared = prepare_fp32(mlp, tmp_path / "cache")
    assert prepared.precision == "fp32" and prepared.quantization == ""
    assert prepared.path != mlp.path and prepared.path.name == "model.fp32.onnx"
    assert len(onnx.load(str(prepared.path)).graph.value_info) > 0
    feeds = batches("input", (16,), count=1)[0]
    np.testing.assert_array_equal(run(prepared.path, feeds), run(mlp.path, feeds))
    again = prepare_fp32(mlp, tmp_path / "cache")
    assert (prepared.cache_hit, again.cache_hit) == (False, True)
    assert again.path == prepared.path


def test_fp32_keeps_original_when_inference_adds_nothing(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save_model(model, str(path))
    assert prepare_fp32(inspect_model(path), tmp_path / "cache").path == path


def test_fp16_converts_weights_keeps_float32_io(cnn, tmp_path):
    prepared = prepare_fp16(cnn, tmp_path / "cache")
    model = onnx.load(str(prepared.path))
    assert {a.dtype for a in initializers(model).values()} == {np.dtype("float16")}
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    feeds = batches("image", (1, 8, 8), count=1)[0]
    reference, converted = run(cnn.path, feeds), run(prepared.path, feeds)
    assert converted.dtype == np.float32
    np.testing.assert_allclose(converted, reference, atol=2e-2, rtol=2e-2)
    assert prepare_fp16(cnn, tmp_path / "cache").cache_hit


def test_int8_onnxruntime_scheme_is_u8s8_per_channel_qdq(cnn, tmp_path):
    calibration = batches("image", (1, 8, 8))
    prepared = prepare_int8(
        cnn, calibration, scheme="onnxruntime", method="minmax", data_hash="d1", cache_dir=tmp_path / "cache"
    )
    assert (prepared.precision, prepared.quantization) == ("int8", "onnxruntime")
    model = onnx.load(str(prepared.path))
    values = initializers(model)
    quantize = nodes(model, "QuantizeLinear")
    assert quantize and all(values[q.input[2]].dtype == np.uint8 for q in quantize)
    conv_weights = [values[n.input[0]] for n in nodes(model, "DequantizeLinear") if values.get(n.input[0]) is not None]
    assert any(w.dtype == np.int8 and w.ndim == 4 for w in conv_weights)
    per_channel = [n for n in nodes(model, "DequantizeLinear") if values.get(n.input[1], np.zeros(1)).size > 1]
    assert per_channel, "weights should carry one scale per output channel"
    # The layer producing the graph output stays float: 8-bit logits would lose close top-1 decisions.
    producer = next(n for n in model.graph.node if "logits" in n.output)
    assert producer.op_type == "Gemm"
    feeds = batches("image", (1, 8, 8), count=1, batch=64, seed=5)[0]
    reference, quantized = run(cnn.path, feeds), run(prepared.path, feeds)
    cosine = (reference * quantized).sum() / np.linalg.norm(reference) / np.linalg.norm(quantized)
    assert cosine > 0.98


def test_int8_tensorrt_scheme_is_symmetric_without_bias_or_output_quantization(mlp, tmp_path):
    prepared = prepare_int8(
        mlp, batches("input", (16,)), scheme="tensorrt", method="minmax", data_hash="d", cache_dir=tmp_path / "c"
    )
    assert prepared.quantization == "tensorrt"
    model = onnx.load(str(prepared.path))
    values = initializers(model)
    zero_points = [values[n.input[2]] for n in nodes(model, "QuantizeLinear") + nodes(model, "DequantizeLinear")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    # Weights stay float behind a Q/DQ pair; no INT32 bias DequantizeLinear (TensorRT refuses it).
    assert any(n.input[0] == "fc1.weight" for n in nodes(model, "QuantizeLinear"))
    assert all(values.get(n.input[0], np.zeros(1, np.int8)).dtype != np.int32 for n in nodes(model, "DequantizeLinear"))
    producer = next(n for n in model.graph.node if "logits" in n.output)
    assert producer.op_type == "Gemm"
    feeds = batches("input", (16,), count=1, batch=64, seed=3)[0]
    reference, quantized = run(mlp.path, feeds), run(prepared.path, feeds)
    assert np.mean(reference.argmax(1) == quantized.argmax(1)) >= 0.9


def test_int8_cache_hit_skips_calibration_and_keys_on_inputs(mlp, tmp_path):
    cache = tmp_path / "cache"
    calibration = batches("input", (16,), count=3)
    calls: list[tuple[int, int]] = []

    def prepare(data_hash="a", scheme="onnxruntime", method="minmax"):
        return prepare_int8(
            mlp,
            calibration,
            scheme=scheme,
            method=method,
            data_hash=data_hash,
            cache_dir=cache,
            progress=lambda done, total: calls.append((done, total)),
        )

    first = prepare()
    assert calls == [(1, 3), (2, 3), (3, 3)]
    calls.clear()
    second = prepare()
    assert second.cache_hit and not first.cache_hit
    assert calls == []
    assert second.path == first.path and second.options_hash == first.options_hash
    others = [prepare(data_hash="b"), prepare(scheme="tensorrt"), prepare(method="entropy")]
    assert len({p.path for p in [first, *others]}) == 4
    assert not any(p.cache_hit for p in others)
    assert not list(cache.glob(".tmp-*"))


def test_many_calibration_batches_are_collected_in_chunks_with_the_same_ranges(mlp, tmp_path):
    calibration = batches("input", (16,), count=12, batch=2, seed=9)
    merged = [{"input": np.concatenate([c["input"] for c in calibration[i : i + 6]])} for i in (0, 6)]
    calls: list[tuple[int, int]] = []
    chunked = prepare_int8(
        mlp,
        calibration,
        scheme="tensorrt",
        method="minmax",
        data_hash="12",
        cache_dir=tmp_path / "c",
        progress=lambda done, total: calls.append((done, total)),
    )
    whole = prepare_int8(mlp, merged, scheme="tensorrt", method="minmax", data_hash="2", cache_dir=tmp_path / "c")
    assert calls[-1] == (12, 12) and len(calls) == 12

    def activation_scales(path):
        model = onnx.load(str(path))
        values = initializers(model)
        return {
            n.input[0]: float(values[n.input[1]])
            for n in nodes(model, "QuantizeLinear")
            if values[n.input[1]].size == 1
        }

    assert activation_scales(chunked.path) == pytest.approx(activation_scales(whole.path))


def test_failed_calibration_leaves_nothing_that_looks_cached(mlp, tmp_path):
    cache = tmp_path / "cache"
    bad = [{"input": np.zeros((2, 16), np.float32)}, {"input": np.zeros((2, 7), np.float32)}]
    with pytest.raises(ModelError, match="mlp.onnx") as e:
        prepare_int8(mlp, bad, scheme="onnxruntime", method="minmax", data_hash="x", cache_dir=cache)
    assert "\n" not in str(e.value)
    assert not list(cache.rglob("*.onnx")) and not list(cache.glob(".tmp-*"))
    good = [{"input": np.ones((2, 16), np.float32)}]
    assert not prepare_int8(mlp, good, scheme="onnxruntime", method="minmax", data_hash="x", cache_dir=cache).cache_hit


@pytest.mark.parametrize("method", ["entropy", "percentile", "distribution"])
def test_histogram_methods_produce_runnable_models(cnn, tmp_path, method):
    prepared = prepare_int8(
        cnn, batches("image", (1, 8, 8)), scheme="tensorrt", method=method, data_hash="m", cache_dir=tmp_path
    )
    output = run(prepared.path, batches("image", (1, 8, 8), count=1)[0])
    assert output.shape == (8, 10) and np.isfinite(output).all()


def test_symbolic_shape_failure_retries_and_says_so(tmp_path):
    # A Reshape to a runtime shape of unknown length defeats symbolic shape inference.
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w"], ["h"], name="fc", transB=1),
            helper.make_node("Reshape", ["h", "shape"], ["out"], name="reshape"),
        ],
        "g",
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, None])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "reshape.onnx"
    onnx.save_model(model, str(path))
    feeds = [{"input": rng.standard_normal((4, 16)).astype(np.float32), "shape": np.array([-1, 8])}]
    prepared = prepare_int8(
        inspect_model(path), feeds, scheme="tensorrt", method="minmax", data_hash="s", cache_dir=tmp_path / "c"
    )
    assert any("symbolic shape inference failed" in note for note in prepared.notes)
    assert nodes(onnx.load(str(prepared.path)), "QuantizeLinear")


def test_bad_calibration_and_options(mlp, tmp_path):
    kwargs = dict(method="minmax", data_hash="x", cache_dir=tmp_path)
    with pytest.raises(DataError, match="no calibration data"):
        prepare_int8(mlp, [], scheme="onnxruntime", **kwargs)
    with pytest.raises(DataError, match="input names"):
        prepare_int8(mlp, [{"x": np.zeros((1, 16), np.float32)}], scheme="onnxruntime", **kwargs)
    with pytest.raises(ConfigError, match="scheme"):
        prepare_int8(mlp, batches("input", (16,)), scheme="qnn", **kwargs)
    with pytest.raises(ConfigError, match="calibration method"):
        prepare_int8(mlp, batches("input", (16,)), scheme="tensorrt", method="magic", data_hash="x", cache_dir=tmp_path)


def _finished_pid() -> int:
    """The process id of a process that has ended (not yet used again, in all likelihood)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_using_the_cache_removes_working_folders_of_ended_runs_and_keeps_live_ones(mlp, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    host = cache._host()
    ended = cache_dir / f".tmp-{host}-{_finished_pid()}-abc"
    live = cache_dir / f".tmp-{host}-{os.getpid()}-def"  # this very process: a run still preparing
    other_host = cache_dir / f".tmp-elsewhere-{_finished_pid()}-ghi"  # on a shared disk: not ours to judge
    ancient = cache_dir / ".tmp-x1y2z3"  # older trtci's name, days old
    for folder in (ended, live, other_host, ancient):
        folder.mkdir()
        (folder / "preprocessed.onnx").write_bytes(b"partial")
    days_ago = time.time() - 3 * 24 * 3600
    os.utime(ancient, (days_ago, days_ago))
    prepare_fp32(mlp, cache_dir)
    assert sorted(p.name for p in cache_dir.glob(".tmp-*")) == sorted([live.name, other_host.name])


def test_kill_9_during_calibration_leaves_a_working_folder_the_next_run_removes(tmp_path):
    small_cnn(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "c.npz", image=rng.standard_normal((8000, 1, 8, 8)).astype(np.float32))
    run = [sys.executable, "-m", "trtci.cli", "run", "--model", "cnn.onnx", "--cache-dir", "cache", "--db", "r.db"]
    run += ["--duration", "0.02", "--warmup", "0"]
    calibrating = subprocess.Popen(
        [*run, "--precision", "fp32,int8", "--calibration-data", "c.npz", "--calibration-method", "entropy"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prepared = tmp_path / "cache" / "prepared"
    deadline = time.monotonic() + 120
    try:  # the quantizer's input is written once calibration starts: kill it then
        while not list(prepared.glob(".tmp-*/preprocessed.onnx")) and calibrating.poll() is None:
            assert time.monotonic() < deadline, "calibration never started"
            time.sleep(0.002)
    finally:
        calibrating.kill()
        calibrating.wait(timeout=60)
    assert calibrating.returncode == -signal.SIGKILL, "the run ended before it could be killed while calibrating"
    assert list(prepared.glob(".tmp-*")) != []
    again = subprocess.run([*run, "--precision", "fp32"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert list(prepared.glob(".tmp-*")) == []
def test_int8_runs_the_quantizers_full_path_with_sympy(mlp, tmp_path):
    """sympy is a dependency (pyproject.toml, requirements/action.txt): ONNX Runtime's symbolic shape inference then
    runs, and INT8 is made without the degraded-path note."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    dependencies = (root / "pyproject.toml").read_text().split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"sympy>=' in dependencies
    assert "\nsympy==" in (root / "requirements" / "action.txt").read_text()
    pytest.importorskip("sympy", reason="sympy, a trtci dependency, is not installed in this environment")
    calibration = batches("input", (16,))
    prepared = prepare_int8(
        mlp, calibration, scheme="onnxruntime", method="minmax", data_hash="s", cache_dir=tmp_path / "cache"
    )
    assert prepared.notes == ()

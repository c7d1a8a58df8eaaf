"""The onnxruntime-cuda backend: its decisions on plain data everywhere, a real CLI refusal without a GPU, and real
GPU runs (marker `gpu`) where onnxruntime-gpu and an NVIDIA GPU are present."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.models import mlp_classifier
from trtci.backends.cuda_timing import GpuProperties
from trtci.backends.onnxruntime_cuda.probe import (
    PROVIDER,
    SHADOWED,
    count_placement,
    device_info,
    graph_plan,
    provider_load_error,
    short,
    why_no_cuda_provider,
)
from trtci.backends.registry import get_backend
from trtci.config import parse_config
from trtci.errors import BackendUnavailable

H200 = GpuProperties(0, "NVIDIA H200", "9.0", 150_000_000_000, 132, "13.0", "13.0")


def test_why_there_is_no_cuda_provider_names_the_fix():
    assert why_no_cuda_provider("1.31.1", [PROVIDER, "CPUExecutionProvider"], {"onnxruntime-gpu"}) == ""
    # A CPU-only onnxruntime installed beside onnxruntime-gpu: both own the `onnxruntime` module and collide.
    assert why_no_cuda_provider("1.30.0", ["CPUExecutionProvider"], {"onnxruntime", "onnxruntime-gpu"}) == SHADOWED
    assert "pip install 'trtci[cuda]'" in why_no_cuda_provider("1.32.0", ["CPUExecutionProvider"], {"onnxruntime"})
    assert "--force-reinstall onnxruntime-gpu" in why_no_cuda_provider("1.31.1", [], {"onnxruntime-gpu"})
    # Collision with both present but the GPU build winning is no problem.
    assert why_no_cuda_provider("1.31.1", [PROVIDER], {"onnxruntime", "onnxruntime-gpu"}) == ""


def test_a_provider_library_that_cannot_load_is_named(tmp_path):
    (tmp_path / "capi").mkdir()
    assert provider_load_error(tmp_path) == ""  # no provider library: the session's providers are checked instead
    (tmp_path / "capi" / "libonnxruntime_providers_cuda.so").write_bytes(b"not an ELF file, " * 64)
    reason = provider_load_error(tmp_path)
    assert reason == "invalid ELF header"


def test_nodes_are_counted_per_provider_from_a_real_profile(tmp_path):
    model = mlp_classifier(tmp_path / "mlp.onnx")
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    session.run(None, {"input": np.zeros((2, 16), np.float32)})
    events = json.loads(Path(session.end_profiling()).read_text())
    nodes = len(onnx.load(str(model)).graph.node)
    counts = count_placement(events)
    assert counts == {"CPUExecutionProvider": counts["CPUExecutionProvider"]}
    assert 1 <= counts["CPUExecutionProvider"] <= nodes  # ORT may fuse nodes before it runs them


def test_cuda_graphs_only_when_asked_for_and_the_whole_model_is_on_the_gpu():
    assert graph_plan(True, 0) == (True, "CUDA graph (ONNX Runtime's enable_cuda_graph)")
    on, note = graph_plan(True, 3)
    assert not on and "3 node(s) run on the CPU" in note
    assert graph_plan(False, 0) == (False, "plain enqueue (CUDA graphs off)")


def test_errors_are_one_short_line_and_out_of_memory_says_what_to_do():
    long = RuntimeError("[ONNXRuntimeError] : 1 : FAIL : " + "x" * 2000 + "\n second line")
    text = short(long)
    assert "\n" not in text and len(text) <= 243 and text.endswith("...")
    oom = RuntimeError("CUDA failure 2: out of memory ; GPU=0 ; hostname=h ; file=cuda_allocator.cc")
    assert short(oom, batch=4096) == "out of GPU memory at batch 4096: use a smaller batch or free the GPU"


def test_the_device_identity_is_the_gpu_model_and_versions_not_its_index():
    first = device_info(H200, "1.31.1")
    second = device_info(GpuProperties(1, *list(H200.__dict__.values())[1:]), "1.31.1")
    assert first.kind == "gpu" and first.name == "NVIDIA H200"
    assert first.details["compute"] == "9.0" and first.details["onnxruntime"] == "1.31.1"
    assert first.id == second.id  # identical GPUs share one history
    other = device_info(GpuProperties(0, "NVIDIA L4", "8.9", 24_000_000_000, 58, "13.0", "13.0"), "1.31.1")
    assert other.id != first.id


def test_without_the_cuda_provider_the_backend_is_unavailable_in_one_line(tmp_path):
    if PROVIDER in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider: the refusal cannot be shown here")
    config = parse_config({"models": [{"path": "m.onnx", "precisions": ["fp32"]}]}, "test", tmp_path)
    with pytest.raises(BackendUnavailable, match="onnxruntime-cuda: onnxruntime .* CPU-only build"):
        get_backend("onnxruntime-cuda", config)
    assert get_backend("auto", config).name in ("onnxruntime", "tensorrt", "tensorrt-rtx")
    mlp_classifier(tmp_path / "m.onnx")
    run = subprocess.run(
        [sys.executable, "-m", "trtci.cli", "run", "--model", "m.onnx", "--precision", "fp32",
         "--backend", "onnxruntime-cuda", "--duration", "0.05"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 3, run.stderr
    [line] = run.stderr.strip().splitlines()
    assert "onnxruntime-cuda" in line and "trtci[cuda]" in line


def _cuda_backend(tmp_path: Path):
    try:
        config = parse_config({"models": [{"path": "m.onnx", "precisions": ["fp32"]}]}, "test", tmp_path)
        return get_backend("onnxruntime-cuda", config)
    except BackendUnavailable as e:
        pytest.skip(f"needs onnxruntime-gpu and an NVIDIA GPU: {e}")


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", [True, False], ids=["cuda-graph", "plain"])
def test_a_real_gpu_runs_the_model_like_the_cpu_and_times_it_with_cuda_events(tmp_path, graphs):
    from trtci.backends.base import LoadRequest
    from trtci.config import BenchSettings

    backend = _cuda_backend(tmp_path)
    model = mlp_classifier(tmp_path / "m.onnx")
    feeds = {"input": np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)}
    request = LoadRequest(model, "fp32", 8, {"input": (8, 16)}, options={"cuda_graphs": graphs})
    session = backend.load(request)
    try:
        expected = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)
        got = session.run(feeds)
        # TF32 (ONNX Runtime CUDA's default on Ampere and later, as TensorRT's) rounds FP32 matmuls to 10 mantissa bits.
        np.testing.assert_allclose(next(iter(got.values())), expected[0], rtol=1e-2, atol=5e-3)
        result = session.benchmark(feeds, BenchSettings(warmup_ms=50, duration_s=0.3), 8)
    finally:
        session.close()
    assert result.timer == "cuda-event" and result.stats.iterations >= 10
    assert session.build is not None and session.build["cpu_nodes"] == 0
    assert result.extra["trtexec"]["cuda_graph"] is graphs


@pytest.mark.gpu
def test_nodes_the_cuda_provider_cannot_place_are_counted_and_turn_graphs_off(tmp_path):
    """Det has no CUDA kernel in ONNX Runtime: it runs on the CPU, and the session says so instead of graphing."""
    from onnx import TensorProto, helper

    from trtci.backends.base import LoadRequest

    backend = _cuda_backend(tmp_path)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).flatten().tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Det", ["m"], ["y"])],
        "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
        [weight],
    )
    path = tmp_path / "det.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every ONNX Runtime in use reads
    onnx.save_model(model, str(path))
    session = backend.load(LoadRequest(path, "fp32", 4, {"x": (4, 3, 3)}, options={"cuda_graphs": True}))
    try:
        x = np.random.default_rng(0).standard_normal((4, 3, 3)).astype(np.float32)
        np.testing.assert_allclose(session.run({"x": x})["y"], np.linalg.det(x), rtol=1e-3, atol=1e-4)
    finally:
        session.close()
    assert session.build["nodes_by_provider"].get("CPUExecutionProvider", 0) >= 1
    assert session.build["cpu_nodes"] >= 1 and session.build["cuda_graph"] is False
    assert "run on the CPU" in session.build["graph_note"]

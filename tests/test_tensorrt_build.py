"""The TensorRT backends' build side, for real with TensorRT for RTX (no GPU needed), and GPU runs where possible.

Models are the tests' tiny ONNX networks, prepared by trtci.pipeline.prepare (FP16, TensorRT-scheme Q/DQ INT8)
exactly as the pipeline prepares them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import tensorrt_rtx_bindings as trt  # part of trtci[test]: it builds engines without a GPU
from onnx import TensorProto, helper

from tests.models import small_cnn
from trtci.backends import cuda_timing
from trtci.backends.base import LoadRequest
from trtci.backends.tensorrt import TensorRTBackend, rtx_can_run_on
from trtci.backends.tensorrt.engine_cache import EngineCache, read_plan_header
from trtci.backends.tensorrt.session import BuildOnlySession
from trtci.config import BenchSettings, TensorRTOptions
from trtci.errors import BackendError, BackendUnavailable, ConfigError
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import prepare_fp16, prepare_int8

RANGES = {"image": ((1, 1, 8, 8), (4, 1, 8, 8), (8, 1, 8, 8))}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    fp32 = small_cnn(root / "cnn.onnx")
    info = inspect_model(fp32)
    rng = np.random.default_rng(0)
    calibration = [{"image": rng.normal(size=(4, 1, 8, 8)).astype(np.float32)} for _ in range(4)]
    int8 = prepare_int8(
        info, calibration, scheme="tensorrt", method="minmax", data_hash="seed0", cache_dir=root / "prepared"
    )
    return {"fp32": fp32, "fp16": prepare_fp16(info, root / "prepared").path, "int8": int8.path}


@pytest.fixture(scope="module")
def rtx():
    return TensorRTBackend("tensorrt-rtx", TensorRTOptions(compute_capabilities=["SM86"]))


def _request(model: Path, precision: str = "fp32", cache: Path | None = None, **options) -> LoadRequest:
    return LoadRequest(model, precision, 4, {"image": (4, 1, 8, 8)}, RANGES, cache, options)


def _onnx_ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_backend_identity_and_build_only_device(rtx):
    assert rtx.name == "tensorrt-rtx" and rtx.int8_scheme == "tensorrt"
    device = rtx.device()
    assert device.details["tensorrt"] == trt.__version__
    if not rtx.can_run:
        assert device.details["build_only"] is True and device.details["targets"] == ["8.6"]
        assert rtx.why_not_run


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_each_precision_parses_and_builds_with_a_profile(rtx, models, tmp_path: Path, precision: str):
    if rtx.can_run:
        pytest.skip("a supported GPU is present: the GPU tests below cover it")
    session = rtx.load(_request(models[precision], precision, tmp_path))
    build = session.build
    assert isinstance(session, BuildOnlySession)
    assert build["tensorrt_flavor"] == "tensorrt-rtx" and build["tensorrt_version"] == trt.__version__
    assert build["target_compute"] == ["8.6"] and build["build_only"] is True
    assert build["profiles"] == {"image": [list(s) for s in RANGES["image"]]}
    assert build["layers"] >= len(_onnx_ops(models["fp32"])) - 1
    qdq_nodes = sum(op in ("QuantizeLinear", "DequantizeLinear") for op in _onnx_ops(models[precision]))
    assert build["qdq_layers"] == qdq_nodes
    assert (build["qdq_layers"] > 0) == (precision == "int8")
    plan = Path(build["engine_path"]).read_bytes()
    assert len(plan) == build["plan_bytes"] and build["build_time_s"] > 0
    assert read_plan_header(plan).flavor == "tensorrt-rtx"
    with pytest.raises(BackendUnavailable, match="build-only mode"):
        session.run({"image": np.zeros((4, 1, 8, 8), np.float32)})
    with pytest.raises(BackendUnavailable, match="build-only mode"):
        session.benchmark({"image": np.zeros((4, 1, 8, 8), np.float32)}, BenchSettings(), 4)


def test_second_load_reuses_the_cached_engine_and_a_corrupt_one_is_rebuilt(rtx, models, tmp_path: Path):
    first = rtx.load(_request(models["fp16"], "fp16", tmp_path)).build
    second = rtx.load(_request(models["fp16"], "fp16", tmp_path)).build
    assert first["cache"] == "built" and second["cache"] == "reused"
    assert second["engine_path"] == first["engine_path"] and second["plan_bytes"] == first["plan_bytes"]
    Path(first["engine_path"]).write_bytes(b"\0" * 64)
    third = rtx.load(_request(models["fp16"], "fp16", tmp_path)).build
    assert third["cache"] == "built" and "not a TensorRT plan" in third["cache_reason"]
    assert Path(third["engine_path"]).stat().st_size == first["plan_bytes"]


def test_a_reused_engine_is_the_bytes_the_cache_verified(rtx, models, tmp_path: Path, monkeypatch):
    first = rtx.load(_request(models["fp16"], "fp16", tmp_path)).build
    engine = Path(first["engine_path"])
    verified = engine.read_bytes()
    lookup = EngineCache.lookup

    def lookup_then_replace(self, expected, target):
        decision = lookup(self, expected, target)
        engine.write_bytes(b"\0" * len(verified))  # another process replaces the file after the check
        return decision

    plans: list[bytes] = []
    plan_of = TensorRTBackend._plan

    def record_plan(self, *args):
        plan, build = plan_of(self, *args)
        plans.append(plan)
        return plan, build

    monkeypatch.setattr(EngineCache, "lookup", lookup_then_replace)
    monkeypatch.setattr(TensorRTBackend, "_plan", record_plan)
    second = rtx.load(_request(models["fp16"], "fp16", tmp_path)).build
    assert second["cache"] == "reused" and plans == [verified]


def test_a_cuda_error_while_probing_the_gpu_is_a_reason_not_a_crash(monkeypatch):
    def driver_mismatch() -> int:  # what check() raises for a CUDA error other than "no GPU"
        raise BackendError("cudaGetDeviceCount failed: cudaErrorSystemDriverMismatch")

    monkeypatch.setattr(cuda_timing, "gpu_count", driver_mismatch)
    backend = TensorRTBackend("tensorrt-rtx", TensorRTOptions(compute_capabilities=["SM86"]))
    assert not backend.can_run and "cudaErrorSystemDriverMismatch" in backend.why_not_run
    assert backend.build_targets == ["SM86"]


def test_other_targets_get_their_own_engine_and_say_why(models, tmp_path: Path):
    ampere = TensorRTBackend("tensorrt-rtx", TensorRTOptions(compute_capabilities=["SM86"]))
    if ampere.can_run:
        pytest.skip("with a supported GPU the target is the GPU present, not the configured list")
    ada = TensorRTBackend("tensorrt-rtx", TensorRTOptions(compute_capabilities=["SM89"]))
    built = ampere.load(_request(models["fp32"], cache=tmp_path)).build
    other = ada.load(_request(models["fp32"], cache=tmp_path)).build
    assert other["cache"] == "built" and other["engine_path"] != built["engine_path"]
    assert "compute 8.6" in other["cache_reason"] and "8.9" in other["cache_reason"]
    assert len(list(tmp_path.glob("*.plan"))) == 2


def test_parser_error_names_the_node_and_tensorrts_message(rtx, tmp_path: Path):
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery_node")],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "bad.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(BackendError, match=r"cannot parse bad\.onnx: node 'mystery_node' \(NoSuchOp\): .*Plugin"):
        rtx.load(LoadRequest(path, "fp32", 1, {"x": (1, 4)}))


def test_failed_build_reports_the_loggers_errors(rtx, models):
    with pytest.raises(BackendError, match="failed to build cnn.onnx: .*workspace"):
        rtx.load(_request(models["fp32"], workspace_mb=1, optimization_level=0))


def test_invalid_profile_is_a_backend_error_with_tensorrts_reason(rtx, models):
    reversed_ranges = {"image": tuple(reversed(RANGES["image"]))}
    request = LoadRequest(models["fp32"], "fp32", 4, {"image": (4, 1, 8, 8)}, reversed_ranges)
    with pytest.raises(BackendError, match="isValid"):
        rtx.load(request)


def test_dynamic_input_without_a_shape_is_a_backend_error(rtx, models):
    with pytest.raises(BackendError, match="input 'image' has dynamic shape"):
        rtx.load(LoadRequest(models["fp32"], "fp32", 4, {}))


def test_options_are_applied_or_rejected(rtx, models):
    session = rtx.load(_request(models["fp32"], optimization_level=1, profiling_verbosity="none", workspace_mb=512))
    assert session.build["plan_bytes"] > 0
    ignored = rtx.load(_request(models["fp32"], hardware_compatibility="ampere_plus")).build
    assert any("hardware_compatibility is ignored" in note for note in ignored["notes"])
    with pytest.raises(ConfigError, match="optimization_level"):
        rtx.load(_request(models["fp32"], optimization_level=9))
    bad_target = TensorRTBackend("tensorrt-rtx", TensorRTOptions(compute_capabilities=["SM99"]))
    if not bad_target.can_run:
        with pytest.raises(ConfigError, match="'SM99' is not a target; choose from .*SM86"):
            bad_target.load(_request(models["fp32"]))


def test_rtx_runs_only_on_rtx_class_gpus():
    assert rtx_can_run_on("8.6") and rtx_can_run_on("8.9") and rtx_can_run_on("12.0") and rtx_can_run_on("7.5")
    assert not rtx_can_run_on("9.0") and not rtx_can_run_on("10.0") and not rtx_can_run_on("7.0")


def test_missing_flavor_says_how_to_install():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match=r"pip install 'trtci\[tensorrt\]'.*trtci doctor"):
            TensorRTBackend("tensorrt")
    with pytest.raises(ConfigError, match="unknown TensorRT flavor"):
        TensorRTBackend("tensorrt-lite")


def _runnable_backends() -> list:
    found = []
    for flavor in ("tensorrt", "tensorrt-rtx"):
        try:
            backend = TensorRTBackend(flavor)
        except BackendUnavailable:
            continue
        if backend.can_run:
            found.append(backend)
    return found


RUNNABLE = _runnable_backends()


@pytest.mark.gpu
@pytest.mark.skipif(not RUNNABLE, reason="needs an NVIDIA GPU with a TensorRT runtime that supports it")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_runs_and_agrees_with_onnxruntime(models, tmp_path: Path, precision: str):
    import onnxruntime as ort

    feeds = {"image": np.random.default_rng(1).normal(size=(4, 1, 8, 8)).astype(np.float32)}
    reference = ort.InferenceSession(str(models["fp32"]), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for backend in RUNNABLE:
        session = backend.load(_request(models[precision], precision, tmp_path))
        try:
            outputs = session.run(feeds)
            np.testing.assert_allclose(outputs["logits"], reference, rtol=2e-2, atol=2e-2)
            result = session.benchmark(feeds, BenchSettings(warmup_ms=10, duration_s=0.2), batch=4)
            assert result.timer == "cuda-event" and result.stats.iterations >= 10
            assert "gpu_compute" in result.extra["trtexec"]["stats"]
            assert session.build["device_memory_bytes"] >= 0 and session.build["engine_layers"] > 0
            assert Path(session.build["inspector"]).is_file()
        finally:
            session.close()

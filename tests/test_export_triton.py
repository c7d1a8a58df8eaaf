"""`trtci export triton` and `trtci export trtexec` on real runs: ONNX Runtime on the CPU, and TensorRT for RTX
plans built here (no GPU needed) for two compute capabilities as a GPU matrix's legs would build them.

Every config.pbtxt is parsed into Triton's own `inference.ModelConfig` (tests/data/triton/model_config_pb2.py)."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format

from tests.models import small_cnn
from trtci.cli import cli
from trtci.config import parse_config
from trtci.errors import DataError
from trtci.pipeline import run as pipeline
from trtci.pipeline.export_triton import load_runs, triton_repository, write_repository
from trtci.report.triton import TritonModel, TritonTensor, config_pbtxt
from trtci.report.trtexec_command import trtexec_command
from trtci.results import RunContext
from trtci.store.runfile import write_runfile

FAST_BENCH = {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5}
_SPEC = importlib.util.spec_from_file_location(
    "triton_model_config_pb2", Path(__file__).parent / "data" / "triton" / "model_config_pb2.py"
)
model_config_pb2 = importlib.util.module_from_spec(_SPEC)  # type: ignore[arg-type]
_SPEC.loader.exec_module(model_config_pb2)  # type: ignore[union-attr]


def triton_config(path: Path):
    """The file parsed as Triton parses it: text_format refuses unknown fields, types and enum values."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def context(run_id: str) -> RunContext:
    return RunContext(run_id=run_id, started_at=f"2026-11-28T08:00:0{run_id[-1]}Z", branch="main")


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ort")
    small_cnn(root / "cnn.onnx")
    np.savez(root / "val.npz", image=np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32))
    model = {"path": "cnn.onnx", "precisions": ["fp32", "fp16"], "batch_sizes": [1, 4]}
    model["validation"] = {"data": "val.npz"}
    data = {"models": [model], "backends": ["onnxruntime"], "bench": FAST_BENCH, "cache_dir": "cache"}
    config = parse_config(data, "test", root)
    pipeline.run(config, context("ort1"))
    return root


@pytest.fixture(scope="module")
def rtx_matrix(tmp_path_factory: pytest.TempPathFactory):
    """Two legs of a matrix: TensorRT for RTX plans for compute 8.6 and 8.9, each leg's run file in its folder."""
    root = tmp_path_factory.mktemp("rtx")
    small_cnn(root / "cnn.onnx")
    for leg, target in (("ampere", "SM86"), ("ada", "SM89")):
        model = {"path": "cnn.onnx", "precisions": ["fp32", "fp16"], "batch_sizes": [4]}
        data = {
            "models": [model], "backends": ["tensorrt-rtx"], "bench": FAST_BENCH, "cache_dir": f"cache-{leg}",
            "database": f"{leg}.db", "tensorrt": {"compute_capabilities": [target]},
        }  # fmt: skip
        result = pipeline.run(parse_config(data, "test", root), context(f"{leg}1"))
        if any(not s.build or not s.build.get("build_only") for s in result.series):
            pytest.skip("a GPU TensorRT for RTX runs on is present: the matrix here is of build-only legs")
        write_runfile(result, root / "bundles" / leg)
    return root


def test_onnx_model_repository_parses_as_tritons_model_config(onnx_run: Path, tmp_path: Path):
    runs = load_runs([], onnx_run / "trtci.db")
    repository = triton_repository(runs, {"cnn": onnx_run / "cnn.onnx"}, "onnxruntime", cache_dir=onnx_run / "cache")
    written = write_repository(repository, tmp_path / "repo")
    assert sorted(p.parent.name for p in written) == ["cnn_fp16", "cnn_fp32"]
    config = triton_config(tmp_path / "repo" / "cnn_fp32" / "config.pbtxt")
    assert config.name == "cnn_fp32" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("image", model_config_pb2.TYPE_FP32, [1, 8, 8])
    ]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [10])]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (tmp_path / "repo" / "cnn_fp32" / "1" / "model.onnx").read_bytes() == (onnx_run / "cnn.onnx").read_bytes()
    text = (tmp_path / "repo" / "cnn_fp16" / "config.pbtxt").read_text()
    assert "# batch 4: median " in text and "accuracy: cosine " in text and "(passed)" in text


def test_rtx_plans_of_a_matrix_map_each_compute_capability(rtx_matrix: Path, tmp_path: Path):
    out = tmp_path / "repo"
    result = CliRunner().invoke(cli, [
        "export", "triton", str(rtx_matrix / "bundles"), "--model", f"cnn={rtx_matrix / 'cnn.onnx'}",
        "--out", str(out), "--version", "3",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = triton_config(out / "cnn_fp16" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and dict(config.cc_model_filenames) == {
        "8.6": "model_sm86.plan", "8.9": "model_sm89.plan",
    }  # fmt: skip
    assert config.max_batch_size == 0  # the engines were built for batch 4 alone: whole shapes
    assert [list(t.dims) for t in config.input] == [[4, 1, 8, 8]] and [list(t.dims) for t in config.output] == [[4, 10]]
    for plan in ("model_sm86.plan", "model_sm89.plan"):
        assert (out / "cnn_fp16" / "3" / plan).read_bytes()[:4] == b"vtrt"
    text = (out / "cnn_fp16" / "config.pbtxt").read_text()
    assert "not timed (build-only)" in text and "tensorrt_rtx --onnx=cnn.fp16.onnx" in text


def test_a_gpu_of_the_matrix_without_its_plan_is_named(rtx_matrix: Path, tmp_path: Path):
    runs = load_runs([rtx_matrix / "bundles"])
    plans = list((rtx_matrix / "cache-ada").rglob("*.plan"))
    moved = [plan.rename(tmp_path / plan.name) for plan in plans]
    try:
        with pytest.raises(DataError, match=r"cnn_fp32: no engine for build-only compute 8\.9 .*not found"):
            triton_repository(runs, {"cnn": rtx_matrix / "cnn.onnx"}, "tensorrt-rtx")
        found = triton_repository(runs, {"cnn": rtx_matrix / "cnn.onnx"}, "tensorrt-rtx", engine_dirs=[tmp_path])
        assert len(found.models) == 2
    finally:
        for plan, original in zip(moved, plans):
            plan.rename(original)


def test_the_model_must_be_the_one_measured(rtx_matrix: Path, tmp_path: Path):
    other = small_cnn(tmp_path / "cnn.onnx", seed=1)
    with pytest.raises(DataError, match="not the cnn model the run measured"):
        triton_repository(load_runs([rtx_matrix / "bundles"]), {"cnn": other}, "tensorrt-rtx")
    with pytest.raises(DataError, match="pass --model cnn=PATH.onnx"):
        triton_repository(load_runs([rtx_matrix / "bundles"]), {}, "tensorrt-rtx")


def test_names_triton_refuses_are_refused():
    tensor = TritonTensor("x", "float32", (4,))
    model = TritonModel("resnet/v2", "tensorrt_plan", 0, (tensor,), (tensor,), "model.plan")
    with pytest.raises(DataError, match="'resnet/v2' is not a name Triton serves a model under"):
        config_pbtxt(model)
    with pytest.raises(DataError, match="is complex64, which Triton has no data type for"):
        config_pbtxt(TritonModel("m", "tensorrt_plan", 0, (TritonTensor("x", "complex64", (4,)),), (tensor,), "m"))


def test_odd_tensor_names_are_quoted_so_triton_reads_them_back(tmp_path: Path):
    name = 'input:0 "quoted" \\ back'
    model = TritonModel("m", "onnxruntime_onnx", 8, (TritonTensor(name, "int64", (-1, 3)),), (TritonTensor("y", "bool", (1,)),), "model.onnx", comments=("two\nlines",))  # noqa: E501
    path = tmp_path / "config.pbtxt"
    path.write_text(config_pbtxt(model))
    config = triton_config(path)
    assert config.input[0].name == name and config.input[0].data_type == model_config_pb2.TYPE_INT64
    assert path.read_text().startswith("# two\n# lines\n")


def test_trtexec_command_for_each_tensorrt_series(rtx_matrix: Path):
    (run,) = load_runs([rtx_matrix / "bundles" / "ampere"])
    fp16 = next(s for s in run.series if s.key.precision == "fp16")
    command = trtexec_command(fp16, "cnn.fp16.onnx", export_prefix="out/cnn")
    argv = shlex.split(command.line)
    assert argv[:2] == ["tensorrt_rtx", "--onnx=cnn.fp16.onnx"] and "--shapes=image:4x1x8x8" in argv
    assert "--minShapes=image:4x1x8x8" not in argv  # a fixed batch needs no range
    assert {"--useCudaGraph", "--noDataTransfers", "--useSpinWait", "--separateProfileRun"} <= set(argv)
    assert "--exportTimes=out/cnn.timing.json" in argv and "--builderOptimizationLevel=3" in argv
    assert any("compute 8.6" in note for note in command.notes)
    result = CliRunner().invoke(cli, ["export", "trtexec", str(rtx_matrix / "bundles" / "ampere")])
    assert result.exit_code == 0, result.output
    assert result.output.count("\ntensorrt_rtx --onnx=") == 2


def test_trtexec_flags_follow_the_tensorrt_version(rtx_matrix: Path):
    (run,) = load_runs([rtx_matrix / "bundles" / "ampere"])
    series = run.series[0]
    series.key.__dict__.pop("id", None)
    for version, expected, absent in (("10.13.0.35", "--stronglyTyped", "--includeDataTransfers"),
                                      ("11.1.0.5", None, "--stronglyTyped")):  # fmt: skip
        series.build = {**series.build, "tensorrt_flavor": "tensorrt", "tensorrt_version": version,
                        "profiles": {"image": [[1, 1, 8, 8], [4, 1, 8, 8], [8, 1, 8, 8]]}}  # fmt: skip
        argv = trtexec_command(series, "m.onnx").argv
        assert argv[0] == "trtexec" and absent not in argv and (expected is None or expected in argv)
        assert "--minShapes=image:1x1x8x8" in argv and "--maxShapes=image:8x1x8x8" in argv
    assert "--useCudaGraph" not in argv  # 11.x: CUDA graphs and no transfers are trtexec's defaults


def test_cli_export_refuses_in_one_line(tmp_path: Path):
    result = CliRunner().invoke(cli, ["export", "triton", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no such database" in result.stderr and "Traceback" not in result.output

"""The trtci_benchmark fixture, through real pytest runs (pytester) of tiny ONNX models on ONNX Runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.models import OPSET, mlp_classifier
from trtci.backends.onnxruntime import OnnxRuntimeBackend
from trtci.pipeline.ingest import benchmark_run
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import prepare_int8
from trtci.results import RunContext, file_sha256

pytest_plugins = ["pytester"]

ROOT = Path(__file__).parent.parent
PLUGIN = "trtci.pipeline.pytest_plugin"
INNER = "test_timed_with_trtci"  # the test module pytester runs; unlike any module of this suite (imported already)
# A few rounds and a one-round warm-up: --benchmark-max-time is below one call, so --benchmark-min-rounds decides.
FAST = ["--benchmark-max-time=0.000001", "--benchmark-min-rounds=7", "--benchmark-save-data"]


# pytest-benchmark's machine_info runs py-cpuinfo, seconds per session; the fixture's series carry their own device.
MACHINE_INFO = """
def pytest_benchmark_generate_machine_info():
    return {"machine": "x86_64", "python_implementation": "CPython", "python_version": "3", "cpu": {"brand_raw": "CPU"}}
"""


def context(run_id: str = "r1") -> RunContext:
    return RunContext(run_id=run_id, started_at="2026-11-27T08:00:00Z", branch="main")


def run_benchmarks(pytester: pytest.Pytester, source: str, *args: str) -> tuple[pytest.RunResult, dict]:
    """Run pytest on `source` in the pytester folder; the result and the --benchmark-json file."""
    pytester.makepyfile(**{INNER: source})
    pytester.makeconftest(MACHINE_INFO)
    # Where trtci is installed the entry point loads the plugin; a source checkout names it (twice is an error).
    installed = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", PLUGIN]
    # Hypothesis' plugin imports hypothesis at each session's end, a second every in-process run: not needed here.
    quiet = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    result = pytester.runpytest(*plugin, *quiet, "--benchmark-json=out.json", *FAST, *args)
    out = pytester.path / "out.json"
    text = out.read_text() if out.is_file() else ""
    return result, json.loads(text) if text else {}


def by_name(raw: dict) -> dict[str, dict]:
    return {b["name"]: b for b in raw["benchmarks"]}


def symbolic_model(path: Path) -> Path:
    """Relu over input "tokens" float32 [N, seq]: a dim other than the batch that only the user can size."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["tokens"], ["out"])],
        "symbolic",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", "seq"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", "seq"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


TWO_PRECISIONS = """
def test_fp32(trtci_benchmark):
    outputs = trtci_benchmark("mlp.onnx", batch=4)
    assert outputs["logits"].shape == (4, 10)

def test_fp16(trtci_benchmark):
    outputs = trtci_benchmark("mlp.onnx", precision="fp16", batch=2)
    assert outputs["logits"].shape == (2, 10)
"""


def test_extra_info_records_what_was_timed_and_ingest_keys_series_by_it(pytester):
    model = mlp_classifier(pytester.path / "mlp.onnx")
    result, raw = run_benchmarks(pytester, TWO_PRECISIONS)
    result.assert_outcomes(passed=2)
    device = OnnxRuntimeBackend().device()
    benchmarks = by_name(raw)
    for name, precision, batch in (("test_fp32", "fp32", 4), ("test_fp16", "fp16", 2)):
        info = benchmarks[name]["extra_info"]["trtci"]
        assert info["model"] == "mlp" and info["model_sha256"] == file_sha256(model)
        assert (info["precision"], info["batch"], info["backend"], info["quantization"]) == (
            precision,
            batch,
            "onnxruntime",
            "",
        )
        assert info["device"] == {
            "kind": device.kind,
            "name": device.name,
            "details": json.loads(json.dumps(device.details)),
        }
        assert info["options"] == {"threads": 0, "shapes": {"input": [batch, 16]}}
        assert benchmarks[name]["stats"]["rounds"] == 7  # --benchmark-min-rounds, as max-time is below one call

    run = benchmark_run(pytester.path / "out.json", context())
    keys = {s.key.model: s.key for s in run.series}
    fp16 = keys[f"{INNER}.py::test_fp16"]
    assert (fp16.model_hash, fp16.precision, fp16.batch, fp16.backend) == (file_sha256(model), "fp16", 2, "onnxruntime")
    # the same device id as `trtci run` records for ONNX Runtime here, registered with the run
    assert fp16.device_id == device.id and [d.id for d in run.devices] == [device.id]
    assert keys[f"{INNER}.py::test_fp32"].id != fp16.id
    assert len(run.series[0].bench.samples_ms) == 7


SAME_TEST = """
def test_mlp(trtci_benchmark):
    trtci_benchmark("mlp.onnx")
"""


def test_a_changed_model_file_is_a_new_series(pytester):
    def series_key():
        result, _ = run_benchmarks(pytester, SAME_TEST)
        result.assert_outcomes(passed=1)
        return benchmark_run(pytester.path / "out.json", context()).series[0].key

    mlp_classifier(pytester.path / "mlp.onnx", seed=0)
    first, again = series_key(), series_key()
    mlp_classifier(pytester.path / "mlp.onnx", seed=1)
    changed = series_key()
    assert first.id == again.id  # comparable from run to run
    assert changed.id != first.id and changed.model_hash != first.model_hash and changed.model == first.model


OUTPUTS = """
import numpy as np
import onnxruntime as ort

FEEDS = {"input": np.random.default_rng(3).standard_normal((3, 16)).astype(np.float32)}

def reference():
    session = ort.InferenceSession("mlp.onnx", providers=["CPUExecutionProvider"])
    return session.run(["logits"], FEEDS)[0]

def test_fp32_outputs(trtci_benchmark):
    outputs = trtci_benchmark("mlp.onnx", feeds=FEEDS)
    np.testing.assert_array_equal(outputs["logits"], reference())

def test_fp16_outputs(trtci_benchmark):
    outputs = trtci_benchmark("mlp.onnx", feeds=FEEDS, precision="fp16")
    assert outputs["logits"].dtype == np.float32  # FP16 conversion keeps the model's IO types
    np.testing.assert_allclose(outputs["logits"], reference(), rtol=1e-2, atol=1e-2)
    assert not np.array_equal(outputs["logits"], reference())  # FP16 math really ran

@pytest.mark.benchmark(min_rounds=4)
def test_marker_rounds(trtci_benchmark):
    trtci_benchmark("mlp.onnx", feeds=FEEDS)

def test_explicit_rounds(trtci_benchmark):
    trtci_benchmark("mlp.onnx", feeds=FEEDS, rounds=3, warmup_rounds=0)
"""


def test_outputs_are_the_models_and_rounds_follow_pytest_benchmark(pytester):
    mlp_classifier(pytester.path / "mlp.onnx")
    result, raw = run_benchmarks(pytester, "import pytest\n" + OUTPUTS)
    result.assert_outcomes(passed=4)
    benchmarks = by_name(raw)
    assert benchmarks["test_fp32_outputs"]["extra_info"]["trtci"]["batch"] == 3  # taken from the feeds
    assert benchmarks["test_marker_rounds"]["stats"]["rounds"] == 4  # the test's marker beats the command line
    assert benchmarks["test_explicit_rounds"]["stats"]["rounds"] == 3


SYMBOLIC = """
def test_missing_dim(trtci_benchmark):
    trtci_benchmark("seq.onnx", batch=2)

def test_given_dim(trtci_benchmark):
    outputs = trtci_benchmark("seq.onnx", shapes={"tokens": (2, 7)})
    assert outputs["out"].shape == (2, 7)
"""


def test_a_symbolic_dim_without_a_size_fails_with_one_line(pytester):
    symbolic_model(pytester.path / "seq.onnx")
    result, raw = run_benchmarks(pytester, SYMBOLIC)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "ConfigError: seq.onnx: input 'tokens' dim 1 ('seq') is symbolic; give its size with "
            "shapes={'tokens': (2, ...)} or pass feeds"
        ]
    )
    assert "Traceback" not in result.stdout.str() and "pytest_plugin.py" not in result.stdout.str()
    assert by_name(raw)["test_given_dim"]["extra_info"]["trtci"]["options"]["shapes"] == {"tokens": [2, 7]}


INT8 = """
def test_qdq(trtci_benchmark):
    outputs = trtci_benchmark("qdq.onnx", precision="int8", batch=2)
    assert outputs["logits"].shape == (2, 10)

def test_float_model(trtci_benchmark):
    trtci_benchmark("mlp.onnx", precision="int8")
"""


def test_int8_takes_a_qdq_model_and_never_calibrates(pytester, tmp_path):
    model = mlp_classifier(pytester.path / "mlp.onnx")
    rng = np.random.default_rng(0)
    batches = [{"input": rng.standard_normal((4, 16)).astype(np.float32)} for _ in range(2)]
    prepared = prepare_int8(
        inspect_model(model), batches, scheme="onnxruntime", method="minmax", data_hash="t", cache_dir=tmp_path
    )
    qdq = pytester.path / "qdq.onnx"
    qdq.write_bytes(prepared.path.read_bytes())
    result, raw = run_benchmarks(pytester, INT8)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["ModelError: mlp.onnx: precision='int8' needs a model already quantized to Q/DQ*"])
    info = by_name(raw)["test_qdq"]["extra_info"]["trtci"]
    assert (info["precision"], info["model_sha256"]) == ("int8", file_sha256(qdq))


def test_the_plugin_is_registered_and_imports_light():
    assert f'[project.entry-points.pytest11]\ntrtci = "{PLUGIN}"\n' in (ROOT / "pyproject.toml").read_text()
    # pytest loads it in every session where trtci is installed: no inference runtime at load time
    heavy = ("onnxruntime", "onnx", "tensorrt", "numpy", "trtci.pipeline.run", "trtci.pipeline.plan")
    script = f"import sys, {PLUGIN}; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr

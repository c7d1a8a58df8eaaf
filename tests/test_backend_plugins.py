"""Backends as plugins: a third-party package registers a backend through the `trtci.backends` entry-point group
and `trtci run`, `trtci doctor` and `backend: auto` take it like a built-in one. Also pins the series identity
of the built-in backends, which existing databases depend on.

The plugin is a real installed distribution as far as Python can tell: a package and a `*.dist-info` folder with
METADATA and entry_points.txt in a directory on PYTHONPATH, which is all importlib.metadata reads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.models import mlp_classifier
from trtci.backends.registry import check_names, get_backend, registered
from trtci.config import parse_config
from trtci.errors import ConfigError
from trtci.pipeline.plan import load_request, plan_model, series_options
from trtci.pipeline.prepare import PreparedModel
from trtci.results import stable_hash

ROOT = Path(__file__).resolve().parents[1]

# A backend that runs Gemm and Relu graphs in numpy: no ONNX Runtime, no GPU, nothing of trtci's own backends.
PLUGIN = '''
"""trtci-numpy: runs Gemm/Relu ONNX graphs in numpy."""

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trtci.backends.base import prefer_for_auto
from trtci.backends.measure import measure_host
from trtci.errors import BackendError
from trtci.results import DeviceInfo


def _gemm(inputs, attrs):
    a, b = inputs[0], inputs[1]
    a = a.T if attrs.get("transA") else a
    b = b.T if attrs.get("transB") else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    return y + attrs.get("beta", 1.0) * inputs[2] if len(inputs) > 2 else y


OPS = {"Gemm": _gemm, "Relu": lambda inputs, attrs: np.maximum(inputs[0], 0)}


class NumpySession:
    build = None

    def __init__(self, path):
        self.graph = onnx.load(str(path)).graph
        self.weights = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type not in OPS:
                raise BackendError(f"numpy cannot run {node.op_type} (node {node.name})")

    def run(self, feeds):
        values = {**self.weights, **feeds}
        for node in self.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            values[node.output[0]] = OPS[node.op_type]([values[i] for i in node.input], attrs).astype(np.float32)
        return {o.name: values[o.name] for o in self.graph.output}

    def benchmark(self, feeds, settings, batch, progress=None):
        return measure_host(lambda: self.run(feeds), settings, batch, progress)

    def close(self):
        pass


class NumpyBackend:
    name = "numpy"
    int8_scheme = "onnxruntime"
    validation_only_schemes = ()
    builds_engines = False
    can_run = True
    version = np.__version__
    why_not_run = ""

    def load_options(self, config) -> dict[str, Any]:
        return {}

    def identity_options(self, config) -> dict[str, Any]:
        return {"numpy": np.__version__}

    def device(self):
        return DeviceInfo(kind="cpu", name="numpy", details={"numpy": np.__version__})

    def load(self, request):
        return NumpySession(request.model_path)


def create(config):
    return NumpyBackend()


@prefer_for_auto(1)
def create_preferred(config):
    return NumpyBackend()
'''


def install_plugin(site: Path, entry_points: str, name: str = "trtci_numpy") -> Path:
    """A distribution `name` in `site`: the module trtci_numpy.py and its dist-info with these entry points."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "trtci_numpy.py").write_text(PLUGIN)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[trtci.backends]\n{textwrap.dedent(entry_points).strip()}\n")
    return site


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The numpy plugin installed on sys.path (this process) as backend `numpy`."""
    site = install_plugin(tmp_path / "site", "numpy = trtci_numpy:create")
    monkeypatch.syspath_prepend(str(site))
    return site


def trtci(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The real `trtci` command in a fresh process that has `site` on its PYTHONPATH (wide tables: no wrapping)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "COLUMNS": "400"}
    env.pop("GITHUB_ACTIONS", None)
    command = [sys.executable, "-m", "trtci.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_trtci_run_measures_and_records_a_plugin_backend(plugin: Path, tmp_path: Path):
    work = tmp_path / "work"
    mlp_classifier(work / "mlp.onnx")
    np.savez(work / "val.npz", input=np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32))
    args = ["--model", "mlp.onnx", "--precision", "fp32", "--batch-size", "1,4", "--validation-data", "val.npz"]
    done = trtci(
        plugin, work, "run", *args, "--backend", "numpy,onnxruntime", "--db", "results.db", "--json", "summary.json",
        "--duration", "0.02", "--warmup", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    numpy_results = [r for r in json.loads((work / "summary.json").read_text())["results"] if r["backend"] == "numpy"]
    assert sorted(r["batch"] for r in numpy_results) == [1, 4]
    for result in numpy_results:  # validated against ONNX Runtime's FP32 reference, and timed
        assert result["accuracy"]["passed"] and result["latency_ms"]["median"] > 0
    with sqlite3.connect(work / "results.db") as db:
        backends = {row[0] for row in db.execute("SELECT backend FROM series")}
    assert backends == {"numpy", "onnxruntime"}


def test_an_unknown_backend_fails_before_any_work_and_lists_the_registered_ones(plugin: Path, tmp_path: Path):
    mlp_classifier(tmp_path / "mlp.onnx")
    done = trtci(plugin, tmp_path, "run", "--model", "mlp.onnx", "--precision", "fp32", "--backend", "nunpy")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "backends.0: unknown backend 'nunpy'" in line
    assert "onnxruntime, onnxruntime-cuda, tensorrt, tensorrt-rtx, numpy" in line and "auto" in line
    assert not (tmp_path / "trtci.db").exists()


def test_doctor_lists_the_plugin_and_a_broken_one_with_its_reason(tmp_path: Path):
    site = install_plugin(tmp_path / "site", "numpy = trtci_numpy:create\nbroken = trtci_missing:create")
    done = trtci(site, tmp_path, "doctor")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("│")}
    assert np.__version__ in rows["numpy"] and "yes" in rows["numpy"]
    assert "trtci_missing" in rows["broken"] and "no" in rows["broken"]
    assert {"onnxruntime", "onnxruntime-cuda", "tensorrt", "tensorrt-rtx"} <= set(rows)


def test_auto_backend_runs_tensorrt_where_it_can_else_onnxruntime(tmp_path):
    mlp_classifier(tmp_path / "mlp.onnx")
    config = parse_config(
        {"models": [{"path": "mlp.onnx", "precisions": ["fp32"]}], "backends": ["auto"]}, "t", tmp_path
    )
    backend = get_backend("auto", config)
    assert backend.can_run
    assert backend.name == "onnxruntime" or backend.name.startswith("tensorrt")


def test_auto_takes_the_runnable_backend_of_the_lowest_declared_rank(tmp_path: Path, monkeypatch):
    mlp_classifier(tmp_path / "mlp.onnx")
    config = parse_config({"models": [{"path": "mlp.onnx", "precisions": ["fp32"]}]}, "t", tmp_path)
    site = install_plugin(tmp_path / "site", "numpy = trtci_numpy:create_preferred")
    monkeypatch.syspath_prepend(str(site))
    assert get_backend("auto", config).name == "numpy"  # rank 1 beats TensorRT's 10 and ONNX Runtime's 100


def test_a_name_claimed_twice_is_a_config_error(tmp_path: Path, monkeypatch):
    site = install_plugin(tmp_path / "site", "onnxruntime = trtci_numpy:create")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ConfigError, match="'onnxruntime' is claimed by trtci.backends.onnxruntime:create and by"):
        registered()


def test_check_names_accepts_auto_and_plugins_and_names_the_bad_entry(plugin: Path):
    check_names(["auto", "numpy", "onnxruntime"])
    with pytest.raises(ConfigError, match=r"^backends\.1: unknown backend 'tensorrt-lite'; registered: onnxruntime"):
        check_names(["numpy", "tensorrt-lite"])


# Series identity of the built-in backends, as trtci computed it before backends were plugins: a change here
# gives every series in every existing database a new identity, so none of them is compared with its history.
CALIBRATION_SHA = "0256f0eaf67203b672681466ca1e7509c8e91aba2b8013521654070f6736d5e8"
TENSORRT_SETTINGS = {
    "compute_capabilities": ["SM86"],
    "cuda_graphs": True,
    "device": None,
    "hardware_compatibility": "none",
    "include_data_transfers": False,
    "optimization_level": 4,
    "profiling_verbosity": "detailed",
    "version_compatible": False,
    "workspace_mb": 256,
}
ONNXRUNTIME_IDENTITY = {
    ("fp32", 1): ({"threads": 2, "shapes": {"x": (1, 8)}}, "a42d06e3b2dffbea"),
    ("int8", 4): (
        {"threads": 2, "shapes": {"x": (4, 8)}, "calibration": [CALIBRATION_SHA, "entropy", 2]},
        "5bece62d43fb0ac3",
    ),
}
TENSORRT_IDENTITY = {
    ("fp32", 1): (
        {"threads": 2, "shapes": {"x": (1, 8)}, "tensorrt": TENSORRT_SETTINGS,
         "shape_ranges": {"x": ((1, 4), (1, 8), (1, 16))}},
        "b5391f477d94ce5b",
    ),
    ("int8", 4): (
        {"threads": 2, "shapes": {"x": (4, 8)}, "calibration": [CALIBRATION_SHA, "entropy", 2],
         "tensorrt": TENSORRT_SETTINGS, "shape_ranges": {"x": ((4, 4), (4, 8), (4, 16))}},
        "9aa99bf41d7a5286",
    ),
}  # fmt: skip


def pinned_plan(tmp_path: Path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    np.savez(tmp_path / "calib.npz", x=np.arange(64, dtype=np.float32).reshape(8, 8) / 64)
    model = {
        "path": "relu.onnx",
        "precisions": ["fp32", "int8"],
        "batch_sizes": [1, 4],
        "inputs": [{"name": "x", "shape": [1, 8], "min": [1, 4], "opt": [1, 8], "max": [1, 16]}],
        "calibration": {"data": "calib.npz", "method": "entropy", "batch_size": 2},
    }
    data = {"models": [model], "bench": {"threads": 2}, "tensorrt": {"optimization_level": 4, "workspace_mb": 256}}
    config = parse_config(data, "t", tmp_path)
    return plan_model(config.models[0]), config


def built_in(name: str, config, monkeypatch):
    """The registered backend `name`; `tensorrt`, which needs TensorRT and a GPU, on TensorRT for RTX's module
    and a stand-in GPU (its identity depends on neither)."""
    if name == "tensorrt":
        import trtci.backends.tensorrt as tensorrt
        from trtci.backends.cuda_timing import GpuProperties

        rtx = tensorrt.import_tensorrt("tensorrt-rtx")
        gpu = GpuProperties(0, "Test GPU", "8.6", 2**34, 84, "12.8", "12.8")
        monkeypatch.setattr(tensorrt, "import_tensorrt", lambda flavor: rtx)
        monkeypatch.setattr(tensorrt.TensorRTBackend, "_probe_gpu", lambda self: (gpu, ""))
    return get_backend(name, config)


@pytest.mark.parametrize("name", ["onnxruntime", "tensorrt", "tensorrt-rtx"])
def test_built_in_series_identity_is_what_it_was(tmp_path: Path, monkeypatch, name: str):
    plan, config = pinned_plan(tmp_path)
    backend = built_in(name, config, monkeypatch)
    pinned = ONNXRUNTIME_IDENTITY if name == "onnxruntime" else TENSORRT_IDENTITY
    for (precision, batch), (options, digest) in pinned.items():
        assert series_options(plan, config, precision, backend, batch) == options
        assert stable_hash(options) == digest
    prepared = PreparedModel(plan.info.path, "fp32", "", "", cache_hit=True)
    expected = {"threads": 2} if name == "onnxruntime" else {"threads": 2, **TENSORRT_SETTINGS}
    assert load_request(plan, config, prepared, 4, backend).options == expected

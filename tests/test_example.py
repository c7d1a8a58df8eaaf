"""The bundled digits example (examples/digits/) is consistent with its README and with train.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"
SHIPPED = ("model.onnx", "calibration.npz", "validation.npz")


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(EXAMPLE / "model.onnx")


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    with np.load(EXAMPLE / "calibration.npz") as archive:
        assert sorted(archive.files) == ["image"]
        return archive["image"]


@pytest.fixture(scope="module")
def validation() -> dict[str, np.ndarray]:
    with np.load(EXAMPLE / "validation.npz") as archive:
        assert sorted(archive.files) == ["image", "labels"]
        return {key: archive[key] for key in archive.files}


def shape_of(value: onnx.ValueInfoProto) -> list[str | int]:
    return [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]


def test_model_passes_the_onnx_checker(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


def test_model_inputs_and_outputs_are_as_documented(model: onnx.ModelProto) -> None:
    (image,) = model.graph.input
    (logits,) = model.graph.output
    assert (image.name, image.type.tensor_type.elem_type, shape_of(image)) == (
        "image",
        onnx.TensorProto.FLOAT,
        ["N", 64],
    )
    assert (logits.name, logits.type.tensor_type.elem_type, shape_of(logits)) == (
        "logits",
        onnx.TensorProto.FLOAT,
        ["N", 10],
    )
    assert {node.op_type for node in model.graph.node} == {"Reshape", "Conv", "Relu", "MaxPool", "Flatten", "Gemm"}


def test_data_sets_have_the_documented_types_and_shapes(
    calibration: np.ndarray, validation: dict[str, np.ndarray]
) -> None:
    images, labels = validation["image"], validation["labels"]
    assert calibration.dtype == np.float32 and calibration.ndim == 2 and calibration.shape[1] == 64
    assert images.dtype == np.float32 and images.ndim == 2 and images.shape[1] == 64
    assert labels.dtype == np.int64 and labels.shape == (len(images),)
    assert set(np.unique(labels)) == set(range(10))
    for pixels in (calibration, images):
        assert pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_calibration_and_validation_images_do_not_overlap(
    calibration: np.ndarray, validation: dict[str, np.ndarray]
) -> None:
    calibration_rows = {row.tobytes() for row in calibration}
    validation_rows = {row.tobytes() for row in validation["image"]}
    assert len(calibration_rows) == len(calibration)
    assert calibration_rows.isdisjoint(validation_rows)


def test_onnxruntime_fp32_top1_on_the_validation_set_is_high(validation: dict[str, np.ndarray]) -> None:
    session = ort.InferenceSession(EXAMPLE / "model.onnx", providers=["CPUExecutionProvider"])
    images, labels = validation["image"], validation["labels"]
    (logits,) = session.run(["logits"], {"image": images})
    assert logits.shape == (len(images), 10)
    (single,) = session.run(["logits"], {"image": images[:1]})
    np.testing.assert_allclose(single[0], logits[0], rtol=1e-5, atol=1e-5)
    assert (logits.argmax(axis=1) == labels).mean() >= 0.98


def test_train_script_reproduces_the_shipped_files_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in SHIPPED:
        assert (tmp_path / name).read_bytes() == (EXAMPLE / name).read_bytes(), (
            f"{name} differs from the shipped one; re-run examples/digits/train.py and commit its output"
        )


def test_quick_start_passes_and_advises_a_precision_per_batch(tmp_path: Path) -> None:
    """The README quick start: every precision keeps FP32's top-1, and the summary advises one per batch."""
    import json

    root = EXAMPLE.parent.parent
    outputs = ["--db", str(tmp_path / "trtci.db"), "--report", str(tmp_path / "report.md")]
    outputs += ["--json", str(tmp_path / "summary.json"), "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(
        [sys.executable, "-m", "trtci.cli", "run", "--config", str(EXAMPLE / "trtci.yml"), *outputs,
         "--duration", "0.2", "--warmup", "10"],
        cwd=tmp_path, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    ratios = {r["label"]: r["accuracy"]["ratio"] for r in summary["results"] if r["accuracy"]}
    assert set(ratios.values()) == {1.0}, ratios
    advice = {r["batch"]: r for r in summary["recommendation"]}
    assert sorted(advice) == [1, 32]
    for entry in advice.values():
        assert entry["precision"] in ("fp32", "fp16", "int8") and entry["reason"]

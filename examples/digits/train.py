"""Train the bundled digits classifier and export it, with its data sets, for trtci.

Reads scikit-learn's bundled 8x8 digits images (shipped inside the package, no download), trains a small
MLP, writes it to ONNX by hand (Gemm + Relu, opset 17) and writes the calibration and validation sets.
Every output is byte-identical from run to run, so the committed files can be checked against this script.

    python examples/digits/train.py              # rewrites the files next to this script
    python examples/digits/train.py --out DIR    # writes them to DIR instead
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import zipfile
from pathlib import Path

# OpenBLAS picks its matrix kernels by CPU, and AVX-512 kernels round differently from AVX2 ones, so the
# trained weights would differ in their last bits between an Intel and an AMD machine. Pinning the AVX2
# (Haswell) kernels, which every x86-64 CI runner has, gives the same model bytes on AMD and Intel machines.
# It must be set before numpy loads OpenBLAS.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ["OPENBLAS_CORETYPE"] = "Haswell"

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

SEED = 0
VALIDATION_FRACTION = 0.25
CALIBRATION_SIZE = 200
HIDDEN_LAYERS = (128, 64)
OPSET = 17
# IR 8 is the version that opset 17 shipped with; older ONNX Runtime and TensorRT parsers refuse newer IR.
IR_VERSION = 8
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
BATCH_DIM = "N"
# A fixed timestamp inside the .npz archives; zip entries otherwise carry the time of writing.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def split_digits() -> dict[str, np.ndarray]:
    """Return disjoint train, calibration and validation sets; images are float32 in [0, 1], labels int64."""
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train_x, val_x, train_y, val_y = train_test_split(
        images, labels, test_size=VALIDATION_FRACTION, random_state=SEED, stratify=labels
    )
    order = np.random.default_rng(SEED).permutation(len(train_x))
    calibration, train = order[:CALIBRATION_SIZE], order[CALIBRATION_SIZE:]
    return {
        "train_x": train_x[train],
        "train_y": train_y[train],
        "calibration_x": train_x[calibration],
        "validation_x": val_x,
        "validation_y": val_y,
    }


def train(images: np.ndarray, labels: np.ndarray) -> MLPClassifier:
    """Fit the MLP deterministically for a given BLAS build."""
    model = MLPClassifier(hidden_layer_sizes=HIDDEN_LAYERS, activation="relu", max_iter=300, random_state=SEED)
    # One BLAS thread, so the summation order, and so every bit of the weights, does not depend on the cores.
    with threadpool_limits(limits=1):
        model.fit(images, labels)
    return model


def to_onnx(model: MLPClassifier) -> onnx.ModelProto:
    """Export the MLP as Gemm layers with Relu between them; the output is the logits, before softmax."""
    initializers, nodes = [], []
    current = INPUT_NAME
    last = len(model.coefs_) - 1
    for i, (weight, bias) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        initializers.append(numpy_helper.from_array(weight.astype(np.float32), f"fc{i}.weight"))
        initializers.append(numpy_helper.from_array(bias.astype(np.float32), f"fc{i}.bias"))
        gemm_out = OUTPUT_NAME if i == last else f"fc{i}"
        nodes.append(helper.make_node("Gemm", [current, f"fc{i}.weight", f"fc{i}.bias"], [gemm_out], f"fc{i}"))
        if i != last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"relu{i}"], f"relu{i}"))
            current = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "digits-mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, model.n_features_in_])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, len(model.classes_)])],
        initializers,
    )
    onnx_model = helper.make_model(
        graph,
        producer_name="trtci-examples-digits",
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="MLP on sklearn's 8x8 digits; input: pixels / 16 in [0, 1]; output: logits of digits 0-9.",
    )
    onnx_model.ir_version = IR_VERSION
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def onnxruntime_predict(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """Top-1 class of every image, computed by ONNX Runtime on the CPU."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: images})
    return logits.argmax(axis=1)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an archive that np.load reads, with no timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE_TIME)
            entry.create_system = 3  # Unix, whatever platform writes it
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    data = split_digits()
    model = train(data["train_x"], data["train_y"])
    model_bytes = to_onnx(model).SerializeToString()

    sklearn_predictions = model.predict(data["validation_x"])
    onnx_predictions = onnxruntime_predict(model_bytes, data["validation_x"])
    assert np.array_equal(onnx_predictions, sklearn_predictions), "ONNX Runtime disagrees with sklearn"

    (out / "model.onnx").write_bytes(model_bytes)
    save_npz(out / "calibration.npz", {"image": data["calibration_x"]})
    save_npz(out / "validation.npz", {"image": data["validation_x"], "labels": data["validation_y"]})

    accuracy = float((onnx_predictions == data["validation_y"]).mean())
    print(
        f"train {len(data['train_x'])}, calibration {len(data['calibration_x'])}, "
        f"validation {len(data['validation_x'])} images; iterations {model.n_iter_}"
    )
    print(f"test accuracy (top-1, ONNX Runtime FP32 = sklearn): {accuracy:.4f}")
    print(f"wrote {out / 'model.onnx'} ({len(model_bytes)} bytes), calibration.npz, validation.npz")


if __name__ == "__main__":
    main()

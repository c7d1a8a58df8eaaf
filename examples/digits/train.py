"""Train the bundled digits classifier, a small CNN, in numpy, and export it with its data sets for trtci.

Reads scikit-learn's bundled 8x8 digits images (shipped inside the package, no download), trains a small
convolutional network with plain numpy (im2col convolutions, Adam), writes it to ONNX by hand (opset 17) and
writes the calibration and validation sets. Every output is byte-identical from run to run, so the committed
files can be checked against this script.

The network is sized so that INT8 is clearly faster than FP32 on a CPU at batch 32 (ONNX Runtime's INT8
convolutions), while one FP32 inference still takes well under a millisecond: the quick start shows a lower
precision that wins, and why FP16 does not on a CPU.

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
from threadpoolctl import threadpool_limits

SEED = 0
VALIDATION_FRACTION = 0.25
CALIBRATION_SIZE = 200
CHANNELS = (32, 64, 64)  # conv1, conv2 (then 2x2 max pool), conv3 (then 2x2 max pool)
HIDDEN = 128  # the dense layer after the convolutions
EPOCHS = 12
BATCH = 32
LEARNING_RATE = 1e-3
OPSET = 17
# IR 8 is the version that opset 17 shipped with; older ONNX Runtime and TensorRT parsers refuse newer IR.
IR_VERSION = 8
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
BATCH_DIM = "N"
# A fixed timestamp inside the .npz archives; zip entries otherwise carry the time of writing.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
Params = dict[str, np.ndarray]


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


def init_params(rng: np.random.Generator) -> Params:
    """He-initialized weights in ONNX layouts: conv [out, in, 3, 3], dense [out, in]."""
    shapes = {"conv1": (CHANNELS[0], 1), "conv2": (CHANNELS[1], CHANNELS[0]), "conv3": (CHANNELS[2], CHANNELS[1])}
    params: Params = {}
    for name, (out, inp) in shapes.items():
        params[f"{name}.weight"] = rng.normal(0, np.sqrt(2.0 / (inp * 9)), (out, inp, 3, 3)).astype(np.float32)
        params[f"{name}.bias"] = np.zeros(out, np.float32)
    flat = CHANNELS[2] * 2 * 2
    params["fc1.weight"] = rng.normal(0, np.sqrt(2.0 / flat), (HIDDEN, flat)).astype(np.float32)
    params["fc1.bias"] = np.zeros(HIDDEN, np.float32)
    params["fc2.weight"] = rng.normal(0, np.sqrt(1.0 / HIDDEN), (10, HIDDEN)).astype(np.float32)
    params["fc2.bias"] = np.zeros(10, np.float32)
    return params


def im2col(x: np.ndarray) -> np.ndarray:
    """[N, C, H, W] -> [N*H*W, C*9]: the 3x3 neighbourhood (zero padded) of every pixel, in (C, ky, kx) order."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((n, h, w, c, 3, 3), np.float32)
    for ky in range(3):
        for kx in range(3):
            cols[..., ky, kx] = padded[:, :, ky : ky + h, kx : kx + w].transpose(0, 2, 3, 1)
    return cols.reshape(n * h * w, c * 9)


def conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 convolution with padding 1 and its im2col matrix (kept for the backward pass)."""
    n, _, h, w = x.shape
    cols = im2col(x)
    out = cols @ weight.reshape(len(weight), -1).T + bias
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2), cols


def conv_backward(grad: np.ndarray, x_shape: tuple, cols: np.ndarray, weight: np.ndarray) -> tuple:
    """Gradients of the input, weight and bias of `conv`."""
    n, c, h, w = x_shape
    flat = grad.transpose(0, 2, 3, 1).reshape(-1, len(weight))
    d_weight = (flat.T @ cols).reshape(weight.shape)
    d_cols = (flat @ weight.reshape(len(weight), -1)).reshape(n, h, w, c, 3, 3)
    d_padded = np.zeros((n, c, h + 2, w + 2), np.float32)
    for ky in range(3):
        for kx in range(3):
            d_padded[:, :, ky : ky + h, kx : kx + w] += d_cols[..., ky, kx].transpose(0, 3, 1, 2)
    return d_padded[:, :, 1:-1, 1:-1], d_weight, flat.sum(axis=0)


def pool(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pooling, stride 2, and the index of each window's maximum (the first one on ties, as ONNX)."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    index = windows.argmax(axis=-1)
    return np.take_along_axis(windows, index[..., None], axis=-1)[..., 0], index


def pool_backward(grad: np.ndarray, index: np.ndarray) -> np.ndarray:
    n, c, h, w = grad.shape
    windows = np.zeros((n, c, h, w, 4), np.float32)
    np.put_along_axis(windows, index[..., None], grad[..., None], axis=-1)
    return windows.reshape(n, c, h, w, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h * 2, w * 2)


def forward(params: Params, images: np.ndarray) -> tuple[np.ndarray, list]:
    """Logits for flat images [N, 64], and what the backward pass needs."""
    x = images.reshape(-1, 1, 8, 8)
    tape = []
    for index, name in enumerate(("conv1", "conv2", "conv3")):
        out, cols = conv(x, params[f"{name}.weight"], params[f"{name}.bias"])
        tape.append((name, x.shape, cols, out))
        x = np.maximum(out, 0)
        if index > 0:
            x, where = pool(x)
            tape.append(("pool", where))
    flat = x.reshape(len(x), -1)
    hidden = flat @ params["fc1.weight"].T + params["fc1.bias"]
    active = np.maximum(hidden, 0)
    logits = active @ params["fc2.weight"].T + params["fc2.bias"]
    tape.append(("dense", x.shape, flat, hidden, active))
    return logits, tape


def backward(params: Params, tape: list, d_logits: np.ndarray) -> Params:
    """Gradients of every parameter from the logits' gradient."""
    grads: Params = {}
    _, shape, flat, hidden, active = tape.pop()
    grads["fc2.weight"], grads["fc2.bias"] = d_logits.T @ active, d_logits.sum(axis=0)
    d_hidden = (d_logits @ params["fc2.weight"]) * (hidden > 0)
    grads["fc1.weight"], grads["fc1.bias"] = d_hidden.T @ flat, d_hidden.sum(axis=0)
    grad = (d_hidden @ params["fc1.weight"]).reshape(shape)
    while tape:
        entry = tape.pop()
        if entry[0] == "pool":
            grad = pool_backward(grad, entry[1])
            continue
        name, x_shape, cols, out = entry
        grad = grad * (out > 0)
        grad, grads[f"{name}.weight"], grads[f"{name}.bias"] = conv_backward(
            grad, x_shape, cols, params[f"{name}.weight"]
        )
    return grads


def train(images: np.ndarray, labels: np.ndarray) -> Params:
    """Adam on softmax cross-entropy, EPOCHS passes in seeded random order; deterministic for a given BLAS."""
    rng = np.random.default_rng(SEED)
    params = init_params(rng)
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    step = 0
    # One BLAS thread, so the summation order, and so every bit of the weights, does not depend on the cores.
    with threadpool_limits(limits=1):
        for _ in range(EPOCHS):
            order = rng.permutation(len(images))
            for start in range(0, len(images), BATCH):
                batch = order[start : start + BATCH]
                logits, tape = forward(params, images[batch])
                shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
                d_logits = shifted / shifted.sum(axis=1, keepdims=True)
                d_logits[np.arange(len(batch)), labels[batch]] -= 1.0
                grads = backward(params, tape, (d_logits / len(batch)).astype(np.float32))
                step += 1
                for name, grad in grads.items():
                    m, v = moments[name]
                    m[...] = 0.9 * m + 0.1 * grad
                    v[...] = 0.999 * v + 0.001 * grad * grad
                    corrected = (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
                    params[name] -= (LEARNING_RATE * corrected).astype(np.float32)
    return params


def to_onnx(params: Params) -> onnx.ModelProto:
    """Reshape -> 3 x (Conv 3x3 + Relu, max pool after the last two) -> Flatten -> Gemm -> Relu -> Gemm (logits)."""
    initializers = [numpy_helper.from_array(value, name) for name, value in params.items()]
    initializers.append(numpy_helper.from_array(np.array([-1, 1, 8, 8], np.int64), "image_shape"))
    nodes = [helper.make_node("Reshape", [INPUT_NAME, "image_shape"], ["pixels"], "reshape")]
    current = "pixels"
    for index, name in enumerate(("conv1", "conv2", "conv3")):
        inputs = [current, f"{name}.weight", f"{name}.bias"]
        nodes.append(helper.make_node("Conv", inputs, [name], name, kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [name], [f"relu{index + 1}"], f"relu{index + 1}"))
        current = f"relu{index + 1}"
        if index > 0:
            nodes.append(helper.make_node("MaxPool", [current], [f"pool{index}"], f"pool{index}", kernel_shape=[2, 2],
                                          strides=[2, 2]))  # fmt: skip
            current = f"pool{index}"
    nodes += [
        helper.make_node("Flatten", [current], ["flat"], "flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["fc1"], "fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["relu4"], "relu4"),
        helper.make_node("Gemm", ["relu4", "fc2.weight", "fc2.bias"], [OUTPUT_NAME], "fc2", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits-cnn",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, 64])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, 10])],
        initializers,
    )
    onnx_model = helper.make_model(
        graph,
        producer_name="trtci-examples-digits",
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string="CNN on sklearn's 8x8 digits; input: pixels / 16 in [0, 1], flat; output: logits of digits 0-9.",
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
    params = train(data["train_x"], data["train_y"])
    model_bytes = to_onnx(params).SerializeToString()

    with threadpool_limits(limits=1):
        numpy_predictions = forward(params, data["validation_x"])[0].argmax(axis=1)
    onnx_predictions = onnxruntime_predict(model_bytes, data["validation_x"])
    assert np.array_equal(onnx_predictions, numpy_predictions), "ONNX Runtime disagrees with the numpy network"

    (out / "model.onnx").write_bytes(model_bytes)
    save_npz(out / "calibration.npz", {"image": data["calibration_x"]})
    save_npz(out / "validation.npz", {"image": data["validation_x"], "labels": data["validation_y"]})

    accuracy = float((onnx_predictions == data["validation_y"]).mean())
    print(
        f"train {len(data['train_x'])}, calibration {len(data['calibration_x'])}, "
        f"validation {len(data['validation_x'])} images; {EPOCHS} epochs"
    )
    print(f"test accuracy (top-1, ONNX Runtime FP32 = numpy): {accuracy:.4f}")
    print(f"wrote {out / 'model.onnx'} ({len(model_bytes)} bytes), calibration.npz, validation.npz")


if __name__ == "__main__":
    main()

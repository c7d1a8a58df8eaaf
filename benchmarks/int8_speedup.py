"""INT8 speed-up and agreement of trtci's prepared models on ONNX Runtime CPU, ResNet-18-shaped, batch 8.

Run: `python -m benchmarks.int8_speedup` (about a minute on 2 cores). Prepares FP32, FP16, INT8 (onnxruntime
scheme) and INT8 (tensorrt scheme) through trtci.pipeline.prepare, times them interleaved (round-robin over the
sessions, median per model, so load from other processes hits every model alike) and measures top-1 agreement with FP32.

The network has random weights and a nearest-class-mean classifier fitted on class prototype images; images
are a prototype plus noise, at levels spread over the range where FP32 goes from all to few of the generating
classes right, so many decisions are close: a harsher test of top-1 agreement than a trained network on real
images. SQNR of the logits against FP32 is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from benchmarks.resnet import nearest_class_mean_head, resnet18_backbone_model, resnet18_model
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import PreparedModel, prepare_fp16, prepare_fp32, prepare_int8

IMAGE = (3, 224, 224)
BATCH = 8
CLASSES = 100
NOISE = (0.25, 0.4)  # range of the noise level per image, relative to the unit-variance prototypes
CALIBRATION_BATCHES = 4
VALIDATION_BATCHES = 8


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def make_images(rng: np.random.Generator, prototypes: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(prototypes), size=count)
    levels = rng.uniform(*NOISE, size=(count, 1, 1, 1)).astype(np.float32)
    noise = rng.standard_normal((count, *IMAGE), dtype=np.float32) * levels
    return (prototypes[labels] + noise).astype(np.float32), labels


def build_model(path: Path, prototypes: np.ndarray) -> None:
    """Write the ResNet-18-shaped network with a nearest-class-mean head fitted on the prototypes."""
    backbone_path = path.with_name("backbone.onnx")
    onnx.save_model(resnet18_backbone_model(), str(backbone_path))
    backbone = session(backbone_path)
    features = np.concatenate(
        [backbone.run(None, {"image": prototypes[i : i + BATCH]})[0] for i in range(0, len(prototypes), BATCH)]
    )
    onnx.save_model(resnet18_model(head=nearest_class_mean_head(features)), str(path))


def timed_rounds(sessions: dict[str, ort.InferenceSession], feed: dict[str, np.ndarray], rounds: int) -> dict:
    """Median latency in ms per session, measured round-robin so that noise hits every session alike."""
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for s in sessions.values():
        s.run(None, feed)
    for _ in range(rounds):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feed)
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="timed round-robin rounds (default 12)")
    parser.add_argument("--workdir", type=Path, help="keep the models and the prepare cache here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="int8-speedup-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        prototypes = rng.standard_normal((CLASSES, *IMAGE), dtype=np.float32)
        model_path = workdir / "resnet18.onnx"
        build_model(model_path, prototypes)
        calibration = [{"image": make_images(rng, prototypes, BATCH)[0]} for _ in range(CALIBRATION_BATCHES)]
        validation, labels = make_images(rng, prototypes, BATCH * VALIDATION_BATCHES)

        info = inspect_model(model_path)
        cache = workdir / "cache"
        prepared: dict[str, PreparedModel] = {}
        prepare_s: dict[str, float] = {}
        steps = {
            "fp32": lambda: prepare_fp32(info, cache),
            "fp16": lambda: prepare_fp16(info, cache),
            "int8(onnxruntime)": lambda: prepare_int8(
                info, calibration, scheme="onnxruntime", method="minmax", data_hash="bench", cache_dir=cache
            ),
            "int8(tensorrt)": lambda: prepare_int8(
                info, calibration, scheme="tensorrt", method="minmax", data_hash="bench", cache_dir=cache
            ),
        }
        for name, step in steps.items():
            start = time.perf_counter()
            prepared[name] = step()
            prepare_s[name] = time.perf_counter() - start

        sessions = {name: session(p.path) for name, p in prepared.items()}
        logits = {
            name: np.concatenate(
                [s.run(None, {"image": validation[i : i + BATCH]})[0] for i in range(0, len(validation), BATCH)]
            )
            for name, s in sessions.items()
        }
        medians = timed_rounds(sessions, {"image": validation[:BATCH]}, args.rounds)

    machine = f"{cpu_name()}, {os.cpu_count()} cores"
    predictions = {name: values.argmax(axis=1) for name, values in logits.items()}
    reference = predictions["fp32"]
    print(f"ResNet-18-shaped, batch {BATCH}, ONNX Runtime {ort.__version__} CPU, {machine}, {args.rounds} rounds")
    print(f"FP32 top-1 of the generating classes: {np.mean(reference == labels):.1%} ({len(labels)} images)")
    print(f"{'model':<20}{'prepare s':>10}{'median ms':>11}{'vs fp32':>9}{'top-1 agreement':>17}{'SQNR dB':>9}")
    for name in prepared:
        agreement = float(np.mean(predictions[name] == reference))
        speedup = medians["fp32"] / medians[name]
        error = float(((logits[name] - logits["fp32"]) ** 2).sum())
        sqnr = 10 * np.log10(float((logits["fp32"] ** 2).sum()) / error) if error else float("inf")
        print(f"{name:<20}{prepare_s[name]:>10.1f}{medians[name]:>11.1f}{speedup:>8.2f}x{agreement:>17.3f}{sqnr:>9.1f}")
    print(
        f"int8_speedup: ort_int8_vs_fp32={medians['fp32'] / medians['int8(onnxruntime)']:.2f}x "
        f"top1_agreement={np.mean(predictions['int8(onnxruntime)'] == reference):.3f} "
        f"tensorrt_scheme_vs_fp32={medians['fp32'] / medians['int8(tensorrt)']:.2f}x machine={machine}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

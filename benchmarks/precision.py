"""Precision on real-shaped models: FP16 conversion, INT8 root cause and the precision to ship.

Run: `python -m benchmarks.precision` (about a minute on 2 cores). For each model, as PyTorch's exporter
writes them (tests/exported.py: a TransformerEncoder layer at two sizes, a BERT-style classifier with a
padding mask, a MobileNetV3-style net, a UNet with ConvTranspose and Resize) and the bundled digits example,
it runs `trtci run` (FP32, FP16, INT8 on ONNX Runtime, accuracy against FP32 on labelled data: the FP32
model's own top-1 on random inputs, or the example's labels), builds the FP16 model with TensorRT for RTX (no
GPU needed), and prints the advice per batch. A model's FP16 counts as converted when it runs in ONNX
Runtime, passes its accuracy check and builds on TensorRT for RTX. Then it plants an outlier channel in one
known node of four models (tests/planted.py) and counts the faults `trtci explain int8` names first.

The last line is `precision: fp16_ok=<models converted>/<models> root_cause_top1=<named first>/<planted>`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml

from tests.exported import bert_like, mobilenet_like, transformer_encoder, unet_like
from tests.planted import planted_cnn, planted_config, planted_mlp, planted_transformer
from trtci.config import load_config
from trtci.pipeline import run as pipeline
from trtci.pipeline.explain import explain_models
from trtci.pipeline.fp16 import kept_fp32
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import prepare_fp16
from trtci.results import RunContext, RunResult
from trtci.verdict.recommend import recommend

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
SAMPLES = 256


def _wide_transformer(path: Path) -> Path:
    return transformer_encoder(path, embed=64, heads=8, ff=256, seed=1)


# name -> (builder, input shapes without the batch, batch sizes)
MODELS: dict[str, tuple[Callable[[Path], Path], dict[str, tuple[int, ...]], list[int]]] = {
    "transformer-e32": (transformer_encoder, {"src": (16, 32)}, [1, 8]),
    "transformer-e64": (_wide_transformer, {"src": (16, 64)}, [1, 8]),
    "bert-like": (bert_like, {"input_ids": (16,), "attention_mask": (16,)}, [1, 8]),
    "mobilenet": (mobilenet_like, {"image": (3, 32, 32)}, [1, 8]),
    "unet": (unet_like, {"image": (3, 32, 32)}, [1, 8]),
}
# planted fault: (builder, input shape, faulty node, the node root cause must name first, min_ratio)
PLANTED = [
    (planted_mlp, (32,), "fc2", "fc2", 0.99),
    (planted_cnn, (3, 8, 8), "conv1", "conv1", 0.99),
    (planted_cnn, (3, 8, 8), "conv2", "conv2", 0.99),
    (planted_transformer, (12, 32), "linear1", "/layers.0/linear1/MatMul", 0.95),
]


def _data(model: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Random inputs (token ids and a mask with padding for int64 inputs), labelled with the FP32 model's top-1
    where its output holds class scores."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in shapes.items():
        if name == "attention_mask":
            feeds[name] = (np.arange(shape[0]) < rng.integers(4, shape[0] + 1, (SAMPLES, 1))).astype(np.int64)
        elif name == "input_ids":
            feeds[name] = rng.integers(1, 100, (SAMPLES, *shape)).astype(np.int64)
        else:
            feeds[name] = rng.standard_normal((SAMPLES, *shape)).astype(np.float32)
    (out,) = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)
    return {**feeds, "labels": out.argmax(axis=1)} if out.ndim == 2 else feeds


def _config(work: Path, name: str, builder, shapes: dict[str, tuple[int, ...]], batches: list[int]) -> Path:
    model = builder(work / f"{name}.onnx")
    calibration = _data(model, shapes, seed=1)
    calibration.pop("labels", None)
    np.savez(work / "calibration.npz", **calibration)
    np.savez(work / "validation.npz", **_data(model, shapes, seed=2))
    config = {
        "models": [
            {
                "name": name,
                "path": model.name,
                "precisions": ["fp32", "fp16", "int8"],
                "batch_sizes": batches,
                "calibration": {"data": "calibration.npz", "method": "minmax"},
                "validation": {"data": "validation.npz"},
                "accuracy": {"min_ratio": 0.95, "min_sqnr_db": 15},  # random weights, random inputs: close calls
            }
        ],
        "bench": {"warmup_ms": 50, "duration_s": 0.3, "min_iterations": 20},
        "compare": {"confirm_budget_s": 0, "ab_budget_s": 0},
        "report": None,
    }
    path = work / "trtci.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _example_config(work: Path) -> Path:
    for name in ("model.onnx", "calibration.npz", "validation.npz", "trtci.yml"):
        shutil.copy(EXAMPLE / name, work / name)
    return work / "trtci.yml"


def _rtx_builds(path: Path, shapes: dict[str, tuple[int, ...]]) -> str:
    """'' when TensorRT for RTX parses and builds the file; else why not."""
    try:
        import tensorrt_rtx_bindings as trt
    except ImportError:
        return "TensorRT for RTX is not installed (pip install 'trtci[test]')"
    logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(path.read_bytes()):
        return "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, shape, shape, shape)
    config.add_optimization_profile(profile)
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM86, 0)
    return "" if builder.build_serialized_network(network, config) is not None else "the build failed"


def _fp16_ok(result: RunResult, config_path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[bool, str]:
    fp16 = [s for s in result.series if s.key.precision == "fp16"]
    failed = [s.error or "; ".join(s.accuracy.reasons) for s in fp16 if not s.passed and s.accuracy is not None]
    failed += [s.error for s in fp16 if s.error]
    if not fp16 or failed:
        return False, f"FP16 failed: {failed[0] if failed else 'not run'}"
    config = load_config(config_path)
    info = inspect_model(config.models[0].path)
    prepared = prepare_fp16(info, config.cache_dir / "prepared")
    why = _rtx_builds(prepared.path, {name: (1, *shape) for name, shape in shapes.items()})
    kept = Counter(k.op_type for k in kept_fp32(onnx.load(str(prepared.path), load_external_data=False)))
    listed = ", ".join(f"{count} {op}" for op, count in kept.most_common()) or "none"
    return (not why), (f"FP16 ok (kept in FP32: {listed}), TensorRT for RTX builds it" if not why else f"FP16: {why}")


def _run(config_path: Path) -> RunResult:
    return pipeline.run(load_config(config_path), RunContext(run_id="precision", started_at="2026-01-01T00:00:00Z"))


def _report(name: str, result: RunResult, fp16: str) -> None:
    int8 = {
        s.key.quantization: s.accuracy for s in result.series if s.key.precision == "int8" and s.accuracy is not None
    }
    int8_text = ", ".join(f"int8({scheme}) {'passes' if a.passed else 'fails'}" for scheme, a in int8.items())
    print(f"{name}: {fp16}; {int8_text or 'int8 not checked'}")
    for advice in recommend(result):
        speed = f" {advice.speedup_vs_fp32:.2f}x" if advice.speedup_vs_fp32 is not None else ""
        print(f"  b{advice.batch} {advice.backend}: ship {advice.label}{speed} ({advice.reason})")


def _models(root: Path) -> int:
    """Run every model; print each one's FP16 status and advice. Returns how many FP16 conversions were ok."""
    converted = 0
    for index, name in enumerate([*MODELS, "digits-example"]):
        work = root / f"m{index}"
        work.mkdir()
        if name in MODELS:
            builder, shapes, batches = MODELS[name]
            config_path = _config(work, name, builder, shapes, batches)
        else:
            config_path, shapes = _example_config(work), {"image": (64,)}
        result = _run(config_path)
        ok, fp16 = _fp16_ok(result, config_path, shapes)
        converted += ok
        _report(name, result, fp16)
    return converted


def _planted(root: Path) -> int:
    """Explain each planted fault; print what was named first. Returns how many were the planted node."""
    named = 0
    for index, (builder, shape, faulty, expected, min_ratio) in enumerate(PLANTED):
        work = root / f"p{index}"
        work.mkdir()
        (outcome,) = explain_models(load_config(planted_config(work, builder, shape, faulty, min_ratio)))
        cause = outcome.cause
        first = cause.ranking[0].node if cause is not None and cause.ranking else None
        named += first == expected
        fix = cause.nodes_to_exclude if cause is not None and cause.passed else "none found"
        print(f"planted {builder.__name__}({faulty}): named first {first}; nodes to keep in float {fix}")
    return named


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        converted = _models(Path(scratch))
        named = _planted(Path(scratch))
    print(f"precision: fp16_ok={converted}/{len(MODELS) + 1} root_cause_top1={named}/{len(PLANTED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

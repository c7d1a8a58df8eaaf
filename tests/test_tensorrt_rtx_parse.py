"""TensorRT for RTX parses and builds the prepared FP32, FP16 and tensorrt-scheme INT8 models (no GPU needed).

Its ONNX parser is a real conformance check of the Q/DQ placement meant for TensorRT: ONNX Runtime's default
quantize_static output (INT32 bias DequantizeLinear) is refused, and that refusal is asserted too.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from tests.models import mlp_classifier, small_cnn
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import prepare_fp16, prepare_fp32, prepare_int8

trt = pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT for RTX (tensorrt-rtx-cu13-bindings) missing")

RTX_PLAN_MAGIC = 0x74727476

MODELS = {
    "mlp": (mlp_classifier, "input", (16,)),
    "cnn": (small_cnn, "image", (1, 8, 8)),
}


def parse(path):
    """Network, parser and builder for the file; the parser's errors as strings, empty when it parsed."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(path.read_bytes())
    errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
    assert ok == (not errors)
    return builder, network, parser, errors


def build(path, input_name, shape):
    builder, network, _parser, errors = parse(path)
    assert not errors, errors
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (1, *shape), (4, *shape), (8, *shape))
    config.add_optimization_profile(profile)
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM86, 0)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, f"build failed for {path}"
    return bytes(memoryview(plan)), network


def calibration(input_name, shape):
    rng = np.random.default_rng(0)
    return [{input_name: rng.standard_normal((8, *shape)).astype(np.float32)} for _ in range(2)]


@pytest.mark.parametrize("name", MODELS)
def test_prepared_models_build_rtx_plans(name, tmp_path):
    builder_fn, input_name, shape = MODELS[name]
    info = inspect_model(builder_fn(tmp_path / f"{name}.onnx"))
    cache = tmp_path / "cache"
    prepared = [
        prepare_fp32(info, cache),
        prepare_fp16(info, cache),
        prepare_int8(
            info, calibration(input_name, shape), scheme="tensorrt", method="minmax", data_hash="t", cache_dir=cache
        ),
    ]
    for model in prepared:
        plan, network = build(model.path, input_name, shape)
        assert len(plan) > 0
        magic, _, _, _, size = struct.unpack_from("<5I", plan)
        assert magic == RTX_PLAN_MAGIC
        assert size == len(plan)
        layer_types = {network.get_layer(i).type for i in range(network.num_layers)}
        if model.precision == "int8":
            assert trt.LayerType.QUANTIZE in layer_types and trt.LayerType.DEQUANTIZE in layer_types


def test_default_ort_qdq_is_refused_for_its_int32_bias(tmp_path):
    path = mlp_classifier(tmp_path / "mlp.onnx")
    default = tmp_path / "default_qdq.onnx"

    class Reader:
        def __init__(self):
            self.batches = iter(calibration("input", (16,)))

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(path),
        str(default),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    _builder, _network, _parser, errors = parse(default)
    assert any("Int32" in e for e in errors), errors

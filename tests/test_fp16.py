"""FP16 conversion on graphs as exporters write them: valid for ONNX Runtime and TensorRT for RTX, accurate, and
honest about the nodes it kept in FP32.

The transformer encoder is the case onnxconverter-common got wrong (a Cast of the attention scale retyped to
float16 against its `to`, a Div of float16 by float32); TensorRT for RTX builds every converted model here,
without a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.exported import bert_like, mobilenet_like, transformer_encoder, unet_like
from tests.models import mlp_classifier, small_cnn
from trtci.config import AccuracyThresholds
from trtci.errors import BackendUnavailable
from trtci.pipeline.fp16 import KEPT_FP32_KEY, convert_to_fp16, kept_fp32
from trtci.pipeline.model import inspect_model
from trtci.pipeline.prepare import prepare_fp16
from trtci.verdict.accuracy import validate

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits" / "model.onnx"


def _example(path: Path) -> Path:
    return EXAMPLE


ARCHITECTURES = {
    "transformer": (transformer_encoder, {"src": (4, 7, 32)}),
    "mobilenet": (mobilenet_like, {"image": (4, 3, 32, 32)}),
    "unet": (unet_like, {"image": (4, 3, 32, 32)}),
    "mlp": (mlp_classifier, {"input": (4, 16)}),
    "cnn": (small_cnn, {"image": (4, 1, 8, 8)}),
    "digits-example": (_example, {"image": (4, 64)}),
    "bert": (bert_like, {"input_ids": (4, 12), "attention_mask": (4, 12)}),
}


def feeds_for(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Normal floats; for the BERT-style model token ids with the last tokens of one sequence padded."""
    rng = np.random.default_rng(seed)
    if "input_ids" in shapes:
        ids = rng.integers(1, 100, shapes["input_ids"]).astype(np.int64)
        mask = np.ones(shapes["attention_mask"], np.int64)
        ids[1, 8:], mask[1, 8:] = 0, 0
        return {"input_ids": ids, "attention_mask": mask}
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def rtx_build(path: Path, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """TensorRT for RTX's parser errors for the file, or its build failure; [] when a plan was built."""
    trt = pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT for RTX (tensorrt-rtx-cu13-bindings) missing")
    logger = trt.Logger(trt.Logger.INTERNAL_ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(path.read_bytes()):
        return [parser.get_error(i).desc() for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, shape, shape, shape)
    config.add_optimization_profile(profile)
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.SM86, 0)
    return [] if builder.build_serialized_network(network, config) is not None else ["build failed"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_converts_runs_accurately_and_builds_on_tensorrt_rtx(name, tmp_path):
    builder, shapes = ARCHITECTURES[name]
    info = inspect_model(builder(tmp_path / f"{name}.onnx"))
    prepared = prepare_fp16(info, tmp_path / "cache")
    model = onnx.load(str(prepared.path))
    original = onnx.load(str(info.path))
    assert [i.type for i in model.graph.input] == [i.type for i in original.graph.input]
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {TensorProto.FLOAT}
    assert any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer), "weights are FP16"
    feeds = feeds_for(shapes)
    reference, converted = run(info.path, feeds), run(prepared.path, feeds)
    thresholds = AccuracyThresholds(min_cosine=0.999, min_sqnr_db=40)
    result = validate(reference, converted, thresholds)
    assert result, result.reasons
    assert rtx_build(prepared.path, shapes) == []


def test_transformer_keeps_sensitive_ops_in_fp32_and_lists_them(tmp_path):
    info = inspect_model(transformer_encoder(tmp_path / "encoder.onnx"))
    prepared = prepare_fp16(info, tmp_path / "cache")
    kept = kept_fp32(onnx.load(str(prepared.path)))
    by_op = {k.op_type for k in kept}
    assert {"LayerNormalization", "Softmax", "ReduceMean", "Sqrt"} == by_op
    assert {k.node for k in kept if k.op_type == "LayerNormalization"} == {
        "/layers.0/norm1/LayerNormalization",
        "/layers.0/norm2/LayerNormalization",
    }
    assert all(k.reason for k in kept)
    (note,) = prepared.notes
    assert (
        note.startswith("6 nodes kept in FP32 for accuracy (2 Sqrt, 2 LayerNormalization, 1 Softmax")
        and KEPT_FP32_KEY in note
    )
    again = prepare_fp16(info, tmp_path / "cache")
    assert again.cache_hit and again.notes == prepared.notes
    model = onnx.load(str(prepared.path))
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert types[softmax.input[0]] == TensorProto.FLOAT
    assert all(types.get(n.output[0]) == TensorProto.FLOAT16 for n in matmuls)


def test_shape_arithmetic_stays_int64_and_exporter_casts_keep_their_type(tmp_path):
    model = onnx.load(str(transformer_encoder(tmp_path / "encoder.onnx")))
    original_casts = {n.name: n.attribute[0].i for n in model.graph.node if n.op_type == "Cast"}
    converted = convert_to_fp16(model).model
    inferred = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    for node in converted.graph.node:
        if node.op_type in ("Shape", "Concat") and node.name.endswith(("Shape", "Concat")):
            assert types.get(node.output[0]) in (TensorProto.INT64, None), node.name
        if node.name in original_casts:
            assert types[node.output[0]] in (TensorProto.FLOAT, TensorProto.FLOAT16)


def _model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _info(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_constants_beyond_fp16_range_keep_their_node_in_fp32(tmp_path):
    big = numpy_helper.from_array(np.array([1e6], np.float32), "big")
    nodes = [
        helper.make_node("Mul", ["x", "big"], ["scaled"], name="scale"),
        helper.make_node("Relu", ["scaled"], ["y"], name="relu"),
    ]
    model = _model(nodes, [_info("x", ["N", 4])], [_info("y", ["N", 4])], [big])
    result = convert_to_fp16(model)
    assert [(k.node, k.op_type) for k in result.kept_fp32] == [("scale", "Mul")]
    assert "1e+06" in result.kept_fp32[0].reason
    onnx.save(result.model, tmp_path / "m.onnx")
    x = np.full((2, 4), 0.05, np.float32)
    np.testing.assert_allclose(run(tmp_path / "m.onnx", {"x": x})["y"], x * 1e6, rtol=1e-3)


def test_shared_initializer_feeds_fp16_and_fp32_readers(tmp_path):
    weight = numpy_helper.from_array(np.full((4,), 0.5, np.float32), "w")
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["a"], name="mul"),
        helper.make_node("Add", ["x", "w"], ["b"], name="add"),
        helper.make_node("ReduceSum", ["a"], ["s"], name="sum", keepdims=1),
        helper.make_node("Add", ["s", "b"], ["y"], name="out"),
    ]
    model = _model(nodes, [_info("x", ["N", 4])], [_info("y", ["N", 4])], [weight])
    result = convert_to_fp16(model)
    assert [k.node for k in result.kept_fp32] == ["sum"]
    onnx.save(result.model, tmp_path / "m.onnx")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    reference = (x * 0.5).sum() + x + 0.5  # ReduceSum without axes sums everything
    np.testing.assert_allclose(run(tmp_path / "m.onnx", {"x": x})["y"], reference, rtol=1e-3)


def test_a_graph_output_read_inside_the_graph_and_by_a_subgraph_stays_float32(tmp_path):
    then_branch = helper.make_graph([helper.make_node("Identity", ["h"], ["t"])], "then", [], [_info("t", ["N", 4])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["h"], ["e"])], "else", [], [_info("e", ["N", 4])])
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="relu"),
        helper.make_node("ReduceMax", ["x"], ["m"], name="max", keepdims=0),
        helper.make_node("Greater", ["m", "zero"], ["positive"], name="gt"),
        helper.make_node("If", ["positive"], ["branch"], name="if", then_branch=then_branch, else_branch=else_branch),
        helper.make_node("Mul", ["h", "branch"], ["y"], name="mul"),
    ]
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    outputs = [_info("y", ["N", 4]), _info("h", ["N", 4])]
    model = _model(nodes, [_info("x", ["N", 4])], outputs, [zero])
    result = convert_to_fp16(model)
    assert [k.node for k in result.kept_fp32] == ["if"]
    onnx.save(result.model, tmp_path / "m.onnx")
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    outputs_now = run(tmp_path / "m.onnx", {"x": x})
    assert outputs_now["h"].dtype == np.float32
    np.testing.assert_allclose(outputs_now["y"], np.maximum(x, 0) ** 2, atol=1e-3)


def test_an_op_without_float16_in_its_schema_stays_float32(tmp_path):
    nodes = [
        helper.make_node("Range", ["start", "limit", "delta"], ["r"], name="range"),
        helper.make_node("Add", ["x", "r"], ["y"], name="add"),
    ]
    scalars = [
        numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("start", 0), ("limit", 4), ("delta", 1))
    ]
    model = _model(nodes, [_info("x", ["N", 4])], [_info("y", ["N", 4])], scalars)
    result = convert_to_fp16(model)
    assert [(k.node, k.reason) for k in result.kept_fp32] == [("range", "ONNX Range has no float16 type")]
    onnx.save(result.model, tmp_path / "m.onnx")
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(run(tmp_path / "m.onnx", {"x": x})["y"], x + np.arange(4), rtol=1e-3)


def test_a_custom_op_stays_float32_and_is_fed_float32():
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="relu"),
        helper.make_node("MyPlugin", ["h"], ["p"], name="plugin", domain="com.example"),
        helper.make_node("Relu", ["p"], ["y"], name="relu2"),
    ]
    graph = helper.make_graph(nodes, "g", [_info("x", ["N", 4])], [_info("y", ["N", 4])])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    result = convert_to_fp16(model)
    assert [(k.node, k.reason) for k in result.kept_fp32] == [
        ("plugin", "no ONNX schema for com.example::MyPlugin (a custom op)")
    ]
    plugin = next(n for n in result.model.graph.node if n.name == "plugin")
    cast = next(n for n in result.model.graph.node if plugin.input[0] in n.output)
    assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT


def test_modelopt_converter_says_how_to_install_it_when_missing(tmp_path):
    try:
        import modelopt.onnx.autocast  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("NVIDIA ModelOpt is installed here")
    info = inspect_model(mlp_classifier(tmp_path / "mlp.onnx"))
    with pytest.raises(BackendUnavailable, match=r"pip install 'nvidia-modelopt\[onnx\]'.*converter: trtci"):
        prepare_fp16(info, tmp_path / "cache", converter="modelopt")


def test_the_padding_mask_constant_beyond_fp16_stays_float32_and_padded_tokens_are_ignored(tmp_path):
    info = inspect_model(bert_like(tmp_path / "bert.onnx"))
    prepared = prepare_fp16(info, tmp_path / "cache")
    kept = {k.node: k.reason for k in kept_fp32(onnx.load(str(prepared.path)))}
    assert kept["/extended_mask/Mul"].startswith("constant /extended_mask/Constant_")
    assert "beyond FP16's 65504" in kept["/extended_mask/Mul"]
    feeds = feeds_for(ARCHITECTURES["bert"][1])
    changed = {k: v.copy() for k, v in feeds.items()}
    changed["input_ids"][1, 8:] = 42  # what padded positions hold must not matter
    converted = [run(prepared.path, f)["logits"] for f in (feeds, changed)]
    assert np.isfinite(converted[0]).all()
    np.testing.assert_allclose(converted[0][1], converted[1][1], atol=1e-3)

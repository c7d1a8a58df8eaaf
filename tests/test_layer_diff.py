"""Per-layer engine diffs on NVIDIA's FP32, FP16 and Q/DQ INT8 ResNet18 engines, and on inspector JSON by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtci.cli import cli
from trtci.errors import DataError
from trtci.pipeline.diff_layers import diff_paths, read_engine, render_layer_diffs
from trtci.results import RunContext, RunResult
from trtci.verdict.engine_layers import dtype_of, engine_layers, with_times
from trtci.verdict.layer_diff import BY_FUSION, BY_NAME, BY_POSITION, diff_layers

DATA = Path(__file__).parent / "data" / "trtexec" / "resnet-A100"
FP32, FP16, QAT = DATA / "fp32", DATA / "fp16", DATA / "qat"


@pytest.fixture(scope="module")
def fp32_fp16():
    return diff_paths(FP32, FP16)


@pytest.fixture(scope="module")
def fp16_int8():
    return diff_paths(FP16, QAT)


def test_format_strings_name_their_data_type():
    assert dtype_of("Row major linear FP32") == "FP32"
    assert dtype_of("Channel major FP16 format where channel % 8 == 0") == "FP16"
    assert dtype_of("Thirty-two wide channel vectorized row major Int8 format") == "INT8"
    assert dtype_of("Unknown format") == ""


def test_fp32_to_fp16_names_every_layer_whose_precision_changed(fp32_fp16):
    convolutions = [layer.name for layer in read_engine(FP32)[1].layers if layer.kind == "Convolution"]
    changed = {c.name: c for c in fp32_fp16.precision_changes}
    assert len(convolutions) == 21 and set(convolutions) <= set(changed)
    first = changed["Conv_0 + Relu_1"]
    assert first.matched_by == BY_NAME and first.details()[0] == "precision FP32 -> FP16"
    assert first.delta_ms == pytest.approx(0.111616 - 0.52224)
    assert "implementation TiledPooling -> CudaPooling" in changed["MaxPool_2"].details()


def test_time_changes_add_up_to_the_total_and_are_ranked_by_share(fp32_fp16):
    deltas = [c.delta_ms for c in fp32_fp16.changes]
    assert sum(deltas) == pytest.approx(fp32_fp16.total_delta_ms)
    assert fp32_fp16.total_delta_ms == pytest.approx(fp32_fp16.head_total_ms - fp32_fp16.base_total_ms)
    assert [abs(d) for d in deltas] == sorted((abs(d) for d in deltas), reverse=True)
    assert fp32_fp16.changes[0].name == "Conv_0 + Relu_1"
    assert sum(c.share for c in fp32_fp16.changes) == pytest.approx(1.0)


def test_reformat_layers_are_counted_apart(fp32_fp16):
    assert (fp32_fp16.reformats.base_count, fp32_fp16.reformats.head_count) == (8, 12)
    added = [c for c in fp32_fp16.changes if c.what == ("added",)]
    assert added and all(c.reformat for c in added)
    assert any(c.name == "Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1" for c in added)


def test_fp16_to_int8_pairs_differently_named_layers_and_names_the_int8_ones(fp16_int8):
    changed = {c.name: c for c in fp16_int8.precision_changes}
    stem = changed["conv1.weight + QuantizeLinear_7 + Conv_9"]
    assert stem.base.name == "Conv_0 + Relu_1" and stem.matched_by == BY_POSITION
    assert stem.details()[:2] == ["renamed (position) from 'Conv_0 + Relu_1'", "precision FP16 -> INT8->FP32"]
    int8 = [c for c in fp16_int8.precision_changes if "INT8" in c.head.precision]
    assert len(int8) == 21  # the 20 convolutions and the classifier (a 1x1 convolution here)
    quantize = [c for c in fp16_int8.changes if c.what == ("added",) and c.head.origin == "QDQ"]
    assert len(quantize) == 10 and all(c.reformat for c in quantize)


def layer(name: str, kind: str = "Convolution", dtype: str = "FP16", tactic: str = "t1", shape=(1, 8)) -> dict:
    tensor = {"Name": f"{name}:out", "Location": "Device", "Dimensions": list(shape)}
    return {
        "Name": name, "LayerType": f"Cask{kind}", "ParameterType": kind, "TacticName": tactic,
        "Inputs": [{**tensor, "Format/Datatype": f"Row major linear {dtype}"}],
        "Outputs": [{**tensor, "Format/Datatype": f"Row major linear {dtype}"}],
    }  # fmt: skip


def engine(*layers: dict, io: str = "Bindings"):
    io_value = ["x", "y"] if io == "Bindings" else [{"Name": "x"}, {"Name": "y"}]
    return engine_layers({"Layers": list(layers), io: io_value}, "test")


def test_a_layer_renamed_by_fusion_is_paired_by_its_parts():
    base = engine(layer("Conv_5 + Relu_7"), layer("Gemm_9", kind="Gemm"))
    head = engine(layer("Conv_5 + Add_6 + Relu_7", tactic="t2"), layer("Gemm_9", kind="Gemm"))
    (change,) = diff_layers(base, head).changes
    assert change.matched_by == BY_FUSION and change.what == ("renamed", "tactic")
    assert change.delta_ms is None and change.share is None


def test_tensorrt_11_layout_with_separate_format_and_datatype():
    data = {
        "Layers": [{"Name": "gemm_0", "LayerType": "MatrixMultiply", "Inputs": [
            {"Name": "x", "Dimensions": [-1, 16], "Format": "LINEAR", "Datatype": "FP16"}], "Outputs": [
            {"Name": "y", "Dimensions": [-1, 16], "Format": "LINEAR", "DataType": "FP16"}]}],
        "I/O Tensors": [{"Name": "x", "IOMode": "INPUT"}, {"Name": "y", "IOMode": "OUTPUT"}],
    }  # fmt: skip
    parsed = engine_layers(data, "eleven")
    assert parsed.layout == "11.x" and parsed.io_tensors == ("x", "y") and parsed.precision == "fp16"
    assert parsed.layers[0].precision == "FP16" and parsed.layers[0].kind == "MatrixMultiply"


def test_names_only_engines_diff_by_name():
    base = engine_layers({"Layers": ["a", "b + c"], "Bindings": ["x"]}, "base")
    head = engine_layers({"Layers": ["a", "d"], "Bindings": ["x"]}, "head")
    assert not base.detailed and base.precision == ""
    assert sorted(c.what[0] for c in diff_layers(base, head).changes) == ["added", "removed"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"Layers": [], "Bindings": [], "I/O Tensors": []}, "both 'Bindings'"),
        ({"Bindings": []}, "no 'Layers' list"),
        ({"Layers": [layer("a"), layer("a")], "Bindings": []}, "layer 'a' appears twice"),
        ({"Layers": [{"LayerType": "x"}], "Bindings": []}, "layer #0 has no 'Name'"),
        ({"Layers": []}, "no 'Bindings'"),
    ],
)
def test_damaged_layer_information_is_refused(data, message):
    with pytest.raises(DataError, match=message):
        engine_layers(data, "f.json")


def test_a_profile_must_time_the_engines_layers():
    with pytest.raises(DataError, match="the profile lacks layer 'b'"):
        with_times(engine(layer("a"), layer("b")), {"a": 0.1}, "p")


def test_the_partial_renders_the_largest_changes(fp32_fp16):
    run = RunResult(context=RunContext(run_id="r", started_at="2026"), devices=[], series=[])
    text = render_layer_diffs(run, [fp32_fp16], top=3)
    assert text.startswith("### Layer changes") and text.count("\n| ") == 4  # header and three rows
    assert "| Conv\\_0 + Relu\\_1 | precision FP32 -&gt; FP16;" in text
    assert f"{len(fp32_fp16.changes) - 3} smaller changes in the full report" in text
    assert render_layer_diffs(run, []) == ""


def test_cli_diff_layers(tmp_path: Path):
    out = tmp_path / "diff.json"
    result = CliRunner().invoke(cli, ["diff", "layers", str(FP16), str(QAT), "--top", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("fp16/resnet.onnx.engine -> qat/resnet-qat.onnx.engine: 36 -> 37 layers")
    data = json.loads(out.read_text())
    assert "conv1.weight + QuantizeLinear_7 + Conv_9" in data["precision_changed"]
    bad = CliRunner().invoke(cli, ["diff", "layers", str(DATA), str(QAT)])
    assert bad.exit_code == 2 and "holds the exports of 3 engines" in bad.stderr

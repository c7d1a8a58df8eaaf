"""inspect_model: identity, opset and I/O of real ONNX files, and one-line errors for bad ones."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.models import mlp_classifier, small_cnn
from trtci.errors import ModelError
from trtci.pipeline.model import TensorSpec, inspect_model
from trtci.results import file_sha256


def test_inspect_mlp_describes_inputs_outputs_and_identity(tmp_path):
    path = mlp_classifier(tmp_path / "digits.onnx")
    info = inspect_model(path)
    assert info.name == "digits"
    assert info.path == path
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.size_bytes == len(path.read_bytes())
    assert info.opset == 17
    assert info.inputs == (TensorSpec("input", "float32", ("N", 16)),)
    assert info.outputs == (TensorSpec("logits", "float32", ("N", 10)),)


def test_inspect_cnn_and_fixed_batch(tmp_path):
    assert inspect_model(small_cnn(tmp_path / "cnn.onnx")).inputs[0].shape == ("N", 1, 8, 8)
    fixed = inspect_model(mlp_classifier(tmp_path / "fixed.onnx", dynamic_batch=False))
    assert fixed.inputs[0].shape == (1, 16)


def test_file_sha256_changes_with_content(tmp_path):
    a = mlp_classifier(tmp_path / "a.onnx", seed=0)
    b = mlp_classifier(tmp_path / "b.onnx", seed=1)
    assert file_sha256(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert file_sha256(a) != file_sha256(b)


def test_initializers_listed_as_graph_inputs_are_not_inputs(tmp_path):
    path = mlp_classifier(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    # Old exporters list every weight as a graph input too (IR < 4 style).
    for tensor in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    onnx.save_model(model, str(path))
    assert [spec.name for spec in inspect_model(path).inputs] == ["input"]


def test_unknown_dims_and_int_inputs(tmp_path):
    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", None])
    y = helper.make_tensor_value_info("out", TensorProto.INT64, ["batch", None])
    graph = helper.make_graph([helper.make_node("Identity", ["ids"], ["out"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "ids.onnx"
    onnx.save_model(model, str(path))
    info = inspect_model(path)
    assert info.inputs == (TensorSpec("ids", "int64", ("batch", None)),)
    assert info.opset == 13


def test_external_data_model_is_checked_by_path(tmp_path):
    model = onnx.load(str(mlp_classifier(tmp_path / "src.onnx")))
    path = tmp_path / "ext" / "big.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    assert (path.parent / "big.onnx.data").is_file()
    info = inspect_model(path)
    assert info.inputs[0].name == "input"
    assert info.size_bytes == path.stat().st_size


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found") as e:
        inspect_model(tmp_path / "nope.onnx")
    assert "nope.onnx" in str(e.value)
    assert "\n" not in str(e.value)


def test_not_a_protobuf(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 8)
    with pytest.raises(ModelError, match="junk.onnx") as e:
        inspect_model(path)
    assert "\n" not in str(e.value)


def test_empty_protobuf_has_no_graph(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match="no graph"):
        inspect_model(path)


def test_checker_failure_names_file(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "bad_op.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelError, match="onnx.checker") as e:
        inspect_model(path)
    assert "bad_op.onnx" in str(e.value)
    assert "\n" not in str(e.value)


def test_sequence_inputs_and_outputs_are_refused_with_the_fix(tmp_path):
    seq = helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, None)
    out = helper.make_tensor_value_info("count", TensorProto.INT64, [])
    graph = helper.make_graph([helper.make_node("SequenceLength", ["seq"], ["count"])], "g", [seq], [out])
    path = tmp_path / "seq.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match="input 'seq' is a sequence, not a tensor"):
        inspect_model(path)
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x"], ["s"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)],
    )
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match=r"output 's' is a sequence.*zipmap"):
        inspect_model(path)


def test_a_model_without_outputs_is_refused(tmp_path):
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [])
    path = tmp_path / "empty.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelError, match="has no outputs"):
        inspect_model(path)


def test_a_folder_a_fifo_or_an_untyped_input_in_place_of_a_model_says_what_it_is(tmp_path):
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelError, match=r"folder.onnx: is a directory, not an ONNX file"):
        inspect_model(tmp_path / "folder.onnx")
    os.mkfifo(tmp_path / "pipe.onnx")  # reading it would wait for a writer forever
    with pytest.raises(ModelError, match=r"pipe.onnx: is a FIFO, socket or device"):
        inspect_model(tmp_path / "pipe.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.UNDEFINED, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    onnx.save(model, tmp_path / "untyped.onnx")
    with pytest.raises(ModelError, match=r"untyped.onnx: input 'x' has no element type"):
        inspect_model(tmp_path / "untyped.onnx")


def test_a_model_file_that_cannot_be_read_is_a_model_error():
    with pytest.raises(ModelError, match=r"/proc/self/mem: cannot read the model \(Input/output error\)"):
        inspect_model(Path("/proc/self/mem"))  # a regular file whose first bytes cannot be read, even by root

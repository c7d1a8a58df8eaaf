"""Data sources (.npz, folder of .npy, module:function) and their checks against a real model."""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest

from tests.models import mlp_classifier
from trtci.errors import DataError
from trtci.pipeline.data import check_against_model, load_dataset
from trtci.pipeline.model import inspect_model


@pytest.fixture
def model(tmp_path):
    return inspect_model(mlp_classifier(tmp_path / "mlp.onnx"))


def samples(n: int = 10, features: int = 16, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, features)).astype(dtype)


def test_npz_with_labels(tmp_path, model):
    np.savez(tmp_path / "v.npz", input=samples(), labels=np.arange(10) % 3)
    data = load_dataset(str(tmp_path / "v.npz"))
    check_against_model(data, model, "validation")
    assert data.size == 10
    assert list(data.labels) == list(np.arange(10) % 3)
    assert set(data.arrays) == {"input"}


def test_npy_folder_matches_npz_content_hash(tmp_path):
    x = samples()
    np.savez(tmp_path / "v.npz", input=x)
    (tmp_path / "dir").mkdir()
    np.save(tmp_path / "dir" / "input.npy", x)
    assert load_dataset(str(tmp_path / "dir")).sha256 == load_dataset(str(tmp_path / "v.npz")).sha256


def test_hash_changes_when_one_value_changes(tmp_path):
    x = samples()
    np.savez(tmp_path / "a.npz", input=x)
    x[3, 4] += 1e-3
    np.savez(tmp_path / "b.npz", input=x)
    assert load_dataset(str(tmp_path / "a.npz")).sha256 != load_dataset(str(tmp_path / "b.npz")).sha256


def test_function_source_concatenates_feeds(tmp_path, monkeypatch, model):
    (tmp_path / "userdata.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            def feeds():
                for i in range(3):
                    yield {"input": np.full((4, 16), i, dtype=np.float32)}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        data = load_dataset("userdata:feeds")
        check_against_model(data, model, "calibration")
        assert data.size == 12
        assert [float(data.arrays["input"][i, 0]) for i in (0, 4, 8)] == [0.0, 1.0, 2.0]
    finally:
        sys.modules.pop("userdata", None)


def test_full_batches_pad_the_last_from_the_start_and_count_the_real_samples(tmp_path):
    np.savez(tmp_path / "v.npz", input=samples(5))
    data = load_dataset(str(tmp_path / "v.npz"))
    x = data.arrays["input"]
    batches = list(data.full_batches(2))
    assert [(len(feeds["input"]), real) for feeds, real in batches] == [(2, 2), (2, 2), (2, 1)]
    np.testing.assert_array_equal(np.concatenate([f["input"][:real] for f, real in batches]), x)
    np.testing.assert_array_equal(batches[-1][0]["input"][1], x[0])  # padding repeats the first sample


def test_full_batches_tile_a_data_set_smaller_than_one_batch(tmp_path):
    np.savez(tmp_path / "v.npz", input=samples(3))
    data = load_dataset(str(tmp_path / "v.npz"))
    ((feeds, real),) = data.full_batches(8)
    assert real == 3 and feeds["input"].shape == (8, 16)
    np.testing.assert_array_equal(feeds["input"][[0, 3, 6]], np.repeat(data.arrays["input"][:1], 3, axis=0))
    np.testing.assert_array_equal(data.feeds_for_batch(8)["input"], feeds["input"])


def test_content_hash_is_computed_once(tmp_path):
    np.savez(tmp_path / "v.npz", input=samples())
    data = load_dataset(str(tmp_path / "v.npz"))
    assert data.sha256 is data.sha256  # the same object: the second read did not hash the data again


def test_max_samples_truncates_inputs_and_labels(tmp_path):
    np.savez(tmp_path / "v.npz", input=samples(10), labels=np.arange(10))
    data = load_dataset(str(tmp_path / "v.npz"), max_samples=4)
    assert data.size == 4 and len(data.labels) == 4


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"inptu": samples()}, "missing input; unknown inptu"),
        ({"input": samples(dtype=np.float64)}, "is float64 but the model wants float32"),
        ({"input": samples(features=15)}, r"samples have shape \[15\] but the model wants \[16\]"),
    ],
)
def test_mismatches_name_the_input_and_the_fix(tmp_path, model, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        check_against_model(load_dataset(str(tmp_path / "bad.npz")), model, "validation")


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "empty.npz", input=np.zeros((0, 16), np.float32))
    with pytest.raises(DataError, match="empty"):
        load_dataset(str(tmp_path / "empty.npz"))
    np.savez(tmp_path / "labels.npz", input=samples(10), labels=np.arange(9))
    with pytest.raises(DataError, match="9 labels for 10 samples"):
        load_dataset(str(tmp_path / "labels.npz"))
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read as .npz"):
        load_dataset(str(tmp_path / "corrupt.npz"))
    with pytest.raises(DataError, match="cannot import"):
        load_dataset("no_such_module_here:feeds")


@pytest.mark.parametrize(
    "body, message",
    [
        (
            'yield {"input": np.zeros((2, 16), np.float32)}\n    yield {"input": np.zeros(16, np.float32)}',
            r"feed 1 input 'input' has shape \[16\], feed 0 had \[2, 16\]",
        ),
        ('yield {"input": np.float32(1.0)}', r"feed 0 input 'input' is a scalar"),
        (
            'yield {"input": np.zeros((2, 16), np.float32)}\n    yield {"input": np.zeros((2, 15), np.float32)}',
            r"feed 1 input 'input' has shape \[2, 15\], feed 0 had \[2, 16\]",
        ),
    ],
    ids=["rank", "scalar", "sample-shape"],
)
def test_function_feeds_that_do_not_stack_are_a_data_error_naming_the_input(tmp_path, monkeypatch, body, message):
    (tmp_path / "badfeeds.py").write_text(f"import numpy as np\ndef feeds():\n    {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(DataError, match=message):
            load_dataset("badfeeds:feeds")
    finally:
        sys.modules.pop("badfeeds", None)


@pytest.mark.parametrize(
    "module, message",
    [
        ("def feeds(:\n", r"cannot import \(SyntaxError"),
        ("1 / 0\n", r"cannot import \(ZeroDivisionError"),
        ("import sys\nsys.exit(0)\n", r"cannot import \(SystemExit"),
        ("import sys\ndef feeds():\n    sys.exit(0)\n", r"raised SystemExit"),
        ("def feeds():\n    return 3\n", r"raised TypeError"),
        ("def feeds():\n    yield [1, 2]\n", r"yielded a list; yield dicts"),
        ("def feeds():\n    yield {'input': [[1.0, 2.0], [3.0]]}\n", r"feed 0 input 'input' is not an array"),
        ("def feeds():\n    yield {1: [[1.0]]}\n", r"feed 0 has a key 1; key each array by its input name"),
    ],
    ids=["syntax", "import-raises", "import-exits", "call-exits", "not-iterable", "not-dicts", "ragged", "int-key"],
)
def test_whatever_a_data_module_does_wrong_is_a_data_error(tmp_path, monkeypatch, module, message):
    (tmp_path / "hostile_data.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(DataError, match=message):
            load_dataset("hostile_data:feeds")
    finally:
        sys.modules.pop("hostile_data", None)


def test_a_generator_that_never_ends_is_refused_or_cut_at_max_samples(tmp_path, monkeypatch):
    (tmp_path / "endless.py").write_text(
        "import numpy as np\ndef feeds():\n    while True:\n        yield {'input': np.zeros((1000, 16), np.float32)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(DataError, match="yields more than 1000000 samples; set max_samples"):
            load_dataset("endless:feeds")
        assert load_dataset("endless:feeds", max_samples=2500).size == 2500
    finally:
        sys.modules.pop("endless", None)


def _npy_with_header(shape: tuple[int, ...]) -> bytes:
    """A .npy whose header declares `shape` of float32 but holds 64 bytes: damaged, or hostile."""
    import io

    from numpy.lib import format as npy

    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


def test_a_header_that_declares_more_data_than_the_file_holds_is_refused_before_allocating(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:
        archive.writestr("input.npy", _npy_with_header((10**12, 16)))
    with pytest.raises(DataError, match=r"bomb.npz \[input.npy\]: the header declares 64000000000000 bytes"):
        load_dataset(str(tmp_path / "bomb.npz"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "input.npy").write_bytes(_npy_with_header((10**12, 16)))
    with pytest.raises(DataError, match=r"input.npy: the header declares 64000000000000 bytes"):
        load_dataset(str(tmp_path / "dir"))


def test_a_batch_larger_than_memory_is_refused_before_allocating(tmp_path):
    np.savez(tmp_path / "v.npz", input=samples())
    data = load_dataset(str(tmp_path / "v.npz"))
    with pytest.raises(DataError, match=r"a batch of 1000000000000 samples needs .* GiB of memory.*lower batch_sizes"):
        data.feeds_for_batch(10**12)
    assert data.feeds_for_batch(4)["input"].shape == (4, 16)


def test_labels_that_are_one_value_or_a_fifo_in_a_folder_are_data_errors(tmp_path):
    np.savez(tmp_path / "v.npz", input=samples(), labels=np.array(3))
    with pytest.raises(DataError, match=r"v.npz: labels is a single value"):
        load_dataset(str(tmp_path / "v.npz"))
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "dir" / "input.npy")  # opening it to read would wait for a writer forever
    with pytest.raises(DataError, match=r"input.npy: not a regular file"):
        load_dataset(str(tmp_path / "dir"))

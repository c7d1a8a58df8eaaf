"""trtci.yml validation: unknown keys and wrong types name their key path; paths resolve from the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trtci.config import load_config, parse_config
from trtci.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trtci.yml"
    path.write_text(text)
    return path


def test_minimal_config_fills_defaults_and_resolves_paths_from_the_file(tmp_path):
    config = load_config(write(tmp_path, "models:\n  - path: m.onnx\n    precisions: [fp32, fp16]\n"))
    model = config.models[0]
    assert model.path == tmp_path / "m.onnx"
    assert config.database == tmp_path / "trtci.db"


def test_int8_without_calibration_is_an_error_that_says_what_to_add(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.0: int8 needs calibration data"):
        load_config(write(tmp_path, "models:\n  - path: m.onnx\n    precisions: [int8]\n"))


def test_default_precisions_need_calibration_too(tmp_path):
    with pytest.raises(ConfigError, match="int8 needs calibration"):
        load_config(write(tmp_path, "models:\n  - path: m.onnx\n"))


def test_unknown_key_names_its_path(tmp_path):
    text = "models:\n  - path: m.onnx\n    precisions: [fp32]\n    bench:\n      duraton_s: 2\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "models.0.bench.duraton_s: unknown key" in str(info.value)


def test_wrong_type_and_bad_enum_name_their_paths(tmp_path):
    text = "models:\n  - path: m.onnx\n    precisions: [fp32, fp8]\n    batch_sizes: [1, many]\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "models.0.precisions.1" in message
    assert "models.0.batch_sizes.1" in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"trtci.yml: line \d+ is not valid YAML"):
        load_config(write(tmp_path, "models:\n  - path: [unclosed\n"))


def test_missing_and_empty_config_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, "# nothing\n"))


def test_duplicate_model_names_and_batch_sizes_are_refused():
    with pytest.raises(ConfigError, match="model names must be unique"):
        parse_config(
            {"models": [{"path": "a/m.onnx", "precisions": ["fp32"]}, {"path": "b/m.onnx", "precisions": ["fp32"]}]},
            "x",
            Path("."),
        )
    with pytest.raises(ConfigError, match="duplicates"):
        parse_config({"models": [{"path": "m.onnx", "precisions": ["fp32"], "batch_sizes": [1, 1]}]}, "x", Path("."))


def test_profile_ranges_must_be_ordered_and_complete():
    base = {"path": "m.onnx", "precisions": ["fp32"]}
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        parse_config(
            {"models": [{**base, "inputs": [{"name": "x", "min": [1, 8], "opt": [1, 4], "max": [1, 16]}]}]},
            "x",
            Path("."),
        )
    with pytest.raises(ConfigError, match="min, opt and max"):
        parse_config({"models": [{**base, "inputs": [{"name": "x", "min": [1, 8]}]}]}, "x", Path("."))


def test_function_data_sources_are_not_taken_as_paths(tmp_path):
    text = (
        "models:\n  - path: m.onnx\n    precisions: [int8]\n"
        "    calibration: {data: mypkg.data:calibration_feeds}\n    validation: {data: val.npz}\n"
    )
    model = load_config(write(tmp_path, text)).models[0]
    assert model.calibration.data == "mypkg.data:calibration_feeds"
    assert model.validation.data == str(tmp_path / "val.npz")


def test_the_example_config_is_valid():
    example = Path(__file__).parent.parent / "examples" / "digits" / "trtci.yml"
    config = load_config(example)
    assert config.models[0].path.is_file()


def test_a_backend_listed_twice_is_an_error(tmp_path):
    text = "models:\n  - path: m.onnx\n    precisions: [fp32]\nbackends: [onnxruntime, tensorrt, onnxruntime]\n"
    with pytest.raises(ConfigError, match="backends: list has duplicates"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "extra, message",
    [
        ("database: out.md\nreport: out.md\n", "report and database are the same file"),
        ("database: r.db\nsummary_json: r.db\n", "summary_json and database are the same file"),
        ("report: m.onnx\n", "models.0.path and report are the same file"),
        ("report: calib.npz\n", "models.0.calibration.data and report are the same file"),
    ],
)
def test_an_output_that_would_overwrite_the_database_or_an_input_is_refused(tmp_path, extra, message):
    path = write(tmp_path, "models: [{path: m.onnx, calibration: {data: calib.npz}}]\n" + extra)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_same_data_for_calibration_and_validation_is_fine(tmp_path):
    path = write(tmp_path, "models: [{path: m.onnx, calibration: {data: d.npz}, validation: {data: d.npz}}]\n")
    assert load_config(path).models[0].calibration.data == load_config(path).models[0].validation.data


@pytest.mark.parametrize(
    "text, where",
    [
        ("bench: {duration_s: .inf}\n", "bench.duration_s"),
        ("bench: {warmup_ms: .inf}\n", "bench.warmup_ms"),
        ("bench: {duration_s: 100000}\n", "bench.duration_s"),
        ("compare: {threshold: .nan}\n", "compare.threshold"),
        ("models: [{path: m.onnx, precisions: [fp32], accuracy: {min_sqnr_db: .nan}}]\n", "min_sqnr_db"),
    ],
)
def test_values_that_would_hang_or_never_compare_are_refused(tmp_path, text, where):
    base = "" if text.startswith("models") else "models: [{path: m.onnx, precisions: [fp32]}]\n"
    with pytest.raises(ConfigError, match=where):
        load_config(write(tmp_path, base + text))


def test_a_key_given_twice_is_an_error_naming_it_and_its_line(tmp_path):
    text = "models: [{path: m.onnx, precisions: [fp32]}]\ncompare:\n  threshold: 0.1\n  threshold: 0.5\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"line 4 .*key 'threshold' is given twice"):
        load_config(path)


def test_a_config_that_is_not_utf8_or_is_huge_is_refused_quickly(tmp_path):
    path = tmp_path / "trtci.yml"
    path.write_bytes(b"models: [{path: m\xff.onnx}]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
    path.write_bytes(b"# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="over 1 MiB"):
        load_config(path)


def test_a_cache_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(ConfigError, match="cache_dir .* is a file"):
        load_config(write(tmp_path, "models: [{path: m.onnx, precisions: [fp32]}]\ncache_dir: cache\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("models: [{path: m.onnx, batch_sizes: [3000000000]}]", r"batch_sizes.0: Input should be less than or equal"),
        ("models: [{path: m.onnx, inputs: [{name: x, shape: [1, -1]}]}]", r"inputs.0: shape dim 1 is -1"),
        ("models: [{path: m.onnx, inputs: [{name: x, shape: [1, 10000000000]}]}]", r"shape dim 1 is 10000000000"),
        ("models: [{path: m.onnx, calibration: {data: c.npz, batch_size: 3000000000}}]", r"calibration.batch_size"),
        ("bench: {min_iterations: 1000000000000}\nmodels: [{path: m.onnx}]", r"bench.min_iterations"),
    ],
)
def test_sizes_no_machine_could_hold_or_time_are_refused_naming_their_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_outputs_that_are_folders_fifos_or_under_a_file_are_refused_before_any_work(tmp_path):
    model = "models: [{path: m.onnx, precisions: [fp32]}]\n"
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=r"database .*folder is a directory; point database at a file path"):
        load_config(write(tmp_path, model + "database: folder\n"))
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ConfigError, match=r"report .*pipe is not a regular file"):
        load_config(write(tmp_path, model + "report: pipe\n"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"summary_json .*file/s.json: .*file is a file, not a directory"):
        load_config(write(tmp_path, model + "summary_json: file/s.json\n"))
    with pytest.raises(ConfigError, match=r"cache_dir .*file/cache: .*file is a file, not a directory"):
        load_config(write(tmp_path, model + "cache_dir: file/cache\n"))


def test_a_config_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "trtci.yml")
    with pytest.raises(ConfigError, match="trtci.yml: not a regular file"):
        load_config(tmp_path / "trtci.yml")


@pytest.mark.parametrize("depth", [900, 50_000])
def test_a_config_nested_thousands_deep_is_refused_not_a_recursion_error(tmp_path, depth):
    with pytest.raises(ConfigError, match="nests lists or mappings too deeply"):
        load_config(write(tmp_path, "models: " + "[" * depth + "]" * depth + "\n"))


def test_a_config_with_thousands_of_problems_names_three_and_counts_the_rest(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "models: [" + ", ".join(["5"] * 5000) + "]\n"))
    message = str(caught.value)
    assert message.count("trtci.yml: models.0: ") == 1 and message.count("models.") == 3
    assert message.endswith(
        "; models.2: Input should be a valid dictionary or instance of ModelConfig; and 4997 more problems"
    )

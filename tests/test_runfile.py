"""Run files: one run per uniquely named file, read back exactly; damaged, foreign or newer files refused."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from tests.sample_runs import passing_run, sample_run
from trtci.errors import DataError
from trtci.store.runfile import FORMAT, file_name, read_runfile, run_to_dict, write_runfile


def test_round_trip_keeps_every_field_and_the_raw_samples(tmp_path):
    run = sample_run()
    path = write_runfile(run, tmp_path / "bundle")
    back = read_runfile(path)
    assert path.name == file_name(run) and path.name.endswith(".trtci.json.gz")
    assert back.context == run.context and back.devices == run.devices
    assert [s.key for s in back.series] == [s.key for s in run.series]
    assert back.comparisons == run.comparisons and back.warnings == run.warnings
    for before, after in zip(run.series, back.series):
        assert after.error == before.error and after.build == before.build
        if before.bench is not None:
            assert after.bench.stats == before.bench.stats
            # float32 on disk: ~7 significant digits
            assert after.bench.samples_ms == pytest.approx(before.bench.samples_ms, rel=1e-6)
        if before.accuracy is not None:
            assert bool(after.accuracy) == bool(before.accuracy)
            for a, b in zip(after.accuracy.outputs, before.accuracy.outputs):
                assert a.sqnr_db == b.sqnr_db or (math.isinf(a.sqnr_db) and math.isinf(b.sqnr_db))
    assert bool(back) == bool(run)


def test_two_runs_never_share_a_file_name(tmp_path):
    first, second = sample_run(), sample_run()
    second.context.run_id = "another-run"  # same start second, different run: a matrix of legs
    assert file_name(first) != file_name(second)
    assert len({write_runfile(first, tmp_path), write_runfile(second, tmp_path)}) == 2
    assert not list(tmp_path.glob(".tmp-*"))


def test_newer_format_is_refused_with_the_version(tmp_path):
    data = run_to_dict(passing_run())
    data["format"] = FORMAT + 1
    data["trtci_version"] = "9.0.0"
    path = tmp_path / "new.trtci.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    with pytest.raises(DataError, match="written by trtci 9.0.0 .* upgrade trtci"):
        read_runfile(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"plain text, not gzip", "cannot read as a trtci run file"),
        (gzip.compress(b"{not json"), "not JSON"),
        (gzip.compress(b'{"kind": "something-else"}'), "not a trtci run file"),
        (gzip.compress(json.dumps({"kind": "trtci-run", "format": 1, "run": {"series": []}}).encode()), "damaged"),
    ],
)
def test_damaged_or_foreign_files_are_refused_with_their_path(tmp_path, content, message):
    path = tmp_path / "x.trtci.json.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_runfile(path)
    assert str(path) in str(info.value)


def test_truncated_file_is_refused(tmp_path):
    path = write_runfile(sample_run(), tmp_path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="damaged|cannot read"):
        read_runfile(path)


def test_fields_of_the_wrong_type_are_refused_not_rendered(tmp_path):
    """A run file may come from a fork's job: a 'batch' carrying HTML and an @mention must not reach a comment."""
    data = run_to_dict(sample_run())
    data["run"]["series"][0]["key"]["batch"] = "1 <img src=y onerror=alert(2)> @octocat"
    path = tmp_path / "hostile.trtci.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    with pytest.raises(DataError, match=r"series\.0\.key\.batch"):
        read_runfile(path)


def test_series_of_an_unlisted_device_are_refused(tmp_path):
    data = run_to_dict(sample_run())
    data["run"]["devices"][0]["name"] = "renamed GPU"  # a device's id is a hash of its fields
    path = tmp_path / "inconsistent.trtci.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    with pytest.raises(DataError, match="which it does not list"):
        read_runfile(path)


@pytest.mark.parametrize("field", ["comparisons", "accuracy_changes"])
def test_an_interval_that_is_not_low_and_high_is_refused_before_any_template_reads_it(tmp_path, field):
    data = run_to_dict(sample_run())
    data["run"][field][0]["interval"] = [0.1]
    path = tmp_path / "short-interval.trtci.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    with pytest.raises(DataError, match=r"an interval is \[low, high\]"):
        read_runfile(path)


def hostile(tmp_path, name: str, payload: bytes):
    path = tmp_path / f"{name}.trtci.json.gz"
    path.write_bytes(gzip.compress(payload, compresslevel=1))
    return path


def with_value(value_json: str) -> bytes:
    """A valid run file whose first device's details hold `value_json` (JSON text)."""
    data = run_to_dict(sample_run())
    data["run"]["devices"][0]["details"]["x"] = "@VALUE@"
    return json.dumps(data).replace('"@VALUE@"', value_json).encode()


@pytest.mark.parametrize(
    "name, payload, message",
    [
        ("deep", b"[" * 200_000 + b"]" * 200_000, "nested deeper than 64 levels"),
        ("deep-inside", with_value("[" * 100 + "]" * 100), "nested deeper than 64 levels"),
        ("huge-int", with_value(str(2**64)), "an integer beyond 64 bits"),
        (
            "huge-batch",
            json.dumps(run_to_dict(sample_run())).replace('"batch": 1', f'"batch": {10**30}', 1).encode(),
            "an integer beyond 64 bits",
        ),  # fmt: skip
        ("surrogate", with_value('"\\ud800"'), "text that is not Unicode"),
        ("commas", b"[" + b"0," * 1_000_001 + b"0]", "more than 1000000 values"),
    ],
)
def test_hostile_content_is_refused_by_name(tmp_path, name, payload, message):
    path = hostile(tmp_path, name, payload)
    with pytest.raises(DataError, match=message) as info:
        read_runfile(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_samples_that_are_not_whole_float32_values_are_refused(tmp_path):
    data = run_to_dict(sample_run())
    bench = next(s["bench"] for s in data["run"]["series"] if s.get("bench"))
    bench["samples_ms"] = "AAAAAAA="  # 5 bytes
    path = hostile(tmp_path, "samples", json.dumps(data).encode())
    with pytest.raises(DataError, match="damaged trtci run file"):
        read_runfile(path)


def test_a_gzip_bomb_is_refused_while_it_is_read(tmp_path):
    """300 MB of zeros in a 300 KB file: refused after MAX_JSON_BYTES, without holding the rest in memory."""
    import tracemalloc

    path = tmp_path / "bomb.trtci.json.gz"
    block = b"0" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as out:
        for _ in range(300):
            out.write(block)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="decompresses to more than"):
            read_runfile(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * (1 << 20), f"peak {peak / (1 << 20):.0f} MB"


def test_text_from_the_file_cannot_add_a_line_to_the_message(tmp_path):
    data = run_to_dict(sample_run())
    accuracy = next(s["accuracy"] for s in data["run"]["series"] if s.get("accuracy"))
    accuracy["thresholds"] = {"a\n::error::fake": "x"}
    path = hostile(tmp_path, "newline", json.dumps(data).encode())
    with pytest.raises(DataError, match="thresholds") as info:
        read_runfile(path)
    assert "\n" not in str(info.value) and "a\\n::error::fake" in str(info.value)


@pytest.mark.parametrize("run_id", ["r1\n::warning::x", "../../etc", "", "x" * 129])
def test_a_run_id_trtci_would_not_make_is_refused(tmp_path, run_id):
    data = run_to_dict(sample_run())
    data["run"]["context"]["run_id"] = run_id
    path = hostile(tmp_path, "run-id", json.dumps(data).encode())
    with pytest.raises(DataError, match="run id") as info:
        read_runfile(path)
    assert "\n" not in str(info.value)


def test_a_pipe_is_refused_not_read_forever(tmp_path):
    import os

    fifo = tmp_path / "fifo.trtci.json.gz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_runfile(fifo)

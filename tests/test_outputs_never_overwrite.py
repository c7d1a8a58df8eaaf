"""`trtci run` refuses, before any work, an output path that is the database or an input: nothing recorded is lost."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models import mlp_classifier


def trtci(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "trtci.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flag", ["--report", "--json"])
def test_an_output_equal_to_the_database_is_exit_2_and_the_database_is_untouched(tmp_path, flag):
    mlp_classifier(tmp_path / "m.onnx")
    first = trtci(tmp_path, "run", "--model", "m.onnx", "--precision", "fp32", "--duration", "0.05", "--db", "r.db")
    assert first.returncode == 0, first.stderr
    before = hashlib.sha256((tmp_path / "r.db").read_bytes()).hexdigest()
    again = trtci(tmp_path, "run", "--model", "m.onnx", "--precision", "fp32", "--db", "r.db", flag, "r.db")
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "are the same file" in lines[0] and "give each output its own path" in lines[0]
    assert hashlib.sha256((tmp_path / "r.db").read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    "text, flags",
    [
        ("report: trtci.yml\n", []),
        ("summary_json: ./trtci.yml\n", []),
        ("", ["--report", "trtci.yml"]),
        ("", ["--json", "trtci.yml"]),
    ],
)
def test_an_output_equal_to_the_config_file_is_exit_2_and_the_config_is_untouched(tmp_path, text, flags):
    mlp_classifier(tmp_path / "m.onnx")
    config = "models: [{path: m.onnx, precisions: [fp32]}]\n" + text
    (tmp_path / "trtci.yml").write_text(config)
    done = trtci(tmp_path, "run", "--config", "trtci.yml", "--duration", "0.02", *flags)
    assert done.returncode == 2, done.stderr
    assert "the config file and " in done.stderr and "are the same file" in done.stderr
    assert (tmp_path / "trtci.yml").read_text() == config
    assert not (tmp_path / "trtci.db").exists()

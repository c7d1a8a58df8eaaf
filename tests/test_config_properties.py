"""Property: whatever a trtci.yml holds, `trtci config` and `trtci run` end with exit 0, 1 or 2, an error in one
line (of at most MAX_LINE characters), never a traceback and never a hang, and a database beside the file is
not changed by a refused run.

Each example runs the real CLI in a process of its own with a timeout. Examples are few by default (each is a
fresh interpreter, about a second); TRTCI_HYPOTHESIS_EXAMPLES raises the count for a longer search.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.models import mlp_classifier
from trtci.cli.exits import MAX_LINE

hypothesis = pytest.importorskip("hypothesis", reason="pip install -e '.[test]' (hypothesis)")
st = hypothesis.strategies

pytestmark = pytest.mark.slow  # a fresh interpreter per example and command

EXAMPLES = int(os.environ.get("TRTCI_HYPOTHESIS_EXAMPLES", "10"))
TIMEOUT_S = 120
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the checkout
)
ERROR_PREFIXES = ("trtci: error: ", "Error: ")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A folder as a user has it: a model, calibration and validation data, and a database with one run."""
    folder = tmp_path_factory.mktemp("project")
    mlp_classifier(folder / "m.onnx")
    rng = np.random.default_rng(0)
    np.savez(folder / "c.npz", input=rng.standard_normal((16, 16)).astype(np.float32))
    np.savez(folder / "v.npz", input=rng.standard_normal((8, 16)).astype(np.float32), labels=rng.integers(0, 10, 8))
    first = _trtci(folder, "run", "--model", "m.onnx", "--precision", "fp32", "--duration", "0.02", "--warmup", "0")
    assert first is not None and first.returncode == 0, first
    return folder


def _trtci(cwd: Path, *args: str) -> subprocess.CompletedProcess | None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    try:
        return subprocess.run(
            [sys.executable, "-m", "trtci.cli", *args],
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None


def _runs(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        return db.execute("select count(*) from runs").fetchone()[0]


def _check(template: Path, config: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "project"
        shutil.copytree(template, folder)
        (folder / "trtci.yml").write_bytes(config)
        database = folder / "trtci.db"
        before = hashlib.sha256(database.read_bytes()).hexdigest()
        done = _trtci(folder, command, "--config", "trtci.yml")
        assert done is not None, f"trtci {command} still running after {TIMEOUT_S} s"
        hypothesis.event(f"trtci {command}: exit {done.returncode}")  # --hypothesis-show-statistics
        output = done.stdout + done.stderr
        assert "Traceback" not in output, output[-3000:]
        assert done.returncode in ((0, 2) if command == "config" else (0, 1, 2)), output[-3000:]
        errors = [line for line in done.stderr.splitlines() if line.startswith(ERROR_PREFIXES)]
        if done.returncode == 2:
            assert len(errors) == 1 and len(errors[0]) <= MAX_LINE, done.stderr[-3000:]
        else:
            assert errors == [], done.stderr[-3000:]
        if done.returncode == 2 or command == "config":
            assert hashlib.sha256(database.read_bytes()).hexdigest() == before
        if command == "config" and done.returncode == 2:
            assert done.stderr.count("\n") == 1, done.stderr
        assert _runs(database) >= 1  # a run that went through may thin the history (history:), never empty it


# Any YAML value, scalars of every kind YAML reads (numbers that overflow, .inf, dates, nulls, odd strings).
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["m.onnx", "c.npz", "v.npz", "trtci.db", ".", "..", "/", "fp32", "int8", "onnxruntime", "N"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# Paths stay inside the example's folder (trtci runs as root here: a random absolute path would be written).
PATHS = st.sampled_from(["m.onnx", "c.npz", "v.npz", "trtci.db", "trtci.yml", ".", "missing", "sub/x", "m.onnx/x"])
FAST_BENCH = st.fixed_dictionaries(
    {},
    optional={
        "duration_s": st.floats(max_value=0.03) | VALUES,
        "warmup_ms": st.floats(max_value=5) | VALUES,
        "min_iterations": st.integers(max_value=20) | st.integers(min_value=10**6),
        "threads": st.integers(-2, 2) | VALUES,
        "max_cv": VALUES,
    },
)
MODEL = st.fixed_dictionaries(
    {"path": PATHS},
    optional={
        "name": VALUES,
        "precisions": st.lists(st.sampled_from(["fp32", "fp16", "int8", "fp8"]), max_size=3) | VALUES,
        "batch_sizes": st.lists(st.integers(-2, 4) | st.integers(min_value=2**31), max_size=3) | VALUES,
        "inputs": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["input", "x"])}, optional={"shape": VALUES}), max_size=2
        )
        | VALUES,
        "calibration": st.fixed_dictionaries({"data": PATHS}, optional={"method": VALUES, "batch_size": VALUES}),
        "validation": st.fixed_dictionaries({"data": PATHS}, optional={"label_output": VALUES}),
        "accuracy": VALUES,
        "bench": FAST_BENCH,
    },
)
# Shaped like a trtci.yml so that many examples get past the schema into the run; values that would make a valid
# run slow (long benchmarks, confirmation budgets, TensorRT engine builds) are left out: slow is not a hang.
CONFIGS = st.fixed_dictionaries(
    {"models": st.lists(MODEL, max_size=2) | VALUES, "bench": FAST_BENCH},
    optional={
        "backends": st.lists(st.sampled_from(["onnxruntime", "nope", ""]), max_size=2) | VALUES,
        "database": PATHS,
        "report": PATHS | st.none(),
        "summary_json": PATHS | st.none(),
        "template_dir": PATHS | st.none(),
        "cache_dir": PATHS,
        "compare": st.fixed_dictionaries(
            {"confirm_budget_s": st.floats(max_value=1) | VALUES, "ab_budget_s": st.floats(max_value=1) | VALUES},
            optional={"threshold": VALUES, "window": VALUES, "thresholds": VALUES, "acknowledge": VALUES},
        ),
        "history": VALUES,
        "tensorrt": VALUES,
        "unknown": VALUES,
    },
)


@SETTINGS
@hypothesis.given(text=st.text(max_size=400))
def test_any_text_as_trtci_yml(template, text):
    for command in ("config", "run"):
        _check(template, text.encode(), command)


@SETTINGS
@hypothesis.given(raw=st.binary(max_size=400))
def test_any_bytes_as_trtci_yml(template, raw):
    _check(template, raw, "run")


@SETTINGS
@hypothesis.given(config=CONFIGS)
def test_any_config_shaped_yaml_as_trtci_yml(template, config):
    text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False)
    for command in ("config", "run"):
        _check(template, text.encode(), command)

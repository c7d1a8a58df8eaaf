"""A catalog of bad input to `trtci run`: configs, flags, models, data, templates, paths that are folders or FIFOs,
environment variables. Each case runs through the real CLI in its own process and must end with exit 2 or 3 and
one error line under 300 characters that names the file or key, never a traceback and never a hang.

The cases run a few at a time in one fixture (each is a fresh interpreter, most of whose second is imports);
the parametrized tests then judge one case each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.models import OPSET, mlp_classifier

pytestmark = pytest.mark.slow  # sixty fresh interpreters, a second each

FAST = ["--duration", "0.02", "--warmup", "0"]
TIMEOUT_S = 120
ERROR_PREFIXES = ("trtci: error: ", "Error: ", "::error")


@dataclass
class Case:
    args: list[str]
    says: list[str]  # what the error line must contain: the file or key, the fix
    code: int = 2
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    code: int | None  # None: it hung
    stdout: str = ""
    stderr: str = ""


def _graph(path: Path, node: onnx.NodeProto, x: onnx.ValueInfoProto, y: onnx.ValueInfoProto, **kw) -> Path:
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y], kw.get("initializers", [])),
        opset_imports=kw.get("opsets", [helper.make_opsetid("", OPSET)]),
    )
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def _relu(path: Path, dims: list | None, elem: int = TensorProto.FLOAT, **kw) -> Path:
    x = helper.make_tensor_value_info("x", elem, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    return _graph(path, helper.make_node("Relu", ["x"], ["y"]), x, y, **kw)


def _config(d: Path, text: str) -> list[str]:
    (d / "trtci.yml").write_text(textwrap.dedent(text))
    return ["--config", "trtci.yml"]


def _one_model(d: Path, *extra: str) -> list[str]:
    if not (d / "m.onnx").exists():
        mlp_classifier(d / "m.onnx")
    return ["--model", "m.onnx", "--precision", "fp32", "--db", "r.db", *FAST, *extra]


def _data_function(d: Path, body: str) -> list[str]:
    (d / "baddata.py").write_text(textwrap.dedent(body))
    return _one_model(d, "--validation-data", "baddata:feeds")


def _external_data_model(d: Path, weights: bytes | None) -> list[str]:
    """MatMul with its weight in m.data; `weights` replaces the file's bytes (None removes it)."""
    weight = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    _graph(d / "m.onnx", helper.make_node("MatMul", ["x", "w"], ["y"]), x, y, initializers=[weight])
    model = onnx.load(str(d / "m.onnx"))
    onnx.save_model(model, str(d / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    if weights is None:
        (d / "m.data").unlink()
    else:
        (d / "m.data").write_bytes(weights)
    return _one_model(d)


def _template(d: Path, text: str) -> list[str]:
    (d / "t").mkdir()
    (d / "t" / "comment.md.j2").write_text(text)
    return _one_model(d, "--template-dir", "t", "--report", "r.md")


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _after(*effects_then_case: object) -> Case:
    """The last argument: the case, built after the arguments before it made its files."""
    case = effects_then_case[-1]
    assert isinstance(case, Case)
    return case


def _in_actions(d: Path, variable: str, path: Path) -> dict[str, str]:
    return {"GITHUB_ACTIONS": "true", variable: str(path)}


BIG = 2_000_000_000  # a batch or dim within the config's bounds whose random inputs no machine holds

CASES: dict[str, Callable[[Path], Case]] = {
    # configs
    "config is a FIFO": lambda d: Case(["--config", str(_fifo(d / "f.yml"))], ["f.yml", "not a regular file"]),
    "config is a folder": lambda d: _after((d / "c.yml").mkdir(), Case(["--config", "c.yml"], ["c.yml"])),
    "config not UTF-8": lambda d: _after(
        (d / "t.yml").write_bytes(b"models: [{path: \xff}]"), Case(["--config", "t.yml"], ["t.yml", "UTF-8"])
    ),
    "key given twice": lambda d: Case(_config(d, "models: []\nmodels: []\n"), ["trtci.yml", "twice"]),
    "batch size beyond int32": lambda d: Case(
        _config(d, "models: [{path: m.onnx, batch_sizes: [100000000000000000000]}]"), ["batch_sizes"]
    ),
    "negative dim": lambda d: Case(
        _config(d, "models: [{path: m.onnx, inputs: [{name: x, shape: [1, -5]}]}]"), ["inputs", "shape dim 1"]
    ),
    "dim beyond int64": lambda d: Case(
        _config(d, "models: [{path: m.onnx, inputs: [{name: x, opt: [1, 1000000000000000000000000]}]}]"),
        ["inputs", "opt dim 1"],
    ),
    "min_iterations of a trillion": lambda d: Case(
        _config(d, "bench: {min_iterations: 1000000000000}\nmodels: [{path: m.onnx}]"), ["bench.min_iterations"]
    ),
    "escape of half a UTF-16 pair": lambda d: Case(
        _config(d, 'models: [{path: m.onnx, name: "a\\ud800"}]'), ["trtci.yml: line 1", "not a character"]
    ),
    "duration inf": lambda d: Case(_config(d, "bench: {duration_s: .inf}\nmodels: [{path: m.onnx}]"), ["duration_s"]),
    "random inputs larger than memory (batch)": lambda d: Case(
        _one_model(d, "--batch-size", str(BIG)), ["random inputs for a batch of", "lower batch_sizes"]
    ),
    "random inputs larger than memory (shape)": lambda d: _after(
        _relu(d / "m.onnx", ["N", "L"]),
        Case(
            _config(d, f"models: [{{path: m.onnx, precisions: [fp32], inputs: [{{name: x, shape: [1, {BIG}]}}]}}]")
            + FAST,
            ["m: random inputs", "inputs:"],
        ),
    ),
    "cache_dir under a file": lambda d: _after(
        (d / "f").write_text(""), Case(_one_model(d, "--cache-dir", "f/cache"), ["cache_dir", "is a file"])
    ),
    "report is a FIFO": lambda d: Case(_one_model(d, "--report", str(_fifo(d / "r.md"))), ["report", "r.md"]),
    "report under a file": lambda d: _after(
        (d / "f").write_text(""), Case(_one_model(d, "--report", "f/r.md"), ["report", "is a file"])
    ),
    "JSON summary is a folder": lambda d: _after(
        (d / "j").mkdir(), Case(_one_model(d, "--json", "j"), ["summary_json"])
    ),
    "database is a folder": lambda d: _after(
        (d / "x.db").mkdir(), Case(_one_model(d, "--db", "x.db"), ["database", "x.db"])
    ),
    "database is not SQLite": lambda d: _after(
        (d / "x.db").write_bytes(os.urandom(4096)), Case(_one_model(d, "--db", "x.db"), ["x.db", "not a SQLite"])
    ),
    # flags
    "--pr beyond int64": lambda d: Case(_one_model(d, "--pr", "9" * 24), ["--pr"]),
    "--pr negative": lambda d: Case(_one_model(d, "--pr", "-5"), ["--pr"]),
    "--device negative": lambda d: Case(_one_model(d, "--device", "-1"), ["--device"]),
    "--batch-size empty": lambda d: Case(_one_model(d, "--batch-size", ","), ["--batch-size"]),
    "--backend empty": lambda d: Case(_one_model(d, "--backend", ","), ["--backend"]),
    "--backend unknown": lambda d: Case(_one_model(d, "--backend", "nope"), ["backends.0", "nope"]),
    "--bundle-dir under a file": lambda d: _after(
        (d / "f").write_text(""), Case(_one_model(d, "--bundle-dir", "f/runs"), ["--bundle-dir", "f/runs"])
    ),
    "--branch not UTF-8": lambda d: Case(_one_model(d, "--branch", "br\udcff"), ["--branch", "not UTF-8"]),
    "--model path not UTF-8": lambda d: _after(
        mlp_classifier(d / "m\udcff.onnx"),
        Case(["--model", "m\udcff.onnx", "--precision", "fp32"], ["--model", "not UTF-8"]),
    ),
    # models
    "model truncated": lambda d: _after(
        mlp_classifier(d / "m.onnx").write_bytes((d / "m.onnx").read_bytes()[:300]),
        Case(_one_model(d), ["m.onnx", "re-export"]),
    ),
    "model garbage": lambda d: _after((d / "m.onnx").write_bytes(os.urandom(4096)), Case(_one_model(d), ["m.onnx"])),
    "model empty": lambda d: _after((d / "m.onnx").write_bytes(b""), Case(_one_model(d), ["m.onnx"])),
    "model is a folder": lambda d: _after((d / "m.onnx").mkdir(), Case(_one_model(d), ["m.onnx", "a directory"])),
    "model is a FIFO": lambda d: _after(_fifo(d / "m.onnx"), Case(_one_model(d), ["m.onnx", "FIFO"])),
    "external data missing": lambda d: Case(_external_data_model(d, None), ["m.onnx", "m.data"]),
    "external data short": lambda d: Case(_external_data_model(d, b"12"), ["m.onnx", "fix or re-export"]),
    "opset ONNX Runtime lacks": lambda d: _after(
        _relu(d / "m.onnx", ["N", 3], opsets=[helper.make_opsetid("", 99)]),
        Case(_one_model(d), ["m.onnx", "opset", "fix or re-export"]),
    ),
    "op ONNX Runtime lacks": lambda d: _after(
        _graph(
            d / "m.onnx",
            helper.make_node("Foo", ["x"], ["y"], domain="com.example"),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
            opsets=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.example", 1)],
        ),
        Case(_one_model(d), ["m.onnx", "com.example:Foo"]),
    ),
    "input without element type": lambda d: _after(
        _relu(d / "m.onnx", ["N", 3], elem=TensorProto.UNDEFINED), Case(_one_model(d), ["m.onnx", "input 'x'"])
    ),
    "input of unknown rank": lambda d: _after(_relu(d / "m.onnx", None), Case(_one_model(d), ["m.onnx", "shape"])),
    "input with a fixed dim no machine holds": lambda d: _after(
        _relu(d / "m.onnx", ["N", BIG * 8]), Case(_one_model(d), ["m: random inputs for a batch of 1", "GiB"])
    ),
    "dynamic dim without a size": lambda d: _after(
        _relu(d / "m.onnx", ["N", "L"]), Case(_one_model(d), ["input 'x' dim 1"])
    ),
    # data
    "labels a single value": lambda d: _after(
        np.savez(d / "v.npz", input=np.zeros((4, 16), np.float32), labels=np.array(3)),
        Case(_one_model(d, "--validation-data", "v.npz"), ["v.npz", "labels"]),
    ),
    ".npy folder holding a FIFO": lambda d: _after(
        (d / "v").mkdir(), _fifo(d / "v" / "input.npy"), Case(_one_model(d, "--validation-data", "v"), ["input.npy"])
    ),
    ".npz garbage": lambda d: _after(
        (d / "v.npz").write_bytes(os.urandom(300)), Case(_one_model(d, "--validation-data", "v.npz"), ["v.npz"])
    ),
    "data function yields ragged lists": lambda d: Case(
        _data_function(d, "def feeds():\n    return [{'input': [[1.0, 2.0], [3.0]]}]\n"), ["baddata:feeds", "input"]
    ),
    "data function keys by number": lambda d: Case(
        _data_function(d, "import numpy as np\ndef feeds():\n    return [{1: np.zeros((1, 16), np.float32)}]\n"),
        ["baddata:feeds", "key"],
    ),
    "data function exits": lambda d: Case(
        _data_function(d, "import sys\ndef feeds():\n    sys.exit(0)\n"), ["baddata:feeds", "SystemExit"]
    ),
    # templates
    "template includes itself": lambda d: Case(
        _template(d, "{% include 'comment.md.j2' %}"), ["comment.md.j2", "recurses"]
    ),
    "template divides by zero": lambda d: Case(_template(d, "{{ 1 / 0 }}"), ["comment.md.j2", "ZeroDivisionError"]),
    "template not UTF-8": lambda d: _after(
        (d / "t").mkdir(),
        (d / "t" / "comment.md.j2").write_bytes(b"\xff\xfe"),
        Case(_one_model(d, "--template-dir", "t"), ["comment.md.j2"]),
    ),
    "template that cannot be read": lambda d: _after(
        (d / "t").mkdir(),
        (d / "t" / "comment.md.j2").symlink_to("/proc/self/mem"),  # reading it fails, even as root
        Case(_one_model(d, "--template-dir", "t"), ["comment.md.j2", "cannot read"]),
    ),
    "model that cannot be read": lambda d: Case(
        ["--model", "/proc/self/mem", "--db", "r.db"], ["/proc/self/mem", "cannot read the model"]
    ),
    # environment
    "branch from the environment not UTF-8": lambda d: Case(
        _one_model(d),
        ["branch (from the environment or git)", "not UTF-8"],
        env={"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_HEAD_REF": "h\udcff"},
    ),
    "GITHUB_OUTPUT is a folder": lambda d: Case(
        _one_model(d), ["GITHUB_OUTPUT"], env=_in_actions(d, "GITHUB_OUTPUT", d)
    ),
    "GITHUB_OUTPUT is a FIFO": lambda d: Case(
        _one_model(d), ["GITHUB_OUTPUT"], env=_in_actions(d, "GITHUB_OUTPUT", _fifo(d / "out"))
    ),
    "GITHUB_STEP_SUMMARY in a missing folder": lambda d: Case(
        _one_model(d), ["GITHUB_STEP_SUMMARY"], env=_in_actions(d, "GITHUB_STEP_SUMMARY", d / "no" / "summary.md")
    ),
}

# Faults the run is meant to survive: exit 0, and still no traceback and no hang.
TOLERATED: dict[str, Callable[[Path], Case]] = {
    "event payload is a FIFO": lambda d: Case(
        _one_model(d), [], 0, {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(_fifo(d / "event.json"))}
    ),
    "event payload nested 100,000 deep": lambda d: _after(
        (d / "event.json").write_text("[" * 100_000 + "]" * 100_000),
        Case(_one_model(d), [], 0, {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(d / "event.json")}),
    ),
    "an input with a dim of size 0": lambda d: _after(_relu(d / "m.onnx", ["N", 0]), Case(_one_model(d), [], 0)),
    "a folder where a cached model belongs": lambda d: Case(_damaged_cache(d), [], 0),
}


def _damaged_cache(d: Path) -> list[str]:
    args = _one_model(d, "--cache-dir", "cache")
    assert _trtci(d, args, {}).code == 0
    for cached in (d / "cache").rglob("*.onnx"):
        cached.unlink()
        cached.mkdir()
    return args


def _trtci(cwd: Path, args: list[str], env: dict[str, str]) -> Outcome:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    environ.update(env)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "trtci.cli", "run", *args],
            cwd=cwd,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return Outcome(None)
    return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[Case, Outcome]]:
    def one(item: tuple[str, Callable[[Path], Case]]) -> tuple[str, tuple[Case, Outcome]]:
        name, make = item
        folder = tmp_path_factory.mktemp("case")
        case = make(folder)
        return name, (case, _trtci(folder, case.args, case.env))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, {**CASES, **TOLERATED}.items()))


def _error_lines(outcome: Outcome) -> list[str]:
    return [line for line in (outcome.stdout + outcome.stderr).splitlines() if line.startswith(ERROR_PREFIXES)]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_naming_what_to_fix_with_exit_2_or_3(outcomes, name):
    case, outcome = outcomes[name]
    assert outcome.code is not None, f"{name}: still running after {TIMEOUT_S} s"
    assert "Traceback" not in outcome.stdout + outcome.stderr, outcome.stderr[-3000:]
    assert outcome.code == case.code, outcome.stdout[-1000:] + outcome.stderr[-2000:]
    lines = _error_lines(outcome)
    assert len(lines) == 1, lines
    assert len(lines[0]) < 300, lines[0]
    for part in case.says:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize("name", list(TOLERATED))
def test_faults_a_run_survives_end_with_exit_0_and_no_traceback(outcomes, name):
    case, outcome = outcomes[name]
    assert outcome.code == 0, (outcome.stdout + outcome.stderr)[-3000:]
    assert "Traceback" not in outcome.stderr and _error_lines(outcome) == []

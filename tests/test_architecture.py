"""The layout's rules (docs/architecture.md) hold: import contracts, small modules and functions, a short top level."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "trtci"


def test_import_contracts_hold():
    """`lint-imports` with the contracts in pyproject.toml: layers, no cycles, who may import click, requests,
    sqlite, ONNX Runtime and TensorRT."""
    found = shutil.which("lint-imports", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert found, "lint-imports is missing: pip install -e '.[test]' (import-linter)"
    run = subprocess.run([found], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_modules_stay_small_and_functions_short():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(ROOT)
        if source.count("\n") > 400:
            too_long.append(f"{name}: {source.count(chr(10))} lines (at most 400)")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {length} lines (at most 80)")
    assert too_long == []


def test_the_orchestrator_of_a_run_reads_in_one_sitting():
    assert (PACKAGE / "pipeline" / "run.py").read_text().count("\n") <= 300


def test_the_top_level_shows_the_stages_and_little_else():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 12, entries
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {"config", "context", "backends", "pipeline", "verdict", "store", "report", "github", "cli"}
    for package in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"trtci/{package}/__init__.py needs a docstring saying what it is for"

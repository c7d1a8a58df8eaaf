"""Real git repositories for tests: a bare origin with clones, and a project whose settings change between commits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper


def git(cwd: Path, *args: str, input_text: str | None = None) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, input=input_text)
    return done.stdout.strip()


@pytest.fixture
def origin(tmp_path) -> Path:
    """A bare repository with one commit on main, like a project's GitHub remote."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(bare)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(bare), str(seed)], check=True, capture_output=True)
    (seed / "README.md").write_text("project\n")
    git(seed, "add", "README.md")
    git(seed, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", "init")
    git(seed, "push", "-q", "origin", "main")
    return bare


def clone(origin: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(origin), str(where)], check=True, capture_output=True)
    return where


def data_files(origin: Path, branch: str = "trtci-data") -> list[str]:
    return git(origin, "ls-tree", "-r", "--name-only", branch).splitlines()



def commit_all(root: Path, message: str) -> str:
    """Commit every file under `root` (a git repository) and return the commit."""
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["add", "-A"], [*identity, "commit", "-q", "-m", message]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def settings_repo(root: Path, length: int) -> tuple[str, Path]:
    """A git repository with relu.onnx (input [N, S]) and a trtci.yml timing it at S = `length`; (commit, trtci.yml)."""
    root.mkdir()
    relu_model(root / "relu.onnx", ["N", "S"])
    config = root / "trtci.yml"
    config.write_text(
        f"models: [{{path: relu.onnx, precisions: [fp32], inputs: [{{name: x, shape: [1, {length}]}}]}}]\n"
        "database: results.db\ncache_dir: cache\n"
        "bench: {warmup_ms: 0, duration_s: 0.02, min_iterations: 5}\n"
        "compare: {ab_budget_s: 10}\n"
    )
    subprocess.run(["git", "-C", str(root), "init", "-q", "-b", "main"], check=True, capture_output=True)
    return commit_all(root, "model and config"), config


def relu_model(path: Path, dims: list) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


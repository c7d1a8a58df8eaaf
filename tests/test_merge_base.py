"""A/B against the merge-base's build (trtci.pipeline.merge_base): a PR that changes a model file or its build
settings is judged by timing both builds in alternating rounds, in real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.git_repos import commit_all, relu_model, settings_repo
from tests.models import mlp_classifier
from trtci.config import load_config, parse_config
from trtci.context.git import config_at, file_at
from trtci.errors import ConfigError
from trtci.pipeline import run as pipeline
from trtci.pipeline.merge_base import AB_METHOD
from trtci.results import RunContext

FAST_BENCH = {"warmup_ms": 0, "duration_s": 0.02, "min_iterations": 5}


def git_repo_with_model(root: Path, hidden: int) -> str:
    """A real git repository whose main branch has mlp.onnx; returns the commit (the PR's merge-base)."""
    root.mkdir()
    mlp_classifier(root / "mlp.onnx", hidden=hidden)
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "add", "mlp.onnx"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "model"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def ab_config(root: Path):
    data = {
        "models": [{"path": "mlp.onnx", "precisions": ["fp32"], "batch_sizes": [64]}],
        "database": "results.db",
        "bench": FAST_BENCH,
        "cache_dir": "cache",
        "compare": {"ab_budget_s": 10},
    }
    return parse_config(data, "test", root)


def test_a_pr_that_changes_the_model_is_judged_by_ab_against_the_merge_base_version(tmp_path):
    root = tmp_path / "repo"
    merge_base = git_repo_with_model(root, hidden=32)
    mlp_classifier(root / "mlp.onnx", hidden=4096)  # the PR makes the model ~100x heavier (uncommitted is fine)
    pr = RunContext(
        run_id="pr", started_at="2026-11-27T09:00:00Z", branch="f", base_branch="main", merge_base=merge_base
    )
    result = pipeline.run(ab_config(root), pr)
    (comparison,) = result.comparisons
    assert comparison.method == AB_METHOD
    assert comparison.verdict == "regression" and comparison.ratio > 2
    assert comparison.interval[0] > 1 and "the model changed" in comparison.reason
    assert comparison.confirmed is None  # A/B is not re-measured against history
    assert not result  # the gate fails


def test_an_unchanged_model_is_not_ab_tested(tmp_path):
    root = tmp_path / "repo"
    merge_base = git_repo_with_model(root, hidden=32)
    pr = RunContext(
        run_id="pr", started_at="2026-11-27T09:00:00Z", branch="f", base_branch="main", merge_base=merge_base
    )
    (comparison,) = pipeline.run(ab_config(root), pr).comparisons
    assert comparison.method != AB_METHOD and comparison.verdict == "new"






def pr_context(merge_base: str) -> RunContext:
    return RunContext(
        run_id="pr", started_at="2026-11-27T09:00:00Z", branch="f", base_branch="main", merge_base=merge_base
    )


def test_a_pr_that_changes_build_settings_is_judged_by_ab_against_the_merge_base_build(tmp_path):
    merge_base, path = settings_repo(tmp_path / "repo", length=256)
    path.write_text(path.read_text().replace("[1, 256]", "[1, 262144]"))  # the PR times 1024x the work
    base_config = config_at(path, merge_base)
    assert base_config.models[0].inputs[0].shape == [1, 256]
    result = pipeline.run(load_config(path), pr_context(merge_base), base_config=base_config)
    (comparison,) = result.comparisons
    assert comparison.method == AB_METHOD
    assert "the build settings changed" in comparison.reason
    assert comparison.verdict == "regression" and comparison.interval[0] > 2


def test_a_config_change_that_leaves_a_series_as_it_was_runs_no_ab(tmp_path):
    merge_base, path = settings_repo(tmp_path / "repo", length=256)
    text = path.read_text().replace("ab_budget_s: 10", "ab_budget_s: 10, threshold: 0.2")
    path.write_text(text.replace("precisions: [fp32]", "precisions: [fp32, fp16]"))  # and adds FP16
    result = pipeline.run(load_config(path), pr_context(merge_base), base_config=config_at(path, merge_base))
    assert [(c.label, c.verdict) for c in result.comparisons] == [
        ("relu fp32 b1 onnxruntime", "new"),
        ("relu fp16 b1 onnxruntime", "new"),
    ]
    assert all(c.method != AB_METHOD for c in result.comparisons)


def test_the_merge_base_config_is_read_from_git_and_absent_outside_it(tmp_path):
    merge_base, path = settings_repo(tmp_path / "repo", length=256)
    assert file_at(path, merge_base) == path.read_bytes()
    assert config_at(tmp_path / "repo" / "other.yml", merge_base) is None  # a config the PR adds
    outside = tmp_path / "outside.yml"
    outside.write_text("models: [{path: m.onnx}]\n")
    assert config_at(outside, merge_base) is None
    path.write_text("models: [{path: relu.onnx, precision: fp32}]\n")  # a key trtci does not know
    broken = commit_all(tmp_path / "repo", "typo")
    with pytest.raises(ConfigError, match=r"trtci.yml at [0-9a-f]{12}"):
        config_at(path, broken)




@pytest.mark.parametrize(
    "base_dims, pr_dims, judged_by_ab",
    [(["N", 4], ["N", 8], True), (["N", "S", "T"], ["N", "S"], False)],
    ids=["a-fixed-dim-changed", "the-rank-changed"],
)
def test_a_pr_that_changes_input_shapes_with_data_of_the_new_shape(tmp_path, base_dims, pr_dims, judged_by_ab):
    # the validation data is the PR's, shaped for its model: the merge-base's build gets inputs of its own shape,
    # or, where no shape of the merge-base's fits (another rank), no A/B: a warning, never a crash
    root = tmp_path / "repo"
    root.mkdir()
    relu_model(root / "m.onnx", base_dims)
    (root / "trtci.yml").write_text(
        "models: [{path: m.onnx, precisions: [fp32], validation: {data: val.npz}}]\n"
        "database: results.db\ncache_dir: cache\nbench: {warmup_ms: 0, duration_s: 0.02, min_iterations: 5}\n"
        "compare: {ab_budget_s: 2}\n"
    )
    subprocess.run(["git", "-C", str(root), "init", "-q", "-b", "main"], check=True, capture_output=True)
    merge_base = commit_all(root, "base")
    relu_model(root / "m.onnx", pr_dims)
    np.savez(root / "val.npz", x=np.ones([8] + [4 if isinstance(d, str) else d for d in pr_dims[1:]], np.float32))
    path = root / "trtci.yml"
    result = pipeline.run(load_config(path), pr_context(merge_base), base_config=config_at(path, merge_base))
    (comparison,) = result.comparisons
    assert (comparison.method == AB_METHOD) == judged_by_ab, result.warnings
    if not judged_by_ab:
        assert any("inputs differ in name, type or rank" in w for w in result.warnings)


def test_after_a_merge_a_changed_model_is_timed_against_the_previous_measured_commit_and_warns(tmp_path):
    """Post-merge: main's run after a slower model was merged A/Bs it against main's previous measured commit, and
    the regression is reported, not failed; a later pull request names the base as regressed since that run."""
    root = tmp_path / "repo"
    first = git_repo_with_model(root, hidden=32)
    config = ab_config(root)
    pipeline.run(config, RunContext(run_id="m1", started_at="2026-11-27T09:00:00Z", branch="main", commit=first))
    mlp_classifier(root / "mlp.onnx", hidden=4096)
    merged = commit_all(root, "a heavier model")
    after = RunContext(run_id="m2", started_at="2026-11-27T10:00:00Z", branch="main", commit=merged)
    result = pipeline.run(config, after)
    (c,) = result.comparisons
    assert c.method == AB_METHOD and c.verdict == "regression" and c.policy == "warn" and c
    assert f"against the previous measured commit {first[:7]}'s build" in c.reason
    assert result.passed
    pr = RunContext(run_id="pr", started_at="2026-11-27T11:00:00Z", branch="f", base_branch="main", merge_base=merged)
    (later,) = pipeline.run(config, pr).comparisons
    assert later.base_regressed.startswith(f"the base is regressed since commit {merged[:7]} (+")

"""Does the gate stay quiet when nothing changed, and fail when a model really got slower? As a user's CI runs it.

The bundled example (examples/digits) is copied into a fresh git repository and run with `trtci run --config
trtci.yml` in a new process each time, on one results database, as CI with a persisted history would:

1. `--runs` runs on `main`, one commit: every gate failure is a false failure;
2. `--prs` pull requests that change nothing the series depend on (each adds a Markdown file), each run on its
   own branch against `main` (`--base-branch main`): every gate failure is a false failure;
3. `--tries` pull requests that make the model slower: the same outputs, more work (a side branch from the input
   whose result, times a zero matrix, is added to the output; sized until the FP32 model at the largest batch is
   about 10% slower: `slower_model`). A try is caught when the gate fails with a regression. The true cost of the
   slower model is measured separately, per series: the base's and the slower model's prepared variants (as
   trtci prepares them) timed in 60 alternating A B B A blocks of about 20 ms each side, the median of the
   blocks' ratios.

Other processes may load the machine meanwhile: the numbers are this machine's at this time. Prints one line per
run, the slower model's true cost, and as the last line:

    noise_gate: runs=<n> false_failures=<f> caught=<c>/<tries>

Run from the repository root: `python -m benchmarks.noise_gate` (about 15 to 30 minutes on 2 shared cores);
`--runs 6 --prs 3 --tries 3` for a short check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from benchmarks.ab_e2e import block_ratios, side_branch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
FILES = ("model.onnx", "calibration.npz", "validation.npz", "trtci.yml")
TARGET_SLOWDOWN = 0.10  # of the slower model at the largest batch, calibrated (slower_model)
CALIBRATION_STEPS = 5


def slower_model(source: Path, target: Path, batch: int) -> float:
    """Write a slower `source` to `target`, its side branch sized until its cost over the model at `batch` (FP32,
    120 A B B A blocks of 20 ms a side) is within a point and a half of TARGET_SLOWDOWN, or the closest of
    CALIBRATION_STEPS sizes; return that cost."""
    import onnxruntime as ort

    model = onnx.load(str(source))
    first = model.graph.input[0]
    feeds = {first.name: np.ones((batch, first.type.tensor_type.shape.dim[1].dim_value), np.float32)}

    def call(path: Path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda: session.run(None, feeds)

    def write(width: int) -> None:
        extended = onnx.ModelProto()
        extended.CopyFrom(model)
        onnx.save(side_branch(extended, width), str(target))

    base, width, tried = call(source), 256, {}
    for _ in range(CALIBRATION_STEPS):
        write(width)
        tried[width] = float(np.median(block_ratios(base, call(target), blocks=120, block_s=0.02)))
        if abs(tried[width] - 1.0 - TARGET_SLOWDOWN) <= 0.015:
            break
        width = max(1, round(width * min(max(TARGET_SLOWDOWN / max(tried[width] - 1.0, 0.005), 0.5), 2.0)))
    best = min(tried, key=lambda w: abs(tried[w] - 1.0 - TARGET_SLOWDOWN))
    write(best)
    return tried[best]


def make_repo(directory: Path) -> Path:
    """A git repository holding the example on `main`, one commit."""
    repo = directory / "repo"
    repo.mkdir()
    for name in FILES:
        shutil.copy(EXAMPLE / name, repo / name)
    (repo / ".gitignore").write_text("results/\n.trtci-cache/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the digits example")
    return repo


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.com"}
    env.update(GIT_COMMITTER_NAME="ci", GIT_COMMITTER_EMAIL="ci@example.com")
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True)
    return done.stdout.strip()


def trtci_run(repo: Path, *args: str) -> tuple[int, dict, float]:
    """(exit code, JSON summary, seconds) of one `trtci run --config trtci.yml` in `repo`, as CI runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env["PYTHONPATH"] = str(ROOT)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "trtci.cli", "run", "--config", "trtci.yml", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"trtci run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.returncode, json.loads((repo / "results" / "summary.json").read_text()), seconds


def describe(code: int, summary: dict, seconds: float) -> str:
    verdicts = Counter(c["verdict"] for c in summary["comparisons"])
    drift = sum(1 for c in summary["comparisons"] if c.get("machine_drift"))
    canaries = ", ".join(f"canary x{c['ratio']:.2f}" for c in summary["canaries"] if c.get("ratio"))
    words = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    return f"exit {code} ({seconds:.0f} s): {words}; machine drift on {drift}; {canaries or 'no canary history'}"


def load_batches(repo: Path) -> list[int]:
    sys.path.insert(0, str(ROOT))
    from trtci.config import load_config

    return list(load_config(repo / "trtci.yml").models[0].batch_sizes)


def true_costs(repo: Path, slow: Path) -> dict[str, float]:
    """Series label -> median of 60 A B B A blocks' ratios of the slower model's prepared variant over the base's."""
    sys.path.insert(0, str(ROOT))
    from trtci.backends.onnxruntime import OnnxRuntimeBackend
    from trtci.config import load_config
    from trtci.pipeline.plan import bench_feeds, load_request, plan_model
    from trtci.pipeline.progress import Silent
    from trtci.pipeline.variants import prepare_variant, variants_for

    config = load_config(repo / "trtci.yml")
    backend = OnnxRuntimeBackend(config.bench.threads)
    base = plan_model(config.models[0])
    slower = plan_model(config.models[0].model_copy(update={"path": slow}))
    costs = {}
    for precision, quantization in variants_for(base, backend):
        if quantization == "tensorrt":
            continue  # validated only, never timed on ONNX Runtime
        sides = [prepare_variant(p, config, precision, quantization, Silent()).prepared for p in (base, slower)]
        for batch in base.config.batch_sizes:
            feeds = bench_feeds(base, batch)
            calls = []
            for plan, prepared in zip((base, slower), sides):
                assert prepared is not None
                session = backend.load(load_request(plan, config, prepared, batch, backend))
                calls.append(lambda s=session, f=feeds: s.run(f))
            label = f"{precision}{f'({quantization})' if quantization else ''} b{batch}"
            costs[label] = float(np.median(block_ratios(*calls, blocks=60, block_s=0.02)))
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of one commit on main")
    parser.add_argument("--prs", type=int, default=10, help="pull requests that change nothing the series use")
    parser.add_argument("--tries", type=int, default=10, help="pull requests with a slower model")
    args = parser.parse_args()
    false_failures = caught = 0
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        for i in range(args.runs):
            code, summary, seconds = trtci_run(repo)
            false_failures += code == 1
            print(f"main run {i + 1}: {describe(code, summary, seconds)}", flush=True)
        for i in range(args.prs):
            git(repo, "checkout", "-q", "-b", f"docs-{i}", "main")
            (repo / f"NOTES-{i}.md").write_text(f"# Note {i}\n\nNothing a series depends on.\n")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"docs {i}")
            code, summary, seconds = trtci_run(repo, "--base-branch", "main")
            false_failures += code == 1
            print(f"docs PR {i + 1}: {describe(code, summary, seconds)}", flush=True)
            git(repo, "checkout", "-q", "main")
        slow = Path(tmp) / "slower.onnx"
        largest = max(load_batches(repo))
        cost = slower_model(repo / "model.onnx", slow, largest)
        print(f"slower model: a zero-output side branch, {cost:.3f}x the model in FP32 at batch {largest}", flush=True)
        for i in range(args.tries):
            git(repo, "checkout", "-q", "-b", f"slower-{i}", "main")
            shutil.copy(slow, repo / "model.onnx")
            git(repo, "commit", "-q", "-am", f"slower model {i}")
            code, summary, seconds = trtci_run(repo, "--base-branch", "main")
            regressions = [c for c in summary["comparisons"] if c["verdict"] == "regression"]
            caught += code == 1 and bool(regressions)
            found = "; ".join(f"{c['label']} {(c['ratio'] - 1) * 100:+.1f}%" for c in regressions)
            print(f"slower PR {i + 1}: {describe(code, summary, seconds)}; regressions: {found or 'none'}", flush=True)
            git(repo, "checkout", "-q", "main")
        costs = true_costs(repo, slow)
    print("slower model's true cost (A B B A blocks): " + ", ".join(f"{k} {v:.3f}" for k, v in costs.items()))
    print(f"noise_gate: runs={args.runs + args.prs} false_failures={false_failures} caught={caught}/{args.tries}")


if __name__ == "__main__":
    main()

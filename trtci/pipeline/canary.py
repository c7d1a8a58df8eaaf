"""The canary: a fixed tiny ONNX model timed on each backend at the start and at the end of every run.

Every run of every repository times the same workload (built here with onnx.helper, fixed weights), so its
latency is the machine's speed on that backend and device: trtci.verdict.machine compares it with the base
branch's canaries and divides history comparisons by it. `VERSION` changes with the workload; only canaries of
one version are compared. On GPUs the same model runs as an engine (a fixed CUDA kernel would measure the GPU
without the backend; that is a later step).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trtci.backends.base import Backend, LoadRequest
from trtci.config import BenchSettings, Config
from trtci.errors import BackendError
from trtci.pipeline.cache import commit, workdir
from trtci.results import BenchResult, Canary

VERSION = 1
WIDTH = 64
LAYERS = 4
BATCH = 8
INPUT = "x"
WARMUP_MS = 50.0


def canary_model(cache_dir: Path) -> Path:
    """The canary's ONNX file in `cache_dir` (written once): LAYERS MatMul+Relu layers of WIDTH x WIDTH, batch
    BATCH, weights from a fixed seed."""
    path = Path(cache_dir) / "canary" / f"canary-v{VERSION}.onnx"
    if path.is_file():
        return path
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(VERSION)
    nodes, weights, current = [], [], INPUT
    for i in range(LAYERS):
        weight = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]),
            helper.make_node("Relu", [f"m{i}"], [f"r{i}"]),
        ]
        current = f"r{i}"
    nodes[-1].output[0] = "y"
    io = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, WIDTH]) for name in (INPUT, "y")]
    graph = helper.make_graph(nodes, "trtci_canary", io[:1], io[1:], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="trtci-canary")
    model.ir_version = 8
    with workdir(cache_dir) as work:  # a unique folder, so concurrent runs never write one file
        (work / path.name).write_bytes(model.SerializeToString())
        commit(work, path)  # replaces a damaged cache's folder where the file belongs
    return path


@dataclass
class CanaryTimer:
    """Times the canary on each backend that can run, at the start (`start`) and the end (`finish`) of a run."""

    config: Config
    starts: dict[str, tuple[str, BenchResult]] = field(default_factory=dict)  # backend -> (device id, bench)

    @property
    def seconds(self) -> float:
        return self.config.compare.canary_s

    def start(self, backends: list[Backend], warnings: list[str]) -> None:
        """Time the canary on each backend that can run (nothing when compare.canary_s is 0)."""
        for backend in backends:
            bench = self._time(backend, warnings) if self.seconds > 0 and backend.can_run else None
            if bench is not None:
                self.starts[backend.name] = (backend.device().id, bench)

    def finish(self, backends: list[Backend], warnings: list[str]) -> list[Canary]:
        """Time the canary again on each backend timed at the start: one Canary per backend, unjudged."""
        canaries = []
        for backend in backends:
            if backend.name not in self.starts:
                continue
            device_id, first = self.starts[backend.name]
            last = self._time(backend, warnings)
            if last is None:
                continue
            samples = np.concatenate([first.samples_ms, last.samples_ms])
            low, high = np.percentile(samples, [25, 75])
            canaries.append(
                Canary(
                    backend=backend.name,
                    device_id=device_id,
                    start_ms=first.stats.median,
                    end_ms=last.stats.median,
                    spread=float((high - low) / np.median(samples)),
                    iterations=int(samples.size),
                    version=VERSION,
                )
            )
        return canaries

    def _time(self, backend: Backend, warnings: list[str]) -> BenchResult | None:
        path = canary_model(self.config.cache_dir)
        shapes: dict[str, tuple[int, ...]] = {INPUT: (BATCH, WIDTH)}
        options: dict[str, object] = {"threads": self.config.bench.threads, **backend.load_options(self.config)}
        request = LoadRequest(
            model_path=path,
            precision="fp32",
            batch=BATCH,
            shapes=shapes,
            shape_ranges={INPUT: (shapes[INPUT],) * 3},
            cache_dir=self.config.cache_dir / "engines",
            options=options,
        )
        settings = BenchSettings(warmup_ms=WARMUP_MS, duration_s=self.seconds, min_iterations=20, max_cv=1.0)
        feeds = {INPUT: np.random.default_rng(0).standard_normal((BATCH, WIDTH)).astype(np.float32)}
        try:
            with contextlib.closing(backend.load(request)) as session:
                return session.benchmark(feeds, settings, BATCH)
        except BackendError as e:
            warnings.append(f"canary on {backend.name}: not timed ({e}); the machine's speed is not known")
            return None

"""`trtci ab`: two ONNX models timed against each other in alternating rounds on ONNX Runtime (CPU).

The models are planned as `trtci run` plans them (shapes, data) and timed by trtci.verdict.abtest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from trtci.backends.base import LoadRequest
from trtci.backends.onnxruntime import OnnxRuntimeBackend
from trtci.config import ModelConfig, ValidationSpec
from trtci.pipeline.plan import bench_feeds, plan_model
from trtci.verdict.abtest import ABResult, ab_test


def ab_onnx(
    model_a: Path,
    model_b: Path,
    *,
    batch: int = 1,
    data: str | None = None,
    threads: int = 0,
    time_budget_s: float = 60.0,
    min_effect: float = 0.05,
    confidence: float = 0.98,
    threshold: float | None = None,
) -> ABResult:
    """Interleaved A/B of two ONNX models on ONNX Runtime (CPU), both fed the same inputs: ratio > 1, B slower.

    Inputs are `batch` samples of `data` (a .npz, a directory of .npy files or module:function), else seeded
    random values of A's input shapes, as `trtci run` benchmarks. Rounds stop early once the verdict at
    `threshold` is decided (where given). Raises ModelError, DataError or ConfigError
    on bad input, BackendError when a model does not run on those inputs.
    """
    backend = OnnxRuntimeBackend(threads)
    validation = ValidationSpec(data=data) if data is not None else None
    calls: list[Callable[[], object]] = []
    feeds: dict[str, np.ndarray] = {}
    with contextlib.ExitStack() as sessions:
        for path in (model_a, model_b):
            plan = plan_model(ModelConfig(path=path, precisions=["fp32"], batch_sizes=[batch], validation=validation))
            feeds = feeds or bench_feeds(plan, batch)
            shapes = plan.shapes[batch]
            request = LoadRequest(model_path=Path(path), precision="fp32", batch=batch, shapes=shapes).interleaved()
            session = sessions.enter_context(contextlib.closing(backend.load(request)))
            session.run(feeds)  # a model that cannot take these inputs fails here, before any timing
            calls.append(partial(session.run, feeds))
        return ab_test(
            calls[0],
            calls[1],
            time_budget_s=time_budget_s,
            min_effect=min_effect,
            confidence=confidence,
            threshold=threshold,
        )

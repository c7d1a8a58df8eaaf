"""The one small interface every backend implements.

A backend turns a prepared ONNX file (FP32, FP16 or Q/DQ INT8) into a `Session` that runs feeds and measures
itself. The ONNX Runtime backend is the embedded default and a real backend; TensorRT backends build engines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from trtci.config import BenchSettings
from trtci.results import BenchResult, DeviceInfo

Feeds = dict[str, np.ndarray]
Progress = Callable[[float], None]  # fraction done, 0..1


@dataclass(frozen=True)
class LoadRequest:
    """What the pipeline asks a backend to load."""

    model_path: Path  # the prepared ONNX for this precision
    precision: str  # fp32 | fp16 | int8
    batch: int
    shapes: dict[str, tuple[int, ...]]  # concrete input shapes for this batch (the "opt" shape)
    shape_ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    cache_dir: Path | None = None  # where a backend may keep engines, timing caches, optimized graphs
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific options from the config


class Session(Protocol):
    """A loaded model, ready to run and to be measured."""

    build: dict[str, Any] | None  # build facts (engine size, build time, layers...), None where nothing is built

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Run once and return every output by name, as host numpy arrays."""
        ...

    def benchmark(
        self, feeds: Feeds, settings: BenchSettings, batch: int, progress: Progress | None = None
    ) -> BenchResult:
        """Measure latency on these feeds, the trtexec way."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str  # "onnxruntime", "tensorrt", "tensorrt-rtx"
    int8_scheme: str  # which Q/DQ model it consumes: "onnxruntime" (U8S8) or "tensorrt" (S8S8 symmetric)
    can_run: bool  # False in build-only mode (builder works, no supported GPU): sessions only build

    def device(self) -> DeviceInfo:
        """The device this backend measures on, with the facts that change performance."""
        ...

    def load(self, request: LoadRequest) -> Session:
        """Load (or build) the model. Raises BackendError with the reason when the model cannot run here."""
        ...

"""The one small interface every backend implements, built-in or plugin.

A backend turns a prepared ONNX file (FP32, FP16 or Q/DQ INT8) into a `Session` that runs feeds and measures
itself. The ONNX Runtime backend is the embedded default and a real backend; TensorRT backends build engines.

The pipeline never asks a backend its name to decide what to do: it reads the capabilities declared here
(`builds_engines`, `int8_scheme`, `validation_only_schemes`, `can_run`) and asks for the backend's own options
(`load_options`, `identity_options`). How backends are found by name is in trtci.backends.registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from trtci.config import BenchSettings, Config
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
    # "threads", "interleaved" (`interleaved()`) and the backend's own `load_options`
    options: dict[str, Any] = field(default_factory=dict)

    def interleaved(self) -> LoadRequest:
        """This request for a session that alternates with another in an A/B: a backend may tune for that (ONNX
        Runtime's idle workers then do not spin, taking the cores the other session's next call needs)."""
        return replace(self, options={**self.options, "interleaved": True})


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
    """A backend set up for one run, as its factory (`BackendFactory`) made it from the config."""

    name: str  # the name it is registered under: "onnxruntime", "tensorrt", "tensorrt-rtx", a plugin's
    # Which Q/DQ model its INT8 series run: "onnxruntime" (U8S8) or "tensorrt" (S8S8 symmetric), see
    # trtci.pipeline.prepare.
    int8_scheme: str
    # Other INT8 schemes it runs for their accuracy only, never timed (ONNX Runtime on the CPU validates the
    # model TensorRT would be given, so its accuracy is known on runners without a GPU).
    validation_only_schemes: tuple[str, ...]
    # True when `load` compiles an engine: the pipeline shows that step's progress, and the optimization
    # profile (LoadRequest.shape_ranges) is part of each series' identity.
    builds_engines: bool
    can_run: bool  # False in build-only mode (it builds, but no supported GPU is here): sessions only build

    @property
    def version(self) -> str:
        """The version of the library doing the work (for `trtci doctor`)."""
        ...

    @property
    def why_not_run(self) -> str:
        """Why it cannot run here, with the fix; "" when `can_run`."""
        ...

    def load_options(self, config: Config) -> dict[str, Any]:
        """This backend's settings from the config, passed to `load` in LoadRequest.options."""
        ...

    def identity_options(self, config: Config) -> dict[str, Any]:
        """The settings that change its measurements, added to each series' identity (hashed: keep it stable,
        or every series of this backend starts a new history)."""
        ...

    def device(self) -> DeviceInfo:
        """The device this backend measures on, with the facts that change performance."""
        ...

    def load(self, request: LoadRequest) -> Session:
        """Load (or build) the model. Raises BackendError with the reason when the model cannot run here."""
        ...


Factory = TypeVar("Factory", bound=Callable[[Config], Backend])


class BackendFactory(Protocol):
    """What a backend registers (trtci.backends.registry): it makes the backend for one run's config.

    Raises BackendUnavailable, saying how to install what is missing, when the backend cannot work here. A
    factory with an `auto_preference` attribute (set by `prefer_for_auto`) is a candidate for `backend: auto`.
    """

    def __call__(self, config: Config) -> Backend: ...


def prefer_for_auto(rank: int) -> Callable[[Factory], Factory]:
    """Declare a factory a candidate for `backend: auto`: auto takes the candidate with the lowest rank that
    can run here. TensorRT ranks 10, TensorRT for RTX 20, ONNX Runtime (always runs) 100."""

    def declare(factory: Factory) -> Factory:
        factory.auto_preference = rank  # type: ignore[attr-defined]
        return factory

    return declare

"""trtci's pytest plugin: the `trtci_benchmark` fixture times an ONNX model on a trtci backend through
pytest-benchmark, and records what it timed so that `trtci ingest pytest-benchmark` keys each series by the model
file's hash, precision, batch, backend and device.

Registered as a `pytest11` entry point, so it loads in every pytest session where trtci is installed: this module
imports only pytest at load time; trtci's stages, ONNX Runtime and TensorRT are imported when the fixture is used.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import numpy as np

    from trtci.backends.base import Backend
    from trtci.config import Config
    from trtci.pipeline.model import ModelInfo
    from trtci.pipeline.plan import ModelPlan
    from trtci.pipeline.prepare import PreparedModel

CACHE_INI = "trtci_cache_dir"
PRECISIONS = ("fp32", "fp16", "int8")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        CACHE_INI,
        "trtci_benchmark: where prepared models (FP16) and TensorRT engines are cached, relative to the rootdir",
        default=".trtci-cache",
    )


@pytest.fixture
def trtci_benchmark(benchmark: Any, request: pytest.FixtureRequest) -> TrtciBenchmark:
    """Time an ONNX model on a trtci backend: `outputs = trtci_benchmark("model.onnx", precision="fp16", batch=8)`.

    See `TrtciBenchmark.__call__` for the arguments. Needs pytest-benchmark's `benchmark` fixture, so
    `--benchmark-skip` skips the test and `--benchmark-disable` runs the model once, untimed.
    """
    cache_dir = request.config.rootpath / str(request.config.getini(CACHE_INI))
    return TrtciBenchmark(benchmark, request.node, cache_dir)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A trtci error in a test using the fixture is a user error: report its one line, not a traceback
    (unless --tb asks for another style)."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or not report.failed or "trtci_benchmark" not in getattr(item, "fixturenames", ()):
        return
    if item.config.getoption("tbstyle", "auto") != "auto" or item.config.getoption("fulltrace", False):
        return
    from trtci.errors import TrtciError

    error = call.excinfo.value
    if isinstance(error, TrtciError):
        report.longrepr = f"{type(error).__name__}: {error}"


class TrtciBenchmark:
    """The callable the `trtci_benchmark` fixture gives a test; one model per test, as pytest-benchmark allows."""

    def __init__(self, benchmark: Any, node: pytest.Item, cache_dir: Path) -> None:
        self._benchmark = benchmark
        self._node = node
        self._cache_dir = cache_dir
        self._used = False

    def __call__(
        self,
        model: str | Path,
        *,
        precision: str = "fp32",
        batch: int | None = None,
        backend: str = "onnxruntime",
        feeds: Mapping[str, np.ndarray] | None = None,
        shapes: Mapping[str, Sequence[int]] | None = None,
        threads: int = 0,
        rounds: int | None = None,
        warmup_rounds: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Load `model` on `backend` at `precision` and `batch`, time `session.run(feeds)`, return the last outputs.

        - model: an FP32 ONNX file (a relative path is taken from the current directory). fp16 converts it as
          `trtci run` does (cached under the `trtci_cache_dir` ini option, default .trtci-cache). int8 takes a
          model already quantized to Q/DQ (e.g. one `trtci run` wrote): the fixture never calibrates. The series
          is keyed by the sha256 of this file, so a changed model is a new series.
        - batch: the first dim of every input; default: that of `feeds`, else the model's fixed batch, else 1.
        - feeds: input arrays by name; default: seeded random inputs (zeros for integer inputs) of the model's
          shapes for `batch`. Symbolic dims other than the batch then need `shapes`, e.g. {"ids": (8, 128)}.
        - backend: a registered backend's name ("onnxruntime", "tensorrt", "tensorrt-rtx", a plugin's: see
          `trtci doctor`) or "auto"; threads: ONNX Runtime intra-op threads.
        - rounds: timed calls, one inference each (iterations=1, so every sample is one call); default: enough
          to fill --benchmark-max-time, at least --benchmark-min-rounds (a `benchmark` marker's values win).
        - warmup_rounds: untimed calls first; default: as many as fill trtci's warm-up time (200 ms, at most
          --benchmark-max-time), at least 1 and at most --benchmark-warmup-iterations. Engines always need it.

        Provenance goes to `benchmark.extra_info["trtci"]` (see trtci.pipeline.ingest.TrtciExtraInfo). Raises trtci's
        typed errors (ConfigError, ModelError, DataError, BackendError, BackendUnavailable) saying what to fix.
        """
        from trtci.backends.registry import get_backend
        from trtci.errors import BackendUnavailable, ConfigError
        from trtci.pipeline.model import inspect_model
        from trtci.pipeline.plan import bench_feeds, load_request

        if self._used:
            raise ConfigError("trtci_benchmark: called twice in one test; time one model per test (parametrize)")
        self._used = True
        _check_arguments(precision, threads, rounds, warmup_rounds)
        info = inspect_model(Path(model))
        if precision == "int8":
            _check_qdq(info)
        batch, given = _shapes(info, batch, feeds, shapes)
        plan, config = _plan(info, batch, given, threads, self._cache_dir)
        inputs = dict(feeds) if feeds is not None else bench_feeds(plan, batch)
        prepared = _prepared(info, precision, config.cache_dir / "prepared")
        engine = get_backend(backend, config)
        if not engine.can_run:
            raise BackendUnavailable(
                f"trtci_benchmark: {engine.name} can build engines here but not run them (no supported GPU); "
                "run this test on a GPU runner or use backend='onnxruntime'"
            )
        request = load_request(plan, config, prepared, batch, engine)
        self._benchmark.extra_info["trtci"] = _provenance(plan, config, precision, batch, engine)
        with contextlib.closing(engine.load(request)) as session:
            return self._time(lambda: session.run(inputs), rounds, warmup_rounds)

    def _time(self, run: Any, rounds: int | None, warmup_rounds: int | None) -> dict[str, np.ndarray]:
        """benchmark.pedantic with rounds and warm-up chosen from pytest-benchmark's options and one call's time."""
        from trtci.config import BenchSettings

        if self._benchmark.enabled and (rounds is None or warmup_rounds is None):
            run()  # surfaces a bad feed before timing; the first call also pays one-off costs, so time the next
            start = time.perf_counter()
            run()
            seconds = max(time.perf_counter() - start, 1e-9)
            max_time = float(self._option("max_time"))
            if rounds is None:
                rounds = max(int(self._option("min_rounds")), math.ceil(max_time / seconds))
            if warmup_rounds is None:
                warmup_s = min(BenchSettings().warmup_ms / 1e3, max_time)
                warmup_rounds = min(int(self._option("warmup_iterations")), max(1, math.ceil(warmup_s / seconds)))
        outputs: dict[str, np.ndarray] = self._benchmark.pedantic(
            run, rounds=rounds or 1, warmup_rounds=warmup_rounds or 0, iterations=1
        )
        return outputs

    def _option(self, name: str) -> Any:
        """A pytest-benchmark option: the test's `benchmark` marker's value, else the command line's."""
        marker = self._node.get_closest_marker("benchmark")
        if marker is not None and name in marker.kwargs:
            return marker.kwargs[name]
        return self._node.config.getoption(f"benchmark_{name}")


def _check_arguments(precision: str, threads: int, rounds: int | None, warmup_rounds: int | None) -> None:
    from trtci.errors import ConfigError

    if precision not in PRECISIONS:
        raise ConfigError(f"trtci_benchmark: precision={precision!r}; use one of {', '.join(PRECISIONS)}")
    for name, value in (("threads", threads), ("rounds", rounds), ("warmup_rounds", warmup_rounds)):
        least = 1 if name == "rounds" else 0
        if value is not None and (not isinstance(value, int) or value < least):
            raise ConfigError(f"trtci_benchmark: {name}={value!r}; give an integer >= {least}")


def _plan(
    info: ModelInfo, batch: int, given: dict[str, tuple[int, ...]], threads: int, cache_dir: Path
) -> tuple[ModelPlan, Config]:
    """A one-model config and its plan, so that shapes, feeds, load requests and the series' options come from
    `trtci run`'s own logic."""
    from trtci.config import BenchSettings, Config, InputSpec, ModelConfig
    from trtci.pipeline.plan import ModelPlan, input_shapes, shape_ranges

    model_config = ModelConfig(
        path=info.path,
        precisions=["fp32"],  # unused here; int8 in a config would ask for calibration data
        batch_sizes=[batch],
        inputs=[InputSpec(name=name, shape=list(shape)) for name, shape in given.items()],
    )
    config = Config(models=[model_config], bench=BenchSettings(threads=threads), cache_dir=cache_dir)
    shapes = {batch: input_shapes(model_config, info, batch, None)}
    plan = ModelPlan(model_config, info, None, None, shapes, {batch: shape_ranges(model_config, shapes[batch])})
    return plan, config


def _prepared(info: ModelInfo, precision: str, cache_dir: Path) -> PreparedModel:
    """The model as `trtci run` prepares it for `precision`; an int8 model is taken as it is (already Q/DQ)."""
    from trtci.pipeline.prepare import PreparedModel, prepare_fp16, prepare_fp32

    if precision == "fp32":
        return prepare_fp32(info, cache_dir)
    if precision == "fp16":
        return prepare_fp16(info, cache_dir)
    return PreparedModel(info.path, "int8", "", "", cache_hit=True)


def _provenance(plan: ModelPlan, config: Config, precision: str, batch: int, backend: Backend) -> dict[str, Any]:
    """What `trtci ingest pytest-benchmark` keys the series by, checked as it will be read back."""
    from trtci.pipeline.ingest import TrtciExtraInfo
    from trtci.pipeline.plan import series_options

    device = backend.device()
    return TrtciExtraInfo.model_validate(
        {
            "model": plan.info.name,
            "model_sha256": plan.info.sha256,
            "precision": precision,
            "quantization": "",
            "batch": batch,
            "backend": backend.name,
            "device": {"kind": device.kind, "name": device.name, "details": device.details},
            "options": series_options(plan, config, precision, backend, batch),  # as trtci run hashes them
        }
    ).model_dump(mode="json")  # tuples become lists: the JSON pytest-benchmark writes holds no tuples


def _check_qdq(info: ModelInfo) -> None:
    import onnx

    from trtci.errors import ModelError

    graph = onnx.load(str(info.path), load_external_data=False).graph
    if not any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node):
        raise ModelError(
            f"{info.path}: precision='int8' needs a model already quantized to Q/DQ and this one has no "
            "QuantizeLinear/DequantizeLinear nodes; trtci_benchmark does not calibrate: pass the INT8 model "
            "`trtci run` prepares, or use fp32 or fp16"
        )


def _shapes(
    info: ModelInfo,
    batch: int | None,
    feeds: Mapping[str, np.ndarray] | None,
    shapes: Mapping[str, Sequence[int]] | None,
) -> tuple[int, dict[str, tuple[int, ...]]]:
    """The batch and the input shapes the user gave (through feeds or `shapes`), checked against the model.

    The batch is the one asked for, else the given shapes' first dim, else the model's fixed one, else 1. Every
    open dim other than the batch must get a size.
    """
    from trtci.errors import ConfigError, DataError

    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise ConfigError(f"trtci_benchmark: batch={batch!r}; give an integer >= 1")
    names = [spec.name for spec in info.inputs]
    if feeds is not None and shapes is not None:
        raise ConfigError("trtci_benchmark: pass feeds or shapes, not both (feeds carry their shapes)")
    what = "feeds" if feeds is not None else "shapes"
    if feeds is not None and sorted(feeds) != sorted(names):
        raise DataError(
            f"{info.path.name}: feeds have inputs {sorted(feeds)}, the model takes {sorted(names)}; "
            "give one array per model input"
        )
    raw = feeds if feeds is not None else shapes or {}
    given = {name: tuple(int(d) for d in getattr(value, "shape", value)) for name, value in raw.items()}
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(
            f"{info.path.name}: shapes names {', '.join(unknown)}, not inputs of the model ({', '.join(names)})"
        )
    for spec in info.inputs:
        shape = given.get(spec.name)
        if shape is not None and len(shape) != len(spec.shape):
            raise ConfigError(
                f"{info.path.name}: {what}['{spec.name}'] has rank {len(shape)}, the model's input has rank "
                f"{len(spec.shape)}"
            )
    batch = _batch(info, batch, {name: shape[0] for name, shape in given.items() if shape}, what)
    for spec in info.inputs:
        shape = given.get(spec.name)
        for axis, dim in enumerate(spec.shape[1:], start=1):
            if isinstance(dim, int) and shape is not None and shape[axis] != dim:
                raise ConfigError(
                    f"{info.path.name}: {what}['{spec.name}'] dim {axis} is {shape[axis]}, the model fixes it at {dim}"
                )
            if not isinstance(dim, int) and shape is None:
                raise ConfigError(
                    f"{info.path.name}: input '{spec.name}' dim {axis} ('{dim}') is symbolic; give its size with "
                    f"shapes={{'{spec.name}': ({batch}, ...)}} or pass feeds"
                )
    return batch, {name: (batch, *shape[1:]) for name, shape in given.items()}


def _batch(info: ModelInfo, batch: int | None, given: dict[str, int], what: str) -> int:
    from trtci.errors import ConfigError

    if len(set(given.values())) > 1:
        raise ConfigError(f"trtci_benchmark: {what} disagree on the batch (first dim): {given}; make them equal")
    for found in given.values():
        if batch is not None and batch != found:
            raise ConfigError(f"trtci_benchmark: batch={batch} but {what} have a first dim of {found}; make them agree")
        batch = found
    for spec in info.inputs:
        fixed = spec.shape[0] if spec.shape else None
        if isinstance(fixed, int):
            if batch is not None and batch != fixed:
                raise ConfigError(
                    f"{info.path.name}: input '{spec.name}' has a fixed batch of {fixed}; pass batch={fixed} "
                    "or export the model with a dynamic batch"
                )
            batch = fixed
    return batch or 1

"""Running a built TensorRT engine: runtime, execution context, device and pinned buffers, timing.

`TensorRTSession` deserializes a plan and binds one buffer per I/O tensor; `benchmark` times it as trtexec does
(CUDA events, a CUDA graph). `BuildOnlySession` is what a machine that builds but cannot run engines gets.
cuda-python is imported when a session is made, never at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trtci.backends.base import Feeds, LoadRequest, Progress
from trtci.backends.tensorrt.build import BuildLog, dims, import_tensorrt, make_logger
from trtci.config import BenchSettings, TensorRTOptions
from trtci.errors import BackendError, BackendUnavailable
from trtci.results import BenchResult

if TYPE_CHECKING:
    from trtci.backends.cuda_timing import DeviceBuffer, PinnedArray


class BuildOnlySession:
    """An engine that was built (its facts are in `build`) but cannot run on this machine."""

    def __init__(self, build: dict[str, Any], reason: str) -> None:
        self.build: dict[str, Any] | None = build
        self.reason = reason

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        raise BackendUnavailable(f"build-only mode, the engine was built but cannot run here: {self.reason}")

    def benchmark(
        self, feeds: Feeds, settings: BenchSettings, batch: int, progress: Progress | None = None
    ) -> BenchResult:
        raise BackendUnavailable(f"build-only mode, the engine was built but cannot be measured here: {self.reason}")

    def close(self) -> None:
        """Nothing is held: the plan lives in the engine cache."""


@dataclass
class _Tensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    device: DeviceBuffer
    host: PinnedArray


class TensorRTSession:
    """A deserialized engine with one execution context, device buffers bound to every I/O tensor, a stream."""

    def __init__(
        self,
        flavor: str,
        device_index: int,
        plan: bytes,
        request: LoadRequest,
        options: TensorRTOptions,
        build: dict[str, Any],
    ) -> None:
        """Deserialize `plan` of the `flavor` ("tensorrt" or "tensorrt-rtx") on CUDA device `device_index` and
        bind it for `request.shapes`; engine facts are added to `build`, which becomes `self.build`."""
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = import_tensorrt(flavor)
        from trtci.backends.cuda_timing import Stream, set_device

        self._trt = trt
        self.options = options
        self.device_index = device_index
        set_device(self.device_index)
        log = BuildLog()
        self._runtime = trt.Runtime(make_logger(flavor, log))
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError(
                f"{flavor} cannot load the engine of {request.model_path.name}: {log.last_errors()}"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        self.stream = Stream()
        self.tensors = self._bind(request)
        build.update(device_memory_bytes=int(engine.device_memory_size_v2), engine_layers=int(engine.num_layers))
        if options.profiling_verbosity == "detailed" and "engine_path" in build:
            build["inspector"] = self._save_inspector(Path(build["engine_path"]))
        self.build: dict[str, Any] | None = build

    def _bind(self, request: LoadRequest) -> list[_Tensor]:
        """Set input shapes, then allocate and bind device and pinned host memory for every I/O tensor."""
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self._trt
        from trtci.backends.cuda_timing import DeviceBuffer, PinnedArray

        engine, context = self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            if name not in request.shapes:
                raise BackendError(f"{request.model_path.name}: no shape for engine input '{name}'")
            context.set_input_shape(name, trt.Dims(list(request.shapes[name])))
        tensors = []
        for name in names:
            shape = dims(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(
                    f"{request.model_path.name}: output '{name}' has a data-dependent shape {shape}, which trtci's "
                    "TensorRT runner does not support (it needs an output allocator)"
                )
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host = PinnedArray(shape, dtype)
            device = DeviceBuffer(host.array.nbytes, f"tensor '{name}' {shape}")
            context.set_tensor_address(name, device.ptr)
            tensors.append(_Tensor(name, name in inputs, shape, dtype, device, host))
        return tensors

    def _save_inspector(self, engine_path: Path) -> str:
        """Save the engine inspector's layer JSON beside the engine; return its path or why it was not saved."""
        if TYPE_CHECKING:
            import tensorrt as trt
        else:
            trt = self._trt
        inspector = self._engine.create_engine_inspector()
        if inspector is None:
            return "the runtime gave no engine inspector"
        path = engine_path.with_suffix(".layers.json")
        path.write_text(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        return str(path)

    def _enqueue(self, stream: int) -> None:
        if not self._context.execute_async_v3(stream):
            raise BackendError("execute_async_v3 failed: see TensorRT's log above")

    def _stage_inputs(self, feeds: Feeds) -> None:
        for tensor in self.tensors:
            if not tensor.is_input:
                continue
            if tensor.name not in feeds:
                raise BackendError(f"missing input '{tensor.name}'")
            value = feeds[tensor.name]
            if tuple(value.shape) != tensor.shape:
                raise BackendError(
                    f"input '{tensor.name}' has shape {tuple(value.shape)}; the engine was bound for {tensor.shape}"
                )
            np.copyto(tensor.host.array, value, casting="same_kind")

    def _upload(self, stream: int) -> None:
        for tensor in self.tensors:
            if tensor.is_input:
                tensor.device.upload(tensor.host.array, stream)

    def _download(self, stream: int) -> None:
        for tensor in self.tensors:
            if not tensor.is_input:
                tensor.device.download(tensor.host.array, stream)

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Copy the feeds in, run once on the session's stream, copy every output out."""
        self._stage_inputs(feeds)
        handle = self.stream.handle
        self._upload(handle)
        self._enqueue(handle)
        self._download(handle)
        self.stream.synchronize()
        return {t.name: t.host.array.copy() for t in self.tensors if not t.is_input}

    def benchmark(
        self, feeds: Feeds, settings: BenchSettings, batch: int, progress: Progress | None = None
    ) -> BenchResult:
        """trtexec's measurement: CUDA events, a CUDA graph unless turned off, transfers only when asked for,
        NVML telemetry sampled around it."""
        from trtci.backends.cuda_timing import time_enqueue, to_bench_result
        from trtci.backends.telemetry import TelemetrySampler

        self.run(feeds)  # stages the inputs on the device and surfaces a bad feed before timing
        transfers = self.options.include_data_transfers
        with TelemetrySampler(self.device_index) as telemetry:
            timing = time_enqueue(
                self._enqueue,
                settings,
                self.stream.handle,
                h2d=self._upload if transfers else None,
                d2h=self._download if transfers else None,
                cuda_graph=self.options.cuda_graphs,
                progress=progress,
            )
        return to_bench_result(timing, batch, settings, extra={"telemetry": telemetry.summary})

    def close(self) -> None:
        for tensor in self.tensors:
            tensor.device.free()
            tensor.host.free()
        self.tensors = []
        self.stream.close()
        del self._context, self._engine

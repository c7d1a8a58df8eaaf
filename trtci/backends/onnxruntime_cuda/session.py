"""One ONNX Runtime CUDA session bound to device-resident inputs and outputs, run and timed on trtci's stream.

Made in two steps: a plain session first, which shows where the nodes run and the outputs' shapes and types at this
batch; then, where CUDA graphs are asked for and the whole model runs on the GPU, a graph-enabled session whose
inputs and outputs are bound to fixed device buffers, as ONNX Runtime's CUDA graphs require.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from trtci.backends.base import Feeds, LoadRequest, Progress
from trtci.backends.onnxruntime_cuda.probe import PROVIDER, count_placement, graph_plan, short
from trtci.config import BenchSettings
from trtci.errors import BackendError, BackendUnavailable
from trtci.results import BenchResult


class OnnxRuntimeCudaSession:
    """A prepared model on one GPU at one batch: `run` for validation, `benchmark` for CUDA-event timing."""

    build: dict[str, Any] | None = None

    def __init__(self, ort: Any, device_index: int, request: LoadRequest) -> None:
        from trtci.backends.cuda_timing import Stream, set_device

        self._ort = ort
        self.device_index = device_index
        self.batch = request.batch
        self.transfers = bool(request.options.get("include_data_transfers", False))
        set_device(device_index)
        self.stream = Stream()
        self.path = request.model_path
        try:
            self._open(bool(request.options.get("cuda_graphs", True)), request.shapes)
        except Exception:
            self.stream.close()
            raise

    def _open(self, graphs_requested: bool, shapes: dict[str, tuple[int, ...]]) -> None:
        plain = self._session(cuda_graph=False)
        self.placement = self._placement(shapes)
        self.cpu_nodes = sum(n for provider, n in self.placement.items() if provider != PROVIDER)
        self.inputs = {i.name: self._device_zeros(shapes[i.name], _dtype(i.type)) for i in plain.get_inputs()}
        probe = plain.io_binding()
        for name, value in self.inputs.items():
            probe.bind_ortvalue_input(name, value)
        for output in plain.get_outputs():
            probe.bind_output(output.name, "cuda", self.device_index)
        self._run(plain, probe)
        shaped = probe.get_outputs()
        self.outputs = {
            o.name: self._device_zeros(tuple(v.shape()), _dtype(v.data_type()))
            for o, v in zip(plain.get_outputs(), shaped)
        }
        self.cuda_graph, self.graph_note = graph_plan(graphs_requested, self.cpu_nodes)
        self._session_obj = plain
        if self.cuda_graph:
            try:
                graphed = self._session(cuda_graph=True)
                self._bind(graphed)
                self._run(graphed, self.binding)  # ONNX Runtime captures the graph on its first runs
                self._run(graphed, self.binding)
                self._session_obj = graphed
            except BackendError as e:
                self.cuda_graph, self.graph_note = False, f"plain enqueue: CUDA graph capture failed ({e})"
        if not self.cuda_graph:
            self._bind(plain)
        self.build = {
            "provider": PROVIDER,
            "nodes_by_provider": self.placement,
            "cpu_nodes": self.cpu_nodes,
            "cuda_graph": self.cuda_graph,
            "graph_note": self.graph_note,
        }

    def _session(self, *, cuda_graph: bool) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.log_severity_level = 3
        provider = {
            "device_id": str(self.device_index),
            "user_compute_stream": str(self.stream.handle),
            "enable_cuda_graph": "1" if cuda_graph else "0",
        }
        try:
            session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=[(PROVIDER, provider), "CPUExecutionProvider"]
            )
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/NotImplemented types from C++
            raise BackendError(f"onnxruntime-cuda cannot load {self.path.name}: {short(e, self.batch)}") from e
        if PROVIDER not in session.get_providers():
            raise BackendUnavailable("onnxruntime-cuda: the CUDA provider did not load, ONNX Runtime fell back to CPU")
        return session

    def _placement(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
        """Nodes per provider, from one profiled run of a throwaway session (profiling slows every run)."""
        options = self._ort.SessionOptions()
        options.log_severity_level = 3
        options.enable_profiling = True
        with tempfile.TemporaryDirectory(prefix="trtci-ort-profile-") as scratch:
            options.profile_file_prefix = os.path.join(scratch, "profile")
            provider = {"device_id": str(self.device_index), "user_compute_stream": str(self.stream.handle)}
            profiled = self._ort.InferenceSession(
                str(self.path), sess_options=options, providers=[(PROVIDER, provider), "CPUExecutionProvider"]
            )
            feeds = {i.name: np.zeros(shapes[i.name], _dtype(i.type)) for i in profiled.get_inputs()}
            try:
                profiled.run(None, feeds)
            except Exception as e:
                raise BackendError(f"onnxruntime-cuda cannot run {self.path.name}: {short(e, self.batch)}") from e
            events = json.loads(Path(profiled.end_profiling()).read_text())
        return count_placement(events)

    def _device_zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        try:
            return self._ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype), "cuda", self.device_index)
        except Exception as e:
            raise BackendError(f"onnxruntime-cuda: {short(e, self.batch)}") from e

    def _bind(self, session: Any) -> None:
        self.binding = session.io_binding()
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        for name, value in self.outputs.items():
            self.binding.bind_ortvalue_output(name, value)

    def _run(self, session: Any, binding: Any) -> None:
        # A plain (synchronizing) run: on an H200, ORT's `disable_synchronize_execution_providers` made each run
        # 12-15% slower than this, so the events bracket a synchronous run, as a user's own loop would time it.
        try:
            session.run_with_iobinding(binding)
        except Exception as e:
            raise BackendError(f"onnxruntime-cuda failed to run {self.path.name}: {short(e, self.batch)}") from e

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Copy the feeds into the bound inputs, run once, and return every output on the host."""
        for name, value in self.inputs.items():
            array = np.ascontiguousarray(feeds[name], dtype=_dtype(value.data_type()))
            if tuple(array.shape) != tuple(value.shape()):
                shown = list(array.shape)
                raise BackendError(f"onnxruntime-cuda: input '{name}' has shape {shown}, bound {value.shape()}")
            value.update_inplace(array)
        self._run(self._session_obj, self.binding)
        return {name: value.numpy() for name, value in self.outputs.items()}

    def _enqueue(self, stream: int) -> None:
        self._run(self._session_obj, self.binding)

    def benchmark(
        self, feeds: Feeds, settings: BenchSettings, batch: int, progress: Progress | None = None
    ) -> BenchResult:
        """trtexec's measurement on the GPU: CUDA events around each run on trtci's stream, ONNX Runtime's own CUDA
        graph where it could be used, transfers only when asked for, NVML telemetry sampled around it."""
        from trtci.backends.cuda_timing import time_enqueue, to_bench_result
        from trtci.backends.telemetry import TelemetrySampler

        self.run(feeds)
        copies = _Copies(self, feeds) if self.transfers else None
        try:
            with TelemetrySampler(self.device_index) as telemetry:
                timing = time_enqueue(
                    self._enqueue,
                    settings,
                    self.stream.handle,
                    h2d=copies.upload if copies else None,
                    d2h=copies.download if copies else None,
                    cuda_graph=False,  # ONNX Runtime replays its own graph inside each run
                    progress=progress,
                )
        finally:
            if copies is not None:
                copies.free()
        timing.cuda_graph, timing.graph_note = self.cuda_graph, self.graph_note
        extra = {"telemetry": telemetry.summary, "onnxruntime_cuda": self.build}
        return to_bench_result(timing, batch, settings, extra=extra)

    def close(self) -> None:
        self.binding = None
        self._session_obj = None
        self.inputs, self.outputs = {}, {}
        self.stream.close()


class _Copies:
    """Pinned host copies of the inputs and outputs, copied on the stream as trtexec's --includeDataTransfers does."""

    def __init__(self, session: OnnxRuntimeCudaSession, feeds: Feeds) -> None:
        from trtci.backends.cuda_timing import PinnedArray

        self.pairs: list[tuple[Any, Any, bool]] = []
        for name, value in session.inputs.items():
            host = PinnedArray(tuple(value.shape()), _dtype(value.data_type()))
            host.array[...] = feeds[name]
            self.pairs.append((value, host, True))
        for value in session.outputs.values():
            self.pairs.append((value, PinnedArray(tuple(value.shape()), _dtype(value.data_type())), False))

    def _copy(self, stream: int, upload: bool) -> None:
        from trtci.backends.cuda_timing import check, cudart

        rt = cudart()
        for value, host, is_input in self.pairs:
            if is_input != upload:
                continue
            kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice if upload else rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
            dst, src = (value.data_ptr(), host.ptr) if upload else (host.ptr, value.data_ptr())
            check(rt.cudaMemcpyAsync(dst, src, host.array.nbytes, kind, stream), "cudaMemcpyAsync")

    def upload(self, stream: int) -> None:
        self._copy(stream, upload=True)

    def download(self, stream: int) -> None:
        self._copy(stream, upload=False)

    def free(self) -> None:
        for _, host, _ in self.pairs:
            host.free()


_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _dtype(onnx_type: str) -> np.dtype:
    if onnx_type not in _TYPES:
        raise BackendError(f"onnxruntime-cuda: tensors of type {onnx_type} are not supported")
    return np.dtype(_TYPES[onnx_type])


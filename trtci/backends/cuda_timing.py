"""CUDA-event timing of anything that enqueues work on a stream, the way trtexec times engines.

The measured work is an `enqueue(stream)` callable (an engine's `execute_async_v3`, a copy, a PyTorch kernel on
an external stream), so the loop, the CUDA graph capture with its fallback and the statistics are the same for a
TensorRT engine and for any other CUDA workload. cuda-python is imported lazily, inside the functions.

Per iteration: events around the host-to-device copies (when included), the enqueue (GPU compute) and the
device-to-host copies; a host clock around the enqueue call (enqueue time). One inference is in flight at a time
(the stream is synchronized after each iteration), as trtexec with one stream and no overlap.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trtci.backends import measure as bench
from trtci.config import BenchSettings
from trtci.errors import BackendError, BackendUnavailable
from trtci.results import BenchResult

Enqueue = Callable[[int], object]  # enqueues work on the stream whose handle it receives; raises on failure
INSTALL_HINT = "pip install 'cuda-python>=12.6' (part of trtci[tensorrt])"
ENQUEUE_BOUND_RATIO = 0.8  # enqueue time this close to GPU compute time means the CPU limits throughput
_NO_GPU_ERRORS = {"cudaErrorInsufficientDriver", "cudaErrorNoDevice", "cudaErrorInitializationError"}


def cudart() -> Any:
    """cuda-python's runtime module; BackendUnavailable with the install hint when it is missing."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python before 12.6 had no cuda.bindings
        except ImportError as e:
            raise BackendUnavailable(f"cuda-python is not installed: {INSTALL_HINT}") from e
    return runtime


def _error_name(rt: Any, err: Any) -> str:
    name = rt.cudaGetErrorName(err)[1]
    return name.decode() if isinstance(name, bytes) else str(name)


def check(result: Any, what: str) -> Any:
    """Unwrap cuda-python's `(err, value...)` result: the value, a tuple of values, or None.

    Raises BackendUnavailable when there is no usable GPU or driver, BackendError otherwise (out of device
    memory included: the series fails with the reason and the others go on).
    """
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        rt = cudart()
        name = _error_name(rt, err)
        text = rt.cudaGetErrorString(err)[1]
        text = text.decode() if isinstance(text, bytes) else str(text)
        message = f"{what} failed: {name} ({text})"
        if name in _NO_GPU_ERRORS:
            raise BackendUnavailable(f"{message}: no usable NVIDIA GPU and driver here; run `trtci doctor`")
        if name == "cudaErrorMemoryAllocation":
            raise BackendError(f"{message}: out of device memory; use a smaller batch or free the GPU")
        raise BackendError(message)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class GpuProperties:
    index: int
    name: str
    compute: str  # "9.0"
    memory_bytes: int
    multiprocessors: int
    driver: str  # CUDA version the driver supports, "13.0"
    runtime: str  # CUDA runtime version, "13.0"


def _cuda_version(value: int) -> str:
    return f"{value // 1000}.{value % 1000 // 10}"


def gpu_count() -> int:
    """How many GPUs CUDA sees; raises BackendUnavailable when the driver or cuda-python is missing."""
    return int(check(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount"))


def gpu_properties(index: int = 0) -> GpuProperties:
    """Name, compute capability and versions of one GPU, through the CUDA runtime."""
    rt = cudart()
    props = check(rt.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = props.name.split(b"\0", 1)[0].decode() if isinstance(props.name, bytes) else str(props.name)
    return GpuProperties(
        index=index,
        name=name,
        compute=f"{props.major}.{props.minor}",
        memory_bytes=int(props.totalGlobalMem),
        multiprocessors=int(props.multiProcessorCount),
        driver=_cuda_version(check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")),
        runtime=_cuda_version(check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")),
    )


def set_device(index: int) -> None:
    check(cudart().cudaSetDevice(index), f"cudaSetDevice({index})")


class Stream:
    """A non-blocking CUDA stream; `handle` is the integer that TensorRT's execute_async_v3 takes."""

    def __init__(self) -> None:
        rt = cudart()
        self._stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.handle = int(self._stream)

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._stream is not None:
            check(cudart().cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeviceBuffer:
    """`nbytes` of device memory; `what` names it in an out-of-memory message."""

    def __init__(self, nbytes: int, what: str = "a buffer") -> None:
        self.nbytes = nbytes
        self.ptr = int(check(cudart().cudaMalloc(max(nbytes, 1)), f"cudaMalloc of {nbytes / 2**20:.1f} MiB for {what}"))

    def upload(self, array: np.ndarray, stream: int) -> None:
        """Enqueue a copy of a C-contiguous host array of exactly nbytes into this buffer."""
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(rt.cudaMemcpyAsync(self.ptr, array.ctypes.data, array.nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def download(self, array: np.ndarray, stream: int) -> None:
        """Enqueue a copy of this buffer into a C-contiguous host array of exactly nbytes."""
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(rt.cudaMemcpyAsync(array.ctypes.data, self.ptr, array.nbytes, kind, stream), "cudaMemcpyAsync D2H")

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedArray:
    """A numpy array in page-locked host memory, so timed copies run at the bus's speed as in trtexec."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self.ptr = int(check(cudart().cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))
        raw = (ctypes.c_byte * max(nbytes, 1)).from_address(self.ptr)
        self.array = np.frombuffer(memoryview(raw), dtype=dtype, count=nbytes // dtype.itemsize).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class CudaGraph:
    """An instantiated CUDA graph of one enqueue, launched in place of the enqueue."""

    def __init__(self, graph_exec: Any) -> None:
        self._exec = graph_exec

    def launch(self, stream: int) -> None:
        check(cudart().cudaGraphLaunch(self._exec, stream), "cudaGraphLaunch")

    def close(self) -> None:
        if self._exec is not None:
            check(cudart().cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            self._exec = None


def capture_graph(enqueue: Enqueue, stream: int) -> tuple[CudaGraph | None, str]:
    """Capture one enqueue into a CUDA graph, trtexec's recipe: one plain enqueue and sync first, then capture.

    Returns (graph, note) or, when capture or instantiation fails (some plugins and shape-dependent layers
    cannot be captured), (None, the reason): the caller then times plain enqueues.
    """
    rt = cudart()
    enqueue(stream)
    check(rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
    check(rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")
    failure = ""
    try:
        enqueue(stream)
    except Exception as e:  # any enqueue failure under capture means "not capturable", as in trtexec
        failure = f"the enqueue failed under capture ({e})"
    err, graph = rt.cudaStreamEndCapture(stream)
    if not failure and int(err) != 0:
        failure = f"cudaStreamEndCapture failed ({_error_name(rt, err)})"
    if failure:
        if graph is not None and int(err) == 0:
            rt.cudaGraphDestroy(graph)
        rt.cudaGetLastError()  # clear the capture error so later calls on this thread do not report it
        return None, f"CUDA graph capture failed: {failure}; timing plain enqueues"
    err, graph_exec = rt.cudaGraphInstantiate(graph, 0)
    rt.cudaGraphDestroy(graph)
    if int(err) != 0:
        rt.cudaGetLastError()
        return None, f"CUDA graph instantiation failed ({_error_name(rt, err)}); timing plain enqueues"
    return CudaGraph(graph_exec), "CUDA graph"


@dataclass
class TimingRun:
    """Raw per-iteration times of one measurement, in milliseconds, in the order measured."""

    latency_ms: list[float]  # H2D + GPU compute + D2H when transfers are included, else GPU compute
    compute_ms: list[float]
    enqueue_ms: list[float]  # host time of the enqueue (or graph launch) call
    h2d_ms: list[float] = field(default_factory=list)  # empty when transfers are excluded
    d2h_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    warmup_ms: float = 0.0
    cuda_graph: bool = False
    graph_note: str = ""


class _Events:
    """Four timing events reused by every iteration: before H2D, before compute, after compute, after D2H."""

    def __init__(self) -> None:
        rt = cudart()
        self.events = [check(rt.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]

    def elapsed(self, first: int, last: int) -> float:
        return float(
            check(cudart().cudaEventElapsedTime(self.events[first], self.events[last]), "cudaEventElapsedTime")
        )

    def close(self) -> None:
        rt = cudart()
        for event in self.events:
            rt.cudaEventDestroy(event)


class _Loop:
    def __init__(self, launch: Enqueue, stream: int, h2d: Enqueue | None, d2h: Enqueue | None, events: _Events) -> None:
        self.launch, self.stream, self.h2d, self.d2h, self.events = launch, stream, h2d, d2h, events
        self.run = TimingRun(latency_ms=[], compute_ms=[], enqueue_ms=[])

    def iteration(self, record: bool) -> None:
        rt, stream, ev = cudart(), self.stream, self.events.events
        check(rt.cudaEventRecord(ev[0], stream), "cudaEventRecord")
        if self.h2d is not None:
            self.h2d(stream)
        check(rt.cudaEventRecord(ev[1], stream), "cudaEventRecord")
        start = time.perf_counter()
        self.launch(stream)
        enqueue_s = time.perf_counter() - start
        check(rt.cudaEventRecord(ev[2], stream), "cudaEventRecord")
        if self.d2h is not None:
            self.d2h(stream)
        check(rt.cudaEventRecord(ev[3], stream), "cudaEventRecord")
        check(rt.cudaEventSynchronize(ev[3]), "cudaEventSynchronize")
        if not record:
            return
        compute = self.events.elapsed(1, 2)
        self.run.compute_ms.append(compute)
        self.run.enqueue_ms.append(enqueue_s * 1e3)
        transfers = self.h2d is not None or self.d2h is not None
        self.run.latency_ms.append(self.events.elapsed(0, 3) if transfers else compute)
        if self.h2d is not None:
            self.run.h2d_ms.append(self.events.elapsed(0, 1))
        if self.d2h is not None:
            self.run.d2h_ms.append(self.events.elapsed(2, 3))


def time_enqueue(
    enqueue: Enqueue,
    settings: BenchSettings,
    stream: int,
    *,
    h2d: Enqueue | None = None,
    d2h: Enqueue | None = None,
    cuda_graph: bool = True,
    progress: Callable[[float], None] | None = None,
) -> TimingRun:
    """Warm up for settings.warmup_ms, then time iterations until settings.duration_s and min_iterations.

    With `cuda_graph`, the enqueue is captured once and the graph is launched instead (falling back to plain
    enqueues with the reason in `graph_note`). `h2d`/`d2h` enqueue the input and output copies; leaving them out
    excludes transfers, trtexec's default.
    """
    graph, note = capture_graph(enqueue, stream) if cuda_graph else (None, "plain enqueue (CUDA graphs off)")
    events = _Events()
    try:
        loop = _Loop(graph.launch if graph else enqueue, stream, h2d, d2h, events)
        perf = time.perf_counter
        start = perf()
        loop.iteration(record=False)
        while perf() - start < settings.warmup_ms / 1e3:
            loop.iteration(record=False)
        warmup_s = perf() - start
        start = perf()
        deadline = start + settings.duration_s
        while perf() < deadline or len(loop.run.latency_ms) < settings.min_iterations:
            loop.iteration(record=True)
            if progress is not None and len(loop.run.latency_ms) % 64 == 0:
                progress(min((perf() - start) / settings.duration_s, 1.0))
        loop.run.wall_s = perf() - start
    finally:
        events.close()
        if graph is not None:
            graph.close()
    if progress is not None:
        progress(1.0)
    loop.run.warmup_ms = warmup_s * 1e3
    loop.run.cuda_graph = graph is not None
    loop.run.graph_note = note
    return loop.run


def metrics(run: TimingRun, batch: int, settings: BenchSettings) -> dict[str, Any]:
    """trtexec's summary of a run: statistics per quantity, throughput, and its warnings."""
    series = {"latency": run.latency_ms, "gpu_compute": run.compute_ms, "enqueue": run.enqueue_ms}
    if run.h2d_ms:
        series["h2d"] = run.h2d_ms
    if run.d2h_ms:
        series["d2h"] = run.d2h_ms
    stats = {
        name: asdict(bench.latency_stats(samples, batch=batch, wall_s=run.wall_s, max_cv=settings.max_cv))
        for name, samples in series.items()
    }
    return {
        "stats": stats,
        "throughput_qps": len(run.latency_ms) / run.wall_s,
        "cuda_graph": run.cuda_graph,
        "graph_note": run.graph_note,
        "transfers_included": bool(run.h2d_ms or run.d2h_ms),
        "warnings": warnings(stats, settings),
    }


def warnings(stats: dict[str, dict[str, float]], settings: BenchSettings) -> list[str]:
    """trtexec's three warnings: unstable GPU compute, enqueue-bound throughput, transfer-dominated latency."""
    found = []
    compute = stats["gpu_compute"]
    if compute["cv"] > settings.max_cv:
        found.append(
            f"GPU compute time is unstable: coefficient of variation {compute['cv']:.1%} above "
            f"{settings.max_cv:.1%}; lock the GPU clocks or close other work on the GPU"
        )
    if stats["enqueue"]["median"] >= ENQUEUE_BOUND_RATIO * compute["median"]:
        found.append(
            f"throughput may be bound by enqueue time ({stats['enqueue']['median']:.3f} ms) rather than GPU "
            f"compute ({compute['median']:.3f} ms): the GPU may be under-used; CUDA graphs may help"
        )
    transfers = sum(stats[name]["median"] for name in ("h2d", "d2h") if name in stats)
    if transfers > compute["median"]:
        found.append(
            f"data transfers ({transfers:.3f} ms) take longer than GPU compute ({compute['median']:.3f} ms): "
            "latency measures the bus more than the engine"
        )
    return found


def to_bench_result(
    run: TimingRun, batch: int, settings: BenchSettings, extra: dict[str, Any] | None = None
) -> BenchResult:
    """A BenchResult whose samples are the per-iteration latencies and whose extra holds trtexec's metrics."""
    return bench.collect(
        run.latency_ms,
        batch=batch,
        wall_s=run.wall_s,
        warmup_ms=run.warmup_ms,
        settings=settings,
        timer="cuda-event",
        extra={"trtexec": metrics(run, batch, settings), **(extra or {})},
    )

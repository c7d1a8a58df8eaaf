"""`onnxruntime-cuda`: ONNX Runtime's CUDA execution provider on one NVIDIA GPU, measured the trtexec way.

Inputs and outputs stay on the device (IOBinding); ONNX Runtime computes on a stream trtci creates (its
`user_compute_stream` option), so CUDA events on that stream time exactly its kernels, with the same loop, statistics
and NVML telemetry as a TensorRT engine (trtci.backends.cuda_timing). CUDA graphs are ONNX Runtime's own
(`enable_cuda_graph`), used where the whole model runs on the GPU; otherwise plain enqueues, with the reason.

FP32 and FP16 are timed. INT8 Q/DQ models are run for their accuracy only: the CUDA provider has no INT8 kernels
for Q/DQ graphs (it dequantizes), so their speed here would mean nothing. onnxruntime-gpu is imported when the
backend is made, never at import.
"""

from __future__ import annotations

from typing import Any

from trtci.backends.base import LoadRequest, prefer_for_auto
from trtci.backends.cuda_timing import GpuProperties
from trtci.backends.onnxruntime_cuda.probe import NAME, device_info, import_onnxruntime_cuda
from trtci.backends.onnxruntime_cuda.session import OnnxRuntimeCudaSession
from trtci.config import Config
from trtci.errors import BackendUnavailable
from trtci.results import DeviceInfo


@prefer_for_auto(30)  # after TensorRT (10) and TensorRT for RTX (20), before ONNX Runtime on the CPU (100)
def create(config: Config) -> OnnxRuntimeCudaBackend:
    """The backend on CUDA device `tensorrt.device` (`--device`, default 0); BackendUnavailable with the fix when
    onnxruntime-gpu, its CUDA libraries, cuda-python or the GPU are missing."""
    ort = import_onnxruntime_cuda()
    from trtci.backends.cuda_timing import gpu_count, gpu_properties

    index = config.tensorrt.device if config.tensorrt.device is not None else 0
    count = gpu_count()
    if index >= count:
        raise BackendUnavailable(f"{NAME}: CUDA device {index} does not exist ({count} visible); pass --device 0..")
    return OnnxRuntimeCudaBackend(ort, gpu_properties(index), config)


class OnnxRuntimeCudaBackend:
    """ONNX Runtime's CUDA provider on one GPU: one session per prepared file, batch and graph setting."""

    name = NAME
    int8_scheme = ""  # no INT8 series is timed here (no INT8 kernels for Q/DQ graphs)
    validation_only_schemes = ("tensorrt",)  # the Q/DQ model TensorRT gets: its accuracy, on this GPU
    builds_engines = False
    can_run = True
    why_not_run = ""

    def __init__(self, ort: Any, gpu: GpuProperties, config: Config) -> None:
        self._ort = ort
        self.gpu = gpu
        self.threads = config.bench.threads

    @property
    def version(self) -> str:
        return str(self._ort.__version__)

    def load_options(self, config: Config) -> dict[str, Any]:
        options = config.tensorrt
        return {"cuda_graphs": options.cuda_graphs, "include_data_transfers": options.include_data_transfers}

    def identity_options(self, config: Config) -> dict[str, Any]:
        """How it is measured: with or without CUDA graphs and transfers."""
        return {NAME: self.load_options(config)}

    def device(self) -> DeviceInfo:
        return device_info(self.gpu, self.version)

    def load(self, request: LoadRequest) -> OnnxRuntimeCudaSession:
        return OnnxRuntimeCudaSession(self._ort, self.gpu.index, request)

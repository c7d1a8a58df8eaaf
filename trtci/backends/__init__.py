"""Backends by name. Each is imported only when asked for, so trtci runs without GPU packages installed."""

from __future__ import annotations

from trtci.backends.base import Backend
from trtci.config import Config
from trtci.errors import BackendUnavailable, ConfigError

BACKENDS = ("onnxruntime", "tensorrt", "tensorrt-rtx", "auto")


def get_backend(name: str, config: Config) -> Backend:
    """The backend called `name`, set up from the config. Raises BackendUnavailable when it cannot work here.

    "auto" is the first TensorRT flavor that can run engines on this machine, else ONNX Runtime on the CPU.
    """
    if name == "auto":
        from trtci.backends.tensorrt import create_backend

        for flavor in ("tensorrt", "tensorrt-rtx"):
            try:
                backend = create_backend(flavor, config.tensorrt)
            except BackendUnavailable:
                continue
            if backend.can_run:
                return backend
        name = "onnxruntime"
    if name == "onnxruntime":
        from trtci.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads=config.bench.threads)
    if name in ("tensorrt", "tensorrt-rtx"):
        from trtci.backends.tensorrt import create_backend

        return create_backend(name, config.tensorrt)
    raise ConfigError(f"unknown backend '{name}'; choose from {', '.join(BACKENDS)}")

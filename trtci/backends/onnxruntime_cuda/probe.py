"""What the `onnxruntime-cuda` backend checks and decides before it runs anything: whether ONNX Runtime's CUDA
provider can load (and why not, with the fix), the device identity, where nodes run, and whether CUDA graphs can
be used. Pure functions over plain data where possible, so they are tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
from importlib import metadata
from pathlib import Path
from typing import Any

from trtci.backends.cuda_timing import GpuProperties
from trtci.errors import BackendUnavailable
from trtci.results import DeviceInfo

NAME = "onnxruntime-cuda"
PROVIDER = "CUDAExecutionProvider"
INSTALL_HINT = "pip install 'trtci[cuda]' (onnxruntime-gpu, cuda-python, nvidia-ml-py) where an NVIDIA driver is"
SHADOWED = (
    "the CPU-only onnxruntime package shadows onnxruntime-gpu (both install the `onnxruntime` module): "
    "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
)
MAX_LINE = 240  # ONNX Runtime's errors run to a thousand characters; the first part says what went wrong


def import_onnxruntime_cuda() -> Any:
    """onnxruntime with a loadable CUDA provider, its CUDA and cuDNN libraries preloaded where pip installed them."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise BackendUnavailable(f"{NAME}: cannot import onnxruntime ({e}): {INSTALL_HINT}") from e
    reason = why_no_cuda_provider(
        str(ort.__version__), ort.get_available_providers(), _installed(("onnxruntime", "onnxruntime-gpu"))
    )
    if reason:
        raise BackendUnavailable(f"{NAME}: {reason}")
    ort.set_default_logger_severity(3)  # its per-session warnings ("No registered plugin EP device ...") are noise
    if hasattr(ort, "preload_dlls"):  # 1.21+: CUDA and cuDNN from the nvidia-* wheels, before the provider loads
        with contextlib.suppress(Exception):
            ort.preload_dlls()
    missing = provider_load_error(Path(ort.__file__).parent)
    if missing:
        raise BackendUnavailable(f"{NAME}: the CUDA provider cannot load ({missing}): install the CUDA and cuDNN "
                                 "libraries onnxruntime-gpu needs (pip install 'onnxruntime-gpu[cuda,cudnn]')")
    return ort


def why_no_cuda_provider(version: str, providers: list[str], installed: set[str]) -> str:
    """Why ONNX Runtime offers no CUDA provider here ("" when it does): a CPU-only build, or one that shadows
    onnxruntime-gpu."""
    if PROVIDER in providers:
        return ""
    if "onnxruntime-gpu" in installed and "onnxruntime" in installed:
        return SHADOWED
    if "onnxruntime-gpu" in installed:
        return f"onnxruntime-gpu {version} offers no CUDA provider: pip install --force-reinstall onnxruntime-gpu"
    return f"onnxruntime {version} is the CPU-only build: {INSTALL_HINT}"


def provider_load_error(package: Path) -> str:
    """The loader's complaint about ONNX Runtime's CUDA provider library (the missing libcublas, libcudnn, ...),
    or "". ONNX Runtime itself only logs it and silently runs on the CPU instead."""
    import ctypes

    library = package / "capi" / "libonnxruntime_providers_cuda.so"
    if not library.exists():
        return ""  # not Linux, or another layout: the session's providers are checked when it is made
    try:
        ctypes.CDLL(str(library))
    except OSError as e:  # "libcublasLt.so.13: cannot open shared object file", or "<library>: invalid ELF header"
        return str(e).removeprefix(f"{library}: ")[:MAX_LINE]
    return ""


def _installed(names: tuple[str, ...]) -> set[str]:
    found = set()
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            metadata.version(name)
            found.add(name)
    return found


def device_info(gpu: GpuProperties, ort_version: str) -> DeviceInfo:
    """The GPU as a series' device: its model and the versions that change performance. The device index is not
    part of it, so identical GPUs share one history and different GPU models never mix."""
    details = {
        "compute": gpu.compute,
        "memory_bytes": gpu.memory_bytes,
        "cuda": gpu.runtime,
        "driver_cuda": gpu.driver,
        "onnxruntime": ort_version,
        "provider": PROVIDER,
    }
    return DeviceInfo(kind="gpu", name=gpu.name, details=details)


def short(error: Exception, batch: int | None = None) -> str:
    """One line of an ONNX Runtime error, with the fix for the errors users can fix."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "out of memory" in text.lower() or "failed to allocate memory" in text.lower():
        at = f" at batch {batch}" if batch is not None else ""
        return f"out of GPU memory{at}: use a smaller batch or free the GPU"
    return text[:MAX_LINE] + ("..." if len(text) > MAX_LINE else "")


def count_placement(profile: list[dict[str, Any]]) -> dict[str, int]:
    """Nodes per execution provider in an ONNX Runtime profile (SessionOptions.enable_profiling)."""
    nodes: dict[str, str] = {}
    for event in profile:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            nodes[str(event.get("name", "")).removesuffix("_kernel_time")] = str(args["provider"])
    counts: dict[str, int] = {}
    for provider in nodes.values():
        counts[provider] = counts.get(provider, 0) + 1
    return counts


def graph_plan(requested: bool, cpu_nodes: int) -> tuple[bool, str]:
    """Whether to ask ONNX Runtime for CUDA graphs, and the note the result carries."""
    if not requested:
        return False, "plain enqueue (CUDA graphs off)"
    if cpu_nodes:
        return False, f"plain enqueue: {cpu_nodes} node(s) run on the CPU; CUDA graphs need the whole model on the GPU"
    return True, "CUDA graph (ONNX Runtime's enable_cuda_graph)"

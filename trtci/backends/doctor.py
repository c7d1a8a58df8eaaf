"""`trtci doctor`: what this machine offers, and what each backend can do here (build, run) and why not.

`diagnose()` returns plain data; `print_doctor` renders it with rich. Every probe is lazy and never raises for
what a machine can lack or get wrong: a missing package, driver or GPU, or a CUDA or NVML error, becomes a reason
(with the install hint where there is one). The backends are every one in trtci.backends.registry, plugins too,
each made by its factory as a run with default settings would make it.
"""

from __future__ import annotations

import contextlib
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from trtci.config import Config
from trtci.errors import BackendError, BackendUnavailable, ConfigError


@dataclass
class BackendStatus:
    name: str
    can_build: bool  # the backend could be made here (for onnxruntime: it can load a model)
    can_run: bool
    reason: str = ""  # why it cannot build or run here; "" when it can do both
    version: str = ""


@dataclass
class DoctorReport:
    python: str
    platform: str
    gpus: list[dict[str, Any]] = field(default_factory=list)
    gpu_error: str = ""  # why CUDA sees no GPU, "" when it sees some
    nvml: dict[str, Any] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)  # name -> version, or "missing: reason"
    onnxruntime_providers: list[str] = field(default_factory=list)
    backends: list[BackendStatus] = field(default_factory=list)


def _version(module: str, attr: str = "__version__") -> str:
    import importlib

    try:
        return str(getattr(importlib.import_module(module), attr, "installed"))
    except (ImportError, OSError) as e:
        return f"missing ({e.__class__.__name__}: {e})"


def _distribution_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _gpus() -> tuple[list[dict[str, Any]], str]:
    from trtci.backends.cuda_timing import gpu_count, gpu_properties

    try:
        return [gpu_properties(i).__dict__ for i in range(gpu_count())], ""
    except (BackendUnavailable, BackendError) as e:  # no GPU, or a CUDA error such as a driver mismatch
        return [], str(e)


def _nvml() -> dict[str, Any]:
    try:
        import pynvml
    except ImportError:
        return {"available": False, "reason": "nvidia-ml-py is not installed: pip install nvidia-ml-py"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return {"available": False, "reason": f"NVML cannot start ({e}): no NVIDIA driver here"}
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        count = int(pynvml.nvmlDeviceGetCount())
    except pynvml.NVMLError as e:
        return {"available": False, "reason": f"NVML started but cannot query the driver ({e})"}
    finally:
        with contextlib.suppress(pynvml.NVMLError):  # nothing was learned from a failing shutdown
            pynvml.nvmlShutdown()
    return {"available": True, "driver": driver.decode() if isinstance(driver, bytes) else str(driver), "gpus": count}


def _onnxruntime_providers() -> list[str]:
    """ONNX Runtime's execution providers here (it computes every FP32 accuracy reference); [] without it."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def _backends() -> list[BackendStatus]:
    """One status per registered backend, made as a run with every setting at its default would make it."""
    from trtci.backends.registry import load_factory, registered

    defaults = Config.model_construct(models=[])  # factories read settings only; no model is loaded
    statuses = []
    for name, entry in registered().items():
        try:
            backend = load_factory(entry)(defaults)
        except (BackendUnavailable, BackendError, ConfigError) as e:
            statuses.append(BackendStatus(name, False, False, str(e)))
            continue
        statuses.append(BackendStatus(name, True, backend.can_run, backend.why_not_run, backend.version))
    return statuses


def diagnose() -> DoctorReport:
    """Probe this machine. Never raises for a missing package, driver or GPU, or a CUDA or NVML error: those
    become reasons."""
    gpus, gpu_error = _gpus()
    return DoctorReport(
        python=sys.version.split()[0],
        platform=platform.platform(),
        gpus=gpus,
        gpu_error=gpu_error,
        nvml=_nvml(),
        packages={
            "tensorrt": _version("tensorrt"),
            "tensorrt_rtx_bindings": _version("tensorrt_rtx_bindings"),
            "cuda-python": _version("cuda.bindings"),
            "nvidia-ml-py": _distribution_version("nvidia-ml-py"),
            "onnxruntime": _version("onnxruntime"),
        },
        onnxruntime_providers=_onnxruntime_providers(),
        backends=_backends(),
    )


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def print_doctor(report: DoctorReport, console: Any) -> None:
    """Render the report on a rich Console: machine, GPUs, packages, then one row per backend."""
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[bold]Python[/] {report.python} on {escape(report.platform)}")
    if report.gpus:
        for gpu in report.gpus:
            console.print(
                f"[bold]GPU {gpu['index']}[/] {escape(gpu['name'])}: compute {gpu['compute']}, "
                f"{gpu['memory_bytes'] / 2**30:.0f} GiB, driver CUDA {gpu['driver']}, runtime CUDA {gpu['runtime']}"
            )
    else:
        console.print(f"[bold]GPU[/] none usable: {escape(report.gpu_error)}")
    nvml = report.nvml
    nvml_text = f"driver {nvml['driver']}, {nvml['gpus']} GPU(s)" if nvml.get("available") else nvml.get("reason", "")
    console.print(f"[bold]NVML[/] {escape(nvml_text)}")
    for name, version in report.packages.items():
        console.print(f"[bold]{name}[/] {escape(version)}")
    if report.onnxruntime_providers:
        console.print(f"[bold]ONNX Runtime providers[/] {', '.join(report.onnxruntime_providers)}")
    table = Table(title="Backends on this machine")
    for column in ("backend", "version", "build", "run", "why not / how to get it"):
        table.add_column(column)
    for status in report.backends:
        table.add_row(
            status.name, status.version, _mark(status.can_build), _mark(status.can_run), escape(status.reason)
        )
    console.print(table)
    if any(s.can_build and not s.can_run for s in report.backends):
        console.print("Backends that build but cannot run here work in build-only mode: compile checks, no timings.")

"""`trtci doctor` on this machine, and the promise that importing trtci needs no GPU package."""

from __future__ import annotations

import subprocess
import sys
import types

from rich.console import Console

from trtci.backends import cuda_timing
from trtci.backends.doctor import diagnose, print_doctor
from trtci.errors import BackendError


def test_doctor_reports_every_backend_with_a_reason_when_it_cannot_work():
    report = diagnose()
    statuses = {s.name: s for s in report.backends}
    assert set(statuses) == {"onnxruntime", "onnxruntime-cuda", "tensorrt", "tensorrt-rtx"}
    ort = statuses["onnxruntime"]
    assert ort.can_build and ort.can_run and "CPUExecutionProvider" in report.onnxruntime_providers
    rtx = statuses["tensorrt-rtx"]
    assert rtx.can_build and rtx.version == report.packages["tensorrt_rtx_bindings"]
    for status in statuses.values():
        assert status.can_run or status.reason, status  # a backend that cannot run says why
    if not report.gpus:
        assert report.gpu_error and not statuses["tensorrt"].can_build
        assert "pip install" in statuses["tensorrt"].reason or "GPU" in statuses["tensorrt"].reason
        assert report.nvml["available"] is False and report.nvml["reason"]


def test_print_doctor_shows_the_table_and_build_only_mode():
    report = diagnose()
    console = Console(record=True, width=200, color_system=None)
    print_doctor(report, console)
    text = console.export_text()
    assert "Backends on this machine" in text
    for status in report.backends:
        assert status.name in text
    if any(s.can_build and not s.can_run for s in report.backends):
        assert "build-only mode" in text
    if not report.gpus:
        assert "none usable" in text


def test_importing_trtci_modules_loads_no_gpu_package():
    code = (
        "import sys, trtci.backends.tensorrt, trtci.backends.cuda_timing, trtci.backends.telemetry\n"
        "import trtci.backends.tensorrt.engine_cache, trtci.backends.doctor\n"
        "loaded = [m for m in ('tensorrt', 'tensorrt_rtx_bindings', 'cuda', 'cuda.bindings', 'pynvml') "
        "if m in sys.modules]\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _driver_mismatch() -> int:
    # What check() raises for a CUDA error that is not "no GPU" (this machine has no driver to produce one).
    raise BackendError(
        "cudaGetDeviceCount failed: cudaErrorSystemDriverMismatch (system has unsupported display driver)"
    )


class _NVMLError(Exception):
    pass


def _nvml_without_driver_version() -> types.ModuleType:
    """pynvml as on a machine whose NVML starts but cannot report the driver (what no machine here does)."""
    module = types.ModuleType("pynvml")
    module.NVMLError = _NVMLError
    module.nvmlInit = lambda: None
    module.nvmlShutdown = lambda: None

    def driver_version() -> str:
        raise _NVMLError("Driver Not Loaded")

    module.nvmlSystemGetDriverVersion = driver_version
    module.nvmlDeviceGetCount = lambda: 1
    return module


def test_doctor_reports_cuda_and_nvml_errors_as_reasons(monkeypatch):
    monkeypatch.setattr(cuda_timing, "gpu_count", _driver_mismatch)
    monkeypatch.setitem(sys.modules, "pynvml", _nvml_without_driver_version())
    report = diagnose()
    assert report.gpus == [] and "cudaErrorSystemDriverMismatch" in report.gpu_error
    assert report.nvml["available"] is False and "Driver Not Loaded" in report.nvml["reason"]
    statuses = {s.name: s for s in report.backends}
    assert not statuses["tensorrt-rtx"].can_run
    assert "cudaErrorSystemDriverMismatch" in statuses["tensorrt-rtx"].reason

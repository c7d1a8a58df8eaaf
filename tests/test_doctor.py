"""`trtci doctor` on this machine, and the promise that importing trtci needs no GPU package."""

from __future__ import annotations

import subprocess
import sys

from rich.console import Console

from trtci.doctor import diagnose, print_doctor


def test_doctor_reports_every_backend_with_a_reason_when_it_cannot_work():
    report = diagnose()
    statuses = {s.name: s for s in report.backends}
    assert set(statuses) == {"onnxruntime", "tensorrt", "tensorrt-rtx"}
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
        "import sys, trtci.backends.tensorrt, trtci.cuda_timing, trtci.telemetry, trtci.engine_cache, trtci.doctor\n"
        "loaded = [m for m in ('tensorrt', 'tensorrt_rtx_bindings', 'cuda', 'cuda.bindings', 'pynvml') "
        "if m in sys.modules]\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""Facts about the host CPU that change performance, for device fingerprints."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# ISA extensions that decide which kernels ONNX Runtime (and the INT8 schemes) can use.
_ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
)


def cpu_info() -> dict[str, object]:
    """CPU model name, logical cores, architecture and the ISA flags that matter for inference kernels."""
    name, flags = _from_proc_cpuinfo(Path("/proc/cpuinfo"))
    return {
        "name": name or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": sorted(flag for flag in _ISA_FLAGS if flag in flags),
        "os": platform.system(),
    }


def _from_proc_cpuinfo(path: Path) -> tuple[str | None, set[str]]:
    try:
        text = path.read_text()
    except OSError:
        return None, set()
    name: str | None = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and name is None:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name, flags

"""GPU telemetry around a benchmark through NVML (nvidia-ml-py, imported lazily).

A `TelemetrySampler` reads SM and memory clocks, temperature, power and the clock-event ("throttle") reasons on
a background thread while a benchmark runs, and `summarize` turns the samples into a plain dict stored with the
result. `throttled` is True when a reason that slows the GPU down (power cap, thermal or hardware slowdown) was
active in any sample; idle and application-clock settings do not count.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

# NVML's clocks-event reason bits (nvmlClocksEventReason*, formerly nvmlClocksThrottleReason*), named as
# `nvidia-smi -q -d PERFORMANCE` names them.
REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
THROTTLING = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)
INSTALL_HINT = "pip install nvidia-ml-py (part of trtci[tensorrt]) and run on a machine with an NVIDIA driver"


@dataclass(frozen=True)
class Sample:
    """One NVML reading. A value NVML could not give is None."""

    t_s: float  # seconds since sampling started
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    temperature_c: int | None
    power_w: float | None
    reasons: int | None  # bit mask of REASONS


def decode_reasons(mask: int) -> list[str]:
    """Names of the set bits of an NVML clocks-event mask, lowest bit first; unknown bits as 'bit_0x...'."""
    names = [name for bit, name in REASONS.items() if mask & bit]
    unknown = mask & ~sum(REASONS)
    bit = 1
    while unknown:
        if unknown & bit:
            names.append(f"bit_0x{bit:x}")
            unknown &= ~bit
        bit <<= 1
    return names


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}


def summarize(samples: list[Sample], device: str = "") -> dict[str, Any]:
    """A plain dict of the samples: min/mean/max per quantity, every reason seen, and `throttled`."""
    seen: list[str] = []
    throttled_samples = 0
    for sample in samples:
        names = decode_reasons(sample.reasons or 0)
        seen.extend(name for name in names if name not in seen)
        throttled_samples += any(name in THROTTLING for name in names)

    def values(attr: str) -> list[float]:
        return [float(v) for v in (getattr(s, attr) for s in samples) if v is not None]

    return {
        "available": True,
        "device": device,
        "samples": len(samples),
        "duration_s": samples[-1].t_s - samples[0].t_s if samples else 0.0,
        "sm_clock_mhz": _stats(values("sm_clock_mhz")),
        "mem_clock_mhz": _stats(values("mem_clock_mhz")),
        "temperature_c": _stats(values("temperature_c")),
        "power_w": _stats(values("power_w")),
        "reasons": seen,
        "throttled": throttled_samples > 0,
        "throttled_fraction": throttled_samples / len(samples) if samples else 0.0,
    }


def unavailable(reason: str) -> dict[str, Any]:
    """The summary stored when no telemetry could be read, with the reason."""
    return {"available": False, "reason": reason, "throttled": False}


def _read(pynvml: Any, call: str, *args: Any) -> Any:
    """One NVML query; None when this GPU or driver does not support it."""
    try:
        return getattr(pynvml, call)(*args)
    except pynvml.NVMLError:
        return None


class TelemetrySampler:
    """Samples NVML every `interval_s` on a thread between __enter__ and __exit__; `summary` holds the result.

    Without nvidia-ml-py or a driver, the sampler still works as a context manager and its summary says why
    nothing was read, so a benchmark never fails because of telemetry.
    """

    def __init__(self, device_index: int = 0, interval_s: float = 0.05) -> None:
        self.device_index = device_index
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self.summary: dict[str, Any] = unavailable("sampling has not run")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pynvml: Any = None
        self._handle: Any = None
        self._device = ""
        self._start = 0.0

    def __enter__(self) -> TelemetrySampler:
        reason = self._open()
        if reason is not None:
            self.summary = unavailable(reason)
            return self
        self._start = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="trtci-nvml", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._sample()
        self.summary = summarize(self.samples, self._device)
        self._pynvml.nvmlShutdown()

    def _open(self) -> str | None:
        """Initialize NVML and find the device; the reason when that is impossible."""
        try:
            import pynvml
        except ImportError:
            return f"nvidia-ml-py is not installed: {INSTALL_HINT}"
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            return f"NVML cannot start ({e}): {INSTALL_HINT}"
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.device_index)
            name = pynvml.nvmlDeviceGetName(handle)
        except pynvml.NVMLError as e:
            pynvml.nvmlShutdown()
            return f"NVML has no GPU {self.device_index} ({e})"
        self._pynvml, self._handle = pynvml, handle
        self._device = name.decode() if isinstance(name, bytes) else str(name)
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        nvml, handle = self._pynvml, self._handle
        reasons_call = (
            "nvmlDeviceGetCurrentClocksEventReasons"
            if hasattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons")
            else "nvmlDeviceGetCurrentClocksThrottleReasons"
        )
        power_mw = _read(nvml, "nvmlDeviceGetPowerUsage", handle)
        self.samples.append(
            Sample(
                t_s=time.perf_counter() - self._start,
                sm_clock_mhz=_read(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM),
                mem_clock_mhz=_read(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_MEM),
                temperature_c=_read(nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU),
                power_w=power_mw / 1000 if power_mw is not None else None,
                reasons=_read(nvml, reasons_call, handle),
            )
        )

"""NVML telemetry: reason decoding and summaries on hand-made samples; real sampling on a GPU."""

from __future__ import annotations

import time

import pytest

from trtci.backends.telemetry import Sample, TelemetrySampler, decode_reasons, summarize


def _nvml_reason() -> str | None:
    with TelemetrySampler() as sampler:
        pass
    return None if sampler.summary["available"] else sampler.summary["reason"]


NVML_MISSING = _nvml_reason()


def test_decode_reasons_names_known_bits_and_keeps_unknown_ones():
    assert decode_reasons(0) == []
    assert decode_reasons(0x1 | 0x4) == ["gpu_idle", "sw_power_cap"]
    assert decode_reasons(0x40 | 0x10000) == ["hw_thermal_slowdown", "bit_0x10000"]


def _sample(t: float, sm: int, reasons: int, power: float | None = 300.0) -> Sample:
    return Sample(t_s=t, sm_clock_mhz=sm, mem_clock_mhz=2619, temperature_c=40 + int(t), power_w=power, reasons=reasons)


def test_summary_flags_power_cap_as_throttling():
    samples = [_sample(0, 1980, 0), _sample(1, 1755, 0x4), _sample(2, 1980, 0), _sample(3, 1980, 0)]
    summary = summarize(samples, "GPU-X")
    assert summary["throttled"] is True
    assert summary["throttled_fraction"] == 0.25
    assert summary["reasons"] == ["sw_power_cap"]
    assert summary["sm_clock_mhz"] == {"min": 1755.0, "mean": (1980 * 3 + 1755) / 4, "max": 1980.0}
    assert summary["temperature_c"]["max"] == 43.0
    assert summary["duration_s"] == 3


def test_idle_and_application_clocks_are_not_throttling():
    summary = summarize([_sample(0, 345, 0x1), _sample(1, 1410, 0x2, power=None)])
    assert summary["throttled"] is False
    assert summary["reasons"] == ["gpu_idle", "applications_clocks_setting"]
    assert summary["power_w"] == {"min": 300.0, "mean": 300.0, "max": 300.0}  # the None reading is left out


def test_sampler_without_a_readable_gpu_reports_why_and_never_fails():
    with TelemetrySampler(device_index=4096) as sampler:
        pass
    assert sampler.summary["available"] is False
    assert sampler.summary["throttled"] is False
    assert "NVML" in sampler.summary["reason"] or "nvidia-ml-py" in sampler.summary["reason"]


@pytest.mark.gpu
@pytest.mark.skipif(NVML_MISSING is not None, reason=f"NVML is not usable here: {NVML_MISSING}")
def test_sampler_reads_a_real_gpu():
    with TelemetrySampler(interval_s=0.01) as sampler:
        time.sleep(0.2)
    summary = sampler.summary
    assert summary["available"] is True
    assert summary["samples"] >= 5
    assert summary["device"]
    assert summary["sm_clock_mhz"]["max"] > 0
    assert summary["temperature_c"]["max"] > 0

"""What changed for a series since the base: the first question of every verdict.

A series is determined by its inputs: the model's bytes, the build settings (calibration data among them), the
backend and its version, the driver and CUDA, the device, and trtci itself, which does the timing. If none of
them changed, the pull request cannot have made the series slower, whatever a comparison with history says: a
difference is the machine's. So each series is sorted by what changed, and each kind is judged its own way
(trtci.verdict.latency):

- nothing: never a regression; a difference from history is machine drift;
- code (the model or the build settings): interleaved A/B against the merge-base's build, where one was made;
- environment (the backend's version, driver/CUDA, trtci, Python): history, with the machine's speed (the
  canary) accounted for, under its own policy (`compare.environment`);
- device (other hardware): not comparable, never judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trtci.results import DeviceInfo, SeriesKey

NOTHING, CODE, ENVIRONMENT, DEVICE = "nothing", "code", "environment", "device"
CODE_CHANGES = ("model", "calibration data", "build settings")
PROVENANCE = ("model", "precision", "quantization", "batch", "backend")  # what is measured, not where or how

# DeviceInfo.details keys that name software; every other key (ISA, cores, compute capability, memory...) is the
# hardware, and a change there makes another device.
_SOFTWARE = {
    "onnxruntime": "backend version",
    "provider": "backend version",
    "tensorrt": "backend version",
    "tensorrt_flavor": "backend version",
    "cuda": "driver/CUDA",
    "driver_cuda": "driver/CUDA",
    "python": "Python",
    "os": "operating system",
}
# Settings a series' options hash already holds: shown there, not as a device change.
_SETTINGS = {"threads"}


@dataclass(frozen=True)
class Attribution:
    """What changed for one series since the base, in words, and the kind of change that decides how it is
    judged: NOTHING, CODE, ENVIRONMENT or DEVICE."""

    changes: tuple[str, ...]
    kind: str

    @property
    def words(self) -> str:
        """'nothing', or the changes joined: 'model, onnxruntime 1.17.0 -> 1.18.0'."""
        return ", ".join(self.changes) if self.changes else "nothing"


def provenance(key: SeriesKey) -> tuple:
    """What is measured (model, precision, quantization, batch, backend), without where and how: equal for series
    that differ only in provenance (device, model file, options)."""
    return tuple(getattr(key, name) for name in PROVENANCE)


def attribute(
    key: SeriesKey,
    device: DeviceInfo | None,
    version: str,
    base_key: SeriesKey,
    base_device: DeviceInfo | None,
    base_version: str | None,
) -> Attribution:
    """What changed from `base_key` (measured on `base_device` by trtci `base_version`) to `key` (on `device`,
    by trtci `version`). A device either side does not describe counts as another device."""
    changes: list[str] = []
    if key.model_hash != base_key.model_hash:
        changes.append("model")
    if key.options_hash != base_key.options_hash:
        changes.append("build settings")
    hardware: list[str] = []
    if key.device_id != base_key.device_id:
        software, hardware = device_changes(device, base_device)
        changes.extend(software)
    if base_version is not None and base_version != version:
        changes.append(f"trtci {base_version} -> {version}")
    changes.extend(hardware)
    if hardware:
        kind = DEVICE
    elif any(change in CODE_CHANGES for change in changes):
        kind = CODE
    else:
        kind = ENVIRONMENT if changes else NOTHING
    return Attribution(tuple(changes), kind)


def device_changes(device: DeviceInfo | None, base: DeviceInfo | None) -> tuple[list[str], list[str]]:
    """(software changes, hardware changes) from `base` to `device`, each as 'key old -> new'."""
    if device is None or base is None:
        return [], ["device"]
    if (device.kind, device.name) != (base.kind, base.name):
        return [], [f"device {base.name} -> {device.name}"]
    software: list[str] = []
    hardware: list[str] = []
    for name in sorted(set(device.details) | set(base.details)):
        if name in _SETTINGS:
            continue
        old, new = base.details.get(name), device.details.get(name)
        if old != new:
            (software if name in _SOFTWARE else hardware).append(f"{name} {_shown(old)} -> {_shown(new)}")
    return software, hardware


def code_changes(current: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    """Which build settings differ between two series' option dicts (trtci.pipeline.plan.series_options):
    'calibration data' when only the calibration differs, else 'build settings' (with the calibration too)."""
    differ = {name for name in set(current) | set(base) if current.get(name) != base.get(name)}
    changes = []
    if "calibration" in differ:
        changes.append("calibration data")
    if differ - {"calibration"}:
        changes.append("build settings")
    return changes


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)

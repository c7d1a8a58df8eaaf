"""A cache of serialized TensorRT engines that never hands out an engine built for another GPU or version.

Each engine `<series>-<target>.plan` has a sidecar `<series>-<target>.json` with what it was built from (model
hash, precision, build options), what it was built for (flavor, TensorRT version, GPU name, compute capabilities,
CUDA version) and build facts. `<series>` names the model, precision and options; `<target>` names the GPU and
TensorRT version, so runners of a matrix that share one cache directory keep their engines side by side.

Before an engine is reused, its plan header (magic and version bytes, read without TensorRT) and its sidecar are
checked against this runner. Anything that does not match, or cannot be read, means "rebuild", with a one-line
human reason such as "built for NVIDIA A100 (compute 8.0); this runner has NVIDIA L4 (8.9): rebuilding".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trtci.errors import BackendError
from trtci.results import stable_hash

TENSORRT_MAGIC = 0x74727466  # "ftrt" little-endian: TensorRT's own plans
RTX_MAGIC = 0x74727476  # "vtrt": TensorRT for RTX plans
FLAVOR_BY_MAGIC = {TENSORRT_MAGIC: "tensorrt", RTX_MAGIC: "tensorrt-rtx"}
FLAVOR_NAMES = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT for RTX"}
HEADER_BYTES = 28
SIDECAR_FIELDS = ("key", "model_hash", "precision", "options", "target", "plan_sha256", "plan_bytes")


@dataclass(frozen=True)
class PlanHeader:
    """What a plan file says about itself: which TensorRT flavor and version serialized it."""

    flavor: str  # "tensorrt" or "tensorrt-rtx"
    version: str  # "major.minor.patch.build", e.g. "10.13.0.35"


def read_plan_header(data: bytes) -> PlanHeader:
    """Parse the first 28 bytes of a plan (trtexec --getPlanVersionOnly reads the same bytes).

    Raises BackendError when the bytes are too short or the magic is not TensorRT's or TensorRT for RTX's.
    """
    if len(data) < HEADER_BYTES:
        raise BackendError(f"not a TensorRT plan: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    (magic,) = struct.unpack_from("<I", data, 0)
    flavor = FLAVOR_BY_MAGIC.get(magic)
    if flavor is None:
        raise BackendError(
            f"not a TensorRT plan: magic 0x{magic:08x}, expected 0x{TENSORRT_MAGIC:08x} or 0x{RTX_MAGIC:08x}"
        )
    return PlanHeader(flavor=flavor, version=".".join(str(b) for b in data[24:28]))


def read_plan_header_file(path: Path) -> PlanHeader:
    """read_plan_header on the start of a file; raises BackendError when it cannot be read."""
    try:
        with path.open("rb") as f:
            return read_plan_header(f.read(HEADER_BYTES))
    except OSError as e:
        raise BackendError(f"{path}: cannot read the engine ({e.strerror})") from e


@dataclass(frozen=True)
class Target:
    """What an engine is built for. Engines are only reused on an equal target."""

    flavor: str  # "tensorrt" or "tensorrt-rtx"
    version: str  # TensorRT version, "10.13.0.35"
    gpu_name: str  # "NVIDIA L4"; "" for an ahead-of-time build with no GPU
    compute: tuple[str, ...]  # compute capabilities, ("8.9",); RTX ahead-of-time builds may name several
    cuda: str = ""  # CUDA runtime version, "13.0"

    @property
    def gpu(self) -> str:
        """'NVIDIA L4 (compute 8.9)', or 'compute 8.6 (ahead of time, no GPU)'."""
        compute = ", ".join(self.compute) or "unknown"
        return f"{self.gpu_name} (compute {compute})" if self.gpu_name else f"compute {compute} (ahead of time, no GPU)"

    @property
    def short_gpu(self) -> str:
        """'NVIDIA L4 (8.9)': the runner side of a mismatch message."""
        compute = ", ".join(self.compute) or "unknown"
        return f"{self.gpu_name} ({compute})" if self.gpu_name else f"no GPU (building for compute {compute})"

    @property
    def software(self) -> str:
        return f"{FLAVOR_NAMES.get(self.flavor, self.flavor)} {self.version}"

    @property
    def id(self) -> str:
        return stable_hash(asdict(self), 10)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        return cls(
            flavor=str(data["flavor"]),
            version=str(data["version"]),
            gpu_name=str(data.get("gpu_name", "")),
            compute=tuple(str(c) for c in data.get("compute", ())),
            cuda=str(data.get("cuda", "")),
        )


@dataclass
class EngineMetadata:
    """The sidecar JSON beside each engine."""

    key: str
    model_hash: str
    precision: str
    options: dict[str, Any]
    target: dict[str, Any]  # asdict(Target)
    plan_sha256: str
    plan_bytes: int
    build_time_s: float
    driver: str = ""
    device_memory_bytes: int | None = None
    layers: int | None = None
    qdq_layers: int | None = None
    input_hashes: dict[str, str] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)  # the session's whole build dict, shown on reuse
    created_at: str = ""


@dataclass(frozen=True)
class CacheDecision:
    """Whether a cached engine may be loaded, and why (or why not). `bool(decision)` is the verdict. When it
    says reuse, `plan` holds the bytes whose size and sha256 were checked: load those, never the file again,
    which may have changed since."""

    reuse: bool
    reason: str
    plan_path: Path
    metadata: EngineMetadata | None = None
    plan: bytes | None = None

    def __bool__(self) -> bool:
        return self.reuse


def series_name(model_hash: str, precision: str, options: dict[str, Any]) -> str:
    """The target-independent part of an engine's file name."""
    return f"{precision}-{model_hash[:12]}-{stable_hash(options, 8)}"


def engine_key(model_hash: str, precision: str, options: dict[str, Any], target: Target) -> str:
    """The full cache key: model, precision, build options, and everything in the target."""
    return f"{series_name(model_hash, precision, options)}-{target.id}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_sidecar(path: Path) -> EngineMetadata:
    """Parse a sidecar; raises ValueError with the reason when it is missing, not JSON or lacks a field."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"its sidecar {path.name} cannot be read ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"its sidecar {path.name} is not valid JSON ({e.msg})") from e
    if not isinstance(data, dict):
        raise ValueError(f"its sidecar {path.name} is not a JSON object")
    missing = [name for name in SIDECAR_FIELDS if name not in data]
    if missing:
        raise ValueError(f"its sidecar {path.name} lacks {', '.join(missing)}")
    known = set(EngineMetadata.__dataclass_fields__)
    try:
        metadata = EngineMetadata(**{k: v for k, v in data.items() if k in known})
        Target.from_dict(metadata.target)
    except (TypeError, KeyError) as e:
        raise ValueError(f"its sidecar {path.name} has a malformed field ({e})") from e
    return metadata


def _target_difference(built: Target, target: Target) -> str | None:
    """How the target an engine was built for differs from this runner's; None when equal."""
    if built.flavor != target.flavor or built.version != target.version:
        return f"built by {built.software}; this runner has {target.software}"
    if built.gpu_name != target.gpu_name or built.compute != target.compute:
        return f"built for {built.gpu}; this runner has {target.short_gpu}"
    if built.cuda != target.cuda:
        return f"built with CUDA {built.cuda or 'unknown'}; this runner has CUDA {target.cuda or 'unknown'}"
    return None


def _mismatch(metadata: EngineMetadata, expected: EngineMetadata, target: Target) -> str | None:
    """Why an intact, readable engine must not be used for `expected` on `target`; None when it may."""
    why = _target_difference(Target.from_dict(metadata.target), target)
    if why is not None:
        return why
    for name in ("model_hash", "precision", "options"):
        if getattr(metadata, name) != getattr(expected, name):
            return f"built from a different {name.replace('_', ' ')}"
    return None


def decide(plan_path: Path, sidecar_path: Path, expected: EngineMetadata, target: Target) -> CacheDecision:
    """Check one cached engine against what this run needs; never says reuse for a foreign or damaged engine.

    Checks, in order: both files exist; the sidecar parses; the plan header's magic and version match the
    target's flavor and version; the plan's size and sha256 match the sidecar; the sidecar's target (GPU, compute
    capability, CUDA) and inputs (model hash, precision, options) match.
    """

    def rebuild(why: str, metadata: EngineMetadata | None = None) -> CacheDecision:
        return CacheDecision(False, f"{why}: rebuilding", plan_path, metadata)

    if not plan_path.exists():
        return CacheDecision(False, "no cached engine for this target: building", plan_path)
    try:
        metadata = _read_sidecar(sidecar_path)
    except ValueError as e:
        return rebuild(f"cached engine {plan_path.name} is unusable: {e}")
    try:
        header = read_plan_header_file(plan_path)
    except BackendError as e:
        return rebuild(f"cached engine {plan_path.name} is unusable: {e}", metadata)
    header_target = Target(header.flavor, header.version, target.gpu_name, target.compute, target.cuda)
    if header.flavor != target.flavor or header.version != target.version:
        return rebuild(f"built by {header_target.software} (plan header); this runner has {target.software}", metadata)
    data = plan_path.read_bytes()
    if len(data) != metadata.plan_bytes or _sha256(data) != metadata.plan_sha256:
        return rebuild(
            f"cached engine {plan_path.name} differs from its sidecar ({len(data)} bytes, sidecar says "
            f"{metadata.plan_bytes}; truncated or replaced)",
            metadata,
        )
    why = _mismatch(metadata, expected, target)
    if why is not None:
        return rebuild(why, metadata)
    built_at = f" on {metadata.created_at}" if metadata.created_at else ""
    return CacheDecision(
        True, f"reusing the engine built{built_at} for {target.gpu} with {target.software}", plan_path, metadata, data
    )


class EngineCache:
    """Engines (with their sidecars and inspector JSON) in `root`, timing caches in `root/timing`."""

    def __init__(self, root: Path) -> None:
        self.engines = root
        self.timing = root / "timing"

    def paths(self, key: str) -> tuple[Path, Path]:
        """The plan path and the sidecar path of a key."""
        return self.engines / f"{key}.plan", self.engines / f"{key}.json"

    def lookup(self, expected: EngineMetadata, target: Target) -> CacheDecision:
        """Decide about the engine cached under `expected.key`.

        When there is none but engines of the same model, precision and options exist for other targets, the
        reason names what they were built for, so a log says why this runner builds its own.
        """
        plan_path, sidecar_path = self.paths(expected.key)
        if plan_path.exists():
            return decide(plan_path, sidecar_path, expected, target)
        prefix = series_name(expected.model_hash, expected.precision, expected.options)
        for sibling in sorted(self.engines.glob(f"{prefix}-*.json")):
            try:
                other = Target.from_dict(_read_sidecar(sibling).target)
            except ValueError:
                continue
            why = _target_difference(other, target)
            if why is not None:
                return CacheDecision(False, f"the cached engine was {why}: rebuilding", plan_path)
        return CacheDecision(False, "no cached engine for this model, precision and target: building", plan_path)

    def store(self, plan: bytes, metadata: EngineMetadata) -> Path:
        """Write the plan, then its sidecar (with the plan's size and sha256 filled in); return the plan path.

        Both files are written to a temporary name and renamed, so a reader never sees half a file and a crash
        leaves at worst a plan without a sidecar, which `decide` rejects.
        """
        plan_path, sidecar_path = self.paths(metadata.key)
        self.engines.mkdir(parents=True, exist_ok=True)
        metadata.plan_bytes = len(plan)
        metadata.plan_sha256 = _sha256(plan)
        metadata.created_at = metadata.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        _atomic_write(plan_path, plan)
        _atomic_write(sidecar_path, json.dumps(asdict(metadata), indent=2, sort_keys=True, default=str).encode())
        return plan_path

    def timing_cache_path(self, target: Target) -> Path:
        """One timing cache per GPU and TensorRT version: tactics timed on one GPU say nothing about another."""
        gpu = re.sub(r"[^A-Za-z0-9.]+", "_", target.gpu_name or "no-gpu").strip("_")
        compute = "_".join(target.compute)
        return self.timing / f"{target.flavor}-{target.version}-{gpu}-sm{compute}.cache"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

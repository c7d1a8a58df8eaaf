"""trtexec's export files, read and checked: what kind each file is, and its content as plain data.

- `times`: `trtexec --exportTimes`, one object per timed inference (ms);
- `profile`: `trtexec --exportProfile`, `[{"count": N}, {"name", "timeMs", "averageMs", "medianMs", ...}]`;
- `layer-info`: `trtexec --exportLayerInfo` (the engine inspector's JSON), `{"Layers", "Bindings"/"I/O Tensors"}`;
- `build-metadata`: TREx `parse_trtexec_log.py` on the build log, `model_options` and `build_options`;
- `profile-metadata`: TREx on the profiling log, `performance_summary`, `inference_options`, `device_information`;
- `device-metadata`: TREx `device_info.py`, one object per GPU (`Name`, `ComputeCapability`).

A file's kind is read from its content, never trusted from its name or flag: a file passed as one kind that is
another is refused with one line saying what it is. Truncated or damaged JSON is refused the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtci.errors import DataError
from trtci.verdict.engine_layers import EngineLayers, engine_layers, finite_ms

KINDS = ("times", "profile", "layer-info", "build-metadata", "profile-metadata", "device-metadata")
FLAGS = {  # what trtexec (or TREx) flag writes each kind, for messages
    "times": "--exportTimes", "profile": "--exportProfile", "layer-info": "--exportLayerInfo",
    "build-metadata": "TREx build metadata", "profile-metadata": "TREx profiling metadata",
    "device-metadata": "TREx device metadata",
}  # fmt: skip
# File name endings of each kind (TREx's names first), used to group files of one engine.
SUFFIXES = {
    ".build.metadata.json": "build-metadata", ".profile.metadata.json": "profile-metadata",
    ".timing.json": "times", ".times.json": "times", ".profile.json": "profile", ".graph.json": "layer-info",
    ".layers.json": "layer-info", ".metadata.json": "device-metadata",
}  # fmt: skip
TIME_KEYS = (
    "startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs", "startD2hMs",
    "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs",
)  # fmt: skip
DURATION_KEYS = ("h2dMs", "computeMs", "d2hMs", "latencyMs")
PROFILE_KEYS = ("name", "timeMs", "averageMs", "medianMs", "percentage")


@dataclass(frozen=True)
class Iteration:
    """One timed inference of `--exportTimes`, in ms since trtexec started inferring (warm-up included)."""

    start_compute_ms: float
    h2d_ms: float
    compute_ms: float
    d2h_ms: float
    latency_ms: float
    enqueue_ms: float  # endEnqMs - startEnqMs
    start_ms: float  # startH2dMs: where trtexec's wall time starts
    end_ms: float  # endD2hMs: where it ends


@dataclass
class ExportSet:
    """The files of one engine's trtexec run, by kind, and the name they share (`resnet.onnx.engine`)."""

    name: str
    files: dict[str, Path] = field(default_factory=dict)


def load_json(path: Path) -> Any:
    """The file's JSON; DataError naming the file when it cannot be read or is not (complete) JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e.reason}); pass trtexec's JSON exports") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        truncated = " (truncated: it ends inside a list, object or string)" if _unclosed(text) else ""
        raise DataError(f"{path}: not valid JSON{truncated}: {e.msg} at line {e.lineno} column {e.colno}") from e


def kind_of(data: Any) -> str | None:
    """Which trtexec or TREx export `data` is, from its shape alone; None when it is none of them."""
    if isinstance(data, dict):
        if "Layers" in data:
            return "layer-info"
        if "performance_summary" in data or "inference_options" in data or "device_information" in data:
            return "profile-metadata"
        if "build_options" in data or "model_options" in data:
            return "build-metadata"
        return None
    if not isinstance(data, list) or not data or not all(isinstance(item, dict) for item in data):
        return None
    if set(data[0]) == {"count"}:
        return "profile"
    if "latencyMs" in data[0] and "computeMs" in data[0]:
        return "times"
    if "ComputeCapability" in data[0] or "COMPUTE_CAPABILITY_MAJOR" in data[0]:
        return "device-metadata"
    return None


def read_kind(path: Path, expected: str) -> Any:
    """The JSON of `path`, checked to be the `expected` kind; DataError says what it is instead."""
    data = load_json(path)
    found = kind_of(data)
    if found != expected:
        what = f"trtexec {FLAGS[found]} output" if found else "not a trtexec or TREx export"
        raise DataError(f"{path}: {what}, not the {FLAGS[expected]} file it was passed as ({expected})")
    return data


def read_times(path: Path) -> list[Iteration]:
    """Every iteration of an `--exportTimes` file, in order; DataError for a missing or invalid number."""
    rows = read_kind(path, "times")
    iterations = []
    for index, row in enumerate(rows):
        bad = [key for key in TIME_KEYS if not _number(row.get(key))]
        bad += [key for key in DURATION_KEYS if key not in bad and row[key] < 0]
        if bad:
            raise DataError(
                f"{path}: inference #{index}: {bad[0]} is missing, negative or not a number; the file is damaged"
            )
        iterations.append(
            Iteration(
                start_compute_ms=row["startComputeMs"],
                h2d_ms=row["h2dMs"],
                compute_ms=row["computeMs"],
                d2h_ms=row["d2hMs"],
                latency_ms=row["latencyMs"],
                enqueue_ms=max(row["endEnqMs"] - row["startEnqMs"], 0.0),
                start_ms=row["startH2dMs"],
                end_ms=row["endD2hMs"],
            )
        )
    return iterations


def read_profile(path: Path) -> tuple[int, dict[str, float]]:
    """(runs profiled, average ms per inference of each layer by name) of an `--exportProfile` file."""
    rows = read_kind(path, "profile")
    count = rows[0]["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise DataError(f"{path}: 'count' is {count!r}, not a number of runs >= 1; the file is damaged")
    times: dict[str, float] = {}
    for index, row in enumerate(rows[1:], start=1):
        missing = [key for key in PROFILE_KEYS if key not in row]
        if missing or not isinstance(row["name"], str):
            raise DataError(f"{path}: entry #{index} lacks {', '.join(missing) or 'a name'}; the file is damaged")
        if not all(finite_ms(row[key]) for key in PROFILE_KEYS[1:]):
            raise DataError(f"{path}: layer '{row['name']}' has a negative or non-numeric time; the file is damaged")
        if row["name"] in times:
            raise DataError(f"{path}: layer '{row['name']}' appears twice; the file is damaged")
        times[row["name"]] = float(row["averageMs"])
    if not times:
        raise DataError(f"{path}: the profile times no layer; pass a --exportProfile file of a run that inferred")
    return count, times


def read_layer_info(path: Path) -> EngineLayers:
    """The engine's layers of an `--exportLayerInfo` file (or the engine inspector's JSON)."""
    return engine_layers(read_kind(path, "layer-info"), str(path))


def read_metadata(path: Path, kind: str) -> Any:
    """A TREx metadata file, checked to be `kind` (its sections must be JSON objects)."""
    data = read_kind(path, kind)
    sections = {
        "build-metadata": ("model_options", "build_options"),
        "profile-metadata": ("performance_summary", "inference_options", "device_information"),
    }.get(kind, ())
    for section in sections:
        if section in data and not isinstance(data[section], dict):
            raise DataError(f"{path}: '{section}' is not an object; the file is damaged")
    return data


def find_sets(paths: list[Path]) -> list[ExportSet]:
    """The export files under `paths` (files as given, directories searched recursively for *.json), grouped
    by engine: files whose names differ only in a known ending (`.timing.json`, `.profile.json`, ...) belong
    together; a JSON file without a known ending is grouped with the others of its directory. Each file's
    kind is read from its content. DataError for a path that does not exist or two files of one kind in a set."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*.json") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    sets: dict[tuple[Path, str], ExportSet] = {}
    for file in files:
        name = engine_name(file)
        kind = kind_of(load_json(file))
        if kind is None:
            raise DataError(f"{file}: not a trtexec or TREx export (none of: {', '.join(KINDS)})")
        export = sets.setdefault((file.parent, name), ExportSet(name or file.parent.name))
        if kind in export.files:
            raise DataError(f"{file}: a second {kind} file for {export.name} (first: {export.files[kind]})")
        export.files[kind] = file
    return list(sets.values())


def engine_name(path: Path) -> str:
    """The name a file shares with the other exports of its engine (`resnet.onnx.engine`); "" for a file
    without a known ending."""
    for suffix in SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return ""


def _unclosed(text: str) -> bool:
    """True when the text ends inside a JSON string, list or object: a file cut off while it was written."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return in_string or depth > 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

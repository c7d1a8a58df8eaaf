"""Turn a pytest-benchmark JSON file (`pytest --benchmark-json=FILE`, versions 3 to 5) into a trtci run.

Each benchmark becomes one series, judged against the base branch like any engine. A benchmark timed by the
`trtci_benchmark` fixture (trtci/pytest_plugin.py) carries its provenance in `extra_info["trtci"]`, checked
strictly (`TrtciExtraInfo`), and its series key comes from it:

- model: the benchmark's `fullname` (unique in the file); model_hash: the sha256 of the model file it timed;
- precision, quantization, batch and backend as the fixture ran them;
- device: the backend's device (a GPU for TensorRT), registered with the run;
- options_hash: a hash of pytest-benchmark's `options` and the fixture's options (threads, input shapes).

So a changed model file or another precision is a new series, and each backend and device is judged apart.
Any other benchmark keeps the generic key:

- model: the benchmark's `fullname` (e.g. `tests/test_pre.py::test_resize[224]`); model_hash: a hash of it;
- precision "n/a", batch 1, backend "pytest-benchmark", quantization "";
- device: the CPU in `machine_info` (brand, architecture) and the Python implementation and version;
- options_hash: a hash of the benchmark's `options` (timer, GC, rounds), which change the numbers.

Units: pytest-benchmark stores seconds per call; trtci stores milliseconds. Raw samples come from
`stats.data`, present only with `--benchmark-save-data`; without them a series has its median only and is
compared by medians and history noise, with no within-run interval.
"""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from trtci.backends.measure import latency_stats
from trtci.config import BenchSettings
from trtci.errors import DataError
from trtci.results import (
    BenchResult,
    DeviceInfo,
    LatencyStats,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
    stable_hash,
)
from trtci.store.runfile import one_line, plain_json_problem

BACKEND = "pytest-benchmark"
PRECISION = "n/a"
SUPPORTED_MAJORS = (3, 4, 5)
SECONDS_TO_MS = 1e3
EXTRA_INFO_KEY = "trtci"
MAX_FILE_BYTES = 256 * 1024 * 1024  # with --benchmark-save-data every call is a number: large, but not unbounded
MAX_SECONDS = 1e6  # per call: eleven days is no benchmark; beyond, a time is damage (and float32 cannot hold it)
MAX_COUNT = 2**62  # rounds: any count SQLite's 64-bit integers hold


class _Strict(BaseModel):
    # strict: JSON gives exact types, so "8" or true where a number belongs is damage, not something to coerce
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, protected_namespaces=())


def _fixture_backend(name: str) -> str:
    """Any backend's name (plugins add names, and the file may come from a machine with other plugins), except
    the one ingest gives benchmarks timed without the fixture."""
    if name == BACKEND:
        raise PydanticCustomError(
            "backend_name", f"Input should be 'onnxruntime' or another backend's name; '{BACKEND}' is not one"
        )
    return name


FixtureBackend = Annotated[str, Field(min_length=1), AfterValidator(_fixture_backend)]


class ExtraInfoDevice(_Strict):
    kind: Literal["cpu", "gpu"]
    name: Annotated[str, Field(min_length=1)]
    details: dict[str, Any]


class TrtciExtraInfo(_Strict):
    """`extra_info["trtci"]` of a benchmark timed by the trtci_benchmark fixture: what was timed, where, how."""

    model: Annotated[str, Field(min_length=1)]  # the model file's stem
    model_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  # sha256 of the model file, as SeriesKey.model_hash
    precision: Literal["fp32", "fp16", "int8"]
    quantization: Literal["", "onnxruntime", "tensorrt"]
    batch: Annotated[int, Field(ge=1, le=2**31 - 1)]
    backend: FixtureBackend
    device: ExtraInfoDevice
    options: dict[str, Any]  # what else changes the numbers: threads, input shapes, TensorRT build options


@dataclass
class PytestBenchmarkFile:
    """The parts of a pytest-benchmark JSON file trtci uses."""

    version: str
    device: DeviceInfo
    benchmarks: list[dict[str, Any]]


def read_pytest_benchmark(path: Path) -> PytestBenchmarkFile:
    """Parse and check the file; raises DataError with one line naming the file and what is wrong."""
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):  # a pipe or a device would be read forever
            raise DataError(f"{path}: not a regular file; pass the file written by pytest --benchmark-json")
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataError(f"{path}: {size} bytes is larger than trtci reads ({MAX_FILE_BYTES} bytes)")
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    except RecursionError as e:
        raise DataError(f"{path}: not JSON that trtci reads (nested too deep)") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise DataError(f"{path}: not JSON ({e}); pass the file written by pytest --benchmark-json") from e
    problem = plain_json_problem(raw)
    if problem is not None:
        raise DataError(f"{path}: damaged pytest-benchmark file ({problem})")
    if not isinstance(raw, dict) or not isinstance(raw.get("benchmarks"), list):
        raise DataError(f"{path}: no 'benchmarks' list; pass the file written by pytest --benchmark-json")
    version = str(raw.get("version", ""))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) not in SUPPORTED_MAJORS:
        raise DataError(
            f"{path}: pytest-benchmark version {one_line(version)[:40] or 'unknown'}; trtci reads versions "
            f"{SUPPORTED_MAJORS[0]}.x to {SUPPORTED_MAJORS[-1]}.x"
        )
    machine = raw.get("machine_info")
    return PytestBenchmarkFile(
        version=version, device=_device(machine if isinstance(machine, dict) else {}), benchmarks=raw["benchmarks"]
    )


def benchmark_run(path: Path, context: RunContext) -> RunResult:
    """A RunResult with one series per benchmark in the file, ready for compare and Store.record_run."""
    parsed = read_pytest_benchmark(path)
    measured = [_series(path, item, parsed.device) for item in parsed.benchmarks]
    series = [s for s, _ in measured]
    names = [s.key.model for s in series]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: benchmark {duplicates[0]} appears twice; give each benchmark a unique name")
    # Every device a series names, in order of first use (the store refers series to them); the file's
    # machine always when no benchmark was timed, as before.
    devices = {device.id: device for _, device in measured} or {parsed.device.id: parsed.device}
    return RunResult(context=context, devices=list(devices.values()), series=series)


def _series(path: Path, item: Any, machine: DeviceInfo) -> tuple[SeriesResult, DeviceInfo]:
    """One benchmark's series and the device it ran on: from extra_info["trtci"] when there, else the machine."""
    if not isinstance(item, dict) or not isinstance(item.get("stats"), dict):
        raise DataError(f"{path}: a benchmark without 'stats'; the file is damaged")
    name = str(item.get("fullname") or item.get("name") or "")
    if not name:
        raise DataError(f"{path}: a benchmark without 'fullname' or 'name'; the file is damaged")
    if one_line(name) != name:  # pytest escapes control characters in test ids: this is damage, or an attack
        raise DataError(f"{path}: benchmark {one_line(name)[:200]!r} has control characters in its name")
    options = item.get("options")
    if not isinstance(options, dict):
        options = {}
    provenance = trtci_extra_info(path, name, item.get("extra_info"))
    if provenance is None:
        key = SeriesKey(
            model=name,
            model_hash=stable_hash(name, 64),
            precision=PRECISION,
            batch=1,
            backend=BACKEND,
            device_id=machine.id,
            options_hash=stable_hash(options),
        )
        return SeriesResult(key=key, bench=_bench(path, name, item["stats"], options, batch=1)), machine
    device = DeviceInfo(
        kind=provenance.device.kind, name=provenance.device.name, details=dict(provenance.device.details)
    )
    key = SeriesKey(
        model=name,
        model_hash=provenance.model_sha256,
        precision=provenance.precision,
        batch=provenance.batch,
        backend=provenance.backend,
        device_id=device.id,
        quantization=provenance.quantization,
        options_hash=stable_hash({"pytest-benchmark": options, "trtci": provenance.options}),
    )
    return SeriesResult(key=key, bench=_bench(path, name, item["stats"], options, provenance.batch)), device


def trtci_extra_info(path: Path, name: str, extra_info: Any) -> TrtciExtraInfo | None:
    """The benchmark's `extra_info["trtci"]`, checked; None when it has none. Raises DataError naming what is wrong."""
    if not isinstance(extra_info, dict) or EXTRA_INFO_KEY not in extra_info:
        return None
    try:
        return TrtciExtraInfo.model_validate(extra_info[EXTRA_INFO_KEY])
    except ValidationError as e:
        problems = []
        for error in e.errors():
            where = ".".join(str(p) for p in error["loc"])
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(one_line(f"{where}: {message}" if where else message))  # keys come from the file
        raise DataError(
            f"{path}: {name}: extra_info.{EXTRA_INFO_KEY} is malformed ({'; '.join(problems)}); it is written by "
            "the trtci_benchmark fixture: rerun the benchmark with the installed trtci, or remove the key"
        ) from e


def _bench(path: Path, name: str, stats: dict[str, Any], options: dict[str, Any], batch: int) -> BenchResult:
    data = stats.get("data")
    timer = str(options.get("timer", "perf_counter"))
    if data is not None and not isinstance(data, list):
        raise DataError(f"{path}: {name}: stats.data is not a list of times; the file is damaged")
    if data:
        samples_ms = _times_ms(path, name, "stats.data", data)
        wall_s = sum(samples_ms) / SECONDS_TO_MS
        latency = latency_stats(samples_ms, batch=batch, wall_s=wall_s, max_cv=BenchSettings().max_cv)
        return BenchResult(stats=latency, samples_ms=samples_ms, warmup_ms=0.0, duration_s=wall_s, timer=timer)
    fields = ("min", "max", "mean", "median", "stddev")
    if any(not _is_number(stats.get(f)) for f in fields):
        raise DataError(f"{path}: {name}: stats lack {', '.join(fields)}; the file is damaged")
    minimum, maximum, mean, median, std = _times_ms(path, name, "stats", [stats[f] for f in fields], allow_zero=True)
    if median <= 0:
        raise DataError(f"{path}: {name}: median time is 0; a benchmark that takes no time cannot be compared")
    rounds = stats.get("rounds") or 0
    if not isinstance(rounds, int) or isinstance(rounds, bool) or not 0 <= rounds <= MAX_COUNT:
        raise DataError(
            f"{path}: {name}: stats.rounds is {str(rounds)[:40]!r}, not a count of rounds; the file is damaged"
        )
    unknown = math.nan  # percentiles need the raw data: rerun pytest with --benchmark-save-data
    latency = LatencyStats(
        min=minimum,
        mean=mean,
        median=median,
        p90=unknown,
        p95=unknown,
        p99=unknown,
        max=maximum,
        std=std,
        cv=std / mean if mean > 0 else 0.0,
        iterations=rounds,
        throughput=batch * 1e3 / mean if mean > 0 else 0.0,
        unstable=mean > 0 and std / mean > BenchSettings().max_cv,
    )
    total = stats.get("total") or 0.0
    if not _is_number(total) or not 0 <= float(total) <= MAX_SECONDS * MAX_COUNT:
        raise DataError(
            f"{path}: {name}: stats.total is {str(total)[:40]!r}, not a time in seconds; the file is damaged"
        )
    total = float(total)
    return BenchResult(stats=latency, samples_ms=[], warmup_ms=0.0, duration_s=total, timer=timer)


def _times_ms(path: Path, name: str, where: str, seconds: list[Any], *, allow_zero: bool = False) -> list[float]:
    """Seconds to milliseconds, refusing NaN, infinite, negative and absurd (over MAX_SECONDS) values, and zeros
    unless allowed."""
    values = np.asarray([_float(v) for v in seconds], dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0 if allow_zero else values <= 0) | (values > MAX_SECONDS)
    if bad.any():
        raise DataError(
            f"{path}: {name}: {int(bad.sum())} of {values.size} values in {where} are NaN, zero, negative, "
            f"over {MAX_SECONDS:g} s or not numbers; rerun the benchmark"
        )
    return (values * SECONDS_TO_MS).tolist()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value: Any) -> float:
    """A JSON number as a float: NaN for anything else, infinite for an integer beyond float's range."""
    if not _is_number(value):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _device(machine: dict[str, Any]) -> DeviceInfo:
    raw_cpu = machine.get("cpu")
    cpu: dict[str, Any] = raw_cpu if isinstance(raw_cpu, dict) else {}
    name = str(cpu.get("brand_raw") or cpu.get("brand") or machine.get("processor") or "unknown CPU")
    details = {
        "arch": cpu.get("arch_string_raw") or cpu.get("arch") or machine.get("machine"),
        "cores": cpu.get("count"),
        "python": f"{machine.get('python_implementation', '')} {machine.get('python_version', '')}".strip(),
    }
    return DeviceInfo(kind="cpu", name=name, details={k: v for k, v in details.items() if v})

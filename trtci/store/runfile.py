"""One run as one self-contained file: what a matrix leg hands to the aggregate job, and what history keeps.

A run file is gzip-compressed JSON holding the whole RunResult, raw latency samples included (as base64 of
float32 little-endian, like the database); an infinite SQNR is written as JSON's common `Infinity` extension.
Its name is unique per run (`<started_at>-<run_id>.trtci.json.gz`), so concurrent jobs never write the same file.
A file written by a newer trtci (a higher `format`) is refused with the version it needs; a file that is not a
trtci run file, or is damaged, is refused with its path. The content is untrusted data: every field is validated
against its type, series must belong to a listed device, and nothing in it is ever executed.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import stat
import struct
import tempfile
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pydantic

from trtci import __version__
from trtci.errors import DataError
from trtci.results import AccuracyChange, Comparison, RunResult
from trtci.store.samples import decode_samples, encode_samples

FORMAT = 1
KIND = "trtci-run"
SUFFIX = ".trtci.json.gz"
# A run file is untrusted input: refuse anything absurdly large before it fills memory, compressed or not (a gzip
# bomb is refused while it is read), and content no run has: nesting deeper than MAX_DEPTH, more than MAX_VALUES
# values (each one costs memory as a Python object), integers SQLite cannot hold, text that is not Unicode.
MAX_BYTES = 64 * 1024 * 1024
MAX_JSON_BYTES = 128 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 1_000_000
_INT64 = (-(2**63), 2**63 - 1)
_CHUNK = 1024 * 1024
_RUN_ID = re.compile(r"[0-9A-Za-z._-]{1,128}")  # uuid4 hex from trtci run; file names and messages carry it
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Every field is checked against its type (a batch is an int, a name a string...): a run file comes from another
# job, possibly a fork's, and its values end up in the PR comment. Unknown keys (a newer minor format) are ignored.
_RUN = pydantic.TypeAdapter(RunResult)


def file_name(run: RunResult) -> str:
    """A name no other run can have: start time for sorting, then the run id."""
    stamp = re.sub(r"[^0-9A-Za-z]", "", run.context.started_at)
    run_id = re.sub(r"[^0-9A-Za-z_-]", "", run.context.run_id)
    return f"{stamp}-{run_id}{SUFFIX}"


def run_to_dict(run: RunResult) -> dict[str, Any]:
    """The run as JSON-able data (an identical output's SQNR is inf: Python's json writes it as Infinity)."""
    data = asdict(run)
    for series in data["series"]:
        bench = series.get("bench")
        if bench is not None:
            bench["samples_ms"] = base64.b64encode(encode_samples(bench["samples_ms"])).decode("ascii")
    return {"kind": KIND, "format": FORMAT, "trtci_version": __version__, "run": data}


def run_from_dict(data: Any, source: str) -> RunResult:
    """Rebuild a RunResult. Raises DataError naming `source` when the data is not a run this trtci can read."""
    problem = plain_json_problem(data)
    if problem is not None:
        raise DataError(f"{source}: damaged trtci run file ({problem})")
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise DataError(f"{source}: not a trtci run file")
    version = data.get("format")
    if not isinstance(version, int):
        raise DataError(f"{source}: trtci run file without a format version")
    if version > FORMAT:
        raise DataError(
            f"{source}: written by trtci {data.get('trtci_version', '?')} in run-file format {version}; "
            f"this trtci {__version__} reads format {FORMAT}: upgrade trtci"
        )
    try:
        raw = data["run"]
        for series in raw["series"]:
            bench = series.get("bench")
            if bench is not None:
                bench["samples_ms"] = decode_samples(base64.b64decode(bench["samples_ms"], validate=True))
        run = _RUN.validate_python(raw)
    except (KeyError, TypeError, AttributeError, binascii.Error, struct.error) as e:
        raise DataError(f"{source}: damaged trtci run file ({type(e).__name__}: {e})") from e
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = one_line(".".join(str(p) for p in first["loc"]))  # keys come from the file
        raise DataError(f"{source}: damaged trtci run file ({where[:200]}: {one_line(first['msg'])})") from e
    if not _RUN_ID.fullmatch(run.context.run_id):
        raise DataError(
            f"{source}: damaged trtci run file (run id {one_line(run.context.run_id)[:80]!r}: trtci's run ids are "
            "letters, digits, '.', '_' and '-')"
        )
    devices = {device.id for device in run.devices}
    strays = sorted({s.key.device_id for s in run.series} - devices)
    if strays:
        raise DataError(f"{source}: damaged trtci run file (series of device {strays[0]}, which it does not list)")
    verdicts: list[Comparison | AccuracyChange] = [*run.comparisons, *run.accuracy_changes]
    for verdict in verdicts:
        if verdict.interval is not None and len(verdict.interval) != 2:
            raise DataError(f"{source}: damaged trtci run file ({verdict.label}: an interval is [low, high])")
    return run


def write_runfile(run: RunResult, directory: Path) -> Path:
    """Write the run into `directory` under its unique name, atomically. Returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(run)
    payload = gzip.compress(json.dumps(run_to_dict(run), separators=(",", ":")).encode(), mtime=0)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=SUFFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_runfile(path: Path) -> RunResult:
    """Read a run file. Raises DataError naming the file when it is missing, too large (compressed or once
    decompressed), damaged, too new, or holds what no run file holds (see MAX_DEPTH and MAX_VALUES)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a pipe or a device would be read forever
            raise DataError(f"{path}: not a regular file; pass a trtci run file")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise DataError(f"{path}: {size} bytes is larger than a trtci run file can be ({MAX_BYTES} bytes)")
        text = bytearray()
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                text += chunk
                if len(text) > MAX_JSON_BYTES:
                    raise DataError(
                        f"{path}: decompresses to more than {MAX_JSON_BYTES} bytes, more than a trtci run file holds"
                    )
    except OSError as e:  # also gzip.BadGzipFile
        raise DataError(f"{path}: cannot read as a trtci run file ({e})") from e
    except (EOFError, zlib.error) as e:
        raise DataError(f"{path}: damaged trtci run file ({e})") from e
    if text.count(b",") > MAX_VALUES:
        raise DataError(f"{path}: damaged trtci run file (more than {MAX_VALUES} values)")
    try:
        data = json.loads(text)
    except RecursionError as e:
        raise DataError(f"{path}: damaged trtci run file (nested deeper than {MAX_DEPTH} levels)") from e
    except ValueError as e:  # also a UnicodeDecodeError
        raise DataError(f"{path}: damaged trtci run file (not JSON: {e})") from e
    return run_from_dict(data, str(path))


def one_line(text: str) -> str:
    """`text` with every character that could end a line or start a new one (control characters, NEL, line and
    paragraph separators) written as an escape: untrusted text inside a one-line message."""
    return _LINE_BREAKING.sub(lambda m: repr(m.group())[1:-1], text)


def plain_json_problem(data: Any) -> str | None:
    """What makes parsed JSON unsafe to hold or store, in a few words, or None: nesting deeper than MAX_DEPTH, an
    integer beyond 64 bits (SQLite's), a string that is not Unicode (a lone surrogate escape)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
        elif isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
            return f"an integer beyond 64 bits: {str(value)[:20]}..."
        elif isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                return f"text that is not Unicode: {e.reason}"
    return None

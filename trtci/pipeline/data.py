"""Calibration and validation data: load it, check it against the model before any work, batch it.

Sources: a `.npz` file (arrays keyed by input name, optional `labels`), a directory of `.npy` files
(`<input name>.npy`, optional `labels.npy`), or `module:function` returning or yielding feed dicts.
All arrays are stacked along axis 0, the batch axis: sample i of every input is row i.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtci.config import is_function_ref
from trtci.errors import DataError
from trtci.pipeline.model import ModelInfo

LABELS = "labels"
# A data function that never ends would be read forever: past this many samples (without max_samples) it is refused.
MAX_FUNCTION_SAMPLES = 1_000_000


@dataclass
class Dataset:
    """Inputs by name (N samples each along axis 0), optional labels, and where they came from."""

    source: str
    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(next(iter(self.arrays.values())))

    @functools.cached_property
    def sha256(self) -> str:
        """Content hash over names, dtypes, shapes and bytes: a changed sample changes the hash.

        Computed on first read and kept: a loaded data set is not modified, and hashing it again costs a pass
        over every byte.
        """
        digest = hashlib.sha256()
        items = sorted(self.arrays.items())
        if self.labels is not None:
            items.append((LABELS, self.labels))
        for name, array in items:
            array = np.ascontiguousarray(array)
            digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def full_batches(self, batch: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """Every sample once, in order, as feed dicts of exactly `batch` samples, with how many of them are real.

        The last batch is filled up by repeating samples from the start (a data set smaller than one batch is
        tiled), so a session bound to one batch size takes every batch; callers keep the first `real` rows of
        each output.
        """
        for start in range(0, self.size, batch):
            yield self._take(start, batch), min(batch, self.size - start)

    def feeds_for_batch(self, batch: int) -> dict[str, np.ndarray]:
        """One feed dict of exactly `batch` samples, repeating the data when it has fewer."""
        return self._take(0, batch)

    def batch_bytes(self, batch: int) -> int:
        """The memory one feed dict of `batch` samples takes."""
        return batch * sum(a[:1].nbytes for a in self.arrays.values())

    def _take(self, start: int, batch: int) -> dict[str, np.ndarray]:
        check_memory(self.batch_bytes(batch), f"{self.source}: a batch of {batch} samples", "lower batch_sizes")
        index = np.arange(start, start + batch) % self.size
        return {name: np.ascontiguousarray(array[index]) for name, array in self.arrays.items()}


def load_dataset(source: str, max_samples: int | None = None) -> Dataset:
    """Load a data source. Raises DataError naming the source and what is wrong with it."""
    if is_function_ref(source):
        arrays = _from_function(source, max_samples)
    else:
        path = Path(source)
        if path.is_dir():
            arrays = _from_npy_dir(path)
        elif path.suffix == ".npz" and path.is_file():
            arrays = _from_npz(path)
        elif not path.exists():
            raise DataError(f"{source}: no such file or directory; give a .npz, a folder of .npy or module:function")
        else:
            raise DataError(f"{source}: unsupported data file; give a .npz, a folder of .npy or module:function")
    labels = arrays.pop(LABELS, None)
    if labels is not None and labels.ndim == 0:
        raise DataError(f"{source}: labels is a single value; give one label per sample, an array of shape [N]")
    if not arrays:
        raise DataError(f"{source}: holds no input arrays (only labels or nothing)")
    sizes = {name: len(a) if a.ndim else 0 for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{n}={s}" for n, s in sorted(sizes.items()))
        raise DataError(f"{source}: inputs have different sample counts ({listed}); axis 0 must be the sample")
    count = next(iter(sizes.values()))
    if count == 0:
        raise DataError(f"{source}: the data set is empty; it needs at least one sample")
    if labels is not None and len(labels) != count:
        raise DataError(f"{source}: {len(labels)} labels for {count} samples; give one label per sample")
    if max_samples is not None and count > max_samples:
        arrays = {name: a[:max_samples] for name, a in arrays.items()}
        labels = labels[:max_samples] if labels is not None else None
    return Dataset(source=source, arrays=arrays, labels=labels)


def check_memory(nbytes: int, what: str, fix: str) -> None:
    """Raise DataError before allocating `nbytes` that this machine's free memory cannot hold."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: let the allocation decide
        return
    if nbytes > free:
        raise DataError(f"{what} needs {_gib(nbytes)} of memory, more than the {_gib(free)} free here; {fix}")


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GiB"


def _declared_bytes(handle, size: int, source: str) -> None:
    """Read a .npy header and refuse an array whose declared size the file cannot hold (a damaged or hostile
    header would otherwise make numpy allocate terabytes before it notices)."""
    from numpy.lib import format as npy

    version = npy.read_magic(handle)
    shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(handle)
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if need > size:
        raise DataError(f"{source}: the header declares {need} bytes of data but the file holds {size}; re-save it")
    check_memory(need, source, "load fewer samples (max_samples) or a smaller file")


def _from_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    _declared_bytes(member, info.file_size, f"{path} [{info.filename}]")
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: cannot read as .npz ({e}); save it with numpy.savez") from e


def _from_npy_dir(path: Path) -> dict[str, np.ndarray]:
    files = sorted(path.glob("*.npy"))
    if not files:
        raise DataError(f"{path}: no .npy files; save one <input name>.npy per input (and labels.npy)")
    arrays = {}
    for file in files:
        if not file.is_file():  # a folder or a FIFO named like an array; opening a FIFO would wait forever
            raise DataError(f"{file}: not a regular file; save the input as <input name>.npy with numpy.save")
        try:
            with file.open("rb") as handle:
                _declared_bytes(handle, file.stat().st_size, str(file))
            arrays[file.stem] = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{file}: cannot read as .npy ({e})") from e
    return arrays


def _from_function(ref: str, max_samples: int | None) -> dict[str, np.ndarray]:
    module_name, function_name = ref.split(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # let users point at a module in the directory they run from
    # The user's code: whatever it raises on import or call, sys.exit() included, is bad input with its message.
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (Exception, SystemExit) as e:
        raise DataError(f"{ref}: cannot import ({type(e).__name__}: {e}); fix the module or the reference") from None
    try:
        feeds = _read_feeds(ref, function(), max_samples or MAX_FUNCTION_SAMPLES, max_samples is None)
    except DataError:
        raise
    except (Exception, SystemExit) as e:
        raise DataError(f"{ref}: raised {type(e).__name__}: {e}") from None
    if not feeds:
        raise DataError(f"{ref}: must return or yield at least one dict of input name -> array")
    names = set(feeds[0])
    for i, feed in enumerate(feeds):
        wrong = [key for key in feed if not isinstance(key, str)]
        if wrong:
            raise DataError(f"{ref}: feed {i} has a key {wrong[0]!r}; key each array by its input name (a str)")
        if set(feed) != names:
            raise DataError(f"{ref}: feed {i} has keys {sorted(feed)}, the first had {sorted(names)}")
    return {
        name: _stack(ref, name, [_array(ref, i, name, f[name]) for i, f in enumerate(feeds)]) for name in sorted(names)
    }


def _array(ref: str, index: int, name: str, value: object) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists, objects numpy cannot hold
        raise DataError(
            f"{ref}: feed {index} input '{name}' is not an array ({_first_line(e)}); yield numpy arrays"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_feeds(ref: str, feeds, limit: int, refuse_more: bool) -> list[dict]:
    """Feed dicts from a function's result until `limit` samples are read; more than that is refused when no
    max_samples was set (a generator that never ends), else simply not read."""
    taken, samples = [], 0
    for feed in feeds:
        if not isinstance(feed, dict):
            raise DataError(f"{ref}: yielded a {type(feed).__name__}; yield dicts of input name -> array")
        if samples >= limit:
            if refuse_more:
                raise DataError(
                    f"{ref}: yields more than {limit} samples; set max_samples in the config or make it end"
                )
            break
        taken.append(feed)
        first = next(iter(feed.values()), None)
        samples += len(first) if isinstance(first, np.ndarray) and first.ndim else 1
    return taken


def _stack(ref: str, name: str, values: list[np.ndarray]) -> np.ndarray:
    """One input's feeds concatenated along the batch axis; DataError naming the feed that does not fit."""
    for i, value in enumerate(values):
        if value.ndim == 0:
            raise DataError(
                f"{ref}: feed {i} input '{name}' is a scalar; give each input as an array with a batch axis first"
            )
        if i and value.shape[1:] != values[0].shape[1:]:
            raise DataError(
                f"{ref}: feed {i} input '{name}' has shape {list(value.shape)}, feed 0 had {list(values[0].shape)}; "
                "every feed must have the same shape after the batch axis"
            )
    return np.concatenate(values)


def check_against_model(dataset: Dataset, model: ModelInfo, role: str) -> None:
    """Names, dtypes and per-sample shapes must fit the model's inputs. Raises DataError naming the mismatch."""
    expected = {spec.name: spec for spec in model.inputs}
    missing = sorted(set(expected) - set(dataset.arrays))
    extra = sorted(set(dataset.arrays) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unknown {', '.join(extra)}")
        raise DataError(
            f"{role} data {dataset.source}: {'; '.join(parts)}; the model's inputs are {', '.join(expected)}"
        )
    for name, spec in expected.items():
        array = dataset.arrays[name]
        if array.dtype.name != spec.dtype:
            raise DataError(
                f"{role} data {dataset.source}: input '{name}' is {array.dtype.name} but the model wants "
                f"{spec.dtype}; save it with .astype('{spec.dtype}')"
            )
        sample_shape = array.shape[1:]
        model_shape = spec.shape[1:]
        if len(sample_shape) != len(model_shape) or any(
            isinstance(want, int) and want != got for want, got in zip(model_shape, sample_shape)
        ):
            shown = ", ".join(str(d) for d in model_shape)
            raise DataError(
                f"{role} data {dataset.source}: input '{name}' samples have shape {list(sample_shape)} but the "
                f"model wants [{shown}] after the batch axis"
            )

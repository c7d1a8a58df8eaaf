"""Calibration and validation data: load it, check it against the model before any work, batch it.

Sources: a `.npz` file (arrays keyed by input name, optional `labels`), a directory of `.npy` files
(`<input name>.npy`, optional `labels.npy`), or `module:function` returning or yielding feed dicts.
All arrays are stacked along axis 0, the batch axis: sample i of every input is row i.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtci.config import is_function_ref
from trtci.errors import DataError
from trtci.pipeline.model import ModelInfo

LABELS = "labels"


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

    def _take(self, start: int, batch: int) -> dict[str, np.ndarray]:
        index = np.arange(start, start + batch) % self.size
        return {name: np.ascontiguousarray(array[index]) for name, array in self.arrays.items()}


def load_dataset(source: str, max_samples: int | None = None) -> Dataset:
    """Load a data source. Raises DataError naming the source and what is wrong with it."""
    if is_function_ref(source):
        arrays = _from_function(source)
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


def _from_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as .npz ({e}); save it with numpy.savez") from e


def _from_npy_dir(path: Path) -> dict[str, np.ndarray]:
    files = sorted(path.glob("*.npy"))
    if not files:
        raise DataError(f"{path}: no .npy files; save one <input name>.npy per input (and labels.npy)")
    arrays = {}
    for file in files:
        try:
            arrays[file.stem] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{file}: cannot read as .npy ({e})") from e
    return arrays


def _from_function(ref: str) -> dict[str, np.ndarray]:
    module_name, function_name = ref.split(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # let users point at a module in the directory they run from
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as e:
        raise DataError(f"{ref}: cannot import ({e}); the module must be importable from the current directory") from e
    try:
        feeds = list(function())
    except Exception as e:  # the user's code: any failure is reported as bad input, with its message
        raise DataError(f"{ref}: raised {type(e).__name__}: {e}") from e
    if not feeds or not all(isinstance(f, dict) for f in feeds):
        raise DataError(f"{ref}: must return or yield at least one dict of input name -> array")
    names = set(feeds[0])
    for i, feed in enumerate(feeds):
        if set(feed) != names:
            raise DataError(f"{ref}: feed {i} has keys {sorted(feed)}, the first had {sorted(names)}")
    return {name: _stack(ref, name, [np.asarray(f[name]) for f in feeds]) for name in sorted(names)}


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

"""The prepared-model cache on disk: where an entry lives, the working folder it is made in, and how it is put
in place so that an interrupted run never leaves a file a later run takes for a finished one.

A working folder is `<cache>/.tmp-<host>-<pid>-<random>`. A run killed with -9 cannot remove its own, so each
use of the cache (`open_cache`) removes the ones left behind: those of a process of this host that no longer
runs, and any older than STALE_AFTER_S (a process id used again, another host's crash on a shared disk).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from trtci.errors import ConfigError
from trtci.results import stable_hash

WORKDIR_PREFIX = ".tmp-"
# No preparation takes a day; a folder this old belongs to no live run, whatever its process id says now.
STALE_AFTER_S = 24 * 3600.0
_FIX = "choose a writable cache_dir (--cache-dir)"
_OWNER = re.compile(r"^\.tmp-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-")


def entry_path(cache_dir: Path, model_sha256: str, options_hash: str, filename: str) -> Path:
    """Where the prepared file `filename` of a model (by content hash) and its options lives in the cache."""
    key = stable_hash({"model": model_sha256, "options": options_hash}, length=32)
    return Path(cache_dir) / key / filename


def open_cache(cache_dir: Path) -> None:
    """Make the cache folder and remove working folders that interrupted runs left in it (see the module
    docstring). Raises ConfigError naming the folder when it cannot be made."""
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"{cache_dir}: cannot create the cache ({e.strerror or e}); choose a writable cache_dir"
        ) from e
    for path in Path(cache_dir).glob(f"{WORKDIR_PREFIX}*"):
        if path.is_dir() and _stale(path):
            shutil.rmtree(path, ignore_errors=True)


def _stale(path: Path) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:  # removed meanwhile by another run
        return False
    if age > STALE_AFTER_S:
        return True
    owner = _OWNER.match(path.name)
    if owner is None or owner["host"] != _host():
        return False  # not ours to judge by process id
    return not _running(int(owner["pid"]))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; or no such process id at all
        return True
    return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


@contextlib.contextmanager
def workdir(cache_dir: Path) -> Iterator[Path]:
    """A temporary folder beside the cache entries (same file system, so the final moves are renames), named
    after this host and process so that a later run knows whether it was left behind."""
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{_host()}-{os.getpid()}-", dir=cache_dir))
    except OSError as e:
        raise ConfigError(
            f"{cache_dir}: cannot write to the cache ({e.strerror or e}); choose a writable cache_dir"
        ) from e
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def commit(work: Path, target: Path) -> None:
    """Move the finished files from `work` into the target's folder, the model file itself last.

    A folder where the model file belongs (a damaged cache) is replaced. Raises ConfigError when the cache
    cannot be written."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        for item in work.glob(f"{target.name}?*"):  # its external data, if any
            os.replace(item, target.parent / item.name)
        os.replace(work / target.name, target)
    except OSError as e:
        raise ConfigError(f"{target}: cannot write to the cache ({e.strerror or e}); check or delete cache_dir") from e

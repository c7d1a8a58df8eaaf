"""Backends by name: trtci's own and those of third-party packages, registered through one path.

A backend is an entry point in the group `trtci.backends`: its name is the backend's name (what `backends:` in
trtci.yml and `--backend` take), its value a factory `(config: Config) -> Backend` (see
trtci.backends.base.BackendFactory). A package adds a backend by declaring one in its pyproject.toml:

    [project.entry-points."trtci.backends"]
    my-backend = "my_package.backend:create"

trtci's own backends are entry points of the same kind, listed in BUILTIN below rather than read from trtci's
installed metadata, so a source checkout has them too. Adding one inside trtci takes its module and one line
there. Nothing is imported until a backend is asked for, so `import trtci` needs none of a backend's packages.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

from trtci.backends.base import Backend, BackendFactory
from trtci.config import Config
from trtci.errors import BackendUnavailable, ConfigError

GROUP = "trtci.backends"
AUTO = "auto"  # not a backend: the first candidate that can run here (see `get_backend`)
BUILTIN = (
    EntryPoint("onnxruntime", "trtci.backends.onnxruntime:create", GROUP),
    EntryPoint("onnxruntime-cuda", "trtci.backends.onnxruntime_cuda:create", GROUP),
    EntryPoint("tensorrt", "trtci.backends.tensorrt:create_tensorrt", GROUP),
    EntryPoint("tensorrt-rtx", "trtci.backends.tensorrt:create_tensorrt_rtx", GROUP),
)


def registered() -> dict[str, EntryPoint]:
    """Every registered backend by name: the built-in ones first, then plugins in name order.

    Raises ConfigError when two packages claim one name (or one claims "auto"): which one runs would be chance.
    """
    found: dict[str, EntryPoint] = {}
    plugins = sorted(entry_points(group=GROUP), key=lambda entry: entry.name)
    for entry in (*BUILTIN, *plugins):
        taken = found.get(entry.name)
        if entry.name == AUTO or (taken is not None and taken.value != entry.value):
            claimed = f"by {taken.value} and by {entry.value}" if taken is not None else f"by {entry.value}"
            raise ConfigError(
                f"backend name '{entry.name}' is claimed {claimed}; uninstall one of the packages "
                f"(entry-point group {GROUP})"
            )
        found[entry.name] = entry
    return found


def check_names(names: Iterable[str]) -> None:
    """ConfigError for the first name that is neither registered nor "auto", in one line that lists the names
    there are. Cheap: nothing is imported, so a run checks its backends before any work."""
    known = registered()
    for index, name in enumerate(names):
        if name != AUTO and name not in known:
            raise ConfigError(f"backends.{index}: {_unknown(name, known)}")


def get_backend(name: str, config: Config) -> Backend:
    """The backend called `name`, made for this config by its factory.

    "auto" is the candidate (a factory declared with `prefer_for_auto`) of the lowest rank that can run here:
    TensorRT, else TensorRT for RTX, else ONNX Runtime on the CPU. Raises ConfigError for an unknown name and
    BackendUnavailable, with the fix, when the backend cannot work here.
    """
    if name == AUTO:
        return _auto(config)
    known = registered()
    if name not in known:
        raise ConfigError(_unknown(name, known))
    return load_factory(known[name])(config)


def load_factory(entry: EntryPoint) -> BackendFactory:
    """Import a registered backend's factory; BackendUnavailable when its package cannot be imported."""
    try:
        factory: BackendFactory = entry.load()
    except Exception as e:  # a plugin's import can fail in any way; it must not take the other backends down
        reason = f"{type(e).__name__}: {e}"
        raise BackendUnavailable(f"{entry.name}: cannot load its factory {entry.value} ({reason})") from e
    return factory


def _auto(config: Config) -> Backend:
    candidates: list[tuple[int, BackendFactory]] = []
    for entry in registered().values():
        try:
            factory = load_factory(entry)
        except BackendUnavailable:
            continue  # a broken plugin is no candidate; `trtci doctor` shows why
        rank = getattr(factory, "auto_preference", None)
        if rank is not None:
            candidates.append((rank, factory))
    reasons = []
    for _, factory in sorted(candidates, key=lambda candidate: candidate[0]):
        try:
            backend = factory(config)
        except BackendUnavailable as e:
            reasons.append(str(e))
            continue
        if backend.can_run:
            return backend
        reasons.append(f"{backend.name}: {backend.why_not_run}")
    raise BackendUnavailable(f"backend auto: no backend can run here ({'; '.join(reasons)}); run `trtci doctor`")


def _unknown(name: str, known: dict[str, EntryPoint]) -> str:
    return f"unknown backend '{name}'; registered: {', '.join(known)} (or {AUTO}); `trtci doctor` shows them"

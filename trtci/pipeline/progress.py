"""Where the pipeline reports long work (a build, a calibration, a benchmark) while it runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol


class Progress(Protocol):
    """The CLI shows rich progress bars; tests and library callers pass nothing (`Silent`)."""

    def task(self, description: str) -> contextlib.AbstractContextManager[Callable[[float], None]]:
        """A context around one step; it yields a function that takes the fraction done, 0..1."""
        ...


class Silent:
    """Progress that shows nothing."""

    @contextlib.contextmanager
    def task(self, description: str) -> Iterator[Callable[[float], None]]:
        yield lambda fraction: None

"""The terminal the commands print to: rich consoles sized for CI logs.

A console made here writes to whatever sys.stdout or sys.stderr is when it prints; while a command runs that is
trtci.github.actions.guarded_output's stream, so a wrapped table or warning can never start a workflow command.
"""

from __future__ import annotations

import os

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    """A rich console; in CI logs (no terminal) 140 columns wide instead of rich's 80, so tables do not wrap."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=140)
    return console

"""`trtci` run in-process, as the console script would, with its exit code and output."""

from __future__ import annotations

import sys

import pytest

from trtci.cli import main


def trtci(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `trtci ARGS` in-process through the real entry point; return exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["trtci", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


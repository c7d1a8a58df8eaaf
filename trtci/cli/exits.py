"""How every trtci command ends on an error: one line that says what to fix, and the documented exit code.

  a TrtciError        its message on one line; its own exit code (2 input, 3 environment, 5 publishing)
  a click usage error click's message and where to find the options, on one line; 2
  Ctrl-C              'trtci: aborted'; 130
  anything else       the traceback; 4 (a bug in trtci)

Inside GitHub Actions the line is an `::error` workflow command, so it shows on the run's page; elsewhere it is
`trtci: error: ...` on stderr. A runaway message (a library's dump inside it) keeps its start and its end, where
the fix is said, within MAX_LINE characters; messages trtci words itself stay well under 300 (a library's text
in them is cut where it is quoted, as trtci.backends.onnxruntime.brief does). `trtci --debug` prints the whole
message and the traceback, for expected errors too.

Everything a command prints, and every error line, goes out through trtci.github.actions.guarded_output: no text
from a run file, a model, an event or the API can start a log line with a workflow command (`::`).

Every command is a TrtciCommand and every group a TrtciGroup (whose commands and subgroups are too), so the
translation is the same wherever a command runs: under `trtci`, on its own in a test, or registered on another
group. `main()` uses the same translation for what fails before any command runs.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import click

from trtci.errors import EXIT_INPUT, EXIT_INTERNAL, TrtciError
from trtci.github import actions

EXIT_ABORTED = 130  # 128 + SIGINT, as shells report a command stopped with Ctrl-C
MAX_LINE = 1000  # characters of an error line, "trtci: error: " or "::error title=trtci::" included
_PREFIX = "trtci: error: "
_ROOM = 24  # for either prefix
_CUT = " … (cut; trtci --debug shows it whole) … "


def exit_code_for(error: BaseException, *, debug: bool = False) -> int:
    """Say `error` the way its kind is said (see the module docstring) and return its exit code."""
    with actions.guarded_output():
        return _say_and_code(error, debug)


def _say_and_code(error: BaseException, debug: bool) -> int:
    if isinstance(error, click.exceptions.Exit):
        return error.exit_code
    if isinstance(error, click.ClickException):
        # click's own rendering adds the usage and a hint on lines of their own: one line says the same
        context = getattr(error, "ctx", None)
        hint = f" ('{context.command_path} -h' lists the options)" if context is not None else ""
        click.echo(f"Error: {' '.join(error.format_message().splitlines())}{hint}", err=True)
        return EXIT_INPUT
    if isinstance(error, (KeyboardInterrupt, click.exceptions.Abort)):
        click.echo("trtci: aborted", err=True)
        return EXIT_ABORTED
    if isinstance(error, TrtciError):
        if debug:
            traceback.print_exception(error)
        say_error(str(error), whole=debug)
        return error.exit_code
    traceback.print_exception(error)
    click.echo("trtci: internal error (a bug in trtci): please report it with the traceback above", err=True)
    return EXIT_INTERNAL


def say_error(message: str, *, whole: bool = False) -> None:
    """One error line: an `::error` workflow command inside GitHub Actions, else `trtci: error: ...` on stderr.

    The message is cut to at most MAX_LINE characters in all (see `fit`) unless `whole`."""
    message = " ".join(message.splitlines())
    if not whole:
        message = fit(message, MAX_LINE - _ROOM)
    if actions.in_actions():
        actions.print_command(actions.error(message, title="trtci"))
    else:
        click.echo(f"{_PREFIX}{message}", err=True)


def fit(message: str, limit: int) -> str:
    """`message` if it has at most `limit` characters, else its start and its end (where a trtci message says the
    fix) around a note that `trtci --debug` shows it whole, `limit` characters in all."""
    if len(message) <= limit:
        return message
    tail = limit // 3
    head = limit - tail - len(_CUT)
    return f"{message[:head].rstrip()}{_CUT}{message[-tail:].lstrip()}"


def _translated(ctx: click.Context, invoke: Callable[[], Any]) -> Any:
    with actions.guarded_output():
        try:
            return invoke()
        except (click.exceptions.Exit, BrokenPipeError):
            raise  # an exit already decided, or a closed pipe that click silences
        except (Exception, KeyboardInterrupt) as error:
            debug = bool(ctx.find_root().params.get("debug"))
            raise click.exceptions.Exit(exit_code_for(error, debug=debug)) from None


class TrtciCommand(click.Command):
    """A command whose errors end the trtci way (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        return _translated(ctx, lambda: super(TrtciCommand, self).invoke(ctx))


class TrtciGroup(click.Group):
    """A group whose own errors, and those of its commands and subgroups, end the trtci way."""

    command_class = TrtciCommand
    group_class = type  # subgroups are TrtciGroups too

    def invoke(self, ctx: click.Context) -> Any:
        return _translated(ctx, lambda: super(TrtciGroup, self).invoke(ctx))

"""`trtci preflight`: check the triggering event before anything from the workspace runs.

The action runs this module first, with the runner's own Python in isolated mode (`python -I`) from a directory the
pull request does not control, before trtci or its dependencies are installed. So it imports the standard library
and `trtci.errors` / `trtci.github.{actions,event}` only, which import nothing else: a test proves it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from trtci.context.event import check_safety, load_event
from trtci.errors import TrtciError
from trtci.github import actions

TRUE, FALSE = ("true", "1", "yes"), ("", "false", "0", "no")


def run_preflight(environ: Mapping[str, str] | None = None, *, allow_fork_code: bool | None = None) -> int:
    """Print the event's verdict as workflow commands, write its step outputs, and return the exit code. Its
    output goes through `actions.guarded_output`: nothing from the event can start a workflow command."""
    with actions.guarded_output():
        return _preflight(os.environ if environ is None else environ, allow_fork_code)


def _preflight(env: Mapping[str, str], allow_fork_code: bool | None) -> int:
    try:
        if allow_fork_code is None:
            allow_fork_code = _flag(env.get("TRTCI_ALLOW_FORK_CODE", ""))
        event = load_event(env)
        warnings = check_safety(event, env, allow_fork_code=allow_fork_code)
    except TrtciError as exc:
        if actions.in_actions(env):
            actions.print_command(actions.error(str(exc), title="trtci"))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for text in warnings:
        actions.print_command(actions.warning(text, title="trtci security"))
    for name, value in (("pr-number", event.pr_number), ("head-sha", event.head_sha), ("base-ref", event.base_ref)):
        if value is not None:
            actions.set_output(name, str(value), env)
    actions.set_output("is-fork", "true" if event.is_fork else "false", env)
    print(f"event {event.name or 'local'}: ok")
    return 0


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE or lowered in FALSE:
        return lowered in TRUE
    raise TrtciError(f"TRTCI_ALLOW_FORK_CODE={value!r}: use true or false")

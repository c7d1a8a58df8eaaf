"""The merge gate on the commit itself: a commit status (`statuses: write`) and/or a check run (`checks: write`).

Both carry the verdict the run already made, read from its JSON summary (docs/json-summary.md); nothing is
recomputed. The reporting job's exit code stays the simplest required check; these add the verdict where
branch protection or a reader looks for it on the pull request's head commit.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from trtci.errors import ConfigError, DataError
from trtci.github.api import GitHubClient
from trtci.github.comment import truncate
from trtci.report.json_summary import RunVerdict

STATUS_CONTEXT = "trtci"
MAX_STATUS_DESCRIPTION = 140  # GitHub refuses longer commit-status descriptions
MAX_CHECK_TEXT = 65_535  # check-run output.summary and output.text limit
MAX_SUMMARY_BYTES = 16 * 1024 * 1024
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


@dataclass(frozen=True)
class Gate:
    """The gate's verdict from a JSON summary: `passed` and the words that say what failed."""

    passed: bool
    words: str
    series: int
    devices: int

    @property
    def state(self) -> str:
        """The commit-status state and the check-run conclusion."""
        return "success" if self.passed else "failure"

    @property
    def description(self) -> str:
        text = f"{self.words}: {self.series} series on {self.devices} device{'s' if self.devices != 1 else ''}"
        return text if len(text) <= MAX_STATUS_DESCRIPTION else text[: MAX_STATUS_DESCRIPTION - 1] + "…"


def gate_from_summary(path: Path) -> Gate:
    """The verdict in a JSON summary written by `trtci run --json` or `trtci merge --json`. Raises DataError
    naming the file when it is not one."""
    try:
        if Path(path).stat().st_size > MAX_SUMMARY_BYTES:
            raise DataError(f"{path}: larger than a trtci JSON summary can be ({MAX_SUMMARY_BYTES} bytes)")
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the JSON summary ({e}); pass the file `trtci run --json` wrote") from e
    counts = data.get("counts") if isinstance(data, dict) else None
    names = [f.name for f in fields(RunVerdict) if f.name != "passed"]
    if (
        not isinstance(counts, dict)
        or not isinstance(data.get("passed"), bool)
        or not all(isinstance(counts.get(n), int) and not isinstance(counts.get(n), bool) for n in names)
    ):
        raise DataError(f"{path}: not a trtci JSON summary (needs `passed` and integer `counts`)")
    verdict = RunVerdict(passed=data["passed"], **{n: counts[n] for n in names})
    return Gate(verdict.passed, verdict.words, verdict.series, verdict.devices)


def check_sha(sha: str) -> str:
    """`sha` when it is a full commit SHA, else ConfigError."""
    if not _SHA.match(sha or ""):
        raise ConfigError(f"commit {sha!r} is not a full commit SHA: pass --sha or run in a pull_request event")
    return sha


def post_status(
    client: GitHubClient, repo: str, sha: str, gate: Gate, *, context: str = STATUS_CONTEXT, target_url: str | None
) -> dict[str, Any]:
    """Create a commit status on `sha` with the gate's state and words."""
    body: dict[str, Any] = {"state": gate.state, "description": gate.description, "context": context}
    if target_url:
        body["target_url"] = target_url
    # Setting a status replaces the one of the same context: safe to repeat after a 502 or a lost answer.
    return client.post(f"/repos/{repo}/statuses/{check_sha(sha)}", body, idempotent=True)


def post_check_run(
    client: GitHubClient,
    repo: str,
    sha: str,
    gate: Gate,
    report: str,
    *,
    name: str = STATUS_CONTEXT,
    details_url: str | None,
) -> dict[str, Any]:
    """Create a completed check run on `sha`: conclusion from the gate, the report as its summary."""
    summary, _ = truncate(report, MAX_CHECK_TEXT - 1_000, details_url)
    body: dict[str, Any] = {
        "name": name,
        "head_sha": check_sha(sha),
        "status": "completed",
        "conclusion": gate.state,
        "output": {"title": f"trtci: {gate.words}"[:MAX_STATUS_DESCRIPTION], "summary": summary},
    }
    if details_url:
        body["details_url"] = details_url
    return client.post(f"/repos/{repo}/check-runs", body)

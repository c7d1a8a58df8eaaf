"""The merge gate on the commit itself: a commit status (`statuses: write`) and/or a check run (`checks: write`).

Both carry the verdict the run already made, read from its JSON summary (docs/json-summary.md) into the gate's
own verdict object (trtci.verdict.gate); nothing is recomputed. The reporting job's exit code stays the simplest
required check; these add the verdict where branch protection or a reader looks for it on the pull request's
head commit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from trtci.errors import ConfigError, DataError
from trtci.github.api import GitHubClient
from trtci.github.comment import truncate
from trtci.verdict.gate import COUNTS, RunVerdict

STATUS_CONTEXT = "trtci"
MAX_STATUS_DESCRIPTION = 140  # GitHub refuses longer commit-status descriptions
MAX_CHECK_TEXT = 65_535  # check-run output.summary and output.text limit
MAX_JSON_SUMMARY_BYTES = 16 * 1024 * 1024
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def status_state(verdict: RunVerdict) -> str:
    """The commit-status state and the check-run conclusion."""
    return "success" if verdict else "failure"


def status_description(verdict: RunVerdict) -> str:
    """The commit status's one line: the verdict's words and what was measured, cut to GitHub's limit."""
    devices = f"{verdict.devices} device{'s' if verdict.devices != 1 else ''}"
    text = f"{verdict.words}: {verdict.series} series on {devices}"
    return text if len(text) <= MAX_STATUS_DESCRIPTION else text[: MAX_STATUS_DESCRIPTION - 1] + "…"


def verdict_from_json_summary(path: Path) -> RunVerdict:
    """The verdict in a JSON summary written by `trtci run --json` or `trtci merge --json`. Raises DataError
    naming the file when it is not one."""
    try:
        if Path(path).stat().st_size > MAX_JSON_SUMMARY_BYTES:
            raise DataError(f"{path}: larger than a trtci JSON summary can be ({MAX_JSON_SUMMARY_BYTES} bytes)")
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the JSON summary ({e}); pass the file `trtci run --json` wrote") from e
    counts = data.get("counts") if isinstance(data, dict) else None
    if (
        not isinstance(counts, dict)
        or not isinstance(data.get("passed"), bool)
        or not all(isinstance(counts.get(n), int) and not isinstance(counts.get(n), bool) for n in COUNTS)
    ):
        raise DataError(f"{path}: not a trtci JSON summary (needs `passed` and integer `counts`)")
    return RunVerdict(passed=data["passed"], **{n: counts[n] for n in COUNTS})


def check_sha(sha: str) -> str:
    """`sha` when it is a full commit SHA, else ConfigError."""
    if not _SHA.match(sha or ""):
        raise ConfigError(f"commit {sha!r} is not a full commit SHA: pass --sha or run in a pull_request event")
    return sha


def post_status(
    client: GitHubClient,
    repo: str,
    sha: str,
    verdict: RunVerdict,
    *,
    context: str = STATUS_CONTEXT,
    target_url: str | None,
) -> dict[str, Any]:
    """Create a commit status on `sha` with the verdict's state and words."""
    body: dict[str, Any] = {
        "state": status_state(verdict),
        "description": status_description(verdict),
        "context": context,
    }
    if target_url:
        body["target_url"] = target_url
    # Setting a status replaces the one of the same context: safe to repeat after a 502 or a lost answer.
    return client.post(f"/repos/{repo}/statuses/{check_sha(sha)}", body, idempotent=True)


def post_check_run(
    client: GitHubClient,
    repo: str,
    sha: str,
    verdict: RunVerdict,
    report: str,
    *,
    name: str = STATUS_CONTEXT,
    details_url: str | None,
) -> dict[str, Any]:
    """Create a completed check run on `sha`: conclusion from the verdict, the report as its output text."""
    text, _ = truncate(report, MAX_CHECK_TEXT - 1_000, details_url)
    body: dict[str, Any] = {
        "name": name,
        "head_sha": check_sha(sha),
        "status": "completed",
        "conclusion": status_state(verdict),
        "output": {"title": f"trtci: {verdict.words}"[:MAX_STATUS_DESCRIPTION], "summary": text},
    }
    if details_url:
        body["details_url"] = details_url
    return client.post(f"/repos/{repo}/check-runs", body)

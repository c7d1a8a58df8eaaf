"""The base branch's latest results, fetched from its newest results artifact through the REST API.

`fetch_baseline` lists the repository's artifacts of one name (`GET /repos/{o}/{r}/actions/artifacts?name=`),
picks the newest one that has not expired and was made by a workflow run on the branch in the repository
itself (a fork's pull request may push a branch of the same name), downloads its zip (GitHub answers with a
redirect to blob storage; requests drops the token when the host changes) and extracts only run files.

The archive is untrusted: its size is capped before and after the download, members are never written under
their own paths (each is flattened to a plain run-file name, so no path can escape the directory), symlinks
and oversized members are skipped, and each extracted file must read back as a trtci run file.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtci.errors import DataError
from trtci.github.api import GitHubClient, GitHubError, json_of
from trtci.store.runfile import MAX_BYTES, SUFFIX, read_runfile

MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 10_000
MAX_PAGES = 10  # artifacts are listed newest first; 1,000 of one name is far beyond any retention window
_RUNFILE_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]*" + re.escape(SUFFIX) + "$")
_SYMLINK = 0o120000


@dataclass(frozen=True)
class Artifact:
    """An artifact as the listing describes it."""

    id: int
    name: str
    size_in_bytes: int
    created_at: str
    expired: bool
    head_branch: str | None
    head_sha: str | None
    workflow_run_id: int | None
    same_repository: bool  # the run's head repository is the repository itself, not a fork


@dataclass
class Fetched:
    """What `fetch_baseline` did: the artifact it took (None when none matched) and the files it wrote."""

    artifact: Artifact | None
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # archive members not extracted, with why


def parse_artifact(data: Any) -> Artifact:
    """An Artifact from one item of GitHub's listing; GitHubError when the item is not of the documented shape."""
    run = data.get("workflow_run") if isinstance(data, dict) else None
    run = run if isinstance(run, dict) else {}
    if not isinstance(data, dict) or not all(_is_int(data.get(key)) for key in ("id", "size_in_bytes")):
        raise GitHubError("GitHub listed an artifact without an integer id and size: not the documented shape")
    repository_id, head_repository_id = run.get("repository_id"), run.get("head_repository_id")
    return Artifact(
        id=data["id"],
        name=str(data.get("name")),
        size_in_bytes=data["size_in_bytes"],
        created_at=data["created_at"] if isinstance(data.get("created_at"), str) else "",
        expired=data.get("expired") is not False,  # only an explicit false is usable
        head_branch=_str_or_none(run.get("head_branch")),
        head_sha=_str_or_none(run.get("head_sha")),
        workflow_run_id=run["id"] if _is_int(run.get("id")) else None,
        same_repository=_is_int(repository_id) and repository_id == head_repository_id,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def list_artifacts(client: GitHubClient, repo: str, name: str) -> list[Artifact]:
    """The repository's artifacts called `name`, as GitHub lists them (newest first), up to MAX_PAGES pages."""
    found: list[Artifact] = []
    path = f"/repos/{repo}/actions/artifacts"
    response = client.request("GET", path, params={"name": name, "per_page": 100})
    for _ in range(MAX_PAGES):
        page = json_of(response, "GET", path)
        if not isinstance(page, dict) or not isinstance(page.get("artifacts"), list):
            raise GitHubError(f"GitHub answered the artifact listing of {repo} with something else than a list")
        found.extend(parse_artifact(item) for item in page["artifacts"])
        next_url = client.next_page(response)
        if not next_url:
            break
        response = client.request("GET", next_url)
    return found


def newest_for_branch(artifacts: list[Artifact], branch: str) -> Artifact | None:
    """The newest unexpired artifact made on `branch` of the repository itself (never a fork's branch)."""
    usable = [a for a in artifacts if not a.expired and a.head_branch == branch and a.same_repository]
    return max(usable, key=lambda a: (a.created_at, a.id), default=None)


def download(client: GitHubClient, repo: str, artifact: Artifact) -> bytes:
    """The artifact's zip archive. Raises DataError when it is larger than MAX_ARCHIVE_BYTES."""
    if artifact.size_in_bytes > MAX_ARCHIVE_BYTES:
        raise DataError(_too_large(artifact, artifact.size_in_bytes))
    content = client.request("GET", f"/repos/{repo}/actions/artifacts/{artifact.id}/zip").content
    if len(content) > MAX_ARCHIVE_BYTES:
        raise DataError(_too_large(artifact, len(content)))
    return content


def extract_runfiles(archive: bytes, directory: Path) -> tuple[list[Path], list[str]]:
    """Write the archive's valid run files flat into `directory`; returns (files written, members skipped with
    why). Only the base name of a member is used, and only when it is a plain run-file name."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as e:
        raise DataError(f"the downloaded artifact is not a zip archive ({e})") from e
    directory.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise DataError(f"the artifact holds {len(members)} files, more than the {MAX_MEMBERS} trtci reads")
        for info in members:
            base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if info.is_dir() or not base.endswith(SUFFIX):
                continue
            why = _refuse(info, base)
            if why:
                skipped.append(f"{info.filename}: {why}")
                continue
            with zf.open(info) as stream:
                data = stream.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                skipped.append(f"{info.filename}: larger than {MAX_BYTES} bytes")
                continue
            target = directory / base
            target.unlink(missing_ok=True)  # never write through a link left in the directory
            target.write_bytes(data)
            try:
                read_runfile(target)
            except DataError as e:
                target.unlink()
                skipped.append(f"{info.filename}: {e}")
                continue
            written.append(target)
    return written, skipped


def fetch_baseline(client: GitHubClient, repo: str, branch: str, name: str, directory: Path) -> Fetched:
    """Download the newest `name` artifact of `branch` and extract its run files into `directory`."""
    artifact = newest_for_branch(list_artifacts(client, repo, name), branch)
    if artifact is None:
        return Fetched(None)
    files, skipped = extract_runfiles(download(client, repo, artifact), directory)
    return Fetched(artifact, files, skipped)


def _refuse(info: zipfile.ZipInfo, base: str) -> str:
    if not _RUNFILE_NAME.match(base):
        return "not a plain run-file name"
    if (info.external_attr >> 16) & 0o170000 == _SYMLINK:
        return "a symbolic link"
    if info.file_size > MAX_BYTES:
        return f"larger than {MAX_BYTES} bytes"
    return ""


def _too_large(artifact: Artifact, size: int) -> str:
    return (
        f"artifact {artifact.name} ({artifact.id}) is {size} bytes, more than the {MAX_ARCHIVE_BYTES} trtci "
        "downloads: upload only the run files"
    )

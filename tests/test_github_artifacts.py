"""`trtci baseline fetch`: the base branch's newest results artifact, listed and downloaded through the local
GitHub double (validated against github.com's and GHES's API descriptions), extracted safely."""

from __future__ import annotations

import io
import zipfile

import click
from click.testing import CliRunner
from github_server import github_fixture  # noqa: F401  (the `github` fixture)

from tests.sample_runs import passing_run
from trtci.cli.github import register
from trtci.github.api import GitHubClient
from trtci.github.artifacts import extract_runfiles, fetch_baseline
from trtci.store.runfile import file_name, read_runfile, write_runfile

REPO = "octo-org/hello"


def zip_of(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, data)
    return buffer.getvalue()


def runfile_bytes(tmp_path, run_id: str) -> tuple[str, bytes]:
    run = passing_run()
    run.context.run_id = run_id
    path = write_runfile(run, tmp_path / run_id)
    return file_name(run), path.read_bytes()


def test_fetches_the_newest_artifact_of_the_branch_and_never_a_forks(github, tmp_path):
    old_name, old = runfile_bytes(tmp_path, "old-main")
    new_name, new = runfile_bytes(tmp_path, "new-main")
    fork_name, fork = runfile_bytes(tmp_path, "fork-main")
    github.add_artifact("trtci-results", zip_of({old_name: old}), created_at="2025-01-01T00:00:00Z")
    github.add_artifact("trtci-results", zip_of({new_name: new}), created_at="2025-02-01T00:00:00Z")
    github.add_artifact("trtci-results", zip_of({fork_name: fork}), created_at="2025-03-01T00:00:00Z", fork=True)
    github.add_artifact("trtci-results", zip_of({fork_name: fork}), created_at="2025-04-01T00:00:00Z", expired=True)
    github.add_artifact("trtci-results", zip_of({fork_name: fork}), created_at="2025-05-01T00:00:00Z", branch="dev")
    github.add_artifact("other", zip_of({fork_name: fork}), created_at="2025-06-01T00:00:00Z")
    client = GitHubClient(github.token, github.url)
    fetched = fetch_baseline(client, REPO, "main", "trtci-results", tmp_path / "baseline")
    assert [p.name for p in fetched.files] == [new_name]
    assert read_runfile(fetched.files[0]).context.run_id == "new-main"
    listing = github.requests("GET")[0]
    assert listing.path.endswith(f"/repos/{REPO}/actions/artifacts") and listing.query["name"] == "trtci-results"
    blob = next(s for s in github.seen if s.path.startswith("/_blobs/"))
    assert "Authorization" not in blob.headers  # the redirect to blob storage drops the token


def test_archive_members_cannot_escape_or_smuggle(tmp_path):
    name, good = runfile_bytes(tmp_path, "good")
    archive = zip_of(
        {
            f"../../{name}": good,
            "/etc/evil.trtci.json.gz": good,
            "link.trtci.json.gz": b"/etc/passwd",
            "bad.trtci.json.gz": b"not gzip",
            "notes.txt": b"ignored",
        },
        symlinks=("link.trtci.json.gz",),
    )
    out = tmp_path / "out"
    files, skipped = extract_runfiles(archive, out)
    # Flattened: members land inside `out` under their base names, never at ../../ or /etc.
    assert sorted(files) == sorted([out / name, out / "evil.trtci.json.gz"])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in files)
    assert any("link.trtci.json.gz: a symbolic link" in s for s in skipped)
    assert any("bad.trtci.json.gz" in s and "cannot read" in s for s in skipped)
    assert not (tmp_path.parent / name).exists() and not (tmp_path.parent.parent / name).exists()


def test_cli_fetch_then_merge_loads_the_baseline(github, tmp_path):
    name, data = runfile_bytes(tmp_path, "base-run")
    github.add_artifact("trtci-results", zip_of({f"cpu/{name}": data}))
    group = click.Group("trtci")
    register(group)
    env = {"GITHUB_TOKEN": github.token, "GITHUB_API_URL": github.url, "GITHUB_ACTIONS": ""}
    out = tmp_path / "baseline"
    result = CliRunner().invoke(
        group, ["baseline", "fetch", "--repo", REPO, "--branch", "main", "--out", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "baseline: 1 run files" in result.output
    db = tmp_path / "results.db"
    merged = CliRunner().invoke(group, ["merge", str(out), "--db", str(db), "--fail-on", "none"], env=env)
    assert merged.exit_code == 0, merged.output
    assert "1 recorded" in merged.output


def test_no_artifact_for_the_branch_is_a_notice(github, tmp_path):
    group = click.Group("trtci")
    register(group)
    env = {"GITHUB_TOKEN": github.token, "GITHUB_API_URL": github.url, "GITHUB_ACTIONS": ""}
    result = CliRunner().invoke(
        group, ["baseline", "fetch", "--repo", REPO, "--branch", "main", "--out", str(tmp_path / "b")], env=env
    )
    assert result.exit_code == 0 and "no unexpired trtci-results artifact from branch main" in result.output

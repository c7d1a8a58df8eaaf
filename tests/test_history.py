from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from tests.git_repos import clone, data_files, git
from tests.recorded_runs import bench, full_run, key, make_run, run_file
from trtci.context.git import GitError
from trtci.errors import DataError, PublishError
from trtci.results import SeriesResult
from trtci.store.database import Store
from trtci.store.git_history import branch_path, pull_runs, push_from_store, push_run
from trtci.store.runfile import FORMAT, run_to_dict, write_runfile

ROOT = Path(__file__).resolve().parent.parent












def test_first_push_creates_the_data_branch_without_touching_the_checkout(origin, tmp_path):
    work = clone(origin, tmp_path / "work")
    (work / "local.txt").write_text("uncommitted\n")
    before = (git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain"), git(work, "branch", "--list"))
    result = push_run(work, run_file(tmp_path, "r1"))
    assert data_files(origin) == [result.path] and result.path.startswith("runs/2026-11/")
    assert git(origin, "rev-list", "--count", "trtci-data") == "1"  # an orphan branch: no project history
    assert (git(work, "rev-parse", "HEAD"), git(work, "status", "--porcelain"), git(work, "branch", "--list")) == before
    assert result.attempts == 1


def test_a_rejected_push_is_retried_on_the_new_tip(origin, tmp_path):
    first, second = clone(origin, tmp_path / "a"), clone(origin, tmp_path / "b")
    push_run(first, run_file(tmp_path, "r0"))
    # Between A's fetch and A's push, B pushes: the server refuses A's push, for real.
    race_on_the_server(first, second, tmp_path)
    slept: list[float] = []
    result = push_run(first, run_file(tmp_path, "r1"), backoff_s=0.01, sleep=slept.append)
    assert result.attempts == 2 and slept == [0.01]
    assert len(data_files(origin)) == 3


def test_concurrent_pushes_from_two_clones_all_land(origin, tmp_path):
    clones = [clone(origin, tmp_path / f"c{i}") for i in range(2)]
    files = [[run_file(tmp_path, f"c{i}r{j}", day=j + 1) for j in range(3)] for i in range(2)]
    errors: list[BaseException] = []

    def push_all(repo: Path, paths: list[Path]) -> None:
        try:
            for path in paths:
                push_run(repo, path, backoff_s=0.01)
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=push_all, args=(c, f)) for c, f in zip(clones, files)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(data_files(origin)) == 6


def racer(other: Path, tmp_path: Path, *, once: bool, then: str = "") -> str:
    """A Python script that first pushes a new run from the clone `other` (once, or every time it runs), then
    runs `then` (an exec of a program, with the script's arguments). Installed in a clone to race its pushes."""
    marker = tmp_path / "raced"
    return (
        f"#!{sys.executable}\n"
        "import os, sys, uuid\n"
        "from pathlib import Path\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        f"marker = Path({str(marker)!r})\n"
        f"if not ({once!r} and marker.exists()):\n"
        "    marker.touch()\n"
        "    from tests.recorded_runs import run_file\n"
        "    from trtci.store.git_history import push_run\n"
        f"    scratch = Path({str(tmp_path)!r}) / uuid.uuid4().hex\n"
        f"    push_run(Path({str(other)!r}), run_file(scratch, uuid.uuid4().hex[:8], day=2))\n"
        f"{then}\n"
    )


def race_on_the_server(clone_dir: Path, other: Path, tmp_path: Path) -> None:
    """Between the server's ref advertisement and its update another push lands: a pre-push hook runs then."""
    hook = clone_dir / ".git" / "hooks" / "pre-push"
    hook.write_text(racer(other, tmp_path, once=True))
    hook.chmod(0o755)


def race_before_every_push(clone_dir: Path, other: Path, tmp_path: Path) -> None:
    """Another push lands before the server advertises its refs, every time: git itself refuses to push over a
    tip it does not have ("fetch first"). The remote's receive-pack is wrapped to push first."""
    wrapper = tmp_path / "receive-pack"
    wrapper.write_text(
        racer(other, tmp_path, once=False, then='os.execvp("git-receive-pack", ["git-receive-pack", *sys.argv[1:]])')
    )
    wrapper.chmod(0o755)
    git(clone_dir, "config", "remote.origin.receivepack", str(wrapper))


def test_a_push_rejected_every_time_gives_up_after_the_attempts_and_keeps_the_run_file(origin, tmp_path):
    first, second = clone(origin, tmp_path / "a"), clone(origin, tmp_path / "b")
    push_run(first, run_file(tmp_path, "r0"))
    race_before_every_push(first, second, tmp_path)
    path = run_file(tmp_path, "r1")
    slept: list[float] = []
    with pytest.raises(PublishError, match=f"rejected 3 times.*kept in {path}") as info:
        push_run(first, path, attempts=3, backoff_s=1.0, sleep=slept.append)
    assert info.value.exit_code == 5 and "[rejected] (fetch first)" in str(info.value)
    assert path.is_file() and slept == [1.0, 2.0]


def test_a_push_the_server_declines_fails_at_once_with_gits_message(origin, tmp_path):
    work = clone(origin, tmp_path / "work")
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    path = run_file(tmp_path, "r1")
    slept: list[float] = []
    with pytest.raises(PublishError, match=f"pre-receive hook declined.*kept in {path}") as info:
        push_run(work, path, attempts=3, backoff_s=1.0, sleep=slept.append)
    assert info.value.exit_code == 5
    assert path.is_file() and slept == []


def test_an_unreachable_remote_fails_at_once_with_gits_message(origin, tmp_path):
    work = clone(origin, tmp_path / "work")
    git(work, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    path = run_file(tmp_path, "r1")
    slept: list[float] = []
    with pytest.raises(PublishError, match="does not appear to be a git repository") as info:
        push_run(work, path, attempts=3, sleep=slept.append)
    assert "\n" not in str(info.value) and f"kept in {path}" in str(info.value)
    assert slept == []


def test_a_remote_url_with_a_token_is_never_in_the_message(origin, tmp_path):
    work = clone(origin, tmp_path / "work")
    remote = "https://x-access-token:ghs_s3cr3t@127.0.0.1:1/o/r.git"  # port 1: refused at once, no network
    with pytest.raises(PublishError, match=r"could not push to https://\*\*\*@127\.0\.0\.1:1/o/r\.git") as info:
        push_run(work, run_file(tmp_path, "r1"), remote=remote, attempts=1)
    assert "ghs_s3cr3t" not in str(info.value)


def test_push_from_store_keeps_its_scratch_file_in_the_git_dir_not_the_checkout(origin, tmp_path, monkeypatch):
    work = clone(origin, tmp_path / "work")
    monkeypatch.chdir(work)  # the CLI's default --repo-dir is the current directory
    with Store(tmp_path / "ci.db") as store:
        store.record_run(full_run("r1"))
        store.record_run(full_run("r2"))
        push_from_store(work, store, "r1")
        assert git(work, "status", "--porcelain", "--ignored") == ""
        scratch = work / ".git" / "trtci-history"
        assert list(scratch.iterdir()) == []  # removed once pushed
        hook = origin / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\nexit 1\n")
        hook.chmod(0o755)
        with pytest.raises(PublishError) as info:
            push_from_store(work, store, "r2")
    kept = list(scratch.iterdir())
    assert len(kept) == 1 and str(kept[0]) in str(info.value)
    assert git(work, "status", "--porcelain", "--ignored") == ""


def test_pull_imports_each_run_once_into_a_new_database(origin, tmp_path):
    work = clone(origin, tmp_path / "work")
    with Store(tmp_path / "ci.db") as store:
        store.record_run(full_run("r1"))
        push_from_store(work, store, "latest", tmp_path / "kept")
    push_run(work, run_file(tmp_path, "r2", day=2))
    other = clone(origin, tmp_path / "other")
    with Store(tmp_path / "rebuilt.db") as store:
        first = pull_runs(other, store)
        again = pull_runs(other, store)
        assert sorted(first.imported) == ["r1", "r2"] and (again.imported, again.known) == ([], 2)
        assert len(store.load_run("r1").series) == len(full_run().series)
    assert list((tmp_path / "kept").iterdir()) == []  # a pushed run file is not kept


def test_pull_skips_and_names_a_run_the_database_refuses_and_imports_the_rest(origin, tmp_path):
    work = clone(origin, tmp_path / "work")
    push_run(work, run_file(tmp_path, "r1"))
    series = SeriesResult(key=key(), bench=bench(1.0))
    twice = make_run("r2", [series, series], started_at="2026-11-02T08:00:00Z")  # one series twice
    push_run(work, write_runfile(twice, tmp_path / "twice"))
    push_run(work, run_file(tmp_path, "r3", day=3))
    with Store(tmp_path / "ci.db") as store:
        result = pull_runs(clone(origin, tmp_path / "other"), store)
        assert sorted(result.imported) == ["r1", "r3"] and not store.has_run("r2")
    assert len(result.refused) == 1 and "r2" in result.refused[0] and "cannot record run" in result.refused[0]


def test_pull_of_a_missing_branch_imports_nothing(origin, tmp_path):
    with Store(tmp_path / "ci.db") as store:
        result = pull_runs(clone(origin, tmp_path / "work"), store)
        assert (result.imported, result.known, result.refused) == ([], 0, [])


def test_pull_refuses_a_run_file_from_a_newer_trtci_and_imports_the_rest(origin, tmp_path):
    import gzip
    import json

    work = clone(origin, tmp_path / "work")
    push_run(work, run_file(tmp_path, "r1"))
    newer = run_to_dict(make_run("r9", []))
    newer["format"], newer["trtci_version"] = FORMAT + 1, "9.0.0"
    path = tmp_path / "newer" / "20261102T080000Z-r9.trtci.json.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(json.dumps(newer).encode()))
    with pytest.raises(DataError, match="9.0.0"):  # push reads the file it sends
        push_run(work, path)
    # Another tool (an older trtci would not) committed it anyway: pull refuses it with the version.
    blob = git(work, "hash-object", "-w", str(path))
    git(work, "fetch", "-q", "origin", "trtci-data")
    git(work, "read-tree", "FETCH_HEAD")
    git(work, "update-index", "--add", "--cacheinfo", f"100644,{blob},runs/2026-11/{path.name}")
    tree = git(work, "write-tree")
    commit = git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", tree, "-p", "FETCH_HEAD", "-m", "x")
    git(work, "push", "-q", "origin", f"{commit}:refs/heads/trtci-data")
    with Store(tmp_path / "ci.db") as store:
        result = pull_runs(clone(origin, tmp_path / "other"), store)
        assert result.imported == ["r1"]
        assert len(result.refused) == 1 and "9.0.0" in result.refused[0] and "upgrade trtci" in result.refused[0]


def test_not_a_repository(tmp_path):
    with pytest.raises(GitError, match="not a git repository"):
        push_run(tmp_path, run_file(tmp_path, "r1"))


def test_branch_path_groups_by_month():
    assert branch_path(make_run("r1", [], started_at="2026-03-04T00:00:00Z"), "x.gz") == "runs/2026-03/x.gz"


def commit_raw(work: Path, name: str, payload: bytes) -> None:
    """Commit a file to the data branch as another tool (or an attacker with push access) could: unchecked."""
    import gzip

    path = work.parent / name
    path.write_bytes(gzip.compress(payload))
    blob = git(work, "hash-object", "-w", str(path))
    git(work, "fetch", "-q", "origin", "trtci-data")
    git(work, "read-tree", "FETCH_HEAD")
    git(work, "update-index", "--add", "--cacheinfo", f"100644,{blob},runs/2026-11/{name}")
    tree = git(work, "write-tree")
    commit = git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", tree, "-p", "FETCH_HEAD", "-m", "x")
    git(work, "push", "-q", "origin", f"{commit}:refs/heads/trtci-data")


def test_pull_judges_each_hostile_file_alone(origin, tmp_path):
    import json

    from click.testing import CliRunner

    from trtci.cli.history import history

    work = clone(origin, tmp_path / "work")
    push_run(work, run_file(tmp_path, "r1"))
    push_run(work, run_file(tmp_path, "r3", day=3))
    commit_raw(work, "20261102T000000Z-deep.trtci.json.gz", b"[" * 200_000 + b"]" * 200_000)
    huge = run_to_dict(make_run("huge", [SeriesResult(key=key(), bench=bench(1.0))]))
    huge["run"]["series"][0]["bench"]["stats"]["iterations"] = 2**64
    commit_raw(work, "20261102T000001Z-huge.trtci.json.gz", json.dumps(huge).encode())
    db = tmp_path / "ci.db"
    result = CliRunner().invoke(history, ["pull", "--db", str(db), "--repo-dir", str(clone(origin, tmp_path / "o"))])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "imported 2 runs" in result.output
    refused = [line for line in result.output.splitlines() if line.startswith("refused:")]
    assert len(refused) == 2
    assert "trtci-data:runs/2026-11/20261102T000000Z-deep.trtci.json.gz" in refused[0] and "nested deeper" in refused[0]
    assert "-huge.trtci.json.gz" in refused[1] and "beyond 64 bits" in refused[1]
    with Store(db) as store:
        assert {run["id"] for run in store.runs()} == {"r1", "r3"}


def test_pull_stops_at_a_lock_held_too_long_and_a_later_pull_finishes(origin, tmp_path):
    from tests.locks import lock_held
    from trtci.store.connection import DatabaseLocked

    work = clone(origin, tmp_path / "work")
    push_run(work, run_file(tmp_path, "r1"))
    push_run(work, run_file(tmp_path, "r2", day=2))
    db = tmp_path / "ci.db"
    Store(db).close()
    other = clone(origin, tmp_path / "other")
    with Store(db, timeout_s=0.2) as store, lock_held(db):
        with pytest.raises(DatabaseLocked):
            pull_runs(other, store)
    with Store(db) as store:
        assert sorted(pull_runs(other, store).imported) == ["r1", "r2"]


@pytest.mark.slow
def test_pull_refuses_by_name_what_is_not_a_run_file_and_reads_no_huge_blob(origin, tmp_path):
    from trtci.store.runfile import MAX_BYTES

    work = clone(origin, tmp_path / "work")
    push_run(work, run_file(tmp_path, "r1"))
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as out:
        out.truncate(MAX_BYTES + 1)
    entries = [
        ("100644", git(work, "hash-object", "-w", str(huge)), "runs/2026-11/20261102T000000Z-huge.trtci.json.gz"),
        (
            "120000",
            git(work, "hash-object", "-w", "--stdin", input_text="/etc/passwd"),
            "runs/2026-11/20261103T000000Z-link.trtci.json.gz",
        ),  # fmt: skip
        (
            "100644",
            git(work, "hash-object", "-w", str(run_file(tmp_path, "r4", day=4))),
            "runs/2026-11/20261104T000000Z-r4\nx.trtci.json.gz",
        ),  # fmt: skip
    ]
    git(work, "fetch", "-q", "origin", "trtci-data")
    git(work, "read-tree", "FETCH_HEAD")
    for mode, blob, path in entries:
        git(work, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}")
    tree = git(work, "write-tree")
    commit = git(work, "-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", tree, "-p", "FETCH_HEAD", "-m", "x")
    git(work, "push", "-q", "origin", f"{commit}:refs/heads/trtci-data")
    with Store(tmp_path / "ci.db") as store:
        result = pull_runs(clone(origin, tmp_path / "other"), store)
    assert sorted(result.imported) == ["r1", "r4"]
    assert len(result.refused) == 2 and all("\n" not in line for line in result.refused)
    assert "-huge.trtci.json.gz" in result.refused[0] and "larger than a trtci run file" in result.refused[0]
    assert "-link.trtci.json.gz: not a file" in result.refused[1]

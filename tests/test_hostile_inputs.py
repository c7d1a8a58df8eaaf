"""Property-based tests for what reads untrusted input in the store's area: run files (`trtci merge --db`, `trtci
db import`) and pytest-benchmark files (`trtci ingest pytest-benchmark`). A valid file with any part replaced by
arbitrary JSON, or its bytes cut or flipped, must end with exit 0, 1 or 2: never a traceback, never a hang, the
error on one line, and an existing database not changed by a byte when the file is refused."""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tests.recorded_runs import full_run
from trtci.store.database import Store
from trtci.store.runfile import run_to_dict

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DATA = Path(__file__).parent / "data" / "pytest-benchmark"
SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Any JSON value: what a tampered file can hold where a field was. Numbers reach past 64 bits and float range.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@st.composite
def tampered(draw, originals: list[Any], starts: tuple[tuple, ...] = ((),)) -> Any:
    """One of `originals` with one to three of its values replaced by arbitrary JSON, or removed. Each value is
    found by a random walk down from one of `starts` (paths into the data; each level as likely as the next, so a
    list of 10,000 samples does not drown the few fields beside it)."""
    data = copy.deepcopy(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 3))):
        parent, step = None, None
        node = data
        for key in draw(st.sampled_from(starts)):
            if not isinstance(node, (dict, list)) or (isinstance(node, dict) and key not in node):
                break
            if isinstance(node, list) and not (isinstance(key, int) and key < len(node)):
                break
            parent, step, node = node, key, node[key]
        while isinstance(node, (dict, list)) and node and (parent is None or draw(st.integers(0, 2)) > 0):
            keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
            parent, step = node, draw(st.sampled_from(keys))
            node = node[step]
        if parent is None:
            return draw(JSON_VALUES)
        if isinstance(parent, dict) and draw(st.integers(0, 3)) == 0:
            del parent[step]
        else:
            parent[step] = draw(JSON_VALUES)
    return data


def cli() -> click.Group:
    from trtci.cli.github import register as register_github
    from trtci.cli.history import register as register_history
    from trtci.cli.stats import register as register_stats

    group = click.Group("trtci")
    for register in (register_github, register_history, register_stats):
        register(group)
    return group


def check_ending(result, database: Path, before: bytes, *, plain: bool = True) -> None:
    """Exit 0, 1 or 2; no traceback; one error line; a refused file leaves the database's bytes as they were.
    `plain`: the command prints nothing else on stderr but one line per refused file."""
    assert result.exit_code in (0, 1, 2), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("trtci: error:")]
    assert len(errors) <= 1, result.stderr
    if plain:
        assert all(line.startswith(("trtci: error: ", "refused: ")) for line in result.stderr.splitlines()), (
            result.stderr
        )
    if result.exit_code == 2:
        assert len(errors) == 1 or any(line.startswith("error: could not merge") for line in result.output.splitlines())
        assert database.read_bytes() == before


@pytest.fixture(scope="module")
def existing_db(tmp_path_factory) -> Path:
    """A database holding one run: what every example starts from."""
    path = tmp_path_factory.mktemp("db") / "base.db"
    with Store(path) as store:
        store.record_run(full_run("existing-run"))
    return path


def fresh_copy(existing_db: Path, where: Path) -> tuple[Path, bytes]:
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    database = where / "results.db"
    shutil.copy(existing_db, database)
    return database, database.read_bytes()


RUN_FILE = run_to_dict(full_run("leg-run"))
RUN_FILE_STARTS = ((), ("run",), ("run", "context"), ("run", "series", 0), ("run", "series", 0, "bench"),
                   ("run", "series", 0, "accuracy"), ("run", "devices", 0), ("run", "comparisons", 0))  # fmt: skip


@SETTINGS
@given(data=tampered([RUN_FILE], RUN_FILE_STARTS), command=st.sampled_from(["merge", "import"]))
def test_a_tampered_run_file_ends_with_a_documented_exit_code(tmp_path, existing_db, data, command):
    database, before = fresh_copy(existing_db, tmp_path / "case")
    path = tmp_path / "case" / "leg" / "20260101T000000Z-x.trtci.json.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(json.dumps(data, allow_nan=True).encode()))
    args = (
        ["merge", str(path.parent), "--db", str(database), "--fail-on", "none", "--json", str(path.parent / "s.json"),
         "--report", str(path.parent / "r.md")]
        if command == "merge"
        else ["db", "import", str(path), "--db", str(database)]
    )  # fmt: skip
    result = CliRunner().invoke(cli(), args, env={"GITHUB_ACTIONS": "", "TRTCI_DB_TIMEOUT": "5"})
    check_ending(result, database, before, plain=command == "import")


@SETTINGS
@given(cut=st.integers(0, 4000), flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=4))
def test_a_damaged_run_file_is_refused_by_name(tmp_path, existing_db, cut, flips):
    database, before = fresh_copy(existing_db, tmp_path / "case")
    raw = bytearray(gzip.compress(json.dumps(RUN_FILE).encode(), mtime=0))
    for at, mask in flips:
        raw[at % len(raw)] ^= mask
    path = tmp_path / "case" / "x.trtci.json.gz"
    path.write_bytes(bytes(raw[: max(1, len(raw) - cut)]) if cut else bytes(raw))
    result = CliRunner().invoke(cli(), ["db", "import", str(path), "--db", str(database)], env={"GITHUB_ACTIONS": ""})
    check_ending(result, database, before)
    if result.exit_code == 2:
        assert str(path) in result.stderr


PYTEST_BENCHMARK = [json.loads((DATA / name).read_text()) for name in ("v5-with-data.json", "v5-stats-only.json")]
PYTEST_BENCHMARK_STARTS = ((), ("benchmarks", 0), ("benchmarks", 0, "stats"), ("benchmarks", 1, "stats"))


@SETTINGS
@given(data=tampered(PYTEST_BENCHMARK, PYTEST_BENCHMARK_STARTS))
def test_a_tampered_pytest_benchmark_file_ends_with_a_documented_exit_code(tmp_path, existing_db, data):
    database, before = fresh_copy(existing_db, tmp_path / "case")
    path = tmp_path / "case" / "results.json"
    path.write_text(json.dumps(data, allow_nan=True))
    result = CliRunner().invoke(
        cli(), ["ingest", "pytest-benchmark", str(path), "--db", str(database)], env={"GITHUB_ACTIONS": ""}
    )
    check_ending(result, database, before)

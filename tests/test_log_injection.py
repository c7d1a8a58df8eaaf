"""No text from a run file, a model, an event or the API can start a workflow command in a GitHub Actions log.

The runner (actions/runner: ProcessInvoker, ActionCommandManager.TryProcessCommand) reads a step's stdout and
stderr line by line, a line ending at LF, CR or CRLF, and takes a line as a command when, its leading white space
trimmed, it starts with `::`, or when it holds `##[` anywhere. Its comparisons are .NET's culture-aware ones,
which may skip characters collation ignores. `reads_as_command` below models that, erring on the side of seeing a
command, and every test holds trtci's output to it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.log_lines import OWN_COMMAND, commands_in
from tests.models import mlp_classifier
from tests.sample_runs import passing_run
from trtci.github import actions
from trtci.store.runfile import write_runfile

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "A" * 76 + " ::stop-commands::x"










@pytest.mark.parametrize(
    "text",
    [
        "::stop-commands::x",
        "  ::add-mask::secret",
        "\t::error::fake",
        "\u3000::error::ideographic space",
        "\u2003\u00a0::notice::n",
        "\u200b::warning::zero-width space",
        "\x00::warning::nul",
        "\ufeff::warning::byte-order mark",
        "\u200b \u200b:\u200b:x",
        "ok\r::error::after a carriage return",
        "ok\r\n::error::after CRLF",
        "model ##[add-mask]secret",
        "#\u200b#[stop-commands]x",
        "\x1b::error::escape",
    ],
)
def test_plain_leaves_no_line_the_runner_reads_as_a_command(text):
    assert commands_in(text), "the case must be a command before plain()"
    assert commands_in(actions.plain(text)) == []


@pytest.mark.parametrize(
    "text",
    ["digits fp16 b8 onnxruntime", "a::b, c ## [d]", "│ ✓ 1.2 ms · Δ -0.2 pt │\n", "\x1b[31mred\x1b[0m", "é\tx"],
)
def test_plain_keeps_text_that_cannot_be_a_command(text):
    assert actions.plain(text) == text


def test_plain_marks_a_neutralised_command_visibly():
    assert actions.plain("  ::stop-commands::x") == "  \\::stop-commands::x"
    assert actions.plain("a ##[group]b") == "a ##\\[group]b"
    assert actions.plain("\u200b::x") == "\ufffd::x"
    # Line breaks the runner does not split at (a log viewer might) are replaced too: no line that looks apart.
    assert actions.plain("ok\x85::a\u2028::b\u2029::c\x0b::d") == "ok\ufffd::a\ufffd::b\ufffd::c\ufffd::d"


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=st.sampled_from([":", "#", "[", " ", "\u3000", "\u200b", "\r", "\n", "\x00", "a", "\x1b"])))
@example("##\x1b[")  # found by this test: an ESC kept for an ANSI colour, between "##" and "["
def test_no_line_of_plain_text_is_a_command(text):
    out = actions.plain(text)
    assert commands_in(out) == []
    assert actions.plain(out) == out  # once is enough: plain text stays as it is


@settings(deadline=None, max_examples=200)
@given(st.text(), st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_a_stream_judges_lines_as_the_runner_reads_them_however_they_are_written(text, cuts):
    raw = io.StringIO()
    stream = actions.CommandSafeStream(raw)
    pieces, last = [], 0
    for cut in sorted(c % (len(text) + 1) for c in cuts):
        pieces.append(text[last:cut])
        last = cut
    pieces.append(text[last:])
    for piece in pieces:
        stream.write(piece)
    stream.finish()
    assert raw.getvalue() == actions.plain(text)
    assert commands_in(raw.getvalue()) == []


def test_guarded_output_lets_only_print_command_start_a_command(capsys):
    with actions.guarded_output():
        print("a" * 10, end="")
        print(" ", end="")
        print(":", end="")
        sys.stdout.flush()  # a flush must not let the open line out half-judged
        print(":stop-commands::x")
        actions.print_command(actions.warning("::add-mask::inside a message is data", title="trtci"))
        print("##[add-mask]y", file=sys.stderr)
    out, err = capsys.readouterr()
    assert out == "aaaaaaaaaa ::stop-commands::x\n::warning title=trtci::::add-mask::inside a message is data\n"
    assert commands_in(out) == ["::warning title=trtci::::add-mask::inside a message is data"]
    assert err == "##\\[add-mask]y\n"
    with pytest.raises(ValueError, match="not one workflow command line"):
        with actions.guarded_output():
            actions.print_command("::error::a\n::add-mask::b")


def test_guarded_output_ends_an_open_line_before_a_command(capsys):
    with actions.guarded_output():
        print("  :", end="")
        actions.print_command("::notice::n")
        print(":x", end="")
    out, _ = capsys.readouterr()
    assert out == "  :\n::notice::n\n:x"


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed `trtci` as a workflow step runs it: a subprocess whose stdout and stderr are pipes."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "COLUMNS"))}
    return subprocess.run(
        [sys.executable, "-m", "trtci.cli", *args],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def actions_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        **extra,
    }


def hostile_runfile(directory: Path) -> Path:
    """A leg's run file as a fork's job could write it: names and warnings that wrap into commands."""
    run = passing_run()
    run.warnings += [HOSTILE, "B" * 130 + " ::add-mask::y", "W ##[stop-commands]z", "\u200b::error::zw"]
    series = run.series[0]
    run.series[0] = replace(series, key=replace(series.key, model="M" * 70 + " ::error title=x::fake"))
    return write_runfile(run, directory)


@pytest.mark.parametrize("columns", [None, "80", "20"])
def test_merge_of_a_hostile_run_file_prints_no_command_of_its_own(tmp_path, columns):
    hostile_runfile(tmp_path / "legs" / "pr")
    env = actions_env(tmp_path, **({"COLUMNS": columns} if columns else {}))
    done = cli("merge", "legs", "--expect", "pr,mi300", "--report", "r.md", "--fail-on", "none", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert all(OWN_COMMAND.match(line) for line in commands_in(output)), commands_in(output)
    assert "::warning title=trtci::missing legs: mi300" in output  # trtci's own warning still works
    assert "\\::" in output or "##\\[" in output  # the hostile text is shown, neutralised


def test_run_with_a_hostile_model_name_prints_no_command_of_its_own(tmp_path):
    mlp_classifier(tmp_path / "m.onnx")
    config = {"models": [{"path": "m.onnx", "name": HOSTILE, "precisions": ["fp32"]}], "summary_json": None}
    (tmp_path / "trtci.yml").write_text(json.dumps(config))
    done = cli("run", "--config", "trtci.yml", "--db", "r.db", "--duration", "0.02", "--warmup", "0", cwd=tmp_path,
               env=actions_env(tmp_path, COLUMNS="80"))  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    output = done.stdout + done.stderr
    assert "stop-commands" in output
    assert all(OWN_COMMAND.match(line) for line in commands_in(output)), commands_in(output)


@pytest.mark.parametrize("in_actions", [True, False])
def test_an_error_naming_hostile_input_is_one_line_that_is_no_command(tmp_path, in_actions):
    env = actions_env(tmp_path) if in_actions else {}
    done = cli("merge", "missing\n::stop-commands::x", cwd=tmp_path, env=env)
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert all(OWN_COMMAND.match(line) for line in commands_in(output)), commands_in(output)
    assert "Traceback" not in output

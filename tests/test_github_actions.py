"""The runner protocols: GITHUB_OUTPUT heredocs, the step summary, workflow command escaping."""

from __future__ import annotations

import re

import pytest

from trtci.github import actions


def read_outputs(path) -> dict[str, str]:
    """Parse a GITHUB_OUTPUT file the way the runner does."""
    values: dict[str, str] = {}
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif line:
            name, value = line.split("=", 1)
            values[name] = value
            i += 1
        else:
            i += 1
    return values


def test_outputs_single_and_multiline(tmp_path):
    out = tmp_path / "output"
    env = {"GITHUB_OUTPUT": str(out)}
    tricky = "line 1\nEOF\nghadelimiter_\nverdict=fail"
    assert actions.set_output("verdict", "pass", env)
    assert actions.set_output("report", tricky, env)
    assert actions.set_output("equation", "a=b", env)
    assert read_outputs(out) == {"verdict": "pass", "report": tricky, "equation": "a=b"}
    delimiters = re.findall(r"^report<<(\S+)$", out.read_text(), re.MULTILINE)
    assert len(delimiters) == 1 and len(delimiters[0]) > 20


def test_outputs_outside_actions_do_nothing():
    assert actions.set_output("x", "y", {}) is False


def test_output_name_cannot_smuggle_a_second_variable(tmp_path):
    with pytest.raises(ValueError):
        actions.set_output("a\nb", "c", {"GITHUB_OUTPUT": str(tmp_path / "o")})


def test_summary_appends_and_respects_the_limit(tmp_path):
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    actions.append_summary("# first", env)
    actions.append_summary("second", env)
    assert summary.read_text() == "# first\nsecond\n"
    actions.append_summary("é" * actions.SUMMARY_LIMIT_BYTES, env)
    data = summary.read_bytes()
    assert len(data) <= actions.SUMMARY_LIMIT_BYTES
    assert data.decode("utf-8").rstrip().endswith("1 MiB limit.")


def test_workflow_commands_escape_data_and_properties():
    line = actions.error("50% done\r\nnext", title="a: b, c", file="m.onnx", line=3)
    assert line == "::error title=a%3A b%2C c,file=m.onnx,line=3::50%25 done%0D%0Anext"
    assert actions.warning("w") == "::warning::w"
    assert actions.notice("n", title="t") == "::notice title=t::n"
    assert actions.add_mask("s3cr%t") == "::add-mask::s3cr%25t"
    assert "\n" not in actions.warning("a\nb")


def test_in_actions():
    assert actions.in_actions({"GITHUB_ACTIONS": "true"})
    assert not actions.in_actions({})

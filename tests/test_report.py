"""The markdown report and the console table, rendered from RunResult objects built by hand."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from tests.sample_runs import CPU, acknowledged_run, passing_run, sample_run
from trtci.errors import TemplateError
from trtci.report.markdown import DEFAULT_TEMPLATE_DIR, FILTERS, md, print_table, render, sig
from trtci.results import (
    RunResult,
)

GOLDEN = Path(__file__).parent / "golden"















def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TRTCI_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with TRTCI_UPDATE_GOLDEN=1 and read the result"
    assert text == path.read_text(), f"{name} differs from the golden file; TRTCI_UPDATE_GOLDEN=1 rewrites it"


def table_rows(text: str, model: str) -> list[list[str]]:
    """Cells of the series tables' rows whose first cell is `model` (split on unescaped pipes); the precision
    advice table, which also starts with the model, is left out."""
    rows = []
    advice = False
    for line in text.splitlines():
        if line.startswith("### "):
            advice = line == "### Precision to ship"
        if line.startswith(f"| {model} |") and not advice:
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_comment_matches_golden():
    check_golden("comment.md", render(sample_run()))


def test_summary_matches_golden():
    check_golden("summary.md", render(sample_run(), "summary.md.j2"))


def test_passing_comment_matches_golden():
    check_golden("comment-pass.md", render(passing_run()))


def test_comment_starts_with_marker_and_headline_counts_failures():
    text = render(sample_run())
    assert text.splitlines()[0] == "<!-- trtci:report -->"
    assert "## trtci: 1 regression, 1 accuracy regression, 1 accuracy failure, 1 error" in text
    assert "## trtci: pass" in render(passing_run())


def test_comment_has_a_row_per_series_with_the_comparison_in_words():
    run = sample_run()
    text = render(run)
    rows = table_rows(text, "digits") + table_rows(text, "resnet18")
    assert len(rows) == len(run.series)
    int8_ort = next(r for r in rows if r[1] == "int8 (onnxruntime)")
    assert int8_ort[9] == "+21.8% regression"
    assert int8_ort[10].startswith("pass")
    int8_trt = next(r for r in rows if r[1] == "int8 (tensorrt)" and r[0] == "digits")
    assert int8_trt[9] == "new"
    assert int8_trt[10].startswith("**fail**")
    unstable = next(r for r in rows if r[0] == "resnet18" and r[1] == "fp16")
    assert unstable[7] == "4.1% unstable"
    assert "∞" in unstable[10]


def test_comment_lists_failures_with_their_reasons():
    text = render(sample_run())
    assert "### Accuracy failures" in text
    assert "cosine 0.912 &lt; 0.99 on output 'logits'" in text
    assert "### Regressions" in text
    assert "median 0.370 ms vs 0.304 ms on base" in text
    assert "above the threshold in 3 of 3 runs" in text
    assert "### Errors" in text
    assert "Conv\\_12" in text


def test_comment_warns_when_a_lower_precision_is_slower_than_fp32():
    text = render(sample_run())
    warning = text[text.index("> [!WARNING]") :]
    slower = [line for line in warning.splitlines() if "slower, not a win" in line]
    assert len(slower) == 2
    assert any("**INT8** is 0.80x of FP32" in line for line in slower)
    assert any("**FP16** is 0.84x of FP32" in line for line in slower)
    assert "**FP16** is 0.84x of FP32" in render(passing_run())
    assert "was measured on base but not in this run" in warning


def test_details_blocks_have_a_blank_line_after_summary():
    text = render(sample_run(), "summary.md.j2")
    summaries = [m.end() for m in re.finditer(r"<details><summary>[^<]*</summary>\n", text)]
    assert len(summaries) >= 5
    assert all(text[end] == "\n" for end in summaries)
    assert text.count("<details>") == text.count("</details>")


def test_provenance_links_the_run_and_pr():
    text = render(sample_run())
    assert "[1234567890-1](https://github.com/acme/vision/actions/runs/1234567890)" in text
    assert "**Pull request**: #42" in text


def test_untrusted_run_url_is_not_made_a_link():
    run = sample_run()
    run.context.run_url = "javascript:alert(1)"
    text = render(run)
    assert "javascript" not in text


def test_untrusted_names_are_escaped_in_the_table():
    run = sample_run()
    evil = "evil|name @admin <script> #123 [x](y) `rm` *b*"
    run.series[0] = dataclasses.replace(run.series[0], key=dataclasses.replace(run.series[0].key, model=evil))
    run.context.branch = "@admin\n## owned"
    text = render(run)
    assert "<script>" not in text and "@admin" not in text and "#123" not in text
    escaped = md(evil)
    assert escaped == ("evil\\|name @&#8203;admin &lt;script&gt; #&#8203;123 \\[x\\](y) \\`rm\\` \\*b\\*")
    rows = table_rows(text, escaped)
    assert len(rows) == 1 and len(rows[0]) == 11
    assert "## owned" not in text


def test_md_filter():
    assert md(None) == "—"
    assert md("a\nb\r\tc") == "a b  c"
    assert md("x\u202eevil") == "xevil"
    assert md("a_b~c$d&e\\") == "a\\_b\\~c\\$d&amp;e\\\\"
    long = md("x" * 1000)
    assert len(long) == 500 and long.endswith("…")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.012345, "0.0123"),
        (1.234, "1.23"),
        (12.34, "12.3"),
        (123.4, "123"),
        (4567.8, "4568"),
        (9.996, "10.0"),
        (0, "0"),
        (1.234e-5, "1.23e-05"),
        (None, "—"),
        (float("inf"), "∞"),
        (float("nan"), "NaN"),
    ],
)
def test_three_significant_digits(value, text):
    assert sig(value) == text


def test_user_template_overrides_by_file_name(tmp_path):
    (tmp_path / "comment.md.j2").write_text("custom {{ verdict.words }} {{ run.series|length }}\n")
    assert (
        render(sample_run(), template_dir=tmp_path)
        == "custom 1 regression, 1 accuracy regression, 1 accuracy failure, 1 error 7\n"
    )
    summary = render(sample_run(), "summary.md.j2", template_dir=tmp_path)
    assert summary.startswith("<!-- trtci:summary -->")


def test_user_partial_overrides_the_default_partial(tmp_path):
    (tmp_path / "_tables.md.j2").write_text(
        (DEFAULT_TEMPLATE_DIR / "_tables.md.j2").read_text().replace("## trtci:", "## Benchmarks:")
    )
    text = render(sample_run(), template_dir=tmp_path)
    assert "## Benchmarks: 1 regression" in text and "## trtci:" not in text


def test_extra_reaches_the_template(tmp_path):
    (tmp_path / "comment.md.j2").write_text("{{ extra.note|md }}")
    assert render(sample_run(), template_dir=tmp_path, extra={"note": "hi @all"}) == "hi @&#8203;all"


@pytest.mark.parametrize(
    "source",
    ["{{ ''.__class__.__mro__ }}", "{{ run.__class__.__init__.__globals__ }}", "{{ run.series.__class__ }}"],
)
def test_sandbox_blocks_python_internals(tmp_path, source):
    (tmp_path / "comment.md.j2").write_text(f"ok\n{source}\n")
    with pytest.raises(TemplateError, match=r"comment\.md\.j2 line 2: SecurityError"):
        render(sample_run(), template_dir=tmp_path)


def test_sandbox_keeps_templates_from_changing_the_run(tmp_path):
    (tmp_path / "comment.md.j2").write_text("{{ run.comparisons.clear() }}{{ run.warnings.append('x') }}")
    run = sample_run()
    with pytest.raises(TemplateError, match="SecurityError"):
        render(run, template_dir=tmp_path)
    assert len(run.comparisons) == 7 and not run.passed


def test_undefined_name_names_file_and_line(tmp_path):
    (tmp_path / "comment.md.j2").write_text("line one\n{{ verdict.words }}\n{{ run.contxt.commit }}\n")
    with pytest.raises(TemplateError) as error:
        render(sample_run(), template_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "comment.md.j2") in message
    assert "line 3" in message and "contxt" in message


def test_undefined_name_in_an_imported_partial_names_the_partial(tmp_path):
    (tmp_path / "_tables.md.j2").write_text("{% macro headline(verdict, run) %}{{ verdict.wrods }}{% endmacro %}\n")
    with pytest.raises(TemplateError, match=r"_tables\.md\.j2 line 1: .*wrods"):
        render(sample_run(), template_dir=tmp_path)


def test_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "comment.md.j2").write_text("a\nb\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"comment\.md\.j2 line 3"):
        render(sample_run(), template_dir=tmp_path)


def test_missing_template_names_it_and_the_directories(tmp_path):
    with pytest.raises(TemplateError) as error:
        render(sample_run(), "nope.md.j2", template_dir=tmp_path)
    message = str(error.value)
    assert "'nope.md.j2'" in message and str(tmp_path) in message and str(DEFAULT_TEMPLATE_DIR) in message


def test_missing_template_directory_is_an_error(tmp_path):
    with pytest.raises(TemplateError, match="template directory not found"):
        render(sample_run(), template_dir=tmp_path / "absent")


def test_console_table_shows_each_series_and_its_verdict():
    buffer = io.StringIO()
    run = sample_run()
    run.series[6] = dataclasses.replace(
        run.series[6], key=dataclasses.replace(run.series[6].key, model="[bold]not markup[/bold]")
    )
    print_table(run, Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "trtci: 1 regression, 1 accuracy regression, 1 accuracy failure, 1 error" in text
    assert "[bold]not markup[/bold]" in text
    for word in ("regression", "fail-accuracy", "error", "improvement", "inconclusive", "unchanged"):
        assert re.search(rf"│ {re.escape(word)}\s+│", text), word
    assert "INT8 is 0.80x of FP32" in text and "slower, not a win" in text


def test_documented_override_example_renders(tmp_path):
    docs = (Path(__file__).parent.parent / "docs" / "templates.md").read_text()
    (tmp_path / "comment.md.j2").write_text(re.search(r"```jinja\n(.*?)```", docs, re.S).group(1))
    text = render(sample_run(), template_dir=tmp_path, extra={"team": "@vision"})
    assert text.startswith("<!-- trtci:report -->\n## Inference benchmarks: 1 regression")
    assert "Built by @&#8203;vision." in text


def test_documented_filters_exist():
    docs = (Path(__file__).parent.parent / "docs" / "templates.md").read_text()
    for name in FILTERS:
        assert f"`{name}" in docs, f"filter {name} is not documented"




def test_acknowledged_regression_has_its_own_section_with_the_reason_and_does_not_fail():
    run = acknowledged_run()
    text = render(run)
    assert run.regressions == [] and "### Regressions" not in text
    assert "compared with main: 0 regressions, 1 acknowledged, 1 improvement" in text
    section = text.split("### Acknowledged regressions\n", 1)[1].split("###", 1)[0]
    (item,) = [line for line in section.splitlines() if line.startswith("- ")]
    assert item.startswith("- **digits int8(onnxruntime) b8 onnxruntime**: median 0.370 ms vs 0.304 ms on base, +21.8%")
    assert item.endswith("against a 10.0% threshold: acknowledged in trtci.yml: new #&#8203;12 head")
    assert "| +21.8% acknowledged |" in text
    assert "Acknowledged" not in render(sample_run())
    console = Console(file=io.StringIO(), width=250, color_system=None)
    print_table(run, console)
    assert re.search(r"│ acknowledged\s+│", console.file.getvalue())


def test_accuracy_cell_shows_the_top1_delta_and_its_interval():
    text = render(sample_run())
    assert "pass: top-1 0.952 of FP32's 0.954 (Δ -0.2 pt, CI -0.8..+0.4)" in text
    assert "| -0.2 pt (-0.8..+0.4) |" in render(sample_run(), "summary.md.j2")
    console = Console(file=io.StringIO(), width=250, color_system=None)
    print_table(sample_run(), console)
    assert "top-1 ratio 0.998 (Δ -0.2 pt, CI -0.8..+0.4)" in console.file.getvalue()


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(-0.0021, True, "-0.2 pt"), (0.0039, False, "+0.4"), (-0.0004, True, "+0.0 pt"), (None, True, "—")],
)
def test_points_filter(value, unit, text):
    assert FILTERS["points"](value, unit) == text


def test_console_output_cannot_start_a_workflow_command_line():
    """Warnings and names can come from another job's run file: a newline in them must not let a line start
    with '::' in a GitHub Actions log (workflow command injection)."""
    run = passing_run()
    run.warnings.append("harmless\n::notice::injected")
    run.series[0] = replace(run.series[0], key=replace(run.series[0].key, model="m\n::error::x"))
    console = Console(file=io.StringIO(), width=300, force_terminal=False)
    print_table(run, console)
    lines = console.file.getvalue().splitlines()
    assert not [line for line in lines if line.lstrip("│┃ ").startswith("::")]
    assert any("harmless ::notice::injected" in line for line in lines)


def changed_run() -> RunResult:
    """The sample run read after attribution: the digits series' inputs did not change and one drifted; resnet18
    moved to a new TensorRT, and its fp32 regression only warns; the canary moved; a warning repeats."""
    from trtci.results import Canary

    run = sample_run()
    by_label = {c.label: c for c in run.comparisons}
    for c in run.comparisons:
        c.changed = [] if c.label.startswith("digits") else ["tensorrt 10.8 -> 10.9"]
    drifted = by_label["digits int8(onnxruntime) b8 onnxruntime"]
    drifted.verdict, drifted.machine_drift, drifted.method = "unchanged", True, "identical-inputs"
    warned = by_label["resnet18 fp32 b1 tensorrt"]
    warned.verdict, warned.ratio, warned.policy = "regression", 1.3, "warn"
    warned.reason = "environment changed (tensorrt 10.8 -> 10.9): median 0.950 ms vs 0.731 ms"
    warned.base_regressed = "the base is regressed since commit abc1234 (+12%)"
    improved = by_label["resnet18 fp16 b1 tensorrt"]
    improved.verdict, improved.ratio = "improvement", 0.8
    run.accuracy_changes = []
    run.series = [s for s in run.series if s.error is None and s.passed]
    canary = Canary("onnxruntime", CPU.id, 0.010, 0.013, 0.02, 1000, ratio=1.3, moved=True, reason="canary moved")
    run.canaries = [canary]
    run.warnings = ["digits int8: quantized without shape inference"] * 2
    return run


def test_the_comment_leads_with_what_changed_and_collapses_the_rest():
    text = render(changed_run())
    assert "What changed since main: nothing (4 series); tensorrt 10.8 -&gt; 10.9 (3 series)." in text
    assert "compared with main: 0 regressions, 1 reported, not failing, 1 improvement" in text
    order = [text.index(h) for h in ("### Improvements", "### Machine drift", "### Reported, not failing")]
    assert order == sorted(order) and "### Regressions" not in text
    drift = text.split("### Machine drift", 1)[1].split("###", 1)[0]
    assert "**onnxruntime canary**: canary moved" in drift
    assert "**digits int8(onnxruntime) b8 onnxruntime**: +21.8%" in drift
    warned = text.split("### Reported, not failing", 1)[1].split("###", 1)[0]
    assert "environment changed (tensorrt 10.8 -&gt; 10.9)" in warned and "regressed since commit abc1234" in warned
    assert text.count("quantized without shape inference") == 1  # never a warning twice
    rows_start = text.index("<details><summary>All ")
    assert text.index("| digits | fp32 |") > rows_start  # every series' row is collapsed
    assert "<details><summary>Machine speed (canary)</summary>" in text

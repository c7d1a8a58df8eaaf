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

from trtci.errors import TemplateError
from trtci.report.markdown import DEFAULT_TEMPLATE_DIR, FILTERS, md, print_table, render, sig
from trtci.results import (
    AccuracyChange,
    AccuracyResult,
    BenchResult,
    Comparison,
    DeviceInfo,
    LatencyStats,
    OutputMetrics,
    RunContext,
    RunResult,
    SeriesKey,
    SeriesResult,
)

GOLDEN = Path(__file__).parent / "golden"

CPU = DeviceInfo("cpu", "AMD EPYC 7B13", {"cores": 2, "isa": ["avx2", "avx512_vnni"], "onnxruntime": "1.32.0"})
GPU = DeviceInfo("gpu", "NVIDIA H100 80GB HBM3", {"driver": "570.86", "cuda": "12.8", "compute_capability": "9.0"})


def bench(median: float, batch: int, cv: float = 0.01) -> BenchResult:
    mean = median * 1.01
    stats = LatencyStats(
        min=median * 0.9,
        mean=mean,
        median=median,
        p90=median * 1.1,
        p95=median * 1.15,
        p99=median * 1.3,
        max=median * 1.6,
        std=cv * mean,
        cv=cv,
        iterations=1000,
        throughput=batch * 1000 / median,
        unstable=cv > 0.025,
    )
    return BenchResult(stats=stats, samples_ms=[median] * 5, warmup_ms=200.0, duration_s=3.0, timer="host")


def output(cosine: float, sqnr_db: float, top1: float | None = None, max_abs: float = 0.01) -> OutputMetrics:
    return OutputMetrics("logits", cosine, sqnr_db, max_abs, max_abs * 10, top1, 0)


def key(model: str, precision: str, batch: int, backend: str, device: DeviceInfo, quantization: str = ""):
    return SeriesKey(model, "ab" * 8, precision, batch, backend, device.id, quantization)


def compared(series: SeriesResult, verdict: str, ratio: float | None, reason: str = "") -> Comparison:
    current = series.bench.stats.median if series.bench else None
    baseline = current / ratio if current is not None and ratio else None
    return Comparison(
        series.key.id,
        series.key.label,
        verdict,
        "latency_median_ms",
        current,
        baseline,
        ratio,
        0.10,
        baseline_run="1234567000-1",
        baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
        reason=reason,
    )


def sample_run() -> RunResult:
    """Two devices; fp32/fp16/int8 series; a regression, an accuracy failure, a new series, an error, a missing
    series, an improvement, an unstable series, an infinite SQNR, two lower precisions slower than FP32, and an
    accuracy regression against the base branch."""
    cpu_fp32 = SeriesResult(key("digits", "fp32", 8, "onnxruntime", CPU), bench=bench(1.0, 8))
    cpu_fp16 = SeriesResult(
        key("digits", "fp16", 8, "onnxruntime", CPU),
        bench=bench(1.19, 8),
        accuracy=AccuracyResult(True, [], 512, [output(0.999991, 62.3, 1.0, 1e-5)], thresholds={"min_cosine": 0.99}),
    )
    cpu_int8_ort = SeriesResult(
        key("digits", "int8", 8, "onnxruntime", CPU, "onnxruntime"),
        bench=bench(0.37, 8),
        accuracy=AccuracyResult(
            True,
            [],
            512,
            [output(0.9987, 31.4, 0.996)],
            top1=0.952,
            reference_top1=0.954,
            ratio=0.952 / 0.954,
            top5=0.998,
            reference_top5=0.998,
            delta=0.952 - 0.954,
            delta_low=-0.0078,
            delta_high=0.0039,
        ),
        build={"quantize_s": 1.83, "qdq_nodes": 42, "model_bytes": 1234567},
    )
    cpu_int8_trt = SeriesResult(
        key("digits", "int8", 8, "onnxruntime", CPU, "tensorrt"),
        bench=bench(1.25, 8),
        accuracy=AccuracyResult(
            False,
            ["cosine 0.912 < 0.99 on output 'logits'", "SQNR 11.2 dB < 20 dB on output 'logits'"],
            512,
            [output(0.912, 11.2, 0.81, 0.4)],
        ),
    )
    gpu_fp32 = SeriesResult(key("resnet18", "fp32", 1, "tensorrt", GPU), bench=bench(0.95, 1))
    gpu_fp16 = SeriesResult(
        key("resnet18", "fp16", 1, "tensorrt", GPU),
        bench=bench(0.41, 1, cv=0.041),
        accuracy=AccuracyResult(True, [], 256, [output(1.0, float("inf"), 1.0, 0.0)]),
        build={"build_s": 12.4, "engine_bytes": 23456789, "layers": 53},
    )
    gpu_int8 = SeriesResult(
        key("resnet18", "int8", 1, "tensorrt", GPU, "tensorrt"),
        error="TensorRT could not parse node 'Conv_12': INT8 Q/DQ scale is not a constant; re-run prepare",
    )
    missing_key = key("resnet18", "int8", 8, "tensorrt", GPU, "tensorrt")
    comparisons = [
        compared(cpu_fp32, "unchanged", 1.012),
        compared(cpu_fp16, "unchanged", 0.985),
        compared(cpu_int8_ort, "regression", 1.218, "above the threshold in 3 of 3 runs"),
        compared(cpu_int8_trt, "new", None, "no baseline for this series"),
        compared(gpu_fp32, "improvement", 0.85),
        compared(gpu_fp16, "inconclusive", 1.06, "unstable: CV 4.1% above 2.5%"),
        Comparison(
            missing_key.id,
            missing_key.label,
            "missing",
            "latency_median_ms",
            None,
            0.2,
            None,
            0.10,
            baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
        ),
    ]
    context = RunContext(
        run_id="1234567890-1",
        started_at="2025-06-01T12:00:00Z",
        commit="0123456789abcdef0123456789abcdef01234567",
        branch="feature/faster-int8",
        base_branch="main",
        pr_number=42,
        event="pull_request",
        repository="acme/vision",
        run_url="https://github.com/acme/vision/actions/runs/1234567890",
        merge_base="fedcba9876543210fedcba9876543210fedcba98",
        finished_at="2025-06-01T12:04:31Z",
    )
    accuracy_changes = [
        AccuracyChange(
            cpu_fp16.key.id,
            cpu_fp16.key.variant_label,
            "regression",
            "top1_agreement",
            0.971,
            0.998,
            -0.027,
            [-0.0431, -0.0137],
            0.01,
            512,
            baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
            reason=(
                "top-1 agreement with FP32 97.10% vs 99.80% on main@fedcba9 (-2.70 pt, interval -4.31..-1.37 pt, "
                "threshold 1 pt); 14 of 512 samples changed"
            ),
        ),
        AccuracyChange(
            cpu_int8_ort.key.id,
            cpu_int8_ort.key.variant_label,
            "unchanged",
            "top1",
            0.952,
            0.952,
            0.0,
            [-0.0039, 0.0039],
            0.01,
            512,
            baseline_commit="fedcba9876543210fedcba9876543210fedcba98",
            reason="top-1 95.20% vs 95.20% on main@fedcba9 (+0.00 pt, interval -0.39..+0.39 pt, threshold 1 pt)",
        ),
    ]
    return RunResult(
        context=context,
        devices=[CPU, GPU],
        series=[cpu_fp32, cpu_fp16, cpu_int8_ort, cpu_int8_trt, gpu_fp32, gpu_fp16, gpu_int8],
        comparisons=comparisons,
        warnings=["GPU clocks were not locked: latency may vary between runs (lock them with nvidia-smi -lgc)"],
        accuracy_changes=accuracy_changes,
    )


def passing_run() -> RunResult:
    """The sample run with only the series that pass, and no comparisons."""
    run = sample_run()
    kept = [s for s in run.series if s.passed]
    return RunResult(run.context, run.devices, kept)


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


def acknowledged_run() -> RunResult:
    """The sample run with its regression accepted in trtci.yml."""
    run = sample_run()
    run.comparisons = [
        dataclasses.replace(c, verdict="acknowledged", acknowledgement="acknowledged in trtci.yml: new #12 head")
        if c.verdict == "regression"
        else c
        for c in run.comparisons
    ]
    return run


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

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.recorded_runs import CPU, bench, key, make_run
from trtci.report.dashboard import build_cards, render_dashboard, trend_extra, write_dashboard
from trtci.report.markdown import render
from trtci.results import AccuracyResult, Comparison, DeviceInfo, SeriesResult
from trtci.store.database import Store

CHROMIUM = "/usr/bin/chromium"
GPU = DeviceInfo(kind="gpu", name="NVIDIA H100 80GB HBM3", details={"driver": "575"})


def series_at(i: int, precision: str, device: DeviceInfo = CPU, model: str = "digits") -> SeriesResult:
    slow = 1.4 if precision == "int8" and i >= 10 else 1.0  # a step: a change point and one regression
    median = (1.0 if precision == "fp32" else 0.6) * slow * (1 + 0.01 * (i % 3))
    accuracy = AccuracyResult(passed=True, reasons=[], samples=64, top1=0.97 - 0.001 * (i % 2))
    return SeriesResult(
        key=key(model=model, precision=precision, device=device), bench=bench(median), accuracy=accuracy
    )


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "results.db") as store:
        for i in range(16):
            series = [series_at(i, p) for p in ("fp32", "int8")] + [series_at(i, "fp16", GPU, "resnet<b>")]
            run = make_run(f"r{i}", series, started_at=f"2026-11-{i + 1:02d}T08:00:00Z", devices=[CPU, GPU])
            run.comparisons = [
                Comparison(
                    s.key.id,
                    s.key.label,
                    "regression" if i == 10 and s.key.precision == "int8" else "unchanged",
                    "latency_median_ms",
                    s.bench.stats.median,
                    1.0,
                    1.4,
                    0.1,
                )
                for s in series
            ]
            store.record_run(run)
        yield store


def test_cards_mark_the_stored_regression_and_the_change_point(store):
    cards = {c.precision: c for c in build_cards(store)}
    int8, fp32 = cards["int8"], cards["fp32"]
    assert int8.points == 16 and int8.regressions == 1 and int8.change_points >= 1
    latency = int8.charts[0]
    assert [m.css for m in latency.markers].count("regression") == 1 and latency.change_xs
    assert fp32.regressions == 0 and fp32.change_points == 0
    assert [c.title for c in fp32.charts] == ["latency", "throughput", "accuracy"]
    assert all(line.d.startswith("M") and line.d.count("L") == 15 for chart in fp32.charts for line in chart.lines)


def test_last_limits_the_points_and_branch_filters(store):
    assert {c.points for c in build_cards(store, last=5)} == {5}
    assert build_cards(store, branch="other") == []


def test_page_is_self_contained_and_escapes_names(store):
    page = render_dashboard(build_cards(store))
    assert "resnet&lt;b&gt;" in page and "resnet<b>" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script src" not in page and "@import" not in page
    assert page.count("<svg") == 9


def test_an_empty_database_renders_a_page(tmp_path):
    with Store(tmp_path / "empty.db") as store:
        assert write_dashboard(store, tmp_path / "d.html") == 0
    assert "No benchmark results" in (tmp_path / "d.html").read_text()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'ud'}",
        "--window-size=1200,900",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def png_colors(path: Path) -> int:
    """Distinct pixel values of a PNG (8-bit RGB or RGBA, non-interlaced: what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        chunks.setdefault(kind, b"")
        chunks[kind] += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    width, height = int.from_bytes(chunks[b"IHDR"][:4], "big"), int.from_bytes(chunks[b"IHDR"][4:8], "big")
    channels = {2: 3, 6: 4}[chunks[b"IHDR"][9]]
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up, corner = previous[x], previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[x] = (line[x] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return len({row[i : i + channels] for row in rows[::8] for i in range(0, stride, channels * 8)})


@pytest.fixture(scope="session")
def browser() -> str:
    """Debian's Chromium, installed by the test setup when missing (as the issue asks), so that the README's test
    command passes on a fresh machine. Without root or apt-get, the test fails and says what to install."""
    if not shutil.which(CHROMIUM) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, timeout=900)
    assert shutil.which(CHROMIUM), "install Debian's chromium: sudo apt-get install -y chromium"
    return CHROMIUM


def test_page_renders_in_a_real_browser(store, tmp_path, browser):
    page = tmp_path / "dashboard.html"
    write_dashboard(store, page)
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout  # the script ran to its end: no JavaScript error before it
    assert len(re.findall(r'<path class="line median" d="M', dom.stdout)) == 3
    # The filter script reads the hash: only the GPU card stays visible.
    filtered = chromium(tmp_path, "--dump-dom", page.as_uri() + "#precision=fp16")
    assert 'data-ready="1"' in filtered.stdout
    assert len(re.findall(r'<section class="card"[^>]*hidden', filtered.stdout)) == 2
    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert png_colors(shot) > 20  # lines, markers and text: not a blank or single-color page


def test_trend_of_a_regression_in_the_comment(store):
    run = make_run("now", [series_at(16, "int8")], started_at="2026-11-30T08:00:00Z")
    run.context.commit = "feedbeef00"
    s = run.series[0]
    run.comparisons = [Comparison(s.key.id, s.key.label, "regression", "latency_median_ms", 2.0, 0.84, 2.4, 0.1)]
    extra = trend_extra(store, run, last=4, dashboard_url="https://acme.github.io/vision/")
    commits = [p["commit"] for p in extra["trends"][0]["points"]]
    assert commits == ["r12c0ff", "r13c0ff", "r14c0ff", "r15c0ff", "feedbee"]
    text = render(run, "comment.md.j2", extra=extra)
    assert "```mermaid\nxychart-beta" in text
    assert '    x-axis ["r12c0ff", "r13c0ff", "r14c0ff", "r15c0ff", "feedbee"]' in text
    assert re.search(r"    line \[[0-9., ]+, 2\]", text)
    assert "| median ms |" in text and text.count("| 2.00 |") == 1
    assert "[Dashboard with every series](https://acme.github.io/vision/)" in text


def test_trend_marks_where_the_base_branch_stepped(store):
    run = make_run("now", [series_at(16, "int8")], started_at="2026-11-30T08:00:00Z")
    s = run.series[0]
    run.comparisons = [Comparison(s.key.id, s.key.label, "regression", "latency_median_ms", 2.0, 0.84, 2.4, 0.1)]
    extra = trend_extra(store, run, last=12)
    # series_at makes int8 step from 0.6 to 0.84 ms at run 10: the one change point in r4..r15
    assert extra["trends"][0]["changes"] == ["r10c0ff"]
    assert "Change points (a new level starts): r10c0ff" in render(run, "comment.md.j2", extra=extra)


def test_no_trend_section_without_regressions(store):
    run = make_run("now", [series_at(16, "fp32")])
    assert trend_extra(store, run)["trends"] == []
    assert "mermaid" not in render(run, "comment.md.j2", extra=trend_extra(store, run))
    assert "mermaid" not in render(run, "comment.md.j2")


def test_the_machine_speed_is_drawn_from_each_runs_canary(tmp_path):
    from trtci.report.dashboard import machine_charts
    from trtci.results import Canary

    with Store(tmp_path / "machine.db") as store:
        for i in range(6):
            canary = Canary("onnxruntime", CPU.id, 0.01 * (1 + i / 10), 0.01 * (1 + i / 10), 0.02, 100, moved=i == 5)
            run = make_run(f"r{i}", [series_at(i, "fp32")], started_at=f"2026-11-{i + 1:02d}T08:00:00Z")
            run.canaries = [canary]
            store.record_run(run)
        (chart,) = machine_charts(store)
        assert chart.title == f"canary, onnxruntime on {CPU.name}" and chart.lines[0].d.count("L") == 5
        (moved,) = [m for m in chart.markers if m.css == "regression"]
        assert moved.title.startswith("moved at r5")
        page = tmp_path / "d.html"
        write_dashboard(store, page)
        assert "<h2>Machine speed</h2>" in page.read_text()

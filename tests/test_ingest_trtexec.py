"""`trtci ingest trtexec` on NVIDIA's own trtexec exports (tests/data/trtexec, ResNet18 on an A100)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trtci.cli import cli
from trtci.errors import DataError
from trtci.pipeline.ingest_trtexec import BACKEND, Claims, read_export, trtexec_run
from trtci.pipeline.trtexec_files import ExportSet, find_sets, kind_of, load_json
from trtci.results import RunContext
from trtci.store.database import Store

DATA = Path(__file__).parent / "data" / "trtexec" / "resnet-A100"
FP32, FP16, QAT = DATA / "fp32", DATA / "fp16", DATA / "qat"
ENGINE = "resnet.onnx.engine"


def context(run_id: str = "r1") -> RunContext:
    return RunContext(run_id=run_id, started_at="2026-11-28T08:00:00Z", branch="main")


def ingest(path: Path = FP32, claims: Claims | None = None):
    return trtexec_run([read_export(s) for s in find_sets([path])], context(), claims)


def trtexec_percentile(ordered: list[float], p: float) -> float:
    """trtexec's rule, written out here in float64: sorted[N-1-int((1-p/100)*N)]."""
    return ordered[max(len(ordered) - 1 - int((1 - p / 100) * len(ordered)), 0)]


def test_fp32_reproduces_trtexecs_own_summary():
    summary = load_json(FP32 / f"{ENGINE}.profile.metadata.json")["performance_summary"]
    raw = load_json(FP32 / f"{ENGINE}.timing.json")
    timed = [row for row in raw if row["startComputeMs"] >= 200]  # trtexec drops its 200 ms of warm-up
    ordered = sorted(row["latencyMs"] for row in timed)
    run = ingest()
    (series,) = run.series
    stats = series.bench.stats
    assert stats.iterations == len(timed) == 1500 and series.build["warmup_inferences_dropped"] == 100
    assert stats.median == pytest.approx(float(np.median(ordered))) == pytest.approx(summary["Latency"][3])
    assert stats.p99 == trtexec_percentile(ordered, 99) == pytest.approx(summary["Latency"][4])
    assert (stats.min, stats.max) == pytest.approx((summary["Latency"][0], summary["Latency"][1]))
    assert stats.mean == pytest.approx(summary["Latency"][2], rel=1e-5)
    assert stats.throughput / series.key.batch == pytest.approx(summary["Throughput"], rel=1e-5)
    trtexec = series.bench.extra["trtexec"]
    assert trtexec["stats"]["gpu_compute"]["median"] == pytest.approx(summary["GPU Compute Time"][3])
    assert trtexec["transfers_included"] is False and "h2d" not in trtexec["stats"]
    assert trtexec["cuda_graph"] is True and series.bench.timer == "cuda-event"


def test_series_key_and_device_come_from_the_files():
    run = ingest()
    key = run.series[0].key
    assert (key.model, key.precision, key.batch, key.backend) == ("resnet", "fp32", 32, BACKEND)
    (device,) = run.devices
    assert device.name == "NVIDIA A100 80GB PCIe" and device.details["compute"] == "8.0"
    assert device.details["tensorrt"] == "unknown" and key.device_id == device.id
    layers = run.series[0].build["layer_info"]["layers"]
    assert len(layers) == 32 and layers[0]["name"] == "Conv_0 + Relu_1" and layers[0]["precision"] == "FP32"
    assert layers[0]["time_ms"] == pytest.approx(0.52224)
    assert run.series[0].build["build_options"]["Precision"] == "FP32"


def test_the_same_engine_ingested_twice_is_one_series():
    assert ingest().series[0].key.id == ingest().series[0].key.id
    other = ingest(claims=Claims(tensorrt_version="8.4.1"))
    assert other.series[0].key.id != ingest().series[0].key.id  # another TensorRT is another device


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (Claims(precision="fp16"), r"precision: --precision says 'fp16' but .*build\.metadata\.json .*'fp32'"),
        (Claims(batch=8), r"batch: --batch says 8 but .*32x3x224x224"),
        (Claims(gpu="NVIDIA L4"), r"GPU: --gpu says 'NVIDIA L4' but .*'NVIDIA A100 80GB PCIe'"),
        (Claims(compute="8.9"), r"compute capability: --compute says '8\.9' but .*'8\.0'"),
        (Claims(warmup_ms=0), r"warm-up \(ms\): --warmup-ms says 0 but .*200"),
    ],
)
def test_a_flag_the_files_contradict_is_refused(claims: Claims, message: str):
    with pytest.raises(DataError, match=message):
        ingest(claims=claims)


def copy_set(tmp_path: Path, source: Path = FP32, **replace: Path) -> Path:
    """FP32's files in tmp_path/e, with some kinds' files replaced (by suffix) by other files."""
    folder = tmp_path / "e"
    folder.mkdir()
    for file in source.iterdir():
        shutil.copy(file, folder / file.name)
    for suffix, other in replace.items():
        shutil.copy(other, folder / f"{ENGINE}.{suffix.replace('_', '.')}.json")
    return folder


def test_a_profile_of_another_engine_than_the_layer_info_is_refused(tmp_path: Path):
    folder = copy_set(tmp_path, profile=FP16 / f"{ENGINE}.profile.json")
    with pytest.raises(DataError, match="the profile times layer 'Reformatting CopyNode for Input Tensor 0 to Conv_0"):
        ingest(folder)


def test_a_summary_of_another_run_is_refused(tmp_path: Path):
    folder = copy_set(tmp_path, profile_metadata=FP16 / f"{ENGINE}.profile.metadata.json")
    with pytest.raises(DataError, match="Latency min is 0.856049 ms but .*timing.json gives 1.98438 ms"):
        ingest(folder)


def test_layer_info_of_another_precision_is_refused(tmp_path: Path):
    folder = copy_set(tmp_path, graph=FP16 / f"{ENGINE}.graph.json", profile=FP16 / f"{ENGINE}.profile.json")
    with pytest.raises(DataError, match=r"precision: .*'fp32' but .*graph\.json \(tensor types\) says 'fp16'"):
        ingest(folder)


def test_kinds_are_read_from_content():
    kinds = {kind_of(load_json(path)) for path in FP32.iterdir()}
    assert kinds == {"times", "profile", "layer-info", "build-metadata", "profile-metadata", "device-metadata"}
    assert kind_of({"unrelated": 1}) is None and kind_of([1, 2]) is None


def test_without_times_there_is_no_series():
    with pytest.raises(DataError, match="no --exportTimes file"):
        ingest(FP16)


def test_a_damaged_inference_is_refused(tmp_path: Path):
    rows = load_json(FP32 / f"{ENGINE}.timing.json")
    rows[500]["latencyMs"] = -1
    path = tmp_path / "t.timing.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"inference #500: latencyMs is missing, negative"):
        trtexec_run([read_export(ExportSet("t", {"times": path}))], context(), Claims(precision="fp32", batch=1))


def trtci(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_error_line(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtci: error: ")
    return lines[0]


def test_cli_a_file_of_another_kind_than_its_flag(tmp_path: Path):
    line = one_error_line(
        trtci("ingest", "trtexec", "--times", str(FP32 / f"{ENGINE}.profile.json"), "--db", str(tmp_path / "t.db"))
    )
    assert "trtexec --exportProfile output, not the --exportTimes file it was passed as" in line


def test_cli_truncated_json(tmp_path: Path):
    text = (FP32 / f"{ENGINE}.graph.json").read_text()
    (tmp_path / f"{ENGINE}.graph.json").write_text(text[: len(text) // 2])
    line = one_error_line(trtci("ingest", "trtexec", str(tmp_path), "--db", str(tmp_path / "t.db")))
    assert "graph.json: not valid JSON (truncated: it ends inside" in line


def test_cli_not_an_export(tmp_path: Path):
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    line = one_error_line(trtci("ingest", "trtexec", str(tmp_path), "--db", str(tmp_path / "t.db")))
    assert "notes.json: not a trtexec or TREx export" in line


def test_cli_records_judges_and_writes_the_layer_diff(tmp_path: Path):
    db, report = tmp_path / "t.db", tmp_path / "layers.md"
    head = copy_set(tmp_path)
    first = trtci("ingest", "trtexec", str(head), "--db", str(db), "--branch", "main", "--min-history", "1")
    assert first.exit_code == 0, first.output
    assert "new" in first.output and "1 trtexec engines recorded" in first.output
    second = trtci(
        "ingest", "trtexec", str(head), "--db", str(db), "--branch", "main", "--base-branch", "main",
        "--min-history", "1", "--base", str(FP16), "--report", str(report),
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "unchanged" in second.output
    assert "fp16/resnet.onnx.engine -> e/resnet.onnx.engine: 36 -> 32 layers" in second.output
    markdown = report.read_text()
    assert "### Layer changes" in markdown and "| Conv\\_0 + Relu\\_1 | precision FP16 -&gt; FP32" in markdown
    with Store(db) as store:
        assert len(store.runs()) == 2
        assert store.load_run(store.runs()[0]["id"]).series[0].build["layer_info"]["layout"] == "10.x"


def benchmark(*args: str) -> list[str]:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.interop", *args], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_benchmark_counts_files_and_diffs():
    lines = benchmark(str(DATA))
    assert lines[-1] == "interop: ingested=6/16 layer_diffs=0"  # fp16/ and qat/ lack their timing files here
    assert sum("no --exportTimes file" in line for line in lines) == 2


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "trtexec").is_dir(), reason="no shared/")
def test_benchmark_ingests_every_shared_file():
    lines = benchmark()
    assert lines[-1] == "interop: ingested=18/18 layer_diffs=3"
    assert any(line.startswith("fp32/resnet.onnx.engine -> fp16/resnet.onnx.engine: 32 -> 36 layers") for line in lines)


def test_cli_files_by_kind_and_facts_by_flag(tmp_path: Path):
    result = trtci(
        "ingest", "trtexec", "--times", str(FP32 / f"{ENGINE}.timing.json"), "--name", "resnet", "--gpu", "NVIDIA A100",
        "--compute", "8.0", "--tensorrt-version", "8.4.1", "--precision", "fp32", "--batch", "32",
        "--db", str(tmp_path / "t.db"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with Store(tmp_path / "t.db") as store:
        (series,) = store.load_run(store.runs()[0]["id"]).series
    assert series.key.label == "resnet fp32 b32 trtexec" and series.bench.stats.median == pytest.approx(1.99072)
    missing = trtci("ingest", "trtexec", "--times", str(FP32 / f"{ENGINE}.timing.json"), "--db", str(tmp_path / "t.db"))
    assert "no file names the GPU; pass --gpu" in one_error_line(missing)

"""TensorRT against ONNX Runtime on the same GPU model, in one run: the speedup in the JSON summary and the report."""

from __future__ import annotations

from dataclasses import replace

from tests.sample_runs import bench, key, passing_run
from trtci.report.json_summary import summary_dict
from trtci.report.markdown import render
from trtci.results import DeviceInfo, RunResult, SeriesResult
from trtci.verdict.speedup import cross_backend

TRT_H200 = DeviceInfo("gpu", "NVIDIA H200", {"tensorrt": "10.13", "compute": "9.0"})
ORT_H200 = DeviceInfo("gpu", "NVIDIA H200", {"onnxruntime": "1.31.1", "provider": "CUDAExecutionProvider"})
L4 = DeviceInfo("gpu", "NVIDIA L4", {"onnxruntime": "1.31.1"})


def h200_run() -> RunResult:
    series = [
        SeriesResult(key("resnet18", "fp16", 8, "onnxruntime-cuda", ORT_H200), bench=bench(0.64, 8)),
        SeriesResult(key("resnet18", "fp16", 8, "tensorrt", TRT_H200), bench=bench(0.16, 8)),
        SeriesResult(key("resnet18", "fp32", 8, "tensorrt", TRT_H200), bench=bench(0.40, 8)),  # no ORT fp32 here
        SeriesResult(key("resnet18", "fp16", 8, "tensorrt", L4), bench=bench(0.90, 8)),  # another GPU model
    ]
    return replace(passing_run(), devices=[ORT_H200, TRT_H200, L4], series=series, comparisons=[])


def test_tensorrt_is_set_against_onnxruntime_cuda_on_the_same_gpu_model_only():
    [pair] = cross_backend(h200_run())
    assert (pair.backend, pair.framework, pair.device, pair.precision, pair.batch) == (
        "tensorrt", "onnxruntime-cuda", "NVIDIA H200", "fp16", 8
    )
    assert pair.speedup == 0.64 / 0.16


def test_the_speedup_is_in_the_json_summary_and_the_comment():
    run = h200_run()
    [entry] = summary_dict(run)["cross_backend"]
    assert entry["backend"] == "tensorrt" and entry["speedup"] == 4.0
    comment = render(run, "comment.md.j2")
    assert "### Backends on the same device" in comment
    assert "| resnet18 | fp16 | 8 | NVIDIA H200 | tensorrt | onnxruntime-cuda |" in comment and "4.00x" in comment


def test_a_run_of_one_backend_shows_no_such_table():
    assert cross_backend(passing_run()) == []
    assert "Backends on the same device" not in render(passing_run(), "comment.md.j2")

"""Engine cache: plan headers, keys and reuse decisions, on real plans built with TensorRT for RTX."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import tensorrt_rtx_bindings as trt  # part of trtci[test]: it builds engines without a GPU

from tests.models import small_cnn
from trtci.backends.base import LoadRequest
from trtci.backends.tensorrt.build import build_plan
from trtci.backends.tensorrt.engine_cache import (
    RTX_MAGIC,
    TENSORRT_MAGIC,
    EngineCache,
    EngineMetadata,
    Target,
    engine_key,
    read_plan_header,
)
from trtci.config import TensorRTOptions
from trtci.errors import BackendError

RTX = trt.__version__
A6000 = Target("tensorrt-rtx", RTX, "NVIDIA RTX A6000", ("8.6",), "13.0")
L40S = Target("tensorrt-rtx", RTX, "NVIDIA L40S", ("8.9",), "13.0")


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    model = small_cnn(tmp_path_factory.mktemp("model") / "cnn.onnx")
    request = LoadRequest(model, "fp32", 2, {"image": (2, 1, 8, 8)})
    return build_plan("tensorrt-rtx", request, TensorRTOptions(), ["SM86"]).plan


def _expected(target: Target, options: dict | None = None) -> EngineMetadata:
    options = options or {"optimization_level": 3}
    return EngineMetadata(
        key=engine_key("ab" * 32, "fp16", options, target),
        model_hash="ab" * 32,
        precision="fp16",
        options=options,
        target=target.__dict__ | {"compute": list(target.compute)},
        plan_sha256="",
        plan_bytes=0,
        build_time_s=0.5,
    )


def test_real_rtx_plan_header_names_flavor_and_version(plan: bytes):
    header = read_plan_header(plan)
    assert header.flavor == "tensorrt-rtx"
    assert header.version == RTX  # bytes 24-27 are the builder's version
    assert struct.unpack_from("<I", plan, 0)[0] == RTX_MAGIC


def test_tensorrt_magic_and_bad_headers():
    tensorrt_plan = struct.pack("<I", TENSORRT_MAGIC) + bytes(20) + bytes([10, 13, 0, 35]) + bytes(8)
    assert read_plan_header(tensorrt_plan).flavor == "tensorrt"
    assert read_plan_header(tensorrt_plan).version == "10.13.0.35"
    with pytest.raises(BackendError, match="magic 0x4f4e4e58"):
        read_plan_header(b"XNNO" + bytes(40))
    with pytest.raises(BackendError, match="shorter than"):
        read_plan_header(b"ftrt")


def test_key_changes_with_every_part():
    base = engine_key("m" * 64, "fp16", {"a": 1}, A6000)
    assert engine_key("m" * 64, "fp16", {"a": 1}, A6000) == base
    others = {
        engine_key("n" * 64, "fp16", {"a": 1}, A6000),
        engine_key("m" * 64, "int8", {"a": 1}, A6000),
        engine_key("m" * 64, "fp16", {"a": 2}, A6000),
        engine_key("m" * 64, "fp16", {"a": 1}, L40S),
        engine_key("m" * 64, "fp16", {"a": 1}, replace(A6000, version="1.8.0.1")),
        engine_key("m" * 64, "fp16", {"a": 1}, replace(A6000, cuda="12.9")),
    }
    assert base not in others and len(others) == 6


def test_stored_engine_is_reused_on_the_same_target(tmp_path: Path, plan: bytes):
    cache = EngineCache(tmp_path)
    path = cache.store(plan, _expected(A6000))
    decision = cache.lookup(_expected(A6000), A6000)
    assert decision
    assert decision.plan_path == path and path.read_bytes() == plan
    assert decision.plan == plan  # the bytes whose sha256 was checked, for the backend to load
    assert decision.metadata is not None and decision.metadata.plan_bytes == len(plan)
    assert "NVIDIA RTX A6000" in decision.reason


def test_engine_for_another_gpu_is_never_reused_and_the_reason_names_both(tmp_path: Path, plan: bytes):
    cache = EngineCache(tmp_path)
    cache.store(plan, _expected(A6000))
    decision = cache.lookup(_expected(L40S), L40S)
    assert not decision and decision.plan is None
    assert decision.reason == (
        "the cached engine was built for NVIDIA RTX A6000 (compute 8.6); this runner has NVIDIA L40S (8.9): rebuilding"
    )


def test_engine_renamed_into_another_gpus_slot_is_caught_by_its_sidecar(tmp_path: Path, plan: bytes):
    cache = EngineCache(tmp_path)
    foreign = _expected(A6000)
    cache.store(plan, foreign)
    wanted = _expected(L40S)
    for source, target in zip(cache.paths(foreign.key), cache.paths(wanted.key)):
        source.rename(target)
    decision = cache.lookup(wanted, L40S)
    assert not decision
    assert decision.reason == "built for NVIDIA RTX A6000 (compute 8.6); this runner has NVIDIA L40S (8.9): rebuilding"


def test_plan_from_another_version_is_rebuilt_from_its_header(tmp_path: Path, plan: bytes):
    cache = EngineCache(tmp_path)
    old = bytearray(plan)
    old[24:28] = bytes([1, 6, 0, 1])
    cache.store(bytes(old), _expected(A6000))  # the sidecar agrees; the header tells the truth
    decision = cache.lookup(_expected(A6000), A6000)
    assert not decision
    assert f"built by TensorRT for RTX 1.6.0.1 (plan header); this runner has TensorRT for RTX {RTX}" in decision.reason


def test_plan_of_the_other_flavor_is_rebuilt(tmp_path: Path, plan: bytes):
    cache = EngineCache(tmp_path)
    target = replace(A6000, flavor="tensorrt", version=RTX)
    cache.store(plan, _expected(target))
    decision = cache.lookup(_expected(target), target)
    assert (
        not decision
        and "built by TensorRT for RTX" in decision.reason
        and "this runner has TensorRT " in decision.reason
    )


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda plan, side: plan.write_bytes(plan.read_bytes()[:1000]), "differs from its sidecar"),
        (lambda plan, side: plan.write_bytes(b"garbage" * 10), "not a TensorRT plan"),
        (lambda plan, side: side.write_text("{not json"), "is not valid JSON"),
        (lambda plan, side: side.unlink(), "cannot be read"),
        (lambda plan, side: side.write_text(json.dumps({"key": "x"})), "lacks model_hash"),
    ],
    ids=["truncated-plan", "garbage-plan", "bad-json", "missing-sidecar", "incomplete-sidecar"],
)
def test_damaged_cache_entries_are_rebuilt(tmp_path: Path, plan: bytes, damage, reason: str):
    cache = EngineCache(tmp_path)
    expected = _expected(A6000)
    cache.store(plan, expected)
    damage(*cache.paths(expected.key))
    decision = cache.lookup(expected, A6000)
    assert not decision
    assert reason in decision.reason and decision.reason.endswith(": rebuilding")


def test_different_options_do_not_match(tmp_path: Path, plan: bytes):
    cache = EngineCache(tmp_path)
    cache.store(plan, _expected(A6000, {"optimization_level": 3}))
    decision = cache.lookup(_expected(A6000, {"optimization_level": 5}), A6000)
    assert not decision and "no cached engine" in decision.reason


def test_timing_cache_is_per_gpu_and_version(tmp_path: Path):
    cache = EngineCache(tmp_path)
    paths = {
        cache.timing_cache_path(A6000),
        cache.timing_cache_path(L40S),
        cache.timing_cache_path(replace(A6000, version="1.8.0.1")),
    }
    assert len(paths) == 3
    assert all(p.parent == tmp_path / "timing" for p in paths)

"""`calibration: {method: auto}`: minmax, entropy and percentile compared on the validation set; the choice is
recorded with the run (a note, the series identity) and cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from trtci.backends.registry import get_backend
from trtci.config import load_config
from trtci.errors import ConfigError
from trtci.pipeline import run as pipeline
from trtci.pipeline.calibration_choice import _rank
from trtci.pipeline.plan import plan_model, series_options
from trtci.results import AccuracyResult, OutputMetrics, RunContext

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"


def _config(tmp_path: Path, method: str = "auto", validation: bool = True) -> Path:
    for name in ("model.onnx", "calibration.npz", "validation.npz"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    model = {
        "name": "digits",
        "path": "model.onnx",
        "precisions": ["fp32", "int8"],
        "batch_sizes": [32],
        "calibration": {"data": "calibration.npz", "method": method},
    }
    if validation:
        model["validation"] = {"data": "validation.npz"}
    config = {
        "models": [model],
        "bench": {"warmup_ms": 1, "duration_s": 0.05, "min_iterations": 3},
        "compare": {"ab_budget_s": 0, "confirm_budget_s": 0},
        "report": None,
    }
    (tmp_path / "trtci.yml").write_text(yaml.safe_dump(config))
    return tmp_path / "trtci.yml"


def test_auto_compares_three_methods_records_the_choice_and_caches_it(tmp_path):
    path = _config(tmp_path)
    first = pipeline.run(load_config(path), RunContext(run_id="1", started_at="2026-01-01T00:00:00Z"))
    notes = [w for w in first.warnings if "calibration method auto" in w]
    assert len(notes) == 2  # one per scheme the run prepares
    for scheme, note in zip(("onnxruntime", "tensorrt"), sorted(notes, key=lambda n: "tensorrt" in n)):
        assert note.startswith(f"digits int8: calibration method auto ({scheme} scheme) chose ")
        for method in ("minmax", "entropy", "percentile"):
            assert f"; {method} " in note or f": {method} " in note
    choices = list((tmp_path / ".trtci-cache" / "prepared" / "choices").glob("*.json"))
    assert len(choices) == 2
    second = pipeline.run(load_config(path), RunContext(run_id="2", started_at="2026-01-01T00:01:00Z"))
    assert [w for w in second.warnings if "calibration method auto" in w] == notes
    int8 = {s.key.label: s.key.options_hash for s in first.series if s.key.precision == "int8"}
    assert int8 == {s.key.label: s.key.options_hash for s in second.series if s.key.precision == "int8"}


def test_the_chosen_methods_are_part_of_the_series_identity(tmp_path):
    config = load_config(_config(tmp_path))
    plan = plan_model(config.models[0])
    backend = get_backend("onnxruntime", config)
    before = series_options(plan, config, "int8", backend, 32)["calibration"]
    plan.calibration_methods.update({"onnxruntime": "entropy", "tensorrt": "minmax"})
    after = series_options(plan, config, "int8", backend, 32)["calibration"]
    assert before[1] == after[1] == "auto"
    assert after[3] == {"onnxruntime": "entropy", "tensorrt": "minmax"} != before[3]


def test_auto_needs_validation_data(tmp_path):
    with pytest.raises(ConfigError, match="method auto compares methods on the validation set"):
        load_config(_config(tmp_path, validation=False))


def _result(passed: bool, ratio: float | None, sqnr: float, agreement: float | None = None) -> AccuracyResult:
    output = OutputMetrics("logits", 0.99, sqnr, 0.1, 0.1, agreement, 0)
    return AccuracyResult(passed=passed, reasons=[], samples=10, outputs=[output], ratio=ratio)


def test_ranking_prefers_passing_then_the_task_metric_then_sqnr():
    candidates = {
        "fails-high-sqnr": _result(False, 0.98, 40.0),
        "passes-low-ratio": _result(True, 0.991, 10.0),
        "passes-high-ratio": _result(True, 0.999, 9.0),
        "passes-high-ratio-better-sqnr": _result(True, 0.999, 12.0),
        "broken": _result(False, float("nan"), float("nan")),
    }
    order = sorted(candidates, key=lambda name: _rank(candidates[name]), reverse=True)
    assert order == [
        "passes-high-ratio-better-sqnr",
        "passes-high-ratio",
        "passes-low-ratio",
        "fails-high-sqnr",
        "broken",
    ]
    assert _rank(_result(True, None, 30.0, agreement=0.97)) < _rank(_result(True, None, 20.0, agreement=0.99))

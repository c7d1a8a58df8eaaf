"""MLPerf accuracy presets: 99% and 99.9% of FP32 on the task metric, reported to 5 significant figures."""

from __future__ import annotations

import numpy as np
import pytest

from trtci.config import AccuracyThresholds, parse_config
from trtci.errors import ConfigError
from trtci.verdict.accuracy import validate


def _thresholds(tmp_path, accuracy: dict) -> AccuracyThresholds:
    (tmp_path / "m.onnx").write_bytes(b"")
    data = {"models": [{"path": "m.onnx", "precisions": ["fp32"], "accuracy": accuracy}]}
    return parse_config(data, "trtci.yml", tmp_path).models[0].accuracy


@pytest.mark.parametrize(("preset", "fraction"), [("mlperf-99", 0.99), ("mlperf-99.9", 0.999)])
def test_a_preset_sets_the_ratio_and_the_agreement(tmp_path, preset, fraction):
    thresholds = _thresholds(tmp_path, {"preset": preset})
    assert (thresholds.preset, thresholds.min_ratio, thresholds.min_top1_agreement) == (preset, fraction, fraction)
    assert _thresholds(tmp_path, {"preset": preset, "min_ratio": fraction}).min_ratio == fraction


def test_a_preset_and_a_different_threshold_conflict(tmp_path):
    with pytest.raises(ConfigError, match="preset mlperf-99.9 sets min_ratio: give the preset or them"):
        _thresholds(tmp_path, {"preset": "mlperf-99.9", "min_ratio": 0.98})
    with pytest.raises(ConfigError, match="accuracy.preset"):
        _thresholds(tmp_path, {"preset": "mlperf-95"})


def _scores(correct: int, total: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros(total, dtype=np.int64)
    scores = np.zeros((total, 10), dtype=np.float32)
    scores[:correct, 0] = 1.0
    scores[correct:, 1] = 1.0
    return scores, labels


def test_ratios_under_a_preset_are_reported_to_5_significant_figures():
    reference, labels = _scores(1000)
    candidate, _ = _scores(999)  # 0.999 of FP32: passes 99.9% exactly
    strict = AccuracyThresholds(preset="mlperf-99.9", min_ratio=0.999, min_top1_agreement=0.999)
    assert validate({"logits": reference}, {"logits": candidate}, strict, labels=labels)
    candidate, _ = _scores(998)  # 0.998
    result = validate({"logits": reference}, {"logits": candidate}, strict, labels=labels)
    assert result.reasons == ["logits: top-1 0.99800 is 0.99800 of FP32's 1.0000 < 0.999"]
    plain = validate({"logits": reference}, {"logits": candidate}, AccuracyThresholds(min_ratio=0.999), labels=labels)
    assert plain.reasons == ["logits: top-1 0.9980 is 0.9980 of FP32's 1.0000 < 0.999"]  # unchanged without one

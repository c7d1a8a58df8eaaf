"""Accuracy math on numpy arrays built by hand, with expected values derived from the construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trtci.config import AccuracyThresholds
from trtci.errors import BackendError, ConfigError, DataError
from trtci.verdict.accuracy import label_accuracy, output_metrics, validate

DEFAULTS = AccuracyThresholds()


def one_hot_scores(classes_per_sample: list[int], classes: int, high: float = 5.0) -> np.ndarray:
    """[N, C] float32 scores whose argmax is the given class of each sample."""
    scores = np.zeros((len(classes_per_sample), classes), dtype=np.float32)
    scores[np.arange(len(classes_per_sample)), classes_per_sample] = high
    return scores


def test_cosine_of_constructed_vectors():
    reference = np.array([[1.0, 0.0, 0.0], [2.0, 3.0, 4.0]], dtype=np.float32)
    candidate = np.array([[1.0, 1.0, 0.0], [2.0, 3.0, 4.0]], dtype=np.float32)
    metrics = output_metrics("out", reference, candidate)
    # Sample 0: angle of 45 degrees; sample 1: identical.
    assert metrics.cosine == pytest.approx((math.cos(math.pi / 4) + 1.0) / 2)


def test_cosine_of_opposite_and_zero_vectors():
    reference = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    candidate = np.array([[-1.0, -2.0], [0.0, 0.0], [3.0, 0.0]])
    metrics = output_metrics("out", reference, candidate)
    # Opposite -> -1, zero vs zero -> 1, zero vs nonzero -> 0.
    assert metrics.cosine == pytest.approx((-1.0 + 1.0 + 0.0) / 3)


def test_identical_outputs_have_cosine_one_and_infinite_sqnr():
    reference = np.random.default_rng(0).normal(size=(8, 37)).astype(np.float32)
    metrics = output_metrics("out", reference, reference.copy())
    assert metrics.cosine == 1.0
    assert metrics.sqnr_db == math.inf
    assert metrics.max_abs_err == 0.0
    assert metrics.max_rel_err == 0.0
    assert metrics.nonfinite == 0


def test_sqnr_of_known_noise_power():
    amplitude, noise = 3.0, 0.03
    reference = np.full((4, 10), amplitude)
    signs = np.where(np.arange(40).reshape(4, 10) % 2 == 0, 1.0, -1.0)
    candidate = reference + noise * signs
    metrics = output_metrics("out", reference, candidate)
    expected = 10 * math.log10(amplitude**2 / noise**2)  # 40 dB
    assert metrics.sqnr_db == pytest.approx(expected)
    assert metrics.max_abs_err == pytest.approx(noise)
    assert metrics.max_rel_err == pytest.approx(noise / amplitude)


def test_relative_error_near_zero_reference_uses_scaled_eps():
    reference = np.array([[1000.0, 0.0]])
    candidate = np.array([[1000.0, 0.5]])
    metrics = output_metrics("out", reference, candidate)
    # The zero reference value is clamped to a millionth of the output's peak (1000 * 1e-6).
    assert metrics.max_rel_err == pytest.approx(0.5 / (1000 * 1e-6))


def test_top1_agreement_on_hand_made_scores():
    reference = one_hot_scores([0, 1, 2, 3], classes=4)
    candidate = one_hot_scores([0, 1, 2, 0], classes=4)
    assert output_metrics("logits", reference, candidate).top1_agreement == pytest.approx(3 / 4)


def test_class_scores_after_dropping_singleton_dims():
    reference = one_hot_scores([0, 1], classes=3).reshape(2, 1, 3, 1)
    assert output_metrics("logits", reference, reference).top1_agreement == 1.0
    single = one_hot_scores([2], classes=3)  # N = 1 must stay a sample axis
    assert output_metrics("logits", single, single).top1_agreement == 1.0
    column = np.ones((5, 1), dtype=np.float32)  # one value per sample is not a class-score output
    assert output_metrics("score", column, column).top1_agreement is None


def test_label_accuracy_top1_and_topk():
    scores = np.array(
        [
            [0.1, 0.7, 0.2],  # ranking 1, 2, 0
            [0.5, 0.3, 0.2],  # ranking 0, 1, 2
            [0.2, 0.3, 0.5],  # ranking 2, 1, 0
            [0.4, 0.4, 0.2],  # tie between 0 and 1: class 0 ranks first
        ]
    )
    labels = np.array([1, 1, 0, 1])
    assert label_accuracy(scores, labels, k=1) == pytest.approx(1 / 4)
    assert label_accuracy(scores, labels, k=2) == pytest.approx(3 / 4)
    assert label_accuracy(scores, labels, k=3) == 1.0


def test_constant_scores_are_not_credited_with_every_label():
    scores = np.zeros((4, 3))
    assert label_accuracy(scores, np.array([0, 1, 2, 1])) == pytest.approx(1 / 4)


def test_one_hot_labels_equal_index_labels():
    scores = one_hot_scores([0, 2, 1, 1], classes=3)
    indices = np.array([0, 2, 2, 1])
    one_hot = np.eye(3, dtype=np.float32)[indices]
    assert label_accuracy(scores, one_hot) == label_accuracy(scores, indices) == pytest.approx(3 / 4)


def test_validate_reference_against_itself_passes_with_ratio_one():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 10)).astype(np.float32)
    labels = logits.argmax(axis=1)
    labels[:5] = (labels[:5] + 1) % 10  # FP32 itself is right on 15 of 20
    reference = {"logits": logits, "features": rng.normal(size=(20, 4, 4)).astype(np.float32)}
    result = validate(reference, reference, DEFAULTS, labels=labels)
    assert result
    assert result.reasons == []
    assert result.ratio == 1.0
    assert result.top1 == result.reference_top1 == pytest.approx(15 / 20)
    assert result.top5 is not None and result.top5 == result.reference_top5
    assert result.samples == 20
    assert result.thresholds == {"min_ratio": DEFAULTS.min_ratio}
    assert validate(reference, reference, DEFAULTS)


def test_label_ratio_gates():
    labels = np.arange(10) % 4
    reference = {"logits": one_hot_scores(list(labels), classes=4)}
    wrong_once = list(labels)
    wrong_once[0] = 3  # candidate right on 9 of 10, FP32 on 10 of 10
    candidate = {"logits": one_hot_scores(wrong_once, classes=4)}
    result = validate(reference, candidate, DEFAULTS, labels=labels)
    assert not result
    assert result.ratio == pytest.approx(0.9)
    assert result.top5 is None  # only 4 classes
    assert result.reasons == ["logits: top-1 0.9000 is 0.9000 of FP32's 1.0000 < 0.99"]
    assert validate(reference, candidate, AccuracyThresholds(min_ratio=0.9), labels=labels)


def test_label_output_selects_the_scored_output():
    labels = np.array([0, 1, 2])
    reference = {"aux": one_hot_scores([2, 2, 2], classes=3), "logits": one_hot_scores([0, 1, 2], classes=3)}
    by_default = validate(reference, reference, DEFAULTS, labels=labels)
    assert by_default.reference_top1 == pytest.approx(1 / 3)  # the first class-score output: "aux"
    chosen = validate(reference, reference, DEFAULTS, labels=labels, label_output="logits")
    assert chosen.reference_top1 == 1.0
    with pytest.raises(ConfigError, match="'missing'"):
        validate(reference, reference, DEFAULTS, labels=labels, label_output="missing")


def test_reference_top1_zero_gives_no_ratio_and_a_reason():
    reference = {"logits": one_hot_scores([0, 0, 0], classes=3)}
    result = validate(reference, reference, DEFAULTS, labels=np.array([1, 2, 1]))
    assert not result
    assert result.ratio is None
    assert result.reference_top1 == 0.0
    assert "FP32 top-1 is 0" in result.reasons[0]


def test_label_count_mismatch_names_both_counts():
    reference = {"logits": one_hot_scores([0, 1, 2], classes=3)}
    with pytest.raises(DataError, match=r"2 labels for 3 validation samples"):
        validate(reference, reference, DEFAULTS, labels=np.array([0, 1]))


def test_labels_out_of_range_are_a_data_error():
    reference = {"logits": one_hot_scores([0, 1, 2], classes=3)}
    with pytest.raises(DataError, match=r"\[0, 2\]"):
        validate(reference, reference, DEFAULTS, labels=np.array([0, 1, 3]))


def test_nan_in_candidate_fails_with_the_count():
    reference = {"logits": one_hot_scores([0, 1, 2, 0], classes=3), "box": np.ones((4, 2), dtype=np.float32)}
    broken = reference["logits"].copy()
    broken[1, 2] = np.nan
    broken[3, 0] = np.inf
    result = validate(reference, {"logits": broken, "box": reference["box"]}, DEFAULTS)
    assert not result
    assert result.reasons == ["logits: 2 NaN/Inf values in the output"]
    assert [m.nonfinite for m in result.outputs] == [2, 0]


def test_nan_fails_also_with_labels():
    reference = {"logits": one_hot_scores([0, 1, 2], classes=3)}
    broken = reference["logits"].copy()
    broken[0, 1] = np.nan
    result = validate(reference, {"logits": broken}, DEFAULTS, labels=np.array([0, 1, 2]))
    assert not result
    assert "logits: 1 NaN/Inf values in the output" in result.reasons


def test_cosine_threshold_gates_and_reports_the_numbers():
    reference = {"emb": np.array([[1.0, 0.0], [1.0, 0.0]])}
    angle = 0.2
    candidate = {"emb": np.array([[math.cos(angle), math.sin(angle)], [1.0, 0.0]])}
    expected_cosine = (math.cos(angle) + 1.0) / 2  # about 0.9900
    loose = AccuracyThresholds(min_cosine=expected_cosine - 1e-3, min_sqnr_db=0.0)
    strict = AccuracyThresholds(min_cosine=expected_cosine + 1e-3, min_sqnr_db=0.0)
    assert validate(reference, candidate, loose)
    result = validate(reference, candidate, strict)
    assert not result
    assert result.reasons == [f"emb: cosine {expected_cosine:.4f} < {strict.min_cosine:g}"]
    assert set(result.thresholds) == {"min_cosine", "min_sqnr_db", "min_top1_agreement"}


def test_sqnr_threshold_gates():
    reference = {"out": np.full((2, 50), 1.0)}
    candidate = {"out": np.full((2, 50), 1.0 + 0.1)}  # noise 0.1 on signal 1: 20 dB exactly
    expected = 10 * math.log10(1.0 / 0.1**2)
    assert not validate(reference, candidate, AccuracyThresholds(min_sqnr_db=expected + 0.5))
    assert validate(reference, candidate, AccuracyThresholds(min_sqnr_db=expected - 0.5))
    result = validate(reference, candidate, AccuracyThresholds(min_sqnr_db=30))
    assert result.reasons == [f"out: SQNR {expected:.2f} dB < 30 dB"]


def test_top1_agreement_threshold_gates():
    # Scores nearly equal, so flipping one argmax keeps cosine and SQNR high.
    reference = np.tile(np.array([[1.0, 1.01, 1.0, 1.0]]), (10, 1))
    candidate = reference.copy()
    candidate[0] = [1.01, 1.0, 1.0, 1.0]
    result = validate({"logits": reference}, {"logits": candidate}, AccuracyThresholds(min_sqnr_db=0))
    assert not result
    assert result.reasons == ["logits: top-1 agreement 0.9000 < 0.99"]
    assert validate({"logits": reference}, {"logits": candidate}, AccuracyThresholds(min_top1_agreement=0.9))


def test_missing_output_and_shape_mismatch_are_backend_errors():
    reference = {"logits": np.zeros((2, 3)), "aux": np.zeros((2, 1))}
    with pytest.raises(BackendError, match="'aux'"):
        validate(reference, {"logits": np.zeros((2, 3))}, DEFAULTS)
    with pytest.raises(BackendError, match="'logits'.*\\[2, 4\\].*\\[2, 3\\]"):
        validate(reference, {"logits": np.zeros((2, 4)), "aux": np.zeros((2, 1))}, DEFAULTS)


def test_candidate_in_float16_is_compared_in_float64():
    reference = np.random.default_rng(2).normal(size=(16, 32)).astype(np.float32)
    candidate = reference.astype(np.float16)
    metrics = output_metrics("out", reference, candidate)
    error = reference.astype(np.float64) - candidate.astype(np.float64)
    expected = 10 * math.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum(error**2))
    assert metrics.sqnr_db == pytest.approx(expected)
    assert metrics.sqnr_db > 50  # float16 keeps about 11 bits: far above the 20 dB gate


def wrong_on(labels: list[int], wrong: range, classes: int) -> np.ndarray:
    """Scores that pick the label, except on the samples in `wrong`, where they pick the next class."""
    picked = [(label + 1) % classes if i in wrong else label for i, label in enumerate(labels)]
    return one_hot_scores(picked, classes)


def test_top1_delta_is_candidate_minus_fp32_with_an_interval_from_the_paired_samples():
    classes, n = 4, 400
    labels = [i % classes for i in range(n)]
    # FP32 misses samples 0..19; the candidate misses those and 20..39 as well: 20 more misses, no new hits.
    reference = {"logits": wrong_on(labels, range(20), classes)}
    candidate = {"logits": wrong_on(labels, range(40), classes)}
    result = validate(reference, candidate, DEFAULTS, labels=np.array(labels))
    expected = (n - 40) / n - (n - 20) / n
    assert result.delta == pytest.approx(expected) == pytest.approx(result.top1 - result.reference_top1)
    # Every discordant pair goes the same way, so no resample can show the candidate ahead.
    assert result.delta_low <= result.delta <= result.delta_high < 0
    assert not result.passed  # the gate is still the ratio: 0.9 / 0.95 < 0.99
    again = validate(reference, candidate, DEFAULTS, labels=np.array(labels))
    assert (again.delta, again.delta_low, again.delta_high) == (result.delta, result.delta_low, result.delta_high)


def test_more_disagreement_at_the_same_delta_widens_the_interval():
    classes, n = 4, 400
    labels = [i % classes for i in range(n)]
    reference = {"logits": wrong_on(labels, range(20), classes)}
    # Both candidates are 20 samples worse than FP32. The first misses FP32's misses plus 20 more (20 discordant
    # pairs); the second gets FP32's 20 misses right and misses 40 others (60 discordant pairs).
    nested = validate(reference, {"logits": wrong_on(labels, range(40), classes)}, DEFAULTS, labels=np.array(labels))
    crossed = validate(
        reference, {"logits": wrong_on(labels, range(20, 60), classes)}, DEFAULTS, labels=np.array(labels)
    )
    assert nested.delta == pytest.approx(crossed.delta) == pytest.approx(-20 / n)
    assert crossed.delta_high - crossed.delta_low > nested.delta_high - nested.delta_low
    assert crossed.delta_low < crossed.delta < crossed.delta_high


def test_identical_predictions_give_a_zero_delta_and_no_delta_without_labels():
    labels = [0, 1, 2, 0, 1, 2]
    scores = {"logits": wrong_on(labels, range(2), 3)}
    labelled = validate(scores, scores, DEFAULTS, labels=np.array(labels))
    assert labelled.delta == 0.0 and labelled.delta_low < 0 < labelled.delta_high  # 6 samples show little
    unlabelled = validate(scores, scores, DEFAULTS)
    assert (unlabelled.delta, unlabelled.delta_low, unlabelled.delta_high) == (None, None, None)

"""Accuracy of a lower precision against the FP32 reference, over a whole validation set.

Outputs arrive by name, each stacked over the N validation samples along axis 0, and are compared in float64.
With labels the gate is MLPerf's: top-1 of the precision over top-1 of FP32 must reach `min_ratio`; the top-1
difference (candidate minus FP32) comes with a 95% paired bootstrap interval over the samples, shown, not gated.
Without labels the outputs themselves must agree (cosine, SQNR and, for class scores, top-1 agreement), as Polygraphy
checks them. NaN or Inf in a candidate output always fails. Each check also keeps one bit per sample (`hits`: top-1
right, or without labels equal to FP32's top-1), so a later run can judge its accuracy against this one, paired by
sample (compare_accuracy.py).

SQNR is +inf for identical outputs. JSON has no infinity: writers should store non-finite floats as null
(`json.dumps(..., allow_nan=False)` after mapping them), and a report shows a null SQNR with max_abs_err 0 as
"identical".
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence

import numpy as np

from trtci.config import AccuracyThresholds
from trtci.errors import BackendError, ConfigError, DataError
from trtci.results import AccuracyResult, OutputMetrics
from trtci.verdict.stats import accuracy_delta_interval

# The top-1 difference's paired bootstrap interval: shown, not gated (the gate is MLPerf's ratio). A fixed seed
# gives the same outputs the same interval in every run.
DELTA_CONFIDENCE = 0.95
DELTA_SEED = 0

# Relative error divides by max(|ref|, eps) with eps a millionth of the output's largest magnitude, so values
# that are numerically zero next to the rest of the output do not blow the ratio up.
REL_EPS_FRACTION = 1e-6


def _class_scores(array: np.ndarray) -> np.ndarray | None:
    """[N, C] view of a floating output whose shape is [N, C] after dropping singleton dims (not N), C > 1."""
    if not np.issubdtype(array.dtype, np.floating) or array.ndim < 2:
        return None
    shape = (array.shape[0],) + tuple(d for d in array.shape[1:] if d != 1)
    if len(shape) != 2 or shape[1] < 2:
        return None
    return array.reshape(shape)


def may_hold_class_scores(dtype: str, shape: Sequence[int | str | None]) -> bool:
    """Whether an output declared with this numpy dtype name and shape can hold class scores [N, C > 1].

    Symbolic and unknown dims may take any size and an output with no declared shape may be anything, so this is
    False only where the declaration rules class scores out: an integer or boolean type, rank 1, or fixed dims
    that leave no single C > 1 once singleton dims are dropped (a regression output [N, 1], say).
    """
    try:
        if not np.issubdtype(np.dtype(dtype), np.floating):
            return False
    except TypeError:
        pass  # a type numpy does not name (bfloat16, say): it may still hold scores
    if not shape:
        return True
    fixed = [d for d in shape[1:] if isinstance(d, int) and d != 1]
    open_dims = [d for d in shape[1:] if not isinstance(d, int)]
    if len(fixed) > 1:
        return False
    return fixed[0] > 1 if fixed else bool(open_dims)


def _label_indices(labels: np.ndarray, samples: int, classes: int) -> np.ndarray:
    """Class indices from 1-D integer labels or one-hot [N, C] labels; DataError when they do not fit."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim == 2 and labels.shape[1] == classes:
        labels = labels.argmax(axis=1)
    elif labels.ndim != 1:
        raise DataError(
            f"labels have shape {list(labels.shape)}; give one class index per sample [N] "
            f"or one-hot rows [N, {classes}]"
        )
    if labels.shape[0] != samples:
        raise DataError(f"{labels.shape[0]} labels for {samples} validation samples; give exactly one label per sample")
    if labels.dtype.kind not in "biuf" or (labels.dtype.kind == "f" and not np.all(labels == np.round(labels))):
        raise DataError(f"labels must be integer class indices; got {labels.dtype} values")
    indices = labels.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= classes):
        raise DataError(
            f"labels range over [{indices.min()}, {indices.max()}] but the output has {classes} classes; "
            f"labels must be class indices in [0, {classes - 1}]"
        )
    return indices


def label_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores.

    `scores` is a class-score output ([N, C] after dropping singleton dims); `labels` are class indices [N] or
    one-hot rows [N, C]. Ties go to the lower class index, as np.argmax breaks them, so a constant output is
    not credited with every label.
    """
    return float(np.mean(label_correct(scores, labels, k)))


def label_correct(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Per sample, whether its label is among the k highest scores: the booleans `label_accuracy` averages."""
    matrix = _class_scores(np.asarray(scores))
    if matrix is None:
        raise DataError(f"scores of shape {list(np.shape(scores))} are not class scores [N, C] with C > 1")
    samples, classes = matrix.shape
    if not 1 <= k <= classes:
        raise ValueError(f"k must be in [1, {classes}], got {k}")
    indices = _label_indices(labels, samples, classes)
    if samples == 0:
        raise DataError("the validation set is empty; give at least one sample")
    top_k = np.argsort(-matrix.astype(np.float64), axis=1, kind="stable")[:, :k]
    return np.any(top_k == indices[:, None], axis=1)


def _cosine_per_sample(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine of each sample's flattened vectors; zero-vs-zero is 1.0 and zero-vs-nonzero 0.0."""
    norm_ref = np.linalg.norm(reference, axis=1)
    norm_cand = np.linalg.norm(candidate, axis=1)
    denominator = norm_ref * norm_cand
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.clip(np.sum(reference * candidate, axis=1) / denominator, -1.0, 1.0)
    cosine = np.where(denominator > 0, cosine, 0.0)
    cosine = np.where((norm_ref == 0) & (norm_cand == 0), 1.0, cosine)
    # Rounding leaves identical non-zero vectors a hair below 1, which a threshold of 1.0 would reject.
    return np.where(np.all(reference == candidate, axis=1), 1.0, cosine)


def _sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    signal = float(np.sum(reference * reference))
    noise = float(np.sum((reference - candidate) ** 2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def output_metrics(name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputMetrics:
    """How closely `candidate` matches `reference` for one output stacked over N samples on axis 0.

    Raises BackendError when the shapes differ. Metrics over NaN/Inf values come out NaN; `nonfinite` counts
    them in the candidate.
    """
    if reference.shape != candidate.shape:
        raise BackendError(
            f"output {name!r} has shape {list(candidate.shape)} but the FP32 reference has "
            f"{list(reference.shape)}; both precisions must produce the same shapes"
        )
    if reference.ndim == 0 or reference.shape[0] == 0:
        raise DataError(f"output {name!r} holds no samples; stack outputs over the validation set on axis 0")
    samples = reference.shape[0]
    ref = reference.astype(np.float64).reshape(samples, -1)
    cand = candidate.astype(np.float64).reshape(samples, -1)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(ref - cand)
        peak = float(np.max(np.abs(ref))) if ref.size else 0.0
        eps = max(REL_EPS_FRACTION * peak, float(np.finfo(np.float32).tiny))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(np.abs(ref), eps)).max()) if diff.size else 0.0
        cosine = float(np.mean(_cosine_per_sample(ref, cand)))
        sqnr = _sqnr_db(ref, cand)
    ref_scores, cand_scores = _class_scores(reference), _class_scores(candidate)
    agreement = None
    if ref_scores is not None and cand_scores is not None:
        agreement = float(np.mean(ref_scores.argmax(axis=1) == cand_scores.argmax(axis=1)))
    return OutputMetrics(
        name=name,
        cosine=cosine,
        sqnr_db=sqnr,
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        top1_agreement=agreement,
        nonfinite=int(np.count_nonzero(~np.isfinite(candidate))),
    )


def _check_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> int:
    """The number of samples; BackendError when names or sample counts do not line up."""
    if not reference:
        raise BackendError("the FP32 reference produced no outputs to compare")
    missing = [name for name in reference if name not in candidate]
    unexpected = [name for name in candidate if name not in reference]
    if missing or unexpected:
        raise BackendError(
            f"outputs differ from the FP32 reference: missing {missing}, unexpected {unexpected}; "
            "every precision must produce the same named outputs"
        )
    first = next(iter(reference))
    samples = np.shape(reference[first])[0] if np.ndim(reference[first]) else 0
    for name, array in reference.items():
        count = np.shape(array)[0] if np.ndim(array) else 0
        if count != samples:
            raise BackendError(
                f"output {name!r} stacks {count} samples but {first!r} stacks {samples}; "
                "stack every output over the validation set on axis 0"
            )
    if samples == 0:
        raise DataError("the validation set is empty; give at least one sample")
    return samples


def _agreement_reasons(metrics: OutputMetrics, thresholds: AccuracyThresholds) -> list[str]:
    reasons = []
    if not metrics.cosine >= thresholds.min_cosine:
        reasons.append(f"{metrics.name}: cosine {metrics.cosine:.4f} < {thresholds.min_cosine:g}")
    if not metrics.sqnr_db >= thresholds.min_sqnr_db:
        reasons.append(f"{metrics.name}: SQNR {metrics.sqnr_db:.2f} dB < {thresholds.min_sqnr_db:g} dB")
    agreement = metrics.top1_agreement
    if agreement is not None and not agreement >= thresholds.min_top1_agreement:
        shown = f"{agreement:{_digits(thresholds)}}"
        reasons.append(f"{metrics.name}: top-1 agreement {shown} < {thresholds.min_top1_agreement:g}")
    return reasons


def _label_output_name(reference: dict[str, np.ndarray], label_output: str | None) -> str:
    if label_output is not None:
        if label_output not in reference:
            raise ConfigError(
                f"label_output {label_output!r} is not an output of the model; outputs: {sorted(reference)}"
            )
        if _class_scores(np.asarray(reference[label_output])) is None:
            raise ConfigError(
                f"label_output {label_output!r} has shape {list(np.shape(reference[label_output]))}, "
                "not class scores [N, C]; name an output of class scores"
            )
        return label_output
    for name, array in reference.items():
        if _class_scores(np.asarray(array)) is not None:
            return name
    raise DataError("labels were given but no output holds class scores [N, C]; drop the labels or name label_output")


def validate(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    thresholds: AccuracyThresholds,
    labels: np.ndarray | None = None,
    label_output: str | None = None,
) -> AccuracyResult:
    """Compare a precision's outputs with FP32's over the whole validation set; `bool(result)` is the verdict.

    With labels: passes iff top-1 / FP32 top-1 >= thresholds.min_ratio, measured on `label_output` or the
    first class-score output. Without: passes iff every output reaches min_cosine and min_sqnr_db, and
    class-score outputs min_top1_agreement. NaN/Inf in a candidate output always fails. Raises BackendError
    when outputs differ in names or shapes, DataError when labels do not fit the samples.
    """
    samples = _check_outputs(reference, candidate)
    metrics = [output_metrics(name, np.asarray(reference[name]), np.asarray(candidate[name])) for name in reference]
    reasons = [f"{m.name}: {m.nonfinite} NaN/Inf values in the output" for m in metrics if m.nonfinite]
    result = AccuracyResult(passed=False, reasons=reasons, samples=samples, outputs=metrics)
    if labels is None:
        result.thresholds = {
            "min_cosine": thresholds.min_cosine,
            "min_sqnr_db": thresholds.min_sqnr_db,
            "min_top1_agreement": thresholds.min_top1_agreement,
        }
        for m in metrics:
            if not m.nonfinite:
                reasons.extend(_agreement_reasons(m, thresholds))
        for name in reference:  # the first class-score output: per-sample agreement, for later runs to pair with
            ref_scores, cand_scores = (
                _class_scores(np.asarray(reference[name])),
                _class_scores(np.asarray(candidate[name])),
            )
            if ref_scores is not None and cand_scores is not None:
                result.hits = pack_hits(ref_scores.argmax(axis=1) == cand_scores.argmax(axis=1))
                result.hits_metric = "top1_agreement"
                break
    else:
        _apply_labels(result, reference, candidate, labels, label_output, thresholds)
    result.passed = not reasons
    return result


def _apply_labels(
    result: AccuracyResult,
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    labels: np.ndarray,
    label_output: str | None,
    thresholds: AccuracyThresholds,
) -> None:
    """Fill the label accuracies, the ratio and its reason into `result`."""
    name = _label_output_name(reference, label_output)
    ref_scores = np.asarray(reference[name])
    cand_scores = np.asarray(candidate[name])
    classes = ref_scores.size // ref_scores.shape[0]  # [N, C] once singleton dims are dropped
    result.thresholds = {"min_ratio": thresholds.min_ratio}
    correct, reference_correct = label_correct(cand_scores, labels, 1), label_correct(ref_scores, labels, 1)
    result.hits, result.hits_metric = pack_hits(correct), "top1"
    result.top1 = float(np.mean(correct))
    result.reference_top1 = float(np.mean(reference_correct))
    result.delta, result.delta_low, result.delta_high = accuracy_delta_interval(
        reference_correct, correct, confidence=DELTA_CONFIDENCE, seed=DELTA_SEED
    )
    if classes > 5:
        result.top5 = label_accuracy(cand_scores, labels, 5)
        result.reference_top5 = label_accuracy(ref_scores, labels, 5)
    if result.reference_top1 == 0:
        result.reasons.append(
            f"{name}: FP32 top-1 is 0 on these labels, so no ratio can be formed; check that the labels "
            "match the model's classes"
        )
        return
    result.ratio = result.top1 / result.reference_top1
    digits = _digits(thresholds)
    if not result.ratio >= thresholds.min_ratio:
        result.reasons.append(
            f"{name}: top-1 {result.top1:{digits}} is {result.ratio:{digits}} of FP32's "
            f"{result.reference_top1:{digits}} < {thresholds.min_ratio:g}"
        )


def _digits(thresholds: AccuracyThresholds) -> str:
    """The format of accuracies in reasons: MLPerf presets report 5 significant figures (0.99899 < 0.999 must
    not read 0.9990), plain thresholds 4 decimals."""
    return "#.5g" if thresholds.preset else ".4f"


def pack_hits(hits: np.ndarray) -> str:
    """Per-sample booleans as base64 of numpy.packbits: 10,000 samples take 1,668 characters."""
    return base64.b64encode(np.packbits(np.asarray(hits, dtype=bool)).tobytes()).decode("ascii")


def unpack_hits(text: str, samples: int) -> np.ndarray | None:
    """The inverse of `pack_hits` for `samples` samples; None when `text` is empty or does not hold that many."""
    try:
        raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError):
        return None
    if not text or samples <= 0 or raw.size != (samples + 7) // 8:
        return None
    return np.unpackbits(raw)[:samples].astype(bool)

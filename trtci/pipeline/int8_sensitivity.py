"""Which quantized tensors of a failing INT8 model hurt its outputs most, by ONNX node.

Two passes keep this affordable on large models. The screen runs the Q/DQ model once over a few samples and
compares every quantized tensor with its dequantized copy (ONNX Runtime's qdq_loss_debug idea): the local loss
of each. The most lossy tensors are then put alone into the FP32 graph, one at a time (trtci.pipeline.int8_units),
and the final outputs measured against FP32: the ranking is by that effect, the SQNR of the outputs (and the top-1
ratio where there are labels), so a tensor that rounds badly but does not matter ranks low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx

from trtci.config import AccuracyThresholds
from trtci.pipeline.data import Dataset
from trtci.pipeline.int8_eval import dataset_outputs, subset, tensor_errors
from trtci.pipeline.int8_units import Unit, find_units, only
from trtci.results import NodeSensitivity
from trtci.verdict.accuracy import validate

SCREEN_SAMPLES = 64  # samples for the local screen
EFFECT_SAMPLES = 256  # samples for each tensor's effect on the outputs
EFFECT_CANDIDATES = 12  # tensors whose effect on the outputs is measured, most lossy first
OUTLIER_SPREAD = 100.0  # a channel this many times the median channel's RMS is an outlier


@dataclass
class RankedUnit:
    """A unit with its measured effect (None past the measured candidates), for the search that keeps nodes in
    float."""

    unit: Unit
    sensitivity: NodeSensitivity | None


def rank_units(
    fp32: onnx.ModelProto,
    int8: onnx.ModelProto,
    data: Dataset,
    reference: dict[str, np.ndarray],
    thresholds: AccuracyThresholds,
    batch: int,
    label_output: str | None = None,
    threads: int = 0,
) -> list[RankedUnit]:
    """The quantized tensors of `int8` that matter most first, each with its node and effect on the outputs; then
    the tensors not measured, most lossy first.

    `fp32` is the graph `int8` was quantized from (node names match); `reference` holds FP32's outputs on `data`.
    """
    units = find_units(fp32, int8)
    if not units:
        return []
    local, spread = _screen(fp32, int8, units, subset(data, SCREEN_SAMPLES), batch, threads)
    _blame_outliers(units, spread)
    ordered = sorted(units, key=lambda u: local[u.source])
    candidates, rest = ordered[:EFFECT_CANDIDATES], ordered[EFFECT_CANDIDATES:]
    sample = subset(data, EFFECT_SAMPLES)
    expected = {name: value[: sample.size] for name, value in reference.items()}
    measured: list[tuple[Unit, NodeSensitivity]] = []
    for unit in candidates:
        alone = only(fp32, int8, unit).SerializeToString()
        outputs = dataset_outputs(alone, sample, batch, threads)
        result = validate(expected, outputs, thresholds, sample.labels, label_output)
        sqnr = min(o.sqnr_db for o in result.outputs)
        measured.append(
            (unit, NodeSensitivity(unit.blamed, unit.op_type, unit.source, sqnr, local[unit.source], result.ratio))
        )
    # The outputs' SQNR first: it is continuous and points at where the error starts; the top-1 ratio, coarse on
    # a few hundred samples, breaks ties.
    measured.sort(key=lambda pair: (_order(pair[1].sqnr_db, math.inf), _order(pair[1].ratio, 1.0)))
    return [RankedUnit(unit, sensitivity) for unit, sensitivity in measured] + [RankedUnit(u, None) for u in rest]


def _blame_outliers(units: list[Unit], spread: dict[str, float]) -> None:
    """A weight whose reader's input has an outlier channel is blamed on where that outlier is computed: its
    rounding loss comes from compensating the outlier (the tiny weights that undo a 1000x channel round to 0),
    and the outlier is what to fix."""
    activations = {reader: unit for unit in units if not unit.weight for reader, _, _ in unit.readers}
    for unit in units:
        source = activations.get(unit.readers[0][0]) if unit.weight else None
        if source is not None and spread.get(source.source, 1.0) >= OUTLIER_SPREAD:
            unit.blamed, unit.op_type = source.blamed, source.op_type


def _order(value: float | None, default: float) -> float:
    """Sort key: NaN (the outputs broke) first, None as `default`."""
    if value is None:
        return default
    return -math.inf if math.isnan(value) else value


def _screen(
    fp32: onnx.ModelProto, int8: onnx.ModelProto, units: list[Unit], data: Dataset, batch: int, threads: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Local SQNR of each unit's tensor against its rounded copy, and its channel spread, in one pass of the
    Q/DQ model over `data`."""
    probe = onnx.ModelProto()
    probe.CopyFrom(int8)
    weights = {t.name: t for t in fp32.graph.initializer}
    pairs: dict[str, tuple[str, str]] = {}
    for unit in units:
        rounded = unit.chain[-1].output[0]
        original = unit.float_copy
        if not original:  # a weight stored pre-quantized: its float values come from the FP32 graph
            original = f"{unit.source}__trtci_float"
            tensor = onnx.TensorProto()
            tensor.CopyFrom(weights[unit.source])
            tensor.name = f"{original}_value"
            probe.graph.initializer.append(tensor)
            probe.graph.node.append(onnx.helper.make_node("Identity", [tensor.name], [original]))
        pairs[unit.source] = (original, rounded)
    errors = tensor_errors(probe, pairs.values(), data, batch, threads)
    local = {
        source: errors[pair][0] if not math.isnan(errors[pair][0]) else -math.inf for source, pair in pairs.items()
    }
    return local, {source: errors[pair][1] for source, pair in pairs.items()}

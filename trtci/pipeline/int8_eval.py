"""INT8 candidates run on ONNX Runtime's CPU for their accuracy: whole outputs over a data set, and intermediate
tensors of a Q/DQ model for the local error of each quantized tensor.

The calibration choice and the INT8 root cause score many throwaway models (one per method, per quantized
tensor, per exclusion set); they run here in-process, in the FP32 reference's own runtime, rather than through a
backend built for timing one model. Q/DQ models run everywhere ONNX Runtime does, so accuracy means the same on
a runner with or without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from trtci.errors import BackendError
from trtci.pipeline.data import Dataset

PROVIDER = "CPUExecutionProvider"


def _session(model: Path | bytes, threads: int, optimize: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # a quantized model's unused-initializer warnings are noise here
    if not optimize:  # keep Q/DQ pairs unfused, so their outputs are the dequantized values themselves
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, sess_options=options, providers=[PROVIDER])
    except Exception as e:  # ONNX Runtime raises its own Fail/InvalidGraph types
        raise BackendError(f"ONNX Runtime cannot load the candidate model ({str(e).splitlines()[0]})") from e


def dataset_outputs(model: Path | bytes, data: Dataset, batch: int, threads: int = 0) -> dict[str, np.ndarray]:
    """Every output of `model` over every sample of `data`, stacked on axis 0 (padding rows dropped)."""
    session = _session(model, threads)
    names = [o.name for o in session.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feeds, real in data.full_batches(batch):
        for name, value in zip(names, session.run(names, feeds)):
            chunks[name].append(value[:real])
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def tensor_errors(
    model: onnx.ModelProto, pairs: Iterable[tuple[str, str]], data: Dataset, batch: int, threads: int = 0
) -> dict[tuple[str, str], tuple[float, float]]:
    """For each (float tensor, its dequantized copy) pair of a Q/DQ model over `data`: how much the quantizer
    loses there, as the median over channels of each channel's SQNR in dB; and the tensor's channel spread, its
    largest channel's RMS over the median channel's (an outlier channel shows as 100 and more).

    Per channel, because an outlier channel that takes the whole 8-bit range rounds the others to zero while
    the tensor's overall SQNR, dominated by the outlier's energy, still looks fine. The channel axis is 1 (NCHW
    activations, [N, C] features), or the last one for rank-3 tensors ([N, S, C] sequences).
    """
    pairs = list(pairs)
    wanted = sorted({name for pair in pairs for name in pair})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted if name not in present)
    session = _session(probe.SerializeToString(), threads, optimize=False)
    signal: dict[tuple[str, str], np.ndarray | float] = dict.fromkeys(pairs, 0.0)
    noise: dict[tuple[str, str], np.ndarray | float] = dict.fromkeys(pairs, 0.0)
    for feeds, real in data.full_batches(batch):
        values = dict(zip(wanted, session.run(wanted, feeds)))
        for pair in pairs:
            reference, rounded = (values[name].astype(np.float64) for name in pair)
            if reference.shape[:1] == (batch,):  # activations: drop padding rows; weights are the same each batch
                reference, rounded = reference[:real], rounded[:real]
            signal[pair] = signal[pair] + _per_channel(reference * reference)
            noise[pair] = noise[pair] + _per_channel((reference - rounded) ** 2)
    return {
        pair: (
            _median_db(np.atleast_1d(signal[pair]), np.atleast_1d(noise[pair])),
            _spread(np.atleast_1d(signal[pair])),
        )
        for pair in pairs
    }


def _spread(energy: np.ndarray) -> float:
    live = energy[energy > 0]
    return float(np.sqrt(live.max() / np.median(live))) if live.size else 1.0


def _per_channel(values: np.ndarray) -> np.ndarray:
    if values.ndim < 2:
        return np.atleast_1d(values.sum())
    axis = values.ndim - 1 if values.ndim == 3 else 1
    return values.sum(axis=tuple(a for a in range(values.ndim) if a != axis))


def _median_db(signal: np.ndarray, noise: np.ndarray) -> float:
    live = signal > 0  # channels that are always zero carry nothing to lose
    if not live.any():
        return float("inf") if not noise.any() else float("-inf")
    with np.errstate(divide="ignore"):
        ratios = noise[live] / signal[live]
    median = float(np.median(ratios))
    return float("inf") if median == 0 else float(-10.0 * np.log10(median))


def first_nonfinite(path: Path, feeds: list[dict[str, np.ndarray]], threads: int = 0) -> str | None:
    """The first node (in graph order) whose float output holds NaN or Inf on any of `feeds`, or None."""
    model = onnx.load(str(path))
    nodes = [node for node in model.graph.node if node.op_type != "Constant"]
    present = {o.name for o in model.graph.output}
    wanted = [name for node in nodes for name in node.output if name]
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in wanted if name not in present)
    session = _session(model.SerializeToString(), threads, optimize=False)
    broken: set[str] = set()
    for feed in feeds:
        for name, value in zip(wanted, session.run(wanted, feed)):
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                broken.add(name)
    return next((node.name or node.op_type for node in nodes if broken.intersection(node.output)), None)


def subset(data: Dataset, samples: int) -> Dataset:
    """The first `samples` samples of `data` (all of them when it has fewer)."""
    if data.size <= samples:
        return data
    labels = data.labels[:samples] if data.labels is not None else None
    return Dataset(data.source, {k: v[:samples] for k, v in data.arrays.items()}, labels)

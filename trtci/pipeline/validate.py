"""Accuracy against FP32: the reference outputs, each variant's outputs on the validation set, and the verdict.

The FP32 reference always comes from ONNX Runtime on the CPU, whatever backends a run times: one reference for
every backend, computed the same way on every runner, GPU or not (a design decision). The comparison itself is
trtci.verdict.accuracy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from trtci.backends.base import Backend, Session
from trtci.backends.registry import get_backend
from trtci.config import Config
from trtci.errors import BackendError, DataError, ModelError
from trtci.pipeline.explain import diagnose
from trtci.pipeline.plan import ModelPlan, load_request, validation_batch
from trtci.pipeline.prepare import PreparedModel
from trtci.pipeline.progress import Progress
from trtci.pipeline.variants import Variant
from trtci.results import AccuracyResult
from trtci.verdict.accuracy import validate

REFERENCE_BACKEND = "onnxruntime"


def reference_backend(backends: list[Backend], config: Config) -> Backend:
    """The backend that computes FP32 reference outputs: ONNX Runtime, the run's own one where it runs it."""
    for backend in backends:
        if backend.name == REFERENCE_BACKEND:
            return backend
    return get_backend(REFERENCE_BACKEND, config)


def reference_outputs(
    plan: ModelPlan,
    config: Config,
    backends: list[Backend],
    reference: Backend,
    fp32: Variant,
    progress: Progress,
) -> dict[str, np.ndarray] | None:
    """FP32 outputs of the validation set on the `reference` backend, or None without validation data.

    The FP32 model must run on the reference backend whenever it computes the reference or is one of the run's
    backends: if it cannot, the model itself is the problem (an op ONNX Runtime lacks, a broken graph), so the
    run stops (ModelError) before any measurement.
    """
    if plan.validation is None and not any(backend is reference for backend in backends):
        return None
    try:
        if fp32.prepared is None:
            raise BackendError(fp32.error or "FP32 preparation failed")
        if plan.validation is None:
            request = load_request(plan, config, fp32.prepared, validation_batch(plan), reference)
            reference.load(request).close()
            return None
        with progress.task(f"{plan.name}: FP32 reference outputs on {reference.name}") as update:
            return outputs(reference, plan, config, fp32.prepared, update)
    except BackendError as e:
        raise ModelError(
            f"{plan.info.path}: the FP32 model does not run on ONNX Runtime ({e}), the accuracy reference: fix or "
            "re-export it"
        ) from e


def outputs(
    backend: Backend,
    plan: ModelPlan,
    config: Config,
    prepared: PreparedModel,
    update: Callable[[float], None],
) -> dict[str, np.ndarray]:
    """Run the whole validation set through one prepared model; outputs stacked along axis 0, one row a sample.

    Every batch is full (the last one padded, see Dataset.full_batches): a session bound to one shape, as a
    TensorRT engine is, takes them all; the padding rows are dropped from the outputs.
    """
    assert plan.validation is not None
    batch = validation_batch(plan)
    chunks: dict[str, list[np.ndarray]] = {}
    total, done = plan.validation.size, 0
    session: Session = backend.load(load_request(plan, config, prepared, batch, backend))
    with contextlib.closing(session):
        for feeds, real in plan.validation.full_batches(batch):
            for name, value in session.run(feeds).items():
                chunks.setdefault(name, []).append(value[:real])
            done += real
            update(done / total)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def validate_variant(
    plan: ModelPlan,
    backend: Backend,
    config: Config,
    variant: Variant,
    reference: dict[str, np.ndarray],
    progress: Progress,
    candidate: dict[str, np.ndarray] | None = None,
) -> AccuracyResult:
    """The variant's accuracy on `backend` against the reference; its outputs are computed unless given as
    `candidate`. A failing INT8 variant gets its root cause (trtci.pipeline.explain.diagnose). Raises
    BackendError when it does not run, DataError when labels do not fit the outputs."""
    assert plan.validation is not None and variant.prepared is not None
    if candidate is None:
        scheme = f"({variant.quantization})" if variant.quantization else ""
        with progress.task(f"{plan.name} {variant.precision}{scheme}: validating on {backend.name}") as update:
            candidate = outputs(backend, plan, config, variant.prepared, update)
    labels = plan.validation.labels
    label_output = plan.config.validation.label_output if plan.config.validation else None
    try:
        result = validate(reference, candidate, plan.config.accuracy, labels=labels, label_output=label_output)
    except DataError as e:
        raise DataError(f"{plan.name}: {e}") from e
    result.validation_hash = plan.validation.sha256  # per-sample hits pair only with hits on the same samples
    if not result.passed and variant.precision == "int8":
        diagnose(result, plan, backend, config, variant.quantization, reference, progress)
    return result

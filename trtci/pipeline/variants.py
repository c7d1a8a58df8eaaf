"""Which prepared models a backend runs for a plan, and preparing them (trtci.pipeline.prepare does the work).

A variant is one precision and, for INT8, one Q/DQ scheme. A backend runs its own INT8 scheme, timed, and with
validation data also its `validation_only_schemes`, for their accuracy only.
"""

from __future__ import annotations

from dataclasses import dataclass

from trtci.backends.base import Backend
from trtci.config import Config
from trtci.errors import BackendError, ModelError
from trtci.pipeline.int8_variant import prepare_plan_int8
from trtci.pipeline.plan import ModelPlan
from trtci.pipeline.prepare import PreparedModel, prepare_fp16, prepare_fp32
from trtci.pipeline.progress import Progress


@dataclass
class Variant:
    """One prepared model a backend runs: a precision, and for int8 its Q/DQ scheme; or why it could not be made."""

    precision: str
    quantization: str = ""
    prepared: PreparedModel | None = None
    error: str | None = None


def variants_for(plan: ModelPlan, backend: Backend) -> list[tuple[str, str]]:
    """(precision, quantization) of each variant `backend` runs for `plan`, in the config's precision order."""
    variants: list[tuple[str, str]] = []
    for precision in plan.config.precisions:
        if precision != "int8":
            variants.append((precision, ""))
            continue
        schemes = [backend.int8_scheme] if backend.int8_scheme else []  # "": it times no INT8 scheme
        if plan.validation is not None:
            schemes.extend(backend.validation_only_schemes)
        variants.extend(("int8", scheme) for scheme in dict.fromkeys(schemes))
    return variants


def validated_only(backend: Backend, quantization: str) -> bool:
    """A Q/DQ scheme made for another backend is run here for its accuracy only: its latency here means nothing."""
    return bool(quantization) and quantization != backend.int8_scheme


def prepare_variant(plan: ModelPlan, config: Config, precision: str, quantization: str, progress: Progress) -> Variant:
    """The prepared model for one variant, from the cache under config.cache_dir or made now (FP16 conversion,
    INT8 calibration on the plan's calibration data). A failure is kept in `Variant.error`, not raised: the
    series that need it record the reason and the others go on."""
    variant = Variant(precision, quantization)
    cache = config.cache_dir / "prepared"
    try:
        if precision == "fp32":
            variant.prepared = prepare_fp32(plan.info, cache)
        elif precision == "fp16":
            with progress.task(f"{plan.name}: converting to FP16"):
                variant.prepared = prepare_fp16(plan.info, cache, plan.config.fp16.converter)
        else:
            assert plan.config.calibration is not None  # checked by the config
            method = plan.config.calibration.method
            threads = config.bench_for(plan.config).threads
            with progress.task(f"{plan.name}: calibrating INT8 ({quantization} scheme, {method})") as update:
                variant.prepared = prepare_plan_int8(
                    plan, quantization, cache, lambda done, total: update(done / max(total, 1)), threads
                )
    except (ModelError, BackendError) as e:
        variant.error = str(e)
    return variant

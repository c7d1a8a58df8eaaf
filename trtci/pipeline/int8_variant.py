"""A plan's INT8 model for one Q/DQ scheme: its calibration batches, its method (`auto` picks one on the
validation set), the nodes kept in float, and, when the quantizer refuses the model, the node that makes it.

trtci.pipeline.prepare does the quantizing; this module decides what to ask of it for a plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from trtci.errors import ConfigError, ModelError
from trtci.pipeline.calibration_choice import choose_method
from trtci.pipeline.int8_eval import first_nonfinite
from trtci.pipeline.plan import ModelPlan, calibration_batch
from trtci.pipeline.prepare import PreparedModel, prepare_int8
from trtci.results import stable_hash

Feeds = dict[str, np.ndarray]
_NONFINITE_BATCHES = 4  # calibration batches searched for a node that outputs NaN or Inf


def calibration_inputs(plan: ModelPlan) -> tuple[list[Feeds], str]:
    """The calibration batches of a plan and the hash that keys them (padding depends on the batch)."""
    assert plan.calibration is not None
    batch = calibration_batch(plan)
    feeds = [batch_feeds for batch_feeds, _ in plan.calibration.full_batches(batch)]
    return feeds, stable_hash([plan.calibration.sha256, batch])


def int8_method(plan: ModelPlan, scheme: str, cache_dir: Path, threads: int = 0) -> tuple[str, str]:
    """The calibration method for `scheme` and a note: the configured one (no note), or the one `auto` chose
    (cached on disk, recorded in the plan for the series identity, and the note that says why)."""
    assert plan.config.calibration is not None
    if plan.config.calibration.method != "auto":
        return plan.config.calibration.method, ""
    feeds, data_hash = calibration_inputs(plan)
    choice = choose_method(plan, scheme, feeds, data_hash, cache_dir, threads)
    plan.calibration_methods[scheme] = choice.method
    return choice.method, choice.note


def prepare_plan_int8(
    plan: ModelPlan,
    scheme: str,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 0,
) -> PreparedModel:
    """The plan's INT8 model for `scheme`, calibrated as its config says. ConfigError for excluded names that are
    not nodes of the model. When the quantizer fails because a node outputs NaN or Inf on the calibration data
    (it then cannot scale that tensor, whatever is kept in float), the ModelError names that node."""
    assert plan.config.calibration is not None
    excluded = plan.config.calibration.nodes_to_exclude
    check_exclusions(plan.info.path, excluded)
    method, note = int8_method(plan, scheme, cache_dir, threads)
    feeds, data_hash = calibration_inputs(plan)
    try:
        prepared = prepare_int8(
            plan.info,
            feeds,
            scheme=scheme,
            method=method,
            data_hash=data_hash,
            cache_dir=cache_dir,
            progress=progress,
            nodes_to_exclude=excluded,
        )
    except ModelError as e:
        broken = first_nonfinite(plan.info.path, feeds[:_NONFINITE_BATCHES], threads)
        if broken is None:
            raise
        raise ModelError(
            f"{e}; node {broken} outputs NaN or Inf on the calibration data, which no INT8 scale can hold: "
            "fix the model or the data, or leave int8 out"
        ) from e
    if note:
        prepared = replace(prepared, notes=(*prepared.notes, note))
    return prepared


def check_exclusions(path: Path, names: Sequence[str]) -> None:
    """ConfigError when calibration.nodes_to_exclude names something that is not a node of the model."""
    if not names:
        return
    nodes = {node.name for node in onnx.load(str(path), load_external_data=False).graph.node}
    unknown = sorted(set(names) - nodes)
    if unknown:
        raise ConfigError(
            f"{path}: calibration.nodes_to_exclude names {', '.join(unknown)}, not nodes of the model; "
            "use ONNX node names as `trtci explain int8` prints them"
        )

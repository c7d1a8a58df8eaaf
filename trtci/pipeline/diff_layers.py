"""Per-layer diffs of engines from files: `trtci diff layers A B` and `trtci ingest trtexec --base DIR`.

An engine is read from its trtexec exports (`--exportLayerInfo`, with `--exportProfile` for per-layer times) or
from the TensorRT engine inspector's JSON alone (trtci saves it beside each engine it builds, `*.layers.json`).
The diff itself is trtci.verdict.layer_diff; the markdown is the `_layers.md.j2` partial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtci.errors import DataError
from trtci.pipeline.ingest_trtexec import TrtexecExport, read_export
from trtci.pipeline.trtexec_files import find_sets
from trtci.report.markdown import render
from trtci.results import RunResult
from trtci.verdict.engine_layers import EngineLayers
from trtci.verdict.layer_diff import LayerDiff, diff_layers

TEMPLATE = "_layers.md.j2"


def engine_of(export: TrtexecExport) -> EngineLayers:
    """The export's layers; DataError when it has neither layer information nor a per-layer profile."""
    if export.engine is None:
        raise DataError(
            f"{export.name}: no --exportLayerInfo or --exportProfile file, so no layers to compare; export them with "
            "trtexec --exportLayerInfo=FILE --exportProfile=FILE --profilingVerbosity=detailed"
        )
    return export.engine


def read_engine(path: Path) -> tuple[str, EngineLayers]:
    """(label, layers) of the one engine at `path`: a layer-information or inspector JSON file, a profile, or a
    directory holding one engine's exports. DataError when it holds none or several."""
    exports = [read_export(export) for export in find_sets([path])]
    if len(exports) != 1:
        names = ", ".join(e.name for e in exports) or "none"
        raise DataError(f"{path}: holds the exports of {len(exports)} engines ({names}); pass one engine's files")
    return exports[0].label, engine_of(exports[0])


def diff_paths(base: Path, head: Path) -> LayerDiff:
    """The layer diff of the engine at `base` to the one at `head`."""
    base_label, base_engine = read_engine(base)
    head_label, head_engine = read_engine(head)
    return diff_layers(base_engine, head_engine, base_label, head_label)


def diff_exports(base: list[TrtexecExport], head: list[TrtexecExport]) -> list[LayerDiff]:
    """Each head engine against the base engine of the same name (or the only base engine, when both sides have
    one); head engines without a base counterpart are left out. DataError when no pair has layers."""
    by_name = {export.name: export for export in base}
    diffs = []
    for export in head:
        counterpart = by_name.get(export.name) or (base[0] if len(base) == len(head) == 1 else None)
        if counterpart is None or export.engine is None or counterpart.engine is None:
            continue
        diffs.append(diff_layers(counterpart.engine, export.engine, counterpart.label, export.label))
    if not diffs:
        raise DataError(
            "no engine of the base files pairs with one of these with layers to compare: name the files alike and "
            "export --exportLayerInfo (and --exportProfile) on both sides"
        )
    return diffs


def render_layer_diffs(run: RunResult, diffs: list[LayerDiff], template_dir: Path | None = None, top: int = 0) -> str:
    """The `_layers.md.j2` partial for `diffs` (`extra.layer_diffs`, plain data), as the report would include it.
    `top` > 0 keeps only the largest changes of each diff, as a comment would."""
    return render(run, TEMPLATE, template_dir, extra={"layer_diffs": layer_diff_data(diffs, top)})


def layer_diff_data(diffs: list[LayerDiff], top: int = 0) -> list[dict[str, Any]]:
    """The diffs as the template and the JSON output see them (LayerDiff.as_dict, with `shown` changes)."""
    data = []
    for diff in diffs:
        item = diff.as_dict()
        item["shown"] = item["changes"][:top] if top > 0 else item["changes"]
        data.append(item)
    return data

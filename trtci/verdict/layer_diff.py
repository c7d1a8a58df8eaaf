"""Which layers changed between two engines of one network: the answer to "why did this engine get slower?".

Pure data in (two `EngineLayers`, from the inspector's JSON and optionally a per-layer profile), ranked changes
out. Layers are paired in three passes, each on what the previous ones left:

1. by name: the same layer in both engines (precision, tactic, implementation and time may still differ);
2. by fusion: layers that share a fused part ("Conv_5 + Relu_7" and "Conv_5 + Add_6 + Relu_7"): renamed by fusion;
3. by position: what is left of the compute layers (reformat layers excluded), aligned in execution order on
   (kind, output shape). This pairs the layers of differently exported models of one network, such as a QAT
   model whose nodes are numbered apart ("Conv_0 + Relu_1" and "conv1.weight + QuantizeLinear_7 + Conv_9").

What is still unpaired was added or removed. Each change carries its time change (head - base, an added layer
counts its whole time, a removed one minus its time), so the changes add up to the total change, and they are
ranked by their share of it. Reformat layers (TensorRT's inserted format and type conversions, quantize
reformats) are also summed apart, because a new reformat is a typical cause of a slower engine.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from trtci.verdict.engine_layers import EngineLayers, Layer

# Matched by how the pair was found; "" for an added or removed layer.
BY_NAME, BY_FUSION, BY_POSITION = "name", "fusion", "position"


@dataclass(frozen=True)
class LayerChange:
    """One layer that differs between base and head: `what` changed of it, and its time change."""

    base: Layer | None  # None: added in head
    head: Layer | None  # None: removed from base
    what: tuple[str, ...]  # "added", "removed", "renamed", "precision", "tactic", "implementation"
    matched_by: str = ""
    delta_ms: float | None = None  # head time - base time per inference; None without profiles
    share: float | None = None  # delta_ms / total change; None when either is unknown or the total is 0

    @property
    def name(self) -> str:
        return (self.head or self.base).name  # type: ignore[union-attr]  # one of them is always set

    @property
    def kind(self) -> str:
        return (self.head or self.base).kind  # type: ignore[union-attr]

    @property
    def reformat(self) -> bool:
        return (self.head or self.base).reformat  # type: ignore[union-attr]

    def details(self) -> list[str]:
        """One phrase per change, e.g. ["precision FP32 -> FP16", "tactic a -> b"]."""
        base, head = self.base, self.head
        if base is None or head is None:
            layer = head or base
            precision = f" ({layer.precision})" if layer is not None and layer.precision else ""
            return [f"{'added' if base is None else 'removed'}{precision}"]
        phrases = []
        if "renamed" in self.what:
            phrases.append(f"renamed ({self.matched_by}) from '{base.name}'")
        if "precision" in self.what:
            phrases.append(f"precision {base.precision or '?'} -> {head.precision or '?'}")
        if "implementation" in self.what:
            phrases.append(f"implementation {base.implementation} -> {head.implementation}")
        if "tactic" in self.what:
            phrases.append(f"tactic {base.tactic or '?'} -> {head.tactic or '?'}")
        return phrases

    def describe(self) -> str:
        """'Conv_0 + Relu_1: precision FP32 -> FP16; -0.411 ms (52% of the change)'."""
        parts = self.details()
        if self.delta_ms is not None:
            share = f" ({self.share:.0%} of the change)" if self.share is not None else ""
            parts.append(f"{self.delta_ms:+.4f} ms{share}")
        return f"{self.name}: {'; '.join(parts) or 'unchanged'}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "what": list(self.what), "matched_by": self.matched_by,
            "details": self.details(), "delta_ms": self.delta_ms, "share": self.share, "reformat": self.reformat,
            "base": self.base.as_dict() if self.base else None, "head": self.head.as_dict() if self.head else None,
        }  # fmt: skip


@dataclass(frozen=True)
class ReformatSummary:
    """Reformat layers of each engine: how many and how long they take."""

    base_count: int
    head_count: int
    base_ms: float | None
    head_ms: float | None


@dataclass(frozen=True)
class LayerDiff:
    """Every layer change from base to head, largest share of the total time change first."""

    base_label: str
    head_label: str
    changes: tuple[LayerChange, ...]
    unchanged: int  # pairs with nothing changed (and no time change)
    base_total_ms: float | None
    head_total_ms: float | None
    reformats: ReformatSummary
    base_layers: int
    head_layers: int

    @property
    def total_delta_ms(self) -> float | None:
        if self.base_total_ms is None or self.head_total_ms is None:
            return None
        return self.head_total_ms - self.base_total_ms

    @property
    def precision_changes(self) -> list[LayerChange]:
        return [c for c in self.changes if "precision" in c.what]

    @property
    def structural_changes(self) -> list[LayerChange]:
        """Changes other than time alone."""
        return [c for c in self.changes if c.what]

    def top(self, count: int = 5) -> list[LayerChange]:
        return list(self.changes[:count])

    def summary(self) -> str:
        """One line: layer counts, the total change and what kinds of changes there are."""
        counts = {what: sum(what in c.what for c in self.changes) for what in _ORDER}
        kinds = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "no structural change"
        total = ""
        if self.total_delta_ms is not None and self.base_total_ms:
            total = f"; layer time {self.base_total_ms:.4f} -> {self.head_total_ms:.4f} ms ({self.total_delta_ms:+.4f})"
        layers = f"{self.base_layers} -> {self.head_layers} layers"
        return f"{self.base_label} -> {self.head_label}: {layers}, {kinds}{total}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base_label, "head": self.head_label, "summary": self.summary(),
            "base_layers": self.base_layers, "head_layers": self.head_layers, "unchanged": self.unchanged,
            "base_total_ms": self.base_total_ms, "head_total_ms": self.head_total_ms,
            "total_delta_ms": self.total_delta_ms,
            "reformats": {
                "base_count": self.reformats.base_count, "head_count": self.reformats.head_count,
                "base_ms": self.reformats.base_ms, "head_ms": self.reformats.head_ms,
            },
            "precision_changed": [c.name for c in self.precision_changes],
            "changes": [c.as_dict() for c in self.changes],
        }  # fmt: skip


_ORDER = ("added", "removed", "renamed", "precision", "implementation", "tactic")


def diff_layers(
    base: EngineLayers, head: EngineLayers, base_label: str = "base", head_label: str = "head"
) -> LayerDiff:
    """Pair the layers of `base` and `head` (see the module docstring) and rank what changed."""
    pairs: list[tuple[Layer, Layer, str]] = []
    base_left, head_left = list(base.layers), list(head.layers)
    for matcher, how in ((_by_name, BY_NAME), (_by_fusion, BY_FUSION), (_by_position, BY_POSITION)):
        found = matcher(base_left, head_left)
        pairs += [(b, h, how) for b, h in found]
        paired_base = {id(b) for b, _ in found}
        paired_head = {id(h) for _, h in found}
        base_left = [b for b in base_left if id(b) not in paired_base]
        head_left = [h for h in head_left if id(h) not in paired_head]
    timed = base.timed and head.timed
    total = (head.total_ms or 0.0) - (base.total_ms or 0.0) if timed else None
    changes: list[LayerChange] = []
    unchanged = 0
    for b, h, how in pairs:
        what = _what_changed(b, h)
        delta = (h.time_ms or 0.0) - (b.time_ms or 0.0) if timed else None
        if not what and not delta:
            unchanged += 1
            continue
        changes.append(LayerChange(b, h, what, how, delta, _share(delta, total)))
    for b in base_left:
        delta = -(b.time_ms or 0.0) if timed else None
        changes.append(LayerChange(b, None, ("removed",), "", delta, _share(delta, total)))
    for h in head_left:
        delta = h.time_ms or 0.0 if timed else None
        changes.append(LayerChange(None, h, ("added",), "", delta, _share(delta, total)))
    order = {layer.name: i for i, layer in enumerate(head.layers)}
    base_order = {layer.name: len(order) + i for i, layer in enumerate(base.layers)}

    def rank(change: LayerChange) -> tuple[float, int, int]:
        position = order.get(change.name, base_order.get(change.name, 0))
        return (-abs(change.delta_ms or 0.0), 0 if change.what else 1, position)

    return LayerDiff(
        base_label=base_label,
        head_label=head_label,
        changes=tuple(sorted(changes, key=rank)),
        unchanged=unchanged,
        base_total_ms=base.total_ms,
        head_total_ms=head.total_ms,
        reformats=_reformats(base, head),
        base_layers=len(base.layers),
        head_layers=len(head.layers),
    )


def _what_changed(base: Layer, head: Layer) -> tuple[str, ...]:
    what = []
    if base.name != head.name:
        what.append("renamed")
    if base.precision != head.precision:
        what.append("precision")
    if base.implementation != head.implementation:
        what.append("implementation")
    if base.tactic != head.tactic:
        what.append("tactic")
    return tuple(what)


def _share(delta: float | None, total: float | None) -> float | None:
    if delta is None or not total:
        return None
    return delta / total


def _by_name(base: list[Layer], head: list[Layer]) -> list[tuple[Layer, Layer]]:
    by_name = {layer.name: layer for layer in head}
    return [(b, by_name[b.name]) for b in base if b.name in by_name]


def _by_fusion(base: list[Layer], head: list[Layer]) -> list[tuple[Layer, Layer]]:
    """Greedy one-to-one pairing of non-reformat layers by the overlap of their fused parts."""
    scored = []
    for i, b in enumerate(base):
        if b.reformat:
            continue
        for j, h in enumerate(head):
            shared = b.parts & h.parts
            if shared and not h.reformat:
                scored.append((len(shared) / len(b.parts | h.parts), i, j))
    pairs, used_base, used_head = [], set(), set()
    for _, i, j in sorted(scored, key=lambda s: (-s[0], s[1], s[2])):
        if i not in used_base and j not in used_head:
            used_base.add(i)
            used_head.add(j)
            pairs.append((base[i], head[j]))
    return pairs


def _by_position(base: list[Layer], head: list[Layer]) -> list[tuple[Layer, Layer]]:
    """Align the compute layers left in execution order on (kind, output shape); equal runs are pairs."""
    base_compute = [layer for layer in base if not layer.reformat and layer.kind]
    head_compute = [layer for layer in head if not layer.reformat and layer.kind]
    signature = [(layer.kind, layer.output_shape) for layer in base_compute]
    other = [(layer.kind, layer.output_shape) for layer in head_compute]
    matcher = difflib.SequenceMatcher(None, signature, other, autojunk=False)
    pairs = []
    for block in matcher.get_matching_blocks():
        pairs += [(base_compute[block.a + k], head_compute[block.b + k]) for k in range(block.size)]
    return pairs


def _reformats(base: EngineLayers, head: EngineLayers) -> ReformatSummary:
    def total(engine: EngineLayers) -> float | None:
        return sum(layer.time_ms or 0.0 for layer in engine.layers if layer.reformat) if engine.timed else None

    return ReformatSummary(
        base_count=sum(layer.reformat for layer in base.layers),
        head_count=sum(layer.reformat for layer in head.layers),
        base_ms=total(base),
        head_ms=total(head),
    )

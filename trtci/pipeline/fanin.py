"""Matrix fan-in: combine the run files of several legs (one per GPU) into one report, and record each leg.

Each leg of a GPU matrix writes one run file (`trtci run --bundle-dir bundles/<leg>`); the aggregate job
downloads them all and merges. A leg is named after the directory that holds its run file. Every file is
untrusted input: a leg whose file cannot be read, or whose run the database refuses, is left out, named with its
path as a problem and as a missing leg, and the others still merge. Each leg is recorded in the database as its
own run, and a leg already recorded is skipped, so the aggregate job can be re-run. The combined RunResult is only
for the report: it is never recorded itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtci.errors import DataError, StoreError
from trtci.results import DeviceInfo, RunResult
from trtci.store.database import Store
from trtci.store.runfile import SUFFIX, read_runfile
from trtci.verdict.gate import judge


@dataclass(frozen=True)
class Leg:
    """One leg's run, read from `path`. `name` is the directory the run file was in (e.g. `h100`)."""

    name: str
    path: Path
    run: RunResult

    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.run.devices]

    @property
    def all_errored(self) -> bool:
        """True when the leg measured nothing: no series, or every series failed with an error."""
        return all(s.error is not None for s in self.run.series)


@dataclass(frozen=True)
class MissingLeg:
    """A leg the report lacks: expected but without a run file, left out (unreadable, not recordable), or one
    whose every series errored."""

    name: str
    reason: str


@dataclass(frozen=True)
class LeftOut:
    """A leg left out of the merge: `name` as a leg is named (its directory), `reason` a few words for the
    missing-legs line, `problem` one line naming its file and what went wrong."""

    name: str
    reason: str
    problem: str


@dataclass
class Merged:
    """What `merge` found and made: the combined run, its legs, and what went wrong along the way."""

    run: RunResult
    legs: list[Leg]
    missing: list[MissingLeg] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # missing paths and left-out legs, one line each
    recorded: list[str] = field(default_factory=list)  # run ids written to the database by this merge
    already_recorded: list[str] = field(default_factory=list)  # run ids the database had before

    def leg_rows(self) -> list[dict]:
        """The legs as plain data, one dict each, for templates (`extra.legs`) and the JSON summary."""
        return [
            {
                "name": leg.name,
                "run_id": leg.run.context.run_id,
                "devices": leg.device_names,
                "series": len(leg.run.series),
                "errors": sum(1 for s in leg.run.series if s.error is not None),
                "passed": judge(leg.run).passed,
                "file": leg.path.name,
            }
            for leg in self.legs
        ]

    def json_fields(self) -> dict[str, Any]:
        """What the merge adds to the combined run's JSON summary (docs/json-summary.md): `legs` and
        `missing_legs`."""
        return {
            "legs": self.leg_rows(),
            "missing_legs": [{"name": m.name, "reason": m.reason} for m in self.missing],
        }


def find_runfiles(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Every run file under `paths` (a file is taken as is, a directory searched recursively), sorted, and one
    line per path that does not exist. Hidden files (a writer's temporary file) are skipped."""
    found: set[Path] = set()
    problems = []
    for path in paths:
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p for p in path.rglob(f"*{SUFFIX}") if p.is_file() and not p.name.startswith("."))
        else:
            problems.append(f"{path}: no such file or directory")
    return sorted(found), problems


def load_legs(files: Iterable[Path]) -> tuple[list[Leg], list[LeftOut]]:
    """Read each run file as a leg. A file that cannot be read is left out, with the line naming it; a second
    file with a run id already read (the same run downloaded twice) is skipped. Legs are sorted by name, then
    start."""
    legs: list[Leg] = []
    left_out = []
    seen: set[str] = set()
    for path in files:
        try:
            run = read_runfile(path)
        except DataError as e:
            left_out.append(LeftOut(path.parent.name, "run file unreadable", str(e)))
            continue
        if run.context.run_id in seen:
            continue
        seen.add(run.context.run_id)
        legs.append(Leg(path.parent.name, path, run))
    legs.sort(key=lambda leg: (leg.name, leg.run.context.started_at, str(leg.path)))
    return legs, left_out


def missing_legs(legs: list[Leg], expect: Iterable[str], left_out: Iterable[LeftOut] = ()) -> list[MissingLeg]:
    """Expected names no leg answers to, then the legs left out, then legs that measured nothing.

    A leg answers to a name equal to its directory name, or contained in one of its device names (both
    ignoring case), so `--expect h100` finds the leg that ran on "NVIDIA H100 80GB HBM3". An expected name that
    a left-out leg has is named once, with why it was left out.
    """
    left_out = list(left_out)
    skipped = {leg.name.lower() for leg in left_out}
    missing = []
    for name in expect:
        wanted = name.strip().lower()
        if wanted and wanted not in skipped and not any(_answers_to(leg, wanted) for leg in legs):
            missing.append(MissingLeg(name.strip(), "no run file"))
    missing.extend(MissingLeg(leg.name, leg.reason) for leg in left_out)
    for leg in legs:
        if leg.all_errored:
            first = next((s.error for s in leg.run.series if s.error), None)
            reason = f"every series errored ({first})" if first else "no series measured"
            missing.append(MissingLeg(leg.name, reason))
    return missing


def combine(legs: list[Leg], notes: Iterable[str] = ()) -> RunResult:
    """One RunResult for the report: the first leg's context spanning every leg's time, the union of devices,
    every series, comparison and accuracy change, and each leg's warnings prefixed with its name, then `notes`."""
    if not legs:
        raise DataError("no trtci run files to merge: check that the matrix legs uploaded their run files")
    first = legs[0].run.context
    finished = [leg.run.context.finished_at for leg in legs if leg.run.context.finished_at]
    context = dataclasses.replace(
        first,
        started_at=min(leg.run.context.started_at for leg in legs),
        finished_at=max(finished) if finished else None,
    )
    devices: dict[str, DeviceInfo] = {}
    for leg in legs:
        for device in leg.run.devices:
            devices.setdefault(device.id, device)
    prefix = len(legs) > 1
    warnings = [f"{leg.name}: {w}" if prefix else w for leg in legs for w in leg.run.warnings]
    return RunResult(
        context=context,
        devices=list(devices.values()),
        series=[s for leg in legs for s in leg.run.series],
        comparisons=[c for leg in legs for c in leg.run.comparisons],
        warnings=[*warnings, *notes],
        accuracy_changes=[c for leg in legs for c in leg.run.accuracy_changes],
    )


def record_legs(store: Store, legs: Iterable[Leg]) -> tuple[list[str], list[str], list[LeftOut]]:
    """Record each leg's run, each in its own transaction. Returns the run ids recorded now, those the database
    already had, and the legs it refused (left out, with the database's reason): one bad leg never stops the
    others."""
    recorded, skipped, refused = [], [], []
    for leg in legs:
        run_id = leg.run.context.run_id
        if store.has_run(run_id):
            skipped.append(run_id)
            continue
        try:
            store.record_run(leg.run)
        except StoreError as e:
            refused.append(LeftOut(leg.name, "could not be recorded", f"{leg.path}: {e}"))
            continue
        recorded.append(run_id)
    return recorded, skipped, refused


def merge_runs(paths: Iterable[Path], store: Store | None = None, expect: Iterable[str] = ()) -> Merged:
    """Read every run file under `paths`, record each leg in `store` (when given) and combine them.

    Missing paths, and legs whose file cannot be read or whose run `store` refuses, are collected in
    `Merged.problems` and `Merged.missing` (and named in the report's warnings); the other legs still merge.
    Raises DataError naming every problem when no leg is left.
    """
    files, problems = find_runfiles(paths)
    legs, left_out = load_legs(files)
    recorded: list[str] = []
    already: list[str] = []
    if store is not None:
        recorded, already, refused = record_legs(store, legs)
        in_store = {*recorded, *already}
        legs = [leg for leg in legs if leg.run.context.run_id in in_store]
        left_out += refused
    problems += [leg.problem for leg in left_out]
    if not legs:
        where = "; ".join(problems) if problems else "no *.trtci.json.gz file under the given paths"
        raise DataError(f"no trtci run file could be merged ({where})")
    missing = missing_legs(legs, expect, left_out)
    notes = [f"could not merge {line}" for line in problems]
    if missing:
        notes.append("Missing legs: " + "; ".join(f"{m.name} ({m.reason})" for m in missing))
    merged = Merged(run=combine(legs, notes), legs=legs, missing=missing, problems=problems)
    merged.recorded, merged.already_recorded = recorded, already
    return merged


def _answers_to(leg: Leg, wanted: str) -> bool:
    return leg.name.lower() == wanted or any(wanted in name.lower() for name in leg.device_names)

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
from trtci.store.connection import DatabaseLocked
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
    every series, comparison and accuracy change, and each leg's warnings prefixed with its name, then `notes`.

    Legs that ran on the same device (two runners of one GPU model) measured series with the same ids; the report
    looks results up by series id, so in the combined run each such leg's device is made its own, named after
    the leg, and its series, comparisons and accuracy changes follow: no row can show another leg's figure."""
    if not legs:
        raise DataError("no trtci run files to merge: check that the matrix legs uploaded their run files")
    first = legs[0].run.context
    finished = [leg.run.context.finished_at for leg in legs if leg.run.context.finished_at]
    context = dataclasses.replace(
        first,
        started_at=min(leg.run.context.started_at for leg in legs),
        finished_at=max(finished) if finished else None,
    )
    runs = _own_devices(legs)
    devices: dict[str, DeviceInfo] = {}
    for run in runs:
        for device in run.devices:
            devices.setdefault(device.id, device)
    prefix = len(legs) > 1
    warnings = [f"{leg.name}: {w}" if prefix else w for leg in legs for w in leg.run.warnings]
    return RunResult(
        context=context,
        devices=list(devices.values()),
        series=[s for run in runs for s in run.series],
        comparisons=[c for run in runs for c in run.comparisons],
        warnings=[*warnings, *notes],
        accuracy_changes=[c for run in runs for c in run.accuracy_changes],
    )


def _own_devices(legs: list[Leg]) -> list[RunResult]:
    """Each leg's run, where a device is shared with another leg given a device of its own (named after the leg)
    and its series ids, comparisons and accuracy changes rewritten to match. Other legs come back as they are."""
    users: dict[str, set[int]] = {}
    for index, leg in enumerate(legs):
        for device in leg.run.devices:
            users.setdefault(device.id, set()).add(index)
    names = [leg.name for leg in legs]
    runs = []
    for leg in legs:
        shared = {d.id for d in leg.run.devices if len(users[d.id]) > 1}
        if not shared:
            runs.append(leg.run)
            continue
        label = leg.name if names.count(leg.name) == 1 else f"{leg.name}/{leg.path.name}"
        devices = {
            d.id: dataclasses.replace(d, name=f"{d.name} ({label})", details={**d.details, "trtci_leg": label})
            if d.id in shared
            else d
            for d in leg.run.devices
        }
        ids, series = {}, []
        for s in leg.run.series:
            own = devices.get(s.key.device_id)
            key = dataclasses.replace(s.key, device_id=own.id) if own is not None else s.key
            ids[s.key.id] = key.id
            series.append(dataclasses.replace(s, key=key))
        runs.append(
            dataclasses.replace(
                leg.run,
                devices=list(devices.values()),
                series=series,
                comparisons=[
                    dataclasses.replace(c, series_id=ids.get(c.series_id, c.series_id)) for c in leg.run.comparisons
                ],
                accuracy_changes=[
                    dataclasses.replace(c, series_id=ids.get(c.series_id, c.series_id))
                    for c in leg.run.accuracy_changes
                ],
            )
        )
    return runs


@dataclass
class Recording:
    """What recording the legs did: run ids recorded now and those the database had, the legs it refused (left
    out of the merge), and when another process held its lock too long, one line naming the legs that were not
    recorded (they still merge) and how to record them later."""

    recorded: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    refused: dict[Path, LeftOut] = field(default_factory=dict)
    unrecorded: str | None = None


def record_legs(store: Store, legs: list[Leg]) -> Recording:
    """Record each leg's run, each in its own transaction: one bad leg never stops the others."""
    done = Recording()
    for index, leg in enumerate(legs):
        try:
            if store.import_run(leg.run):
                done.recorded.append(leg.run.context.run_id)
            else:
                done.already.append(leg.run.context.run_id)
        except DatabaseLocked as e:  # every later leg would wait as long: stop, and say how to record them later
            later = legs[index:]
            done.unrecorded = (
                f"{', '.join(leg.name for leg in later)} into {store.path} ({str(e).removeprefix(store.path + ': ')}); "
                f"they are in the report: record them later with "
                f"`trtci db import {' '.join(str(leg.path) for leg in later)} --db {store.path}`"
            )
            break
        except StoreError as e:
            done.refused[leg.path] = LeftOut(leg.name, "could not be recorded", f"{leg.path}: {e}")
    return done


def merge_runs(paths: Iterable[Path], store: Store | None = None, expect: Iterable[str] = ()) -> Merged:
    """Read every run file under `paths`, record each leg in `store` (when given) and combine them.

    Missing paths, and legs whose file cannot be read or whose run `store` refuses, are collected in
    `Merged.problems` and `Merged.missing` (and named in the report's warnings); the other legs still merge.
    Raises DataError naming every problem when no leg is left.
    """
    files, problems = find_runfiles(paths)
    legs, left_out = load_legs(files)
    recording = record_legs(store, legs) if store is not None else Recording()
    legs = [leg for leg in legs if leg.path not in recording.refused]
    left_out += recording.refused.values()
    problems += [leg.problem for leg in left_out]
    if recording.unrecorded is not None:
        problems.append(recording.unrecorded)
    if not legs:
        where = "; ".join(problems) if problems else "no *.trtci.json.gz file under the given paths"
        raise DataError(f"no trtci run file could be merged ({where})")
    missing = missing_legs(legs, expect, left_out)
    notes = [f"could not merge {line}" for line in problems]
    if missing:
        notes.append("Missing legs: " + "; ".join(f"{m.name} ({m.reason})" for m in missing))
    merged = Merged(run=combine(legs, notes), legs=legs, missing=missing, problems=problems)
    merged.recorded, merged.already_recorded = recording.recorded, recording.already
    return merged


def _answers_to(leg: Leg, wanted: str) -> bool:
    return leg.name.lower() == wanted or any(wanted in name.lower() for name in leg.device_names)

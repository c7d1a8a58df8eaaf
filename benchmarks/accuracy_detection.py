"""How often trtci's accuracy-vs-base verdict catches a real top-1 drop, and how often it cries wolf.

Each trial builds a base run's per-sample hits (top-1 right with probability `BASE_TOP1`) and a head run's: a share
`CHURN` of the samples flips, as many right ones to wrong as wrong ones to right in expectation (retraining or a new
calibration moves predictions near the decision boundary without changing accuracy), and then a share `drop` of all
samples, taken from those the base got right, turns wrong. The head is judged by the real
`trtci.verdict.accuracy_change.judge` (paired bootstrap, Agresti-Min adjusted, at `compare.confidence` 0.98 and
`compare.accuracy_threshold` 1 point), against a plain rule a dashboard would use: flag when top-1 fell by at least
the threshold. Recall: share of trials with a drop flagged as a regression; false alarm: share of trials with no
drop flagged.

Run from the repository root: `python -m benchmarks.accuracy_detection` (about 15 seconds). The last line is the
summary: `accuracy_detection: recall_at_2pt_n1000=<x> false_alarm_n1000=<y>`.
"""

from __future__ import annotations

import argparse

import numpy as np

from trtci.config import CompareSettings
from trtci.results import AccuracyResult, SeriesKey
from trtci.store.queries import BaseAccuracy
from trtci.verdict.accuracy import pack_hits
from trtci.verdict.accuracy_change import judge

BASE_TOP1 = 0.9
CHURN = 0.01  # of the samples the base got right turn wrong; as many wrong ones turn right
SIZES = (200, 1000, 5000)
DROPS = (0.0, 0.005, 0.01, 0.02, 0.05)
KEY = SeriesKey("m", "h", "int8", 1, "onnxruntime", "d", "onnxruntime")


def trial(rng: np.random.Generator, samples: int, drop: float, settings: CompareSettings) -> tuple[bool, bool]:
    """(trtci flagged a regression, the plain rule did) for one base/head pair."""
    base = rng.random(samples) < BASE_TOP1
    draw = rng.random(samples)
    # as many right samples turn wrong as wrong ones turn right, in expectation: accuracy is unchanged
    head = np.where(base, draw >= CHURN, draw < CHURN * BASE_TOP1 / (1 - BASE_TOP1))
    head[base & (rng.random(samples) < drop / BASE_TOP1)] = False
    accuracy = AccuracyResult(True, [], samples, hits=pack_hits(head), hits_metric="top1", validation_hash="v")
    change = judge(KEY, accuracy, BaseAccuracy("b", None, "d", samples, pack_hits(base)), "main", settings)
    plain = head.mean() - base.mean() <= -settings.accuracy_threshold
    return change.verdict == "regression", bool(plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="trials per cell")
    args = parser.parse_args()
    settings = CompareSettings()
    rng = np.random.default_rng(0)
    table = {}
    print(f"base top-1 {BASE_TOP1:.0%}, churn {CHURN:.0%}, threshold {settings.accuracy_threshold * 100:g} pt")
    print(f"{'samples':>7} {'drop':>6} {'trtci':>7} {'plain':>7}")
    for samples in SIZES:
        for drop in DROPS:
            flags = np.array([trial(rng, samples, drop, settings) for _ in range(args.trials)])
            table[(samples, drop)] = flags.mean(axis=0)
            print(f"{samples:>7} {drop * 100:>5.1f}p {flags[:, 0].mean():>7.3f} {flags[:, 1].mean():>7.3f}")
    print(
        f"accuracy_detection: recall_at_2pt_n1000={table[(1000, 0.02)][0]:.3f} "
        f"false_alarm_n1000={table[(1000, 0.0)][0]:.3f}"
    )


if __name__ == "__main__":
    main()

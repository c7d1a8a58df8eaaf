"""How often trtci's regression verdict catches a real slowdown, and how often it cries wolf.

Synthetic part. Noise comes from real latencies: 3000 calls of a tiny MLP on ONNX Runtime recorded on the
project's 2-core machine and kept in benchmarks/data/detection-noise.npz, so every run gives the same synthetic
numbers (`--record` measures this machine instead). They are taken relative to their median and scaled in log
space so their robust CV (scaled MAD / median) is the cell's CV; the shape of their tail is kept. On top: 1% of
samples are outliers (x1.5..x3), each run's level drifts by a lognormal
factor whose sigma is the cell's CV times the drift ratio measured here (run-to-run noise of 12 short real runs'
medians over their within-run CV), and one base run in ten hit a busy runner (x1.3). One trial is a base history
of 10 runs of 200 samples and one current run slowed by the effect. Detectors, each flagging a regression:

- trtci: `trtci.verdict.latency.compare_series` on that history (the path `compare` takes after its SQL), at a threshold
  of 5% and of 10%;
- trtci A/B: what trtci does when a PR changes the model (`trtci ab`, item 5 of the issue): the real
  `trtci.verdict.abtest.ab_test` and `trtci.verdict.latency.decide_ab` at 5%, on a simulated machine. Its calls
  take latencies
  drawn from the same scaled pool, with the same outliers; the drift is the same size (the cell's CV times the
  drift ratio per 200 calls, a "run") but wanders in time as a random walk shared by A and B, as on a real machine;
  busy bursts (x1.3, 200 calls) start as often as a busy base run does. It has a clock of its own, so the 60 s
  budget is simulated time; rounds are capped at AB_MAX_ROUNDS to keep the benchmark short;
- github-action-benchmark: mean(current) / mean(previous run) > 2.0 (its default alert threshold), and > 1.1;
- Welch's t-test on the means of the current and previous run's samples, one-sided at p < 0.05.

Real part. Two models built with onnx.helper: A, an MLP, and B, A with extra layers; the number of extra layers
comes from the measured cost of one layer, and B's true cost over A is then measured at length (A and B
alternating in 100 blocks of 200 calls: the median of the blocks' median ratios). Then A-vs-B and A-vs-A (two
sessions of A) comparisons alternate, each a real `trtci.verdict.abtest.ab_test` within the budget, judged by
`trtci.verdict.latency.decide_ab` at a threshold of 10%. Recall: the share of A-vs-B flagged; false alarm: of A-vs-A.

End to end (`--e2e`, or `--e2e-only` without the parts above). Real `trtci ab` runs, each a process of its own as
a user runs it, on a fast model (a fraction of a millisecond a call) and a slow one (tens of milliseconds):
`--e2e-aa` A/A comparisons of two files of the same model and `--e2e-ab` A/B comparisons against a model made
about 10% slower (its true cost measured separately), at `--e2e-min-effect` (10%) and `--budget` (60 s). A claim is
a verdict of regression or improvement (benchmarks/ab_e2e.py). It prints one line per model and
    detection_e2e: fast_aa_claims=<c>/<n> fast_recall=<r> fast_max_s=<s> slow_aa_claims=... min_effect=... budget_s=...

Run from the repository root: `python -m benchmarks.detection` (about 5 to 10 minutes on 2 shared cores; the
end-to-end trials add 20 to 40 minutes, `--e2e-aa 20 --e2e-ab 5` for a short check).
The last two lines of the first part are the summary; `detection:` reports trtci's A/B detector, the one the issue
asks to pair drift away with, and the line before them reports the history path on its own:
    detection_history: recall_at_5pct_cv3=<x> false_alarm_cv3=<y>
    detection_real: recall_at_10pct=<x> false_alarm=<y> cv=<c> budget_s=<b>
    detection: recall_at_5pct_cv3=<x> false_alarm_cv3=<y>
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from benchmarks import ab_e2e
from trtci.backends.measure import latency_stats
from trtci.config import CompareSettings
from trtci.results import BenchResult, SeriesKey, SeriesResult
from trtci.store.queries import HistoryPoint
from trtci.verdict.abtest import ab_test
from trtci.verdict.latency import compare_series, decide_ab
from trtci.verdict.stats import normal_quantile, robust_cv, run_noise

EFFECTS = (0.0, 0.02, 0.05, 0.10, 0.20)
CVS = (0.01, 0.03, 0.10)
HISTORY_RUNS = 10
SAMPLES_PER_RUN = 200
OUTLIER_SHARE = 0.01
BUSY_RUN_SHARE = 0.1
BUSY_RUN_FACTOR = 1.3
KEY = SeriesKey(model="m", model_hash="0" * 64, precision="fp32", batch=1, backend="onnxruntime", device_id="cpu")

WIDTH = 128
BATCH = 8
BASE_LAYERS = 48  # one layer is about 2% of A: B can be close to 10% slower
TARGET_SLOWDOWN = 0.10
RECORDING = Path(__file__).parent / "data" / "detection-noise.npz"  # real latencies, kept so runs are comparable
AB_TRIALS = 200  # per cell: each simulated A/B comparison is a few thousand Python-level calls
AB_MAX_ROUNDS = 300
AB_BUDGET_S = 60.0


def mlp(layers: int) -> bytes:
    """`layers` MatMul+Relu layers of WIDTH x WIDTH at BATCH (benchmarks/ab_e2e.py's MLP)."""
    return ab_e2e.mlp(ab_e2e.Shape("detection", layers, WIDTH, BATCH), layers)


def session_call(model: bytes) -> Callable[[], object]:
    """One call of a single-threaded ONNX Runtime session on a fixed input."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feeds = {"x": np.random.default_rng(1).standard_normal((BATCH, WIDTH)).astype(np.float32)}
    return lambda: session.run(None, feeds)


def timed(call: Callable[[], object], n: int) -> np.ndarray:
    """n per-call latencies in ms."""
    call()
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        call()
        out[i] = (time.perf_counter() - start) * 1e3
    return out


def record_noise(call: Callable[[], object]) -> tuple[np.ndarray, np.ndarray]:
    """Real latencies from this machine: a pool of 3000 calls and 12 short runs of 300 (ms)."""
    return timed(call, 3000), np.array([timed(call, 300) for _ in range(12)])


def noise_figures(pool: np.ndarray, runs: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(pool relative to its median, within-run robust CV, drift ratio: run-to-run noise over within-run CV)."""
    within = float(np.median([robust_cv(r) for r in runs]))
    drift = run_noise([float(np.median(r)) for r in runs]) or 0.0
    return pool / np.median(pool), within, drift / within


def load_or_record(record: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """The recording kept in the repository, so the synthetic part gives the same numbers on every run; or, with
    --record, a fresh one from this machine (saved over the kept one only when that file is missing)."""
    if not record and RECORDING.is_file():
        with np.load(RECORDING) as saved:
            return saved["pool"], saved["runs"], f"{RECORDING.name} ({saved['machine']})"
    pool, runs = record_noise(session_call(mlp(4)))
    if not RECORDING.is_file():
        RECORDING.parent.mkdir(parents=True, exist_ok=True)
        np.savez(RECORDING, pool=pool, runs=runs, machine=np.array(machine_name()))
    return pool, runs, "recorded now"


def machine_name() -> str:
    from trtci.context.host import cpu_info

    cpu = cpu_info()
    return f"{cpu['name']}, {cpu['logical_cores']} cores, {', '.join(cpu['isa'])}"


def scaled_pool(relative: np.ndarray, cv: float) -> np.ndarray:
    logs = np.log(relative)
    spread = 1.4826 * float(np.median(np.abs(logs - np.median(logs))))
    return np.exp(logs * (cv / spread))


def synthetic_runs(pool: np.ndarray, cv: float, drift_ratio: float, effect: float, trials: int, rng) -> np.ndarray:
    """(trials, HISTORY_RUNS + 1, SAMPLES_PER_RUN) latencies; the last run of each trial is the current one."""
    runs = HISTORY_RUNS + 1
    samples = rng.choice(pool, size=(trials, runs, SAMPLES_PER_RUN))
    outliers = rng.random(samples.shape) < OUTLIER_SHARE
    samples[outliers] *= rng.uniform(1.5, 3.0, int(outliers.sum()))
    level = np.exp(rng.normal(0.0, cv * drift_ratio, (trials, runs)))
    busy = rng.random((trials, runs)) < BUSY_RUN_SHARE
    busy[:, -1] = False  # a busy current run is what confirmation (re-measuring) is for, not this comparison
    level[busy] *= BUSY_RUN_FACTOR
    level[:, -1] *= 1.0 + effect
    return samples * level[:, :, None]


def bench(samples: np.ndarray) -> SeriesResult:
    values = samples.tolist()
    stats = latency_stats(values, batch=1, wall_s=float(samples.sum()) / 1e3, max_cv=1.0)
    return SeriesResult(key=KEY, bench=BenchResult(stats, values, warmup_ms=0.0, duration_s=1.0, timer="host"))


def trtci_flags(trial: np.ndarray, thresholds: tuple[float, ...]) -> list[bool]:
    points = [
        HistoryPoint(f"r{i}", None, f"2026-01-{i + 1:02d}", float(np.median(trial[i])), trial[i].tolist())
        for i in reversed(range(HISTORY_RUNS))
    ]
    current = bench(trial[-1])
    return [
        compare_series(current, points, "main", CompareSettings(threshold=t)).verdict == "regression"
        for t in thresholds
    ]


def welch_flags(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """One-sided Welch t-test on means, per trial (rows), p < 0.05; n = 200 makes the normal tail exact enough."""
    va, vb = current.var(axis=1, ddof=1) / current.shape[1], previous.var(axis=1, ddof=1) / previous.shape[1]
    t = (current.mean(axis=1) - previous.mean(axis=1)) / np.sqrt(va + vb)
    return t > normal_quantile(0.90)


def synthetic(pool: np.ndarray, drift_ratio: float, trials: int) -> dict[tuple[float, float], dict[str, float]]:
    rng = np.random.default_rng(7)
    table = {}
    for cv in CVS:
        base = scaled_pool(pool, cv)
        for effect in EFFECTS:
            runs = synthetic_runs(base, cv, drift_ratio, effect, trials, rng)
            trtci = np.array([trtci_flags(trial, (0.05, 0.10)) for trial in runs])
            ratio = runs[:, -1].mean(axis=1) / runs[:, -2].mean(axis=1)
            table[(cv, effect)] = {
                "trtci@5%": float(trtci[:, 0].mean()),
                "trtci@10%": float(trtci[:, 1].mean()),
                "A/B@5%": float(ab_flags(base, cv, drift_ratio, effect, rng).mean()),
                "gab 200%": float((ratio > 2.0).mean()),
                "gab 110%": float((ratio > 1.1).mean()),
                "welch": float(welch_flags(runs[:, -1], runs[:, -2]).mean()),
            }
    return table


class SimulatedMachine:
    """Two models on one noisy machine, with a clock of its own (seconds; latencies in ms from the pool)."""

    def __init__(self, pool: np.ndarray, cv: float, drift_ratio: float, effect: float, rng: np.random.Generator):
        self.pool, self.effect, self.rng = pool, effect, rng
        self.step = cv * drift_ratio / math.sqrt(SAMPLES_PER_RUN)  # log-level random walk: drift_ratio*cv per run
        self.level = 0.0
        self.busy_left = 0
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def _call(self, factor: float) -> None:
        self.level += self.step * self.rng.standard_normal()
        if self.busy_left == 0 and self.rng.random() < BUSY_RUN_SHARE / SAMPLES_PER_RUN:
            self.busy_left = SAMPLES_PER_RUN
        busy = BUSY_RUN_FACTOR if self.busy_left > 0 else 1.0
        self.busy_left = max(self.busy_left - 1, 0)
        outlier = self.rng.uniform(1.5, 3.0) if self.rng.random() < OUTLIER_SHARE else 1.0
        latency_ms = self.rng.choice(self.pool) * math.exp(self.level) * busy * outlier * factor
        self.now += latency_ms / 1e3

    def run_a(self) -> None:
        self._call(1.0)

    def run_b(self) -> None:
        self._call(1.0 + self.effect)


def ab_flags(pool: np.ndarray, cv: float, drift_ratio: float, effect: float, rng: np.random.Generator) -> np.ndarray:
    flags = []
    for _ in range(AB_TRIALS):
        machine = SimulatedMachine(pool, cv, drift_ratio, effect, rng)
        result = ab_test(
            machine.run_a,
            machine.run_b,
            max_rounds=AB_MAX_ROUNDS,
            time_budget_s=AB_BUDGET_S,
            min_effect=0.05,
            confidence=0.98,
            clock=machine.clock,
        )
        flags.append(decide_ab(result, 0.05) == "regression")
    return np.array(flags)


def extra_layers(call_a: Callable[[], object], call_2a: Callable[[], object]) -> int:
    """Layers to add to A for TARGET_SLOWDOWN, from the cost of BASE_LAYERS more layers (alternating blocks)."""
    a, b = [], []
    for _ in range(10):
        a.append(np.median(timed(call_a, 100)))
        b.append(np.median(timed(call_2a, 100)))
    per_layer = (np.median(b) - np.median(a)) / BASE_LAYERS
    return max(1, round(TARGET_SLOWDOWN * float(np.median(a)) / per_layer))


def true_ratio(call_a: Callable[[], object], call_b: Callable[[], object]) -> tuple[float, float, np.ndarray]:
    """(median of 100 blocks' median ratios B / A, their robust CV, A's per-call latencies)."""
    ratios, samples = [], []
    for _ in range(100):
        a = timed(call_a, 200)
        b = timed(call_b, 200)
        ratios.append(np.median(b) / np.median(a))
        samples.append(a)
    return float(np.median(ratios)), robust_cv(ratios), np.concatenate(samples)


def real(budget_s: float, comparisons: int, deadline: float) -> dict[str, object]:
    call_a = session_call(mlp(BASE_LAYERS))
    extra = extra_layers(call_a, session_call(mlp(2 * BASE_LAYERS)))
    call_b = session_call(mlp(BASE_LAYERS + extra))
    call_a2 = session_call(mlp(BASE_LAYERS))
    ratio, ratio_cv, a_samples = true_ratio(call_a, call_b)
    flagged = {"ab": [], "aa": []}
    rounds, elapsed = [], []
    for _ in range(comparisons):
        for kind, other in (("ab", call_b), ("aa", call_a2)):
            if time.monotonic() > deadline:
                break
            result = ab_test(call_a, other, time_budget_s=budget_s, min_effect=0.05, confidence=0.98)
            flagged[kind].append(decide_ab(result, 0.10) == "regression")
            rounds.append(result.rounds)
            elapsed.append(result.elapsed_s)
    return {
        "extra_layers": extra,
        "true_ratio": ratio,
        "block_ratio_cv": ratio_cv,
        "cv": robust_cv(a_samples),
        "plain_cv": float(a_samples.std() / a_samples.mean()),
        "median_ms": float(np.median(a_samples)),
        "recall": float(np.mean(flagged["ab"])) if flagged["ab"] else math.nan,
        "false_alarm": float(np.mean(flagged["aa"])) if flagged["aa"] else math.nan,
        "n_ab": len(flagged["ab"]),
        "n_aa": len(flagged["aa"]),
        "median_rounds": float(np.median(rounds)) if rounds else math.nan,
        "median_elapsed_s": float(np.median(elapsed)) if elapsed else math.nan,
        "max_elapsed_s": float(np.max(elapsed)) if elapsed else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="synthetic trials per cell")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of A/B measurement per comparison")
    parser.add_argument("--comparisons", type=int, default=200, help="A-vs-B and as many A-vs-A comparisons")
    parser.add_argument("--minutes", type=float, default=9.0, help="stop starting comparisons after this")
    parser.add_argument("--record", action="store_true", help="record this machine's noise instead of the kept one")
    parser.add_argument("--e2e", action="store_true", help="also run the end-to-end `trtci ab` trials")
    parser.add_argument("--e2e-only", action="store_true", help="only the end-to-end `trtci ab` trials")
    parser.add_argument("--e2e-aa", type=int, default=100, help="end-to-end A/A comparisons per model")
    parser.add_argument("--e2e-ab", type=int, default=10, help="end-to-end A/B comparisons per model")
    parser.add_argument("--e2e-min-effect", type=float, default=0.10, help="trtci ab --min-effect")
    args = parser.parse_args()
    if not args.e2e_only:
        simulated_and_recorded(args)
    if args.e2e or args.e2e_only:
        end_to_end(args)


def simulated_and_recorded(args: argparse.Namespace) -> None:
    started = time.monotonic()
    pool, runs, source = load_or_record(args.record)
    relative, within, drift_ratio = noise_figures(pool, runs)
    print(f"noise ({source}): within-run robust CV {within:.1%}, run-to-run / within-run {drift_ratio:.2f}")
    table = synthetic(relative, drift_ratio, args.trials)
    columns = list(next(iter(table.values())))
    print(f"\nsynthetic: {args.trials} trials per cell ({AB_TRIALS} for A/B); share of trials flagged as a regression")
    print(f"{'cv':>5} {'effect':>6} " + " ".join(f"{c:>9}" for c in columns))
    for (cv, effect), row in table.items():
        print(f"{cv:>5.0%} {effect:>6.0%} " + " ".join(f"{row[c]:>9.3f}" for c in columns))
    print(f"synthetic part took {time.monotonic() - started:.0f} s")
    r = real(args.budget, args.comparisons, started + args.minutes * 60)
    print(
        f"\nreal: A = {BASE_LAYERS} layers ({r['median_ms']:.3f} ms), B = A + {r['extra_layers']} layers, true B/A "
        f"{r['true_ratio']:.4f} (100 alternating blocks, block ratio CV {r['block_ratio_cv']:.1%}); per-call CV "
        f"{r['cv']:.1%} robust, {r['plain_cv']:.1%} plain; {r['n_ab']} A-vs-B and {r['n_aa']} A-vs-A comparisons, "
        f"median {r['median_rounds']:.0f} rounds, {r['median_elapsed_s']:.1f} s (max {r['max_elapsed_s']:.1f} s)"
    )
    print(f"total {time.monotonic() - started:.0f} s")
    cell, quiet = table[(0.03, 0.05)], table[(0.03, 0.0)]
    print(f"detection_history: recall_at_5pct_cv3={cell['trtci@5%']:.3f} false_alarm_cv3={quiet['trtci@5%']:.3f}")
    print(
        f"detection_real: recall_at_10pct={r['recall']:.3f} false_alarm={r['false_alarm']:.3f} "
        f"cv={r['cv']:.3f} budget_s={args.budget:g}"
    )
    print(f"detection: recall_at_5pct_cv3={cell['A/B@5%']:.3f} false_alarm_cv3={quiet['A/B@5%']:.3f}")


def end_to_end(args: argparse.Namespace) -> None:
    """Real `trtci ab` processes on a fast and a slow model (benchmarks/ab_e2e.py)."""
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in (ab_e2e.FAST, ab_e2e.SLOW):
            result = ab_e2e.trials(shape, Path(tmp), args.e2e_aa, args.e2e_ab, args.budget, args.e2e_min_effect)
            print(f"\nend to end: {ab_e2e.report(result)}", flush=True)
            results.append(result)
    print(f"end-to-end part took {time.monotonic() - started:.0f} s")
    print(
        "detection_e2e: "
        + " ".join(
            f"{r['shape'].name}_aa_claims={r['aa_claims']}/{r['aa']} {r['shape'].name}_recall={r['recall']:.2f}"
            f" {r['shape'].name}_max_s={r['max_s']:.0f}"
            for r in results
        )
        + f" min_effect={args.e2e_min_effect:g} budget_s={args.budget:g}"
    )


if __name__ == "__main__":
    main()

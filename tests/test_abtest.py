from __future__ import annotations

import math

import click
import numpy as np
import pytest
from click.testing import CliRunner

from tests.models import mlp_classifier
from trtci.cli.stats import register
from trtci.verdict.abtest import ab_test


class ScriptedMachine:
    """A virtual clock: each call costs its model's time, scaled by slow drift and random noise."""

    def __init__(self, seed: int, noise: float, drift: float):
        self.now = 0.0
        self.calls = 0
        self.rng = np.random.default_rng(seed)
        self.noise, self.drift = noise, drift

    def clock(self) -> float:
        return self.now

    def model(self, cost: float):
        def call() -> None:
            self.calls += 1
            load = 1.0 + self.drift * math.sin(self.calls / 500.0)  # another job comes and goes
            self.now += cost * load * math.exp(self.rng.normal(0.0, self.noise))

        return call


@pytest.mark.parametrize("slowdown", [1.0, 1.10])
def test_paired_rounds_find_the_true_ratio_despite_drift(slowdown):
    machine = ScriptedMachine(seed=1, noise=0.05, drift=0.5)
    result = ab_test(machine.model(0.01), machine.model(0.01 * slowdown), clock=machine.clock, min_effect=0.02)
    assert result.low < slowdown < result.high
    assert result.converged and result.high / result.low - 1 < 0.02
    assert result.rounds == len(result.round_ratios) >= 10
    assert result.resolution == pytest.approx((result.high / result.low - 1) / 2)


def test_budget_stops_a_noisy_test_and_reports_its_resolution():
    machine = ScriptedMachine(seed=2, noise=0.5, drift=0.0)
    result = ab_test(machine.model(0.01), machine.model(0.01), clock=machine.clock, time_budget_s=2.0, min_effect=0.001)
    assert not result.converged and result.elapsed_s >= 2.0
    assert result.resolution > 0.001 and result.low < 1.0 < result.high


def test_max_rounds_and_bad_arguments():
    machine = ScriptedMachine(seed=3, noise=0.3, drift=0.0)
    result = ab_test(
        machine.model(0.01), machine.model(0.01), clock=machine.clock, min_rounds=4, max_rounds=12, min_effect=1e-6
    )
    assert result.rounds == 12 and not result.converged
    with pytest.raises(ValueError):
        ab_test(machine.model(0.01), machine.model(0.01), min_rounds=1)


def test_real_callables_with_perf_counter():
    result = ab_test(lambda: sum(range(2000)), lambda: sum(range(2000)), min_rounds=4, time_budget_s=0.5)
    assert result.rounds >= 4 and result.low <= result.ratio <= result.high


@pytest.fixture
def cli():
    @click.group()
    def group() -> None:
        pass

    register(group)
    return group


def test_ab_command_fails_when_b_is_slower_on_real_sessions(tmp_path, cli):
    mlp_classifier(tmp_path / "a.onnx", hidden=8)
    mlp_classifier(tmp_path / "b.onnx", hidden=4096)  # the same inputs and outputs, 500 times the multiply-adds
    np.savez(tmp_path / "v.npz", input=np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32))
    args = ["ab", "--model-a", str(tmp_path / "a.onnx"), "--model-b", str(tmp_path / "b.onnx"), "--budget", "2"]
    result = CliRunner().invoke(cli, [*args, "--batch-size", "4", "--data", str(tmp_path / "v.npz")])
    assert result.exit_code == 1, result.output
    assert "verdict      regression" in result.output and "rounds" in result.output
    ratio = float(result.output.split("ratio B/A")[1].split()[0])
    assert ratio > 1.5
    swapped = CliRunner().invoke(cli, ["ab", "--model-a", args[4], "--model-b", args[2], "--budget", "2"])
    assert swapped.exit_code == 0 and "verdict      improvement" in swapped.output


def test_interleaved_onnxruntime_sessions_do_not_spin_and_benchmark_sessions_do(tmp_path):
    """An A/B alternates two sessions: one's spinning workers would take the cores the other's next call needs.
    Checked on the real sessions' options; a benchmark's session keeps ONNX Runtime's default."""
    from trtci.backends.base import LoadRequest
    from trtci.backends.onnxruntime import OnnxRuntimeBackend

    mlp_classifier(tmp_path / "a.onnx")
    backend = OnnxRuntimeBackend()
    request = LoadRequest(model_path=tmp_path / "a.onnx", precision="fp32", batch=1, shapes={"input": (1, 16)})
    interleaved = backend.load(request.interleaved())
    plain = backend.load(request)
    assert interleaved is not plain

    def spinning(session) -> str:
        return session._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert (spinning(interleaved), spinning(plain)) == ("0", "1")


def test_ab_command_bad_model_is_bad_input(tmp_path, cli):
    mlp_classifier(tmp_path / "a.onnx")
    result = CliRunner().invoke(cli, ["ab", "--model-a", str(tmp_path / "a.onnx"), "--model-b", "missing.onnx"])
    assert result.exit_code == 2 and "missing.onnx" in result.output


class CoarseClock:
    """A clock that ticks in steps of 10 us, and calls that cost 1 us of it (with 5% noise): one call is below its
    grain, as a fast model's call is near a real timer's and scheduler's."""

    def __init__(self, seed: int):
        self.exact = 0.0
        self.rng = np.random.default_rng(seed)

    def clock(self) -> float:
        return math.floor(self.exact * 1e5) / 1e5

    def model(self, cost: float):
        def call() -> None:
            self.exact += cost * math.exp(self.rng.normal(0.0, 0.05))

        return call


@pytest.mark.parametrize("slowdown", [1.0, 1.10])
def test_rounds_are_blocks_of_calls_long_enough_for_a_coarse_clock(slowdown):
    machine = CoarseClock(seed=4)
    result = ab_test(
        machine.model(1e-6), machine.model(1e-6 * slowdown), clock=machine.clock, min_effect=0.05, time_budget_s=30
    )
    assert result.calls_per_round >= 5000  # a block lasts at least 5 ms of a 1 us call
    assert result.converged and result.low < slowdown < result.high
    assert result.rounds == len(result.round_ratios) and result.rounds % 2 == 0  # whole pairs: A B, then B A


def test_the_error_rate_holds_however_often_the_interval_is_looked_at():
    """A/A on a machine with heavy-tailed noise (a busy moment now and then): the interval may exclude 1, wrongly,
    in at most 1 - confidence of the tests, whatever rounds and looks each took."""
    wrong = 0
    for seed in range(200):
        machine = ScriptedMachine(seed=seed, noise=0.05, drift=0.3)
        busy = np.random.default_rng(seed + 1000)

        def call(machine: ScriptedMachine = machine, busy: np.random.Generator = busy) -> None:
            machine.model(0.01 * (3.0 if busy.random() < 0.02 else 1.0))()

        result = ab_test(call, call, clock=machine.clock, min_effect=0.05, confidence=0.95, time_budget_s=60)
        wrong += not result.low <= 1.0 <= result.high
        assert result.looks >= 1 and result.confidence >= 0.95  # each look's share of the error rate
    assert wrong <= 10 + 3 * math.sqrt(10)  # 5% of 200, with three standard deviations of slack


def test_no_round_ceiling_cuts_a_noisy_comparison_short_while_the_budget_lasts():
    machine = ScriptedMachine(seed=5, noise=0.4, drift=0.0)
    calls = machine.model(1e-3)
    result = ab_test(calls, calls, clock=machine.clock, round_iterations=1, time_budget_s=5.0, min_effect=0.01)
    assert result.rounds > 1000 and result.elapsed_s >= 5.0 and not result.converged

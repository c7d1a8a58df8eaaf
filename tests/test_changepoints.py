from __future__ import annotations

import numpy as np
import pytest

from trtci.verdict.changepoints import change_points


def test_one_step_is_found_where_it_is():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(7.7, 0.2, 30), rng.normal(8.5, 0.2, 25)]
    assert change_points(values) == [30]


def test_two_steps_and_an_outlier_run():
    rng = np.random.default_rng(1)
    values = np.r_[rng.normal(10.0, 0.3, 20), rng.normal(12.0, 0.3, 20), rng.normal(10.5, 0.3, 20)]
    values[7] = 40.0  # one run on a busy machine is not a change
    assert change_points(values) == [20, 40]


def test_noise_only_series_rarely_show_a_change():
    rng = np.random.default_rng(2)
    flagged = sum(bool(change_points(rng.normal(5.0, 0.5, 40))) for _ in range(100))
    assert flagged <= 3


def test_segments_respect_min_size_and_an_explicit_penalty():
    values = [1.0] * 10 + [5.0] * 2 + [1.0] * 10
    assert change_points(values, min_size=3) == []  # a two-run blip cannot form a segment of three
    assert change_points(values, min_size=2, penalty=1.0) == [10, 12]
    assert change_points(values, min_size=2, penalty=1000.0) == []


@pytest.mark.parametrize("values", [[], [1.0], [1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 20, [1.0, float("nan")] * 5])
def test_short_flat_or_nonfinite_series_have_no_change(values):
    assert change_points(values) == []


def test_min_size_below_one_is_refused():
    with pytest.raises(ValueError, match="min_size"):
        change_points([1.0, 2.0], min_size=0)

"""The trial benchmark's dropout pairs (`benchmarks.trial_speed`): what is paired with what, and
the interval of their ratios."""

from __future__ import annotations

import math

import pytest

from benchmarks import trial_speed
from benchmarks.common import mean_interval
from benchmarks.trial_speed import dropout_pairs, ratio_interval
from hpo.train import n_warm_models
from tests.test_train import tiny_data


def parse(text: str) -> tuple[float, float, float]:
    mean, interval = text.split(" [")
    low, high = interval.rstrip("]").split(", ")
    return float(mean), float(low), float(high)


def test_ratios_and_their_inverses_have_a_geometric_mean_of_one() -> None:
    mean, low, high = parse(ratio_interval([0.8, 1.25, 0.9, 1 / 0.9]))
    assert mean == 1.0
    assert low * high == pytest.approx(1.0, abs=2e-3)  # symmetric on the log scale
    assert low < 0.9 and high > 1.1


def test_a_consistent_slowdown_is_bounded_away_from_one() -> None:
    ratios = [1.18, 1.2, 1.22, 1.19, 1.21]
    mean, low, high = parse(ratio_interval(ratios))
    assert mean == pytest.approx(math.prod(ratios) ** (1 / len(ratios)), abs=5e-4)
    assert 1.15 < low < mean < high < 1.25


def test_the_mean_interval_of_known_values() -> None:
    # mean 0.1, sd 0.2 / sqrt(3), n 4: half-width t(0.975, 3) x sd / 2 = 3.1824 x 0.0577 = 0.184
    mean, low, high = parse(mean_interval([0.0, 0.2, 0.0, 0.2]))
    assert mean == pytest.approx(0.1)
    assert (low, high) == (pytest.approx(-0.084, abs=1e-3), pytest.approx(0.284, abs=1e-3))


def test_equal_values_have_an_interval_of_no_width() -> None:
    assert mean_interval([0.1, 0.1, 0.1]) == "0.100 [0.100, 0.100]"
    assert mean_interval([12.0, 12.0], 0, " ms") == "12 ms [12, 12]"
    assert ratio_interval([1.1, 1.1, 1.1]) == "1.100 [1.100, 1.100]"


def test_each_pair_is_a_dropout_run_and_a_plain_run_of_one_seed(monkeypatch) -> None:
    monkeypatch.setattr(trial_speed, "DROPOUT_PAIR_EPOCHS", 2)
    pairs = dropout_pairs(tiny_data(), 3)
    assert [(d.label, n.label) for d, n in pairs] == [("dropout", "no dropout")] * 3
    assert all(len(t.epoch_wall_s) == 2 for pair in pairs for t in pair)
    assert n_warm_models() == 0

"""The trial benchmark (`benchmarks.trial_speed`): what its dropout pairs pair, the interval of
their ratios, and which data the K-seed run gets."""

from __future__ import annotations

import math

import pytest

from benchmarks import trial_speed
from benchmarks.common import Timing, mean_interval
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


def test_seed_images_loads_only_the_smaller_set_for_the_k_seed_run(monkeypatch, capsys) -> None:
    loaded = []

    def fake_load(path, n_train=None, n_validation=None):
        loaded.append(n_train)
        return tiny_data(n_train=n_train or 120)

    monkeypatch.setattr(trial_speed, "load_cifar", fake_load)
    monkeypatch.setattr(trial_speed, "hpo_trial", _tiny_trial)
    skip = ["--skip", "speed", "dropout", "study", "memory"]
    trial_speed.main(["--epochs", "2", "--seeds", "3", "--seed-images", "60", *skip])
    assert loaded == [60]  # the full set is not loaded when only the K-seed run needs data
    assert "(2 epochs each, 60 training images)" in capsys.readouterr().out

    loaded.clear()
    trial_speed.main(["--epochs", "2", "--seeds", "3", *skip])
    assert loaded == [None]
    assert "(2 epochs each, 120 training images)" in capsys.readouterr().out


def _tiny_trial(data, epochs, seed, label="", reuse=False, **_):
    """A stand-in for `hpo_trial` that trains nothing: fixed epoch times, the size of its data."""
    timing = Timing(label, len(data.x_train))
    timing.epoch_wall_s = [0.2] + [0.1] * (epochs - 1)
    timing.epoch_cpu_s = list(timing.epoch_wall_s)
    timing.wall_s = sum(timing.epoch_wall_s) + 0.01
    timing.cpu_s = timing.wall_s
    return timing


def test_the_matmuls_of_an_epoch_add_up_to_its_exact_flops() -> None:
    from benchmarks.bench_floor import dense_shapes, epoch_flops, epoch_matmuls
    from hpo.model import build_model
    from hpo.testing import full_params

    model = build_model(full_params(), (32, 32, 3), 100)
    calls = epoch_matmuls(dense_shapes(model), 45_050, 4_950, 100, 5_000)
    _, exact = epoch_flops(model, 45_050, 4_950)
    assert sum(call.flops for call in calls) == pytest.approx(exact, rel=1e-12)
    # Three outputs, three weights' gradients, two inputs' gradients, three validation passes.
    assert len(calls) == 11
    assert [c.what for c in calls if c.transpose_b] == [
        "layer 2 input's gradient",
        "layer 3 input's gradient",
    ]


@pytest.mark.parametrize(
    ("transpose_a", "transpose_b"), [(False, False), (True, False), (False, True)]
)
def test_a_matmul_is_timed_at_its_own_shape(transpose_a: bool, transpose_b: bool) -> None:
    from benchmarks.bench_floor import Matmul, shape_seconds

    seconds = shape_seconds(Matmul("x", 40, 30, 20, 1.0, transpose_a, transpose_b), repeats=1)
    assert 0 < seconds < 0.1

"""Learning rates over steps and activations at initialization, as the report draws them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpo.data import load_dataset
from hpo.report.probes import initial_activations, learning_rates, n_train_images
from hpo.spec import DataSpec
from hpo.testing import full_params


def test_training_images_are_counted_as_the_split_makes_them() -> None:
    assert n_train_images(DataSpec()) == 45_000
    assert n_train_images(DataSpec(dataset="synthetic", n_samples=301)) == 270
    assert n_train_images(DataSpec(n_train=5000)) == 5000


def test_constant_rate_is_flat_over_the_budget() -> None:
    steps, rates = learning_rates(full_params({"epochs": 4}), steps_per_epoch=10)
    assert steps[0] == 0 and steps[-1] == 40
    assert np.all(rates == pytest.approx(1e-3))


def test_warmup_cosine_rises_then_decays_to_its_floor() -> None:
    params = full_params(
        {"schedule": "warmup_cosine", "learning_rate": 0.01, "warmup_steps": 100, "alpha": 0.1}
    )
    steps, rates = learning_rates(params, steps_per_epoch=50)
    assert rates[0] == pytest.approx(0.0, abs=1e-6)
    assert rates.max() == pytest.approx(0.01, rel=0.02)
    assert steps[int(np.argmax(rates))] == pytest.approx(100, abs=10)
    assert rates[-1] == pytest.approx(0.001, rel=0.05)


def saturation(initializer: str, activation: str, x: np.ndarray) -> list[float]:
    params = full_params({"initializer": initializer, "init_stddev": 1.0, "activation": activation})
    return [layer.saturated(activation) for layer in initial_activations(params, x, 10)]


def test_stddev_one_saturates_tanh_where_glorot_does_not() -> None:
    x = np.random.default_rng(0).uniform(0, 1, size=(128, 8, 8, 3)).astype(np.float32)
    assert min(saturation("random_normal", "tanh", x)) > 0.5
    assert max(saturation("glorot_uniform", "tanh", x)) < 0.05


@pytest.mark.slow
def test_on_real_images_he_keeps_relu_outputs_where_glorot_shrinks_them(
    cifar100_path: Path,
) -> None:
    x = load_dataset(DataSpec(), cifar100_path).x_train[:512]

    def ratio(initializer: str) -> float:
        params = full_params({"initializer": initializer})
        first, second = initial_activations(params, x, 100)
        return second.std / first.std

    assert ratio("he_normal") > 0.9
    assert ratio("glorot_normal") < 0.8
    assert min(saturation("random_normal", "tanh", x)) > 0.75

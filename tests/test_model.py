"""The model builder: each initializer, regularizer, schedule and dropout lands in the model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from hpo.model import build_model, build_optimizer, build_schedule
from hpo.testing import full_params

SHAPE = (4, 4, 3)


def dense_layers(model: keras.Model) -> list[keras.layers.Dense]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_default_is_the_lessons_mlp() -> None:
    model = build_model(full_params(), (32, 32, 3), 100)
    dense = dense_layers(model)
    assert [d.units for d in dense] == [128, 128, 100]
    assert [d.activation.__name__ for d in dense] == ["relu", "relu", "softmax"]
    assert isinstance(model.layers[1], keras.layers.Flatten)
    assert model.count_params() == 3072 * 128 + 128 + 128 * 128 + 128 + 128 * 100 + 100


def test_first_units_and_depth_are_applied() -> None:
    model = build_model(full_params({"first_units": 140, "n_layers": 3, "units": 64}), SHAPE, 10)
    assert [d.units for d in dense_layers(model)] == [140, 64, 64, 10]


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("glorot_normal", keras.initializers.GlorotNormal),
        ("glorot_uniform", keras.initializers.GlorotUniform),
        ("he_normal", keras.initializers.HeNormal),
        ("he_uniform", keras.initializers.HeUniform),
        ("lecun_normal", keras.initializers.LecunNormal),
    ],
)
def test_each_initializer_lands_in_every_layer(name: str, cls: type) -> None:
    model = build_model(full_params({"initializer": name}), SHAPE, 10)
    assert all(isinstance(d.kernel_initializer, cls) for d in dense_layers(model))


def test_random_normal_uses_the_chosen_stddev() -> None:
    keras.utils.set_random_seed(0)
    model = build_model(
        full_params({"initializer": "random_normal", "init_stddev": 1.0}), (32, 32, 3), 10
    )
    first = dense_layers(model)[0]
    assert first.kernel_initializer.stddev == 1.0
    assert abs(float(np.std(first.kernel.numpy())) - 1.0) < 0.02


def test_penalties_land_on_the_first_layer_only_by_default() -> None:
    params = full_params(
        {
            "weight_decay": "on",
            "weight_decay_l2": 1e-5,
            "activity_penalty": "on",
            "activity_l1": 2e-5,
            "bias_penalty": "on",
            "bias_l2": 3e-5,
        }
    )
    first, second, out = dense_layers(build_model(params, SHAPE, 10))
    assert isinstance(first.kernel_regularizer, keras.regularizers.L2)
    assert float(first.kernel_regularizer.l2) == pytest.approx(1e-5)
    assert isinstance(first.activity_regularizer, keras.regularizers.L1)
    assert float(first.activity_regularizer.l1) == pytest.approx(2e-5)
    assert float(first.bias_regularizer.l2) == pytest.approx(3e-5)
    assert second.kernel_regularizer is None and second.activity_regularizer is None
    assert out.kernel_regularizer is None


def test_penalties_on_all_hidden_layers() -> None:
    params = full_params({"weight_decay": "on", "regularized_layers": "all"})
    first, second, out = dense_layers(build_model(params, SHAPE, 10))
    assert first.kernel_regularizer is not None and second.kernel_regularizer is not None
    assert out.kernel_regularizer is None


def test_penalty_adds_to_the_loss() -> None:
    params = full_params({"weight_decay": "on", "weight_decay_l2": 1.0})
    model = build_model(params, SHAPE, 10)
    model(np.zeros((1, *SHAPE), dtype=np.float32))
    assert float(sum(model.losses)) > 0


def test_dropout_follows_the_first_layer() -> None:
    model = build_model(
        full_params({"dropout": "on", "dropout_rate": 0.1, "first_units": 140}), SHAPE, 10
    )
    names = [layer.name for layer in model.layers]
    assert names.index("dropout_1") == names.index("dense_1") + 1
    assert model.get_layer("dropout_1").rate == 0.1
    assert "dropout_2" not in names


def test_no_dropout_layer_when_off() -> None:
    model = build_model(full_params(), SHAPE, 10)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)


def test_cnn_has_two_conv_blocks() -> None:
    model = build_model(full_params({"architecture": "cnn", "filters": 8}), (8, 8, 3), 10)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 16]


def test_constant_schedule_is_a_float() -> None:
    assert build_schedule(full_params({"learning_rate": 0.01}), 100) == 0.01


@pytest.mark.parametrize(
    ("overrides", "cls"),
    [
        ({"schedule": "exponential"}, keras.optimizers.schedules.ExponentialDecay),
        ({"schedule": "cosine"}, keras.optimizers.schedules.CosineDecay),
        ({"schedule": "cosine_restarts"}, keras.optimizers.schedules.CosineDecayRestarts),
        ({"schedule": "warmup_cosine"}, keras.optimizers.schedules.CosineDecay),
    ],
)
def test_each_schedule_lands_in_the_optimizer(overrides: dict, cls: type) -> None:
    optimizer = build_optimizer(full_params(overrides), 100)
    assert isinstance(optimizer._learning_rate, cls)


def test_cosine_restarts_matches_the_lesson() -> None:
    schedule = build_schedule(
        full_params(
            {"schedule": "cosine_restarts", "learning_rate": 0.01, "first_decay_steps": 1000}
        ),
        450,
    )
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(500)) == pytest.approx(0.005, rel=1e-3)
    assert float(schedule(1000)) == pytest.approx(0.01)  # the restart


def test_warmup_rises_linearly_then_decays() -> None:
    schedule = build_schedule(
        full_params(
            {"schedule": "warmup_cosine", "learning_rate": 0.01, "warmup_steps": 100, "epochs": 10}
        ),
        100,
    )
    assert float(schedule(0)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(50)) == pytest.approx(0.005, rel=1e-3)
    assert float(schedule(100)) == pytest.approx(0.01, rel=1e-3)
    assert float(schedule(999)) < 0.001


def test_optimizers_take_their_own_knobs() -> None:
    adam = build_optimizer(full_params({"beta_1": 0.89}), 10)
    assert isinstance(adam, keras.optimizers.Adam) and adam.beta_1 == 0.89
    sgd = build_optimizer(full_params({"optimizer": "sgd", "momentum": 0.9}), 10)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9
    adamw = build_optimizer(full_params({"optimizer": "adamw", "decoupled_weight_decay": 0.01}), 10)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.01

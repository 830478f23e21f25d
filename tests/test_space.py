"""The search space: fixed knobs, suggested knobs, conditional knobs, defaults."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FixedTrial

from hpo.space import KNOBS, complete_params, is_active, suggest_params


def test_every_knob_default_is_used_when_the_space_is_empty() -> None:
    params = suggest_params(FixedTrial({}), {})
    assert params["learning_rate"] == KNOBS["learning_rate"].default
    assert params["initializer"] == "glorot_uniform"
    assert params["epochs"] == 20 and params["batch_size"] == 100


def test_inactive_conditional_knobs_are_left_out() -> None:
    params = suggest_params(FixedTrial({}), {})
    assert "dropout_rate" not in params
    assert "momentum" not in params  # adam is the default optimizer
    assert "beta_1" in params


def test_searched_knobs_come_from_the_trial() -> None:
    space = {
        "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
        "dropout": CategoricalDistribution(["off", "on"]),
        "dropout_rate": FloatDistribution(0.1, 0.5),
    }
    params = suggest_params(
        FixedTrial({"learning_rate": 0.02, "dropout": "on", "dropout_rate": 0.3}), space
    )
    assert params["learning_rate"] == 0.02
    assert params["dropout"] == "on" and params["dropout_rate"] == 0.3


def test_conditional_knob_is_only_suggested_when_its_parent_selects_it() -> None:
    space = {
        "schedule": CategoricalDistribution(["constant", "exponential"]),
        "decay_rate": FloatDistribution(0.5, 0.9),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = suggest_params(trial, space)
        assert ("decay_rate" in params) == (params["schedule"] == "exponential")
        assert ("decay_rate" in trial.params) == (params["schedule"] == "exponential")
        study.tell(trial, 0.0)


def test_nested_condition_needs_the_whole_chain() -> None:
    assert is_active("init_stddev", {"initializer": "random_normal"})
    assert not is_active("init_stddev", {"initializer": "he_normal"})
    assert is_active("alpha", {"schedule": "warmup_cosine"})


def test_every_parent_precedes_its_children() -> None:
    order = list(KNOBS)
    for name, knob in KNOBS.items():
        if knob.parent is not None:
            assert order.index(knob.parent) < order.index(name), name


def test_complete_params_fills_only_searched_active_knobs() -> None:
    space = {
        "dropout": CategoricalDistribution(["off", "on"]),
        "dropout_rate": FloatDistribution(0.1, 0.5),
        "epochs": 7,
    }
    assert complete_params({}, space) == {"dropout": "off"}
    assert complete_params({"dropout": "on"}, space) == {"dropout": "on", "dropout_rate": 0.1}

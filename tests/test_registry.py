"""Samplers and pruners by name: arguments, grids, wrapped pruners, and seeds per trial."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.registry import (
    TrialSeeded,
    accepted_args,
    grid_of,
    make_pruner,
    make_sampler,
    sampler_seed,
)

SPACE = {
    "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    "units": IntDistribution(16, 64, step=16),
    "optimizer": CategoricalDistribution(["adam", "sgd"]),
}


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)


def drawn(sampler: optuna.samplers.BaseSampler, n: int = 6) -> list[float]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n)
    return [t.params["learning_rate"] for t in study.trials]


def test_accepted_args_leave_out_what_hpo_supplies() -> None:
    from hpo.registry import PRUNERS, SAMPLERS

    assert "search_space" not in accepted_args(SAMPLERS, "grid")
    assert "n_startup_trials" in accepted_args(SAMPLERS, "tpe")
    assert "wrapped_pruner" not in accepted_args(PRUNERS, "patient")


def test_grid_of_enumerates_every_searched_knob() -> None:
    grid = grid_of({k: v for k, v in SPACE.items() if k != "learning_rate"})
    assert grid == {"units": [16, 32, 48, 64], "optimizer": ["adam", "sgd"]}
    stepped = grid_of({"rate": FloatDistribution(0.0, 0.5, step=0.25)})
    assert stepped == {"rate": [0.0, 0.25, 0.5]}
    with pytest.raises(ValueError, match="learning_rate"):
        grid_of(SPACE)


def test_a_patient_pruner_wraps_the_pruner_its_table_names() -> None:
    pruner = make_pruner("patient", {"patience": 2, "wrapped": {"type": "median"}})
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    assert make_pruner("none", {}).__class__ is optuna.pruners.NopPruner


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_trial_seeded_samplers_are_wrapped_and_reproducible(name: str) -> None:
    first = make_sampler(name, {}, 42, SPACE)
    assert isinstance(first, TrialSeeded)
    assert drawn(first) == drawn(make_sampler(name, {}, 42, SPACE))
    assert drawn(make_sampler(name, {}, 43, SPACE)) != drawn(make_sampler(name, {}, 42, SPACE))


def test_two_samplers_with_one_seed_on_one_study_never_repeat_a_point() -> None:
    """Two processes load the same spec at the same moment: one seed, one storage."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study_a = optuna.create_study(sampler=make_sampler("random", {}, 7, SPACE))
    study_b = optuna.load_study(
        study_name=study_a.study_name,
        storage=study_a._storage,  # in memory: the only way to share it in one process
        sampler=make_sampler("random", {}, 7, SPACE),
    )
    for _ in range(5):
        study_a.optimize(objective, n_trials=1)
        study_b.optimize(objective, n_trials=1)
    rates = [t.params["learning_rate"] for t in study_a.trials]
    assert len(rates) == 10 and len(set(rates)) == 10


def test_one_process_seed_repeats_points_across_processes() -> None:
    """The fault the per-trial seed removes: two plain samplers with one seed draw alike."""
    a = drawn(optuna.samplers.RandomSampler(seed=7), 3)
    b = drawn(optuna.samplers.RandomSampler(seed=7), 3)
    assert a == b


def test_a_spec_sampler_seed_replaces_the_study_seed_as_base() -> None:
    assert drawn(make_sampler("random", {"seed": 5}, 42, SPACE)) == drawn(
        make_sampler("random", {}, 5, SPACE)
    )
    assert sampler_seed(5, 0) != sampler_seed(5, 1) != sampler_seed(6, 1)


def test_sequence_samplers_share_one_seed() -> None:
    """QMC, grid and brute force read their place from the storage: one seed for everyone."""
    qmc = make_sampler("qmc", {}, 3, SPACE)
    assert isinstance(qmc, optuna.samplers.QMCSampler)
    grid = make_sampler("grid", {}, 3, {k: v for k, v in SPACE.items() if k != "learning_rate"})
    assert isinstance(grid, optuna.samplers.GridSampler)

"""The objective on synthetic data: values, user attributes, pruning, divergence, seeding."""

from __future__ import annotations

import math

import keras
import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from hpo.data import load_dataset
from hpo.objective import PruningCallback, best_of, make_objective, trial_seed
from hpo.spec import load_spec_text

from .conftest import TINY_SPEC


@pytest.fixture
def spec():
    return load_spec_text(TINY_SPEC)


def test_trial_records_what_a_report_needs(spec) -> None:
    trial = FixedTrial({"learning_rate": 0.005}, number=2)
    value = make_objective(spec, load_dataset(spec.data))(trial)
    attrs = trial.user_attrs
    assert 0.0 <= value <= 1.0
    # The value scores the model the run ends with: here the last epoch's.
    assert value == pytest.approx(attrs["curve_val_accuracy"][-1], abs=1e-6)
    assert attrs["final_val_accuracy"] == value
    assert attrs["n_epochs"] == 2 and attrs["epoch_budget"] == 2
    assert attrs["best_epoch"] in (1, 2)
    assert len(attrs["seconds_per_epoch"]) == 2
    assert len(attrs["curve_loss"]) == len(attrs["curve_val_loss"]) == 2
    assert attrs["n_params"] == 4 * 4 * 3 * 8 + 8 + 8 * 8 + 8 + 8 * 4 + 4
    assert attrs["seed"] == trial_seed(spec.seed, 2)
    assert set(attrs["versions"]) == {"tensorflow", "keras", "optuna"}
    assert attrs["params"]["learning_rate"] == 0.005 and attrs["params"]["epochs"] == 2
    assert attrs["stopped_by"] == "budget"


def test_same_trial_number_gives_the_same_result(spec) -> None:
    data = load_dataset(spec.data)
    one, two = FixedTrial({"learning_rate": 0.005}, 1), FixedTrial({"learning_rate": 0.005}, 1)
    make_objective(spec, data)(one)
    make_objective(spec, data)(two)
    assert one.user_attrs["curve_loss"] == pytest.approx(two.user_attrs["curve_loss"], rel=1e-5)


def test_trial_seeds_differ_by_number_and_study_seed() -> None:
    seeds = {trial_seed(s, n) for s in range(3) for n in range(100)}
    assert len(seeds) == 300


def test_diverging_trial_fails_with_a_reason_and_the_study_goes_on() -> None:
    text = TINY_SPEC.replace(
        "learning_rate = { low = 1e-3, high = 1e-2, log = true }",
        'optimizer = "sgd"\nlearning_rate = { low = 1e-2, high = 1e12, log = true }',
    )
    spec = load_spec_text(text)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"learning_rate": 1e12})
    study.enqueue_trial({"learning_rate": 1e-2})
    study.optimize(make_objective(spec, load_dataset(spec.data)), n_trials=2)
    diverged, fine = study.trials
    assert diverged.state == TrialState.FAIL
    assert diverged.user_attrs["fail_reason"].startswith("diverged")
    assert diverged.user_attrs["stopped_by"] == "diverged"
    assert fine.state == TrialState.COMPLETE


def test_pruning_callback_reports_each_epoch_and_stops_training() -> None:
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    good = study.ask()
    for step in range(3):
        good.report(0.9, step)
    study.tell(good, 0.9)
    trial = study.ask()
    callback = PruningCallback(trial, "val_accuracy")
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    callback.on_epoch_end(0, {"val_accuracy": 0.1})
    assert callback.pruned_at == 1
    assert callback.model.stop_training
    assert study.trials[1].intermediate_values == {0: 0.1}


def test_pruning_callback_lets_good_trials_run() -> None:
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    first = study.ask()
    first.report(0.5, 0)
    study.tell(first, 0.5)
    callback = PruningCallback(study.ask(), "val_accuracy")
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    callback.on_epoch_end(0, {"val_accuracy": 0.8})
    assert callback.pruned_at is None
    assert not getattr(callback.model, "stop_training", False)


def test_pruned_trial_keeps_its_curves() -> None:
    text = TINY_SPEC.replace('type = "none"', 'type = "threshold"\nlower = 2.0').replace(
        "epochs = 2", "epochs = 4"
    )
    spec = load_spec_text(text)
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0)
    )
    study.optimize(make_objective(spec, load_dataset(spec.data)), n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["n_epochs"] == 1 and trial.user_attrs["stopped_by"] == "pruner"
    assert len(trial.user_attrs["curve_val_accuracy"]) == 1


def test_early_stopping_ends_before_the_budget() -> None:
    text = TINY_SPEC.replace(
        "epochs = 2", 'epochs = 30\nearly_stopping = "on"\npatience = 1\nmin_delta = 10.0'
    )
    spec = load_spec_text(text)
    trial = FixedTrial({"learning_rate": 0.005})
    make_objective(spec, load_dataset(spec.data))(trial)
    assert trial.user_attrs["n_epochs"] == 2
    assert trial.user_attrs["stopped_by"] == "early_stopping"


def test_best_of_ignores_non_finite_values() -> None:
    assert best_of([0.1, math.nan, 0.3, 0.2], "maximize") == (0.3, 3)
    assert best_of([0.5, 0.2, math.inf], "minimize") == (0.2, 2)
    value, epoch = best_of([], "maximize")
    assert math.isnan(value) and epoch is None


def test_artifacts_are_stored_only_when_the_spec_asks(tmp_path) -> None:
    folder = tmp_path / "artifacts"
    for text in (TINY_SPEC, f'artifact_dir = "{folder}"\nkeep_weights = true\n' + TINY_SPEC):
        spec = load_spec_text(text)
        study = optuna.create_study(direction="maximize")
        study.optimize(make_objective(spec, load_dataset(spec.data)), n_trials=1)
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 2  # the learning-curve figure and the weights of the second study
    assert study.user_attrs["artifact_dir"] == str(folder.resolve())


def test_with_restored_weights_the_value_is_the_restored_models_score() -> None:
    text = TINY_SPEC.replace("epochs = 2", "epochs = 6").replace(
        "learning_rate = { low = 1e-3, high = 1e-2, log = true }",
        'learning_rate = 0.05\nearly_stopping = "on"\npatience = 1\nrestore_best_weights = true',
    )
    spec = load_spec_text(text)
    trial = FixedTrial({}, number=0)
    value = make_objective(spec, load_dataset(spec.data))(trial)
    attrs = trial.user_attrs
    val_loss = attrs["curve_val_loss"]
    restored = min(range(len(val_loss)), key=lambda i: val_loss[i])
    # Early stopping watches val_loss: the run ends with that epoch's weights.
    assert value == pytest.approx(attrs["curve_val_accuracy"][restored], abs=1e-6)


def test_an_artifact_folder_that_cannot_be_written_is_refused_before_any_trial(tmp_path) -> None:
    from hpo.errors import HpoError

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    folder = a_file / "artifacts"
    spec = load_spec_text(f'artifact_dir = "{folder}"\n' + TINY_SPEC)
    with pytest.raises(HpoError, match=f"artifact_dir {folder} cannot be written"):
        make_objective(spec, load_dataset(spec.data))

"""One Optuna trial, start to end: suggest params, train, report each epoch, prune, record."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import optuna

from hpo.data import Dataset
from hpo.errors import HpoError
from hpo.interrupts import BetweenSteps
from hpo.space import suggest_params
from hpo.spec import Spec
from hpo.study import FIXED_ONLY, FIXED_RUN
from hpo.train import Run, evaluate, fit


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial: a fixed function of the study seed and the trial number."""
    return (study_seed * 1_000_003 + trial_number * 7_919 + 17) % (2**31 - 1)


class PruningCallback(keras.callbacks.Callback):
    """Reports the objective metric each epoch and stops training when the pruner says so.

    Unlike raising `TrialPruned` inside Keras, stopping lets the trial record its curves
    before it ends as pruned.
    """

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        super().__init__()
        self.trial = trial
        self.metric = metric
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True


EpochHook = Callable[[int, int, int], None]
"""Told (trial number, epochs done, epoch budget) after each epoch: a progress display."""


class _EpochNotice(keras.callbacks.Callback):
    def __init__(self, hook: EpochHook, number: int, budget: int) -> None:
        super().__init__()
        self.hook, self.number, self.budget = hook, number, budget

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.hook(self.number, epoch + 1, self.budget)


def notices(hook: EpochHook | None, number: int, params: Mapping[str, Any]) -> list[Any]:
    return [] if hook is None else [_EpochNotice(hook, number, int(params["epochs"]))]


def make_objective(
    spec: Spec, data: Dataset, on_epoch: EpochHook | None = None
) -> Callable[[optuna.Trial], float]:
    """The objective of `spec`'s study over data that were loaded once, outside it.

    A trial enqueued as a fixed run trains its given params with its given seed; any other
    trial suggests its params from the spec's space. `on_epoch` hears of every epoch.
    The spec's artifact folder is checked here, before a trial trains only to lose its files.
    """
    if spec.artifact_dir:
        check_writable(Path(spec.artifact_dir))

    def objective(trial: optuna.Trial) -> float:
        # Ctrl-C and SIGTERM wait for a training step's end, or the trial's, wherever they
        # land: TensorFlow's code also runs outside the fit (a model freed, weights saved).
        with BetweenSteps():
            return _objective(trial)

    def _objective(trial: optuna.Trial) -> float:
        try:
            if trial.user_attrs.get(FIXED_RUN):
                return run_fixed(trial, data, on_epoch)
            study = getattr(trial, "study", None)  # a FixedTrial has none
            if study is not None and study.user_attrs.get(FIXED_ONLY):
                trial.set_user_attr("fail_reason", "surplus: no enqueued run was left")
                return math.nan
            return run_trial(trial, spec, data, on_epoch)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            # Optuna only logs an exception; keep the reason with the trial for later readers.
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:500]
            trial.set_user_attr("fail_reason", reason)
            raise

    return objective


def check_writable(folder: Path) -> None:
    """Make `folder` if missing and write a file in it, or say in one line why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise HpoError(f"artifact_dir {folder} cannot be written: {err.strerror or err}") from err


def run_trial(
    trial: optuna.Trial, spec: Spec, data: Dataset, on_epoch: EpochHook | None = None
) -> float:
    """Train one configuration; return the validation score of the model it ends with.

    That model is the last epoch's, or the restored best weights where early stopping restored
    them: the same model a test evaluation or an ablation run scores. NaN if it diverged.
    """
    params = suggest_params(trial, spec.space)
    seed = trial_seed(spec.seed, trial.number)
    trial.set_user_attr("seed", seed)
    pruning = PruningCallback(trial, spec.metric)
    run = fit(params, data, seed, callbacks=[pruning, *notices(on_epoch, trial.number, params)])
    _, best_epoch = best_of(run.history.get(spec.metric, []), spec.direction)
    record(trial, run, params, best_epoch)
    scores = evaluate(run.model, data.x_val, data.y_val) if run.n_epochs else {}
    value = scores.get(spec.metric.removeprefix("val_"), math.nan)
    if math.isfinite(value):
        trial.set_user_attr("final_" + spec.metric, value)
    if spec.artifact_dir:
        from hpo.artifacts import save_trial_artifacts

        model = run.model if spec.keep_weights else None
        save_trial_artifacts(trial, run.history, spec.artifact_dir, model=model)
    diverged = run.diverged_at
    if diverged is not None:
        reason = f"diverged: training loss was not finite at epoch {diverged}"
        trial.set_user_attr("stopped_by", "diverged")
        trial.set_user_attr("fail_reason", reason)
        return math.nan
    if pruning.pruned_at is not None:
        trial.set_user_attr("stopped_by", "pruner")
        raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
    trial.set_user_attr("stopped_by", "early_stopping" if run.stopped_early else "budget")
    return value


def run_fixed(trial: optuna.Trial, data: Dataset, on_epoch: EpochHook | None = None) -> float:
    """Train a fixed run (params and seed given as user attributes) and score its final model.

    Validation and test accuracy are both recorded: the run's configuration was chosen before
    it started, so the test set only scores it. A diverged run is complete, with the scores of
    the model it ended with; its value is the validation accuracy.
    """
    params = dict(trial.user_attrs["params"])
    seed = int(trial.user_attrs["seed"])
    # A run that raises goes back to the queue (`hpo.optimize.optimize`), so it is never lost.
    run = fit(params, data, seed, callbacks=notices(on_epoch, trial.number, params), reuse=True)
    val = evaluate(run.model, data.x_val, data.y_val)
    test = evaluate(run.model, data.x_test, data.y_test)
    attrs: dict[str, Any] = {
        "val_accuracy": val["accuracy"],
        "val_loss": _finite_or_none(val["loss"]),
        "test_accuracy": test["accuracy"],
        "test_loss": _finite_or_none(test["loss"]),
        "n_epochs": run.n_epochs,
        "epoch_budget": int(params["epochs"]),
        "seconds_per_epoch": [round(s, 4) for s in run.seconds_per_epoch],
        "stopped_by": _stopped_by(run),
    }
    for key, values in run.history.items():
        attrs[f"curve_{key}"] = [_finite_or_none(v) for v in values]
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return float(val["accuracy"])


def _stopped_by(run: Run) -> str:
    if run.diverged_at is not None:
        return "diverged"
    return "early_stopping" if run.stopped_early else "budget"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def best_of(values: list[float], direction: str) -> tuple[float, int | None]:
    """The best finite value in `values` and its 1-based epoch (a curve's peak, for the record;
    a trial's value is the score of its final model)."""
    finite = [(v, i) for i, v in enumerate(values, start=1) if math.isfinite(v)]
    if not finite:
        return math.nan, None
    pick = max if direction == "maximize" else min
    value, epoch = pick(finite, key=lambda pair: pair[0])
    return value, epoch


def record(
    trial: optuna.Trial, run: Run, params: Mapping[str, Any], best_epoch: int | None
) -> None:
    """Store what a report needs as user attributes of the trial."""
    import tensorflow as tf

    attrs: dict[str, Any] = {
        "params": dict(params),
        "n_epochs": run.n_epochs,
        "epoch_budget": int(params["epochs"]),
        "best_epoch": best_epoch,
        "seconds_per_epoch": [round(s, 4) for s in run.seconds_per_epoch],
        "n_params": int(run.model.count_params()),
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "optuna": optuna.__version__,
        },
    }
    for key, values in run.history.items():
        attrs[f"curve_{key}"] = [v if math.isfinite(v) else None for v in values]
    for key, value in attrs.items():
        trial.set_user_attr(key, value)

"""One Optuna trial, start to end: suggest params, train, report each epoch, prune, record."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import keras
import optuna

from hpo.data import Dataset
from hpo.space import suggest_params
from hpo.spec import Spec
from hpo.train import Run, fit


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


def make_objective(spec: Spec, data: Dataset) -> Callable[[optuna.Trial], float]:
    """The objective of `spec`'s study over data that were loaded once, outside it."""

    def objective(trial: optuna.Trial) -> float:
        try:
            return run_trial(trial, spec, data)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            # Optuna only logs an exception; keep the reason with the trial for later readers.
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:500]
            trial.set_user_attr("fail_reason", reason)
            raise

    return objective


def run_trial(trial: optuna.Trial, spec: Spec, data: Dataset) -> float:
    """Train one configuration; return its best validation value, or NaN if it diverged."""
    params = suggest_params(trial, spec.space)
    seed = trial_seed(spec.seed, trial.number)
    trial.set_user_attr("seed", seed)
    pruning = PruningCallback(trial, spec.metric)
    run = fit(params, data, seed, callbacks=[pruning])
    value, best_epoch = best_of(run.history.get(spec.metric, []), spec.direction)
    record(trial, run, params, best_epoch)
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


def best_of(values: list[float], direction: str) -> tuple[float, int | None]:
    """The best finite value in `values` and its 1-based epoch."""
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

"""The private Optuna and Keras names hpo still relies on: each fails loudly if it goes.

hpo uses public APIs wherever Optuna or Keras has one. These remain, for want of one:
- `optuna.Study._storage`: a study's storage (heartbeat check, failing a dead worker's trial);
- `FrozenTrial._trial_id`: the storage id of a trial another process is running;
- `Trial._trial_id`: the storage id of this worker's trial, to see whether another worker
  failed it as stale while this one was cut off (`hpo.optimize._finished_elsewhere`);
- Keras's `Optimizer._all_reduce_sum_gradients`: replaced on one replica to stop a per-trial
  graph leak (see `hpo.train._skip_one_replica_sum`).
The version bounds in pyproject.toml hold the versions these were checked on.
"""

from __future__ import annotations

import keras
import optuna


def test_a_study_still_exposes_its_storage() -> None:
    study = optuna.create_study()
    assert isinstance(getattr(study, "_storage", None), optuna.storages.BaseStorage), (
        "optuna.Study._storage is gone: hpo.optimize.heartbeat_enabled and "
        "hpo.workers.fail_orphans need another way to reach a study's storage"
    )


def test_a_frozen_trial_still_has_its_storage_id() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    trial = study.trials[0]
    assert isinstance(getattr(trial, "_trial_id", None), int), (
        "FrozenTrial._trial_id is gone: hpo.workers.fail_orphans needs the storage id"
    )
    assert study._storage.get_trial(trial._trial_id).number == trial.number


def test_keras_optimizers_still_sum_gradients_over_replicas_by_this_name() -> None:
    optimizer = keras.optimizers.Adam()
    assert callable(getattr(optimizer, "_all_reduce_sum_gradients", None)), (
        "keras Optimizer._all_reduce_sum_gradients is gone: hpo.train._skip_one_replica_sum "
        "no longer stops the per-trial graph leak; re-check memory with benchmarks.trial_speed"
    )


def test_the_rdb_heartbeat_check_is_public() -> None:
    storage = optuna.storages.RDBStorage("sqlite:///:memory:", heartbeat_interval=30)
    assert storage.get_heartbeat_interval() == 30


def test_a_running_trial_still_has_its_storage_id() -> None:
    study = optuna.create_study()
    trial = study.ask()
    assert isinstance(getattr(trial, "_trial_id", None), int), (
        "optuna.Trial._trial_id is gone: hpo.optimize._finished_elsewhere needs the storage id"
    )
    assert study._storage.get_trial(trial._trial_id).number == trial.number

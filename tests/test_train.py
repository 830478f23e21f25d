"""The trial loop: fits that compute what Keras's do, and warm models that train as fresh builds."""

from __future__ import annotations

import gc
import os
import signal
import threading

import numpy as np
import pytest

import hpo.train
from hpo.data import Dataset
from hpo.testing import full_params
from hpo.train import (
    FAST,
    Loop,
    evaluate,
    fit,
    forget_warm_models,
    n_warm_models,
    steps_per_execution,
    use_xla,
)


def tiny_data(n_train: int = 120, n_classes: int = 3) -> Dataset:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_classes, 2, 2, 3))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % n_classes
        x = centres[y] + rng.normal(scale=0.5, size=(n, 2, 2, 3))
        return x.astype(np.float32), y.astype(np.int32)

    (xt, yt), (xv, yv), (xs, ys) = draw(n_train), draw(30), draw(30)
    return Dataset(xt, yt, xv, yv, xs, ys, n_classes, "synthetic")


def tiny_params(**overrides):
    return full_params({"first_units": 8, "units": 8, "epochs": 3, **overrides})


@pytest.mark.parametrize(
    ("loop", "n_steps", "expected"),
    [
        (Loop(steps_per_execution=16), 450, 15),
        (Loop(steps_per_execution=0), 450, 450),
        (Loop(steps_per_execution=4), 3, 3),
        (Loop(steps_per_execution=4), 7, 1),
        (Loop(pipeline="numpy", steps_per_execution=16), 450, 16),
    ],
)
def test_a_call_never_runs_past_the_epoch(loop: Loop, n_steps: int, expected: int) -> None:
    assert steps_per_execution(loop, n_steps) == expected


def test_xla_on_gpus_as_keras_chooses_and_never_by_itself_on_a_cpu() -> None:
    assert not use_xla(Loop(), keras_default=False)  # a CPU
    assert use_xla(Loop(), keras_default=True)  # Keras's default on a GPU
    assert not use_xla(Loop(jit_compile=False), keras_default=True)
    assert use_xla(Loop(jit_compile=True), keras_default=False)


@pytest.mark.parametrize("per_call", [0, 1, 4])
def test_each_epoch_takes_exactly_its_steps(per_call: int) -> None:
    data = tiny_data(n_train=110)  # batches of 50: 50, 50 and a partial 10
    run = fit(tiny_params(batch_size=50), data, 0, loop=Loop(steps_per_execution=per_call))
    assert int(run.model.optimizer.iterations.numpy()) == 3 * 3
    assert run.n_epochs == 3 and len(run.seconds_per_epoch) == 3


def test_full_batch_fit_matches_keras_on_numpy_arrays() -> None:
    # One batch per epoch: the order of samples cannot matter, so both fits must agree.
    data = tiny_data()
    params = tiny_params(batch_size=len(data.x_train))
    fast = fit(params, data, 5)
    keras_fit = fit(params, data, 5, loop=Loop(pipeline="numpy", steps_per_execution=1))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert fast.history[key] == pytest.approx(keras_fit.history[key], rel=1e-4, abs=1e-6)


def test_minibatch_fit_learns_like_keras_on_numpy_arrays() -> None:
    data = tiny_data()
    params = tiny_params(batch_size=20, epochs=8, learning_rate=0.01)
    fast = fit(params, data, 5)
    keras_fit = fit(params, data, 5, loop=Loop(pipeline="numpy", steps_per_execution=1))
    assert fast.history["loss"][-1] < 0.8 * fast.history["loss"][0]
    assert fast.history["loss"] == pytest.approx(keras_fit.history["loss"], rel=0.15)
    assert fast.history["val_accuracy"][-1] == pytest.approx(
        keras_fit.history["val_accuracy"][-1], abs=0.15
    )


def test_same_seed_same_curves() -> None:
    data = tiny_data()
    params = tiny_params(batch_size=20)
    assert fit(params, data, 3).history == fit(params, data, 3).history


def test_evaluate_matches_the_last_validation() -> None:
    data = tiny_data()
    run = fit(tiny_params(batch_size=20), data, 1)
    result = evaluate(run.model, data.x_val, data.y_val)
    assert result["loss"] == pytest.approx(run.history["val_loss"][-1], rel=1e-5)
    assert result["accuracy"] == pytest.approx(run.history["val_accuracy"][-1])


def n_graphs() -> int:
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(isinstance(o, FuncGraph) for o in gc.get_objects())


def test_trials_leave_no_traced_graphs_behind() -> None:
    data = tiny_data()
    params = tiny_params(batch_size=20, epochs=1)
    fit(params, data, 0)
    before = n_graphs()
    for seed in range(1, 4):
        fit(params, data, seed)
    assert n_graphs() <= before


VARIANTS = {
    "plain": {},
    "dropout, penalties, cosine, random normal": {
        "dropout": "on",
        "dropout_rate": 0.3,
        "weight_decay": "on",
        "activity_penalty": "on",
        "bias_penalty": "on",
        "schedule": "cosine",
        "initializer": "random_normal",
        "init_stddev": 0.1,
    },
    "sgd, decay, early stopping, he": {
        "optimizer": "sgd",
        "momentum": 0.9,
        "learning_rate": 0.3,
        "schedule": "exponential",
        "early_stopping": "on",
        "patience": 1,
        "min_delta": 0.05,  # patience runs out once the loss settles: weights are restored
        "epochs": 8,
        "initializer": "he_normal",
    },
}


def test_patience_that_runs_out_on_the_last_epoch_is_no_early_stop() -> None:
    # No change counts as improvement after the first epoch: patience 1 runs out at epoch 2.
    stop = {"early_stopping": "on", "patience": 1, "min_delta": 10.0}
    before = fit(tiny_params(batch_size=20, epochs=3, **stop), tiny_data(), 1)
    assert before.n_epochs == 2 and before.stopped_early
    at_budget = fit(tiny_params(batch_size=20, epochs=2, **stop), tiny_data(), 1)
    assert at_budget.n_epochs == 2 and not at_budget.stopped_early  # it saved no epoch


def weights(run) -> list[np.ndarray]:
    return [np.array(v) for v in run.model.weights]


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_a_warm_model_trains_as_a_fresh_build(overrides) -> None:
    a_warm_model_trains_as_a_fresh_build(overrides, FAST)


def test_a_warm_model_on_keras_s_numpy_input_trains_as_a_fresh_build() -> None:
    # Keras shuffles numpy input with TensorFlow's global seed, which the tensor pipeline
    # does not read.
    a_warm_model_trains_as_a_fresh_build({}, Loop(pipeline="numpy"))


def a_warm_model_trains_as_a_fresh_build(overrides: dict, loop: Loop) -> None:
    data = tiny_data()
    params = tiny_params(batch_size=20, **overrides)
    other = tiny_params(**{"batch_size": 20, **overrides, "learning_rate": 0.003})
    fresh = {}
    for seed in (1, 2):
        run = fit(params, data, seed, loop=loop)
        fresh[seed] = (run.history, weights(run))
        # The early-stopping variant must stop early, or it does not test restored weights.
        assert run.stopped_early == (params["early_stopping"] == "on"), run.history["val_loss"]
    forget_warm_models()
    fit(params, data, 1, loop=loop, reuse=True)
    fit(other, data, 1, loop=loop, reuse=True)  # built while another is kept: no clearing
    for seed in (2, 1):
        run = fit(params, data, seed, loop=loop, reuse=True)
        assert run.history == fresh[seed][0]
        for warm, cold in zip(weights(run), fresh[seed][1], strict=True):
            np.testing.assert_array_equal(warm, cold)
    forget_warm_models()


def test_a_warm_run_traces_nothing_and_leaves_nothing_behind() -> None:
    data = tiny_data()
    params = tiny_params(batch_size=20, epochs=1)
    first = fit(params, data, 0, reuse=True).model
    before = n_graphs()
    for seed in range(1, 4):
        assert fit(params, data, seed, reuse=True).model is first
    assert n_graphs() == before
    forget_warm_models()


def test_a_warm_run_reuses_its_datasets_and_sets_their_seed(monkeypatch) -> None:
    data = tiny_data()
    params = tiny_params(batch_size=20, epochs=2)
    fresh = fit(params, data, 2).history
    built: list[int] = []
    build = hpo.train.training_batches
    monkeypatch.setattr(
        hpo.train, "training_batches", lambda *a, **k: (built.append(1), build(*a, **k))[1]
    )
    fit(params, data, 1, reuse=True)
    assert fit(params, data, 2, reuse=True).history == fresh
    assert len(built) == 1
    forget_warm_models()


def test_a_warm_model_fed_other_arrays_of_the_same_shapes_trains_on_them() -> None:
    data = tiny_data()
    rng = np.random.default_rng(1)
    other = Dataset(
        data.x_train[rng.permutation(len(data.x_train))] + 0.5,
        data.y_train,
        data.x_val * 2,
        data.y_val[::-1].copy(),
        data.x_test,
        data.y_test,
        data.n_classes,
        data.source,
    )
    params = tiny_params(batch_size=20, epochs=2)
    fresh = fit(params, other, 3).history
    fit(params, data, 3, reuse=True)
    assert fit(params, other, 3, reuse=True).history == fresh
    assert fit(params, data, 3, reuse=True).history != fresh
    forget_warm_models()


def test_a_warm_run_leaves_tensorflows_global_seed_alone(monkeypatch) -> None:
    """Setting TensorFlow's global seed clears its cache of instantiated functions: the next
    call of the train and test steps instantiated and optimized them again (0.1-0.3 s of each
    warm run of the lesson's MLP). Only a build seeds TensorFlow."""
    import tensorflow as tf

    data = tiny_data()
    params = tiny_params(batch_size=20, epochs=1)
    fit(params, data, 0, reuse=True)
    seeded: list[int] = []
    set_seed = tf.random.set_seed
    monkeypatch.setattr(tf.random, "set_seed", lambda seed: (seeded.append(seed), set_seed(seed)))
    fit(params, data, 1, reuse=True)
    assert seeded == []
    fit(tiny_params(batch_size=20, epochs=1, learning_rate=0.003), data, 2, reuse=True)
    assert seeded == [2]  # a build does seed it, through the same call
    forget_warm_models()


def test_the_process_keeps_a_bounded_number_of_warm_models(monkeypatch) -> None:
    monkeypatch.setattr(hpo.train, "WARM_GRAPHS", 2)
    data = tiny_data()
    for i in range(3):
        fit(
            tiny_params(batch_size=20, epochs=1, learning_rate=0.001 * (i + 1)), data, 0, reuse=True
        )
    assert n_warm_models() == 2
    fit(tiny_params(batch_size=20, epochs=1), data, 0)
    assert n_warm_models() == 0


@pytest.mark.parametrize("where", ["fit", "evaluate"])
def test_ctrl_c_in_training_is_raised_after_a_step_not_inside_tensorflow(where: str) -> None:
    """A KeyboardInterrupt raised wherever the signal lands can cut TensorFlow's Python code
    halfway; raised from hpo's callback after a step, it leaves the fit like pruning does."""
    data = tiny_data(n_train=3000)
    params = tiny_params(epochs=1_000_000 if where == "fit" else 1, batch_size=10)
    model = None if where == "fit" else fit(params, data, seed=0).model
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            if model is None:
                fit(params, data, seed=0, loop=Loop(steps_per_execution=1))
            else:
                for _ in range(100_000):
                    evaluate(model, data.x_train, data.y_train)
    finally:
        timer.cancel()
    # Raised by hpo's own code: a callback after a step, or the end of the guarded block.
    last = caught.traceback[-1]
    assert last.path.name == "interrupts.py", caught.traceback
    assert last.name in {"raise_pending", "__exit__"}

"""One training run of a configuration: seed, build, compile, fit. Knows nothing of Optuna."""

from __future__ import annotations

import gc
import math
import random
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from hpo.data import Dataset
from hpo.interrupts import BetweenSteps
from hpo.model import build_model, compile_model
from hpo.pipeline import eval_batches, training_batches

EVAL_BATCH_SIZE = 5000
# XLA on a CPU (`python -m benchmarks.xla`, the lesson's MLP on CIFAR-100, 2026-12-02): on a
# quiet machine a steady epoch ran 0.94x as long as without it, but the first epoch 1.2 s longer
# (compilation), so a 20-epoch trial breaks even and a pruned one loses; at load 4-8 the steady
# epoch ran 1.14x longer and a 4-epoch run 1.26x. With dropout it ran 2.2x longer at any load.
# The CNN's epochs ran 2.5x longer with it. So CPUs never use it; GPUs always (Keras's default).


@dataclass(frozen=True)
class Loop:
    """How a fit feeds and steps the model. None of it changes what the fit computes but the
    order of its batches (the numpy pipeline shuffles as Keras does) and, with XLA, which
    fuses operations, the last bits of rounding.

    Attributes:
        pipeline: "tensor" gathers shuffled batches from tensors held once per process;
            "numpy" hands the arrays to Keras, which converts them on every fit.
        steps_per_execution: training steps per call into TensorFlow; 0 means one call per
            epoch. With the tensor pipeline it is lowered to a divisor of the epoch's steps.
        jit_compile: compile the train and test steps with XLA; "auto" does on GPUs (Keras's
            default there) and not on CPUs, where it does not pay (measured above).
        eval_batch_size: batch size of validation and evaluation.
    """

    pipeline: Literal["tensor", "numpy"] = "tensor"
    steps_per_execution: int = 0
    jit_compile: bool | Literal["auto"] = "auto"
    eval_batch_size: int = EVAL_BATCH_SIZE


FAST = Loop()


@dataclass
class Run:
    """What one fit produced: the model, per-epoch curves and timing."""

    model: keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds_per_epoch: list[float] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def n_epochs(self) -> int:
        return len(self.history.get("loss", []))

    @property
    def diverged_at(self) -> int | None:
        """The 1-based epoch whose training loss was not finite, if any."""
        for epoch, loss in enumerate(self.history.get("loss", []), start=1):
            if not math.isfinite(loss):
                return epoch
        return None


class _StopOnNaN(keras.callbacks.Callback):
    """Keras's TerminateOnNaN without its console line: the trial's own line gives the reason."""

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True


class _Interruptible(keras.callbacks.Callback):
    """Raises a Ctrl-C or SIGTERM that came during a fit or an evaluation after the step
    (or group of steps) it came in: see `BetweenSteps`."""

    def __init__(self, signals: BetweenSteps) -> None:
        super().__init__()
        self.signals = signals

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.signals.raise_pending()

    def on_test_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.signals.raise_pending()


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self, seconds: list[float]) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def fit(
    params: Mapping[str, Any],
    data: Dataset,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    loop: Loop = FAST,
    reuse: bool = False,
) -> Run:
    """Train a model for `params` from `seed` on the training split, validating every epoch.

    With `reuse`, a model whose graph this process already built and traced for the same
    configuration (the same params and data shapes, whatever the seed) starts again from the
    weights and optimizer state a fresh build for `seed` would have, instead of being built,
    compiled and traced anew; its results are the same. The run's model is then the process's
    warm one, valid until the next fit of that configuration. The process keeps the last
    `WARM_GRAPHS` such models. Without `reuse` every fit builds afresh and the process keeps
    none, so memory stays flat over many different trials.
    """
    batch_size = int(params["batch_size"])
    n_steps = math.ceil(len(data.x_train) / batch_size)
    per_call = steps_per_execution(loop, n_steps)
    key = _graph_key(params, data, batch_size, per_call, loop)
    # Freeing models, building and tracing are TensorFlow's Python code too: a signal waits
    # for the first step.
    with BetweenSteps() as signals:
        if not reuse:
            _WARM.clear()
        built = _WARM.pop(key, None)
        if built is None:
            built = _build(params, data, seed, n_steps, per_call, loop)
        else:
            _restart(built, params, data, seed)
            if loop.pipeline == "numpy":
                # Keras shuffles numpy input with TensorFlow's global seed, as a fresh build
                # leaves it (the tensor pipeline takes its seed from the run instead).
                tf.random.set_seed(seed)
        if reuse:
            _WARM[key] = built
            inputs = _kept_inputs(built, data, batch_size, seed, loop)
        else:
            inputs = _inputs(data, batch_size, seed, loop)
        model = built.model
        run = Run(model)
        early = _early_stopping(params)
        all_callbacks = [
            _Interruptible(signals),
            _EpochTimer(run.seconds_per_epoch),
            _StopOnNaN(),
            *callbacks,
            *([early] if early else []),
        ]
        history = model.fit(
            **inputs,
            epochs=int(params["epochs"]),
            callbacks=all_callbacks,
            verbose=0,
        )
    run.history = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    # Keras marks a stop when patience runs out, on the budget's last epoch too, where
    # stopping saved nothing: that run ended at its budget.
    run.stopped_early = (
        early is not None and early.stopped_epoch > 0 and run.n_epochs < int(params["epochs"])
    )
    return run


# Warm models a process keeps for `fit(..., reuse=True)`: enough for every variant of an
# ablation (the regularization study's has 17), whose runs go seed by seed through the
# variants. Each of the lesson's MLPs holds 17 MiB with its traced graphs (measured over 30).
WARM_GRAPHS = 24


@dataclass
class _Pipeline:
    """A warm model's training and validation datasets, kept for its next runs.

    The training batches read their seed from a variable, which the next run sets: building
    and tracing the datasets again took 0.015 s of a warm run of the lesson's MLP on a quiet
    machine, 0.03 s under load, more than the model's restart.
    """

    arrays: tuple[weakref.ref[np.ndarray], ...]
    seed: tf.Variable
    inputs: dict[str, Any]

    def serves(self, data: Dataset) -> bool:
        """Whether the datasets read `data`'s own arrays (not others of the same shapes)."""
        return all(
            ref() is array for ref, array in zip(self.arrays, _fed_arrays(data), strict=True)
        )


@dataclass
class _Built:
    model: keras.Model
    optimizer_start: list[np.ndarray]
    pipeline: _Pipeline | None = None


_WARM: OrderedDict[tuple[Any, ...], _Built] = OrderedDict()


def n_warm_models() -> int:
    """How many models the process keeps for reuse."""
    return len(_WARM)


def forget_warm_models() -> None:
    """Drop the models kept for reuse."""
    _WARM.clear()


def _graph_key(
    params: Mapping[str, Any], data: Dataset, batch_size: int, per_call: int, loop: Loop
) -> tuple[Any, ...]:
    """What a traced model depends on: everything but the seed."""
    return (
        tuple(sorted((k, repr(v)) for k, v in params.items())),
        data.input_shape,
        data.n_classes,
        len(data.x_train),
        batch_size,
        per_call,
        loop,
        keras.backend.floatx(),
    )


def _build(
    params: Mapping[str, Any],
    data: Dataset,
    seed: int,
    n_steps: int,
    per_call: int,
    loop: Loop,
) -> _Built:
    """Build and compile a model for `params` from `seed`.

    Keras state is cleared first when no warm model is kept, so memory stays flat over many
    runs in one process (clearing it would make kept models set up their kernels again).
    """
    while len(_WARM) >= WARM_GRAPHS:
        _WARM.popitem(last=False)
    if not _WARM:
        keras.backend.clear_session(free_memory=True)
    else:
        gc.collect()
    _freeze_what_lives_before_the_first_trial()
    keras.utils.set_random_seed(seed)
    model = build_model(params, data.input_shape, data.n_classes)
    compile_model(model, params, n_steps, per_call)
    _skip_one_replica_sum(model.optimizer)
    # Built here, its slots are plain variables; built while the step is traced, each gets a
    # conditional initializer graph (about 0.1 CPU-s a trial for the lesson's MLP).
    model.optimizer.build(model.trainable_variables)
    model.jit_compile = use_xla(loop, model.jit_compile)
    return _Built(model, [np.array(v) for v in model.optimizer.variables])


def _restart(built: _Built, params: Mapping[str, Any], data: Dataset, seed: int) -> None:
    """Put a warm model back where a fresh build from `seed` starts.

    The weights (and the dropout layers' random state) are those of a new, uncompiled model
    built from `seed` as `_build` builds it; the optimizer's variables return to their values
    before the first step.
    """
    _seed_python_and_numpy(seed)
    start = build_model(params, data.input_shape, data.n_classes)
    for layer, fresh in zip(built.model.layers, start.layers, strict=True):
        for variable, value in zip(layer.variables, fresh.variables, strict=True):
            variable.assign(value)
    for variable, initial in zip(
        built.model.optimizer.variables, built.optimizer_start, strict=True
    ):
        variable.assign(initial)


def _seed_python_and_numpy(seed: int) -> None:
    """Seed what building a model draws from, as `keras.utils.set_random_seed` would, except
    TensorFlow's global seed.

    Keras's initializers and dropout layers take their seeds from Python's `random`. TensorFlow's
    global seed only seeds random ops as they are traced or run eagerly, and a warm model traces
    nothing; setting it also clears TensorFlow's cache of instantiated functions, so the run's
    first call of its train and test steps instantiated and optimized them again (0.1-0.3 s of
    a warm run's fixed cost).
    """
    random.seed(seed)
    np.random.seed(seed)


_frozen = False


def _freeze_what_lives_before_the_first_trial() -> None:
    """Exempt the objects alive before a process's first trial from later garbage collections.

    TensorFlow, Keras and the data leave some 400,000 long-lived objects, and every full
    collection walked them all: 0.17 CPU-s when a trial frees the one before, and again whenever
    Python collects while a step is traced. Frozen, they are skipped; what trials create is
    collected as before. Called right after a full collection, so no garbage is frozen with them.
    """
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True


def _skip_one_replica_sum(optimizer: keras.optimizers.Optimizer) -> None:
    """Let the optimizer skip summing gradients over replicas when there is only one.

    Keras sums them with `ReplicaContext.all_reduce`, whose custom gradient registers a
    gradient function in TensorFlow's global registry each time a train step is traced: that
    kept every trial's train graph alive, about 10 MiB a trial. Over one replica the sum is the
    gradient itself, so nothing computed changes.
    """
    if tf.distribute.get_strategy().num_replicas_in_sync == 1 and hasattr(
        optimizer, "_all_reduce_sum_gradients"
    ):
        optimizer._all_reduce_sum_gradients = list


def _early_stopping(params: Mapping[str, Any]) -> keras.callbacks.EarlyStopping | None:
    if params.get("early_stopping") != "on":
        return None
    return keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=params["patience"],
        min_delta=params["min_delta"],
        restore_best_weights=params["restore_best_weights"],
    )


def _kept_inputs(
    built: _Built, data: Dataset, batch_size: int, seed: int, loop: Loop
) -> dict[str, Any]:
    """`_inputs` for a warm model: its kept datasets with the seed set to `seed`, built the
    first time (or when the data is other arrays)."""
    if loop.pipeline == "numpy":
        return _inputs(data, batch_size, seed, loop)
    kept = built.pipeline
    if kept is None or not kept.serves(data):
        with tf.device("/CPU:0"):
            variable = tf.Variable(seed, dtype=tf.int64, trainable=False, name="pipeline_seed")
        refs = tuple(weakref.ref(array) for array in _fed_arrays(data))
        kept = built.pipeline = _Pipeline(refs, variable, _inputs(data, batch_size, variable, loop))
    else:
        kept.seed.assign(seed)
    return kept.inputs


def _fed_arrays(data: Dataset) -> tuple[np.ndarray, ...]:
    return (data.x_train, data.y_train, data.x_val, data.y_val)


def _inputs(data: Dataset, batch_size: int, seed: int | tf.Variable, loop: Loop) -> dict[str, Any]:
    """The training and validation arguments of `model.fit` for the loop's pipeline."""
    if loop.pipeline == "numpy":
        return {
            "x": data.x_train,
            "y": data.y_train,
            "batch_size": batch_size,
            "shuffle": True,
            "validation_data": (data.x_val, data.y_val),
            "validation_batch_size": loop.eval_batch_size,
        }
    return {
        "x": training_batches(data.x_train, data.y_train, batch_size, seed),
        "steps_per_epoch": math.ceil(len(data.x_train) / batch_size),
        "shuffle": False,  # the pipeline shuffles every epoch itself
        "validation_data": eval_batches(data.x_val, data.y_val, loop.eval_batch_size),
    }


def steps_per_execution(loop: Loop, n_steps: int) -> int:
    """Steps per call for an epoch of `n_steps`.

    The tensor pipeline never ends an epoch, so a call must not run past one: the number is
    lowered to the largest divisor of `n_steps` not above the one asked for.
    """
    asked = loop.steps_per_execution or n_steps
    if loop.pipeline == "numpy":
        return min(asked, n_steps)
    return max(d for d in range(1, min(asked, n_steps) + 1) if n_steps % d == 0)


def use_xla(loop: Loop, keras_default: bool) -> bool:
    """Whether a fit compiles with XLA: as `loop` says, or for "auto" Keras's own choice for
    the device (`keras_default`: yes on GPUs, no on CPUs)."""
    if loop.jit_compile != "auto":
        return loop.jit_compile
    return keras_default


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Loss and accuracy of `model` on (x, y)."""
    with BetweenSteps() as signals:
        loss, accuracy = model.evaluate(
            eval_batches(x, y, EVAL_BATCH_SIZE), callbacks=[_Interruptible(signals)], verbose=0
        )
    return {"loss": float(loss), "accuracy": float(accuracy)}

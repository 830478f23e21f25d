"""One training run of a configuration: seed, build, compile, fit. Knows nothing of Optuna."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from hpo.data import Dataset
from hpo.model import build_model, compile_model

STEPS_PER_EXECUTION = 16
EVAL_BATCH_SIZE = 2000


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
) -> Run:
    """Train a fresh model for `params` on the training split, validating every epoch.

    Keras state is cleared first, so memory stays flat over many runs in one process.
    """
    keras.backend.clear_session(free_memory=True)
    keras.utils.set_random_seed(seed)
    batch_size = int(params["batch_size"])
    steps_per_epoch = math.ceil(len(data.x_train) / batch_size)
    model = build_model(params, data.input_shape, data.n_classes)
    compile_model(model, params, steps_per_epoch, min(STEPS_PER_EXECUTION, steps_per_epoch))
    run = Run(model)
    all_callbacks: list[keras.callbacks.Callback] = [
        _EpochTimer(run.seconds_per_epoch),
        keras.callbacks.TerminateOnNaN(),
        *callbacks,
    ]
    early = None
    if params.get("early_stopping") == "on":
        early = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=params["patience"],
            min_delta=params["min_delta"],
            restore_best_weights=params["restore_best_weights"],
        )
        all_callbacks.append(early)
    history = model.fit(
        data.x_train,
        data.y_train,
        batch_size=batch_size,
        epochs=int(params["epochs"]),
        validation_data=(data.x_val, data.y_val),
        validation_batch_size=EVAL_BATCH_SIZE,
        callbacks=all_callbacks,
        shuffle=True,
        verbose=0,
    )
    run.history = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    run.stopped_early = early is not None and early.stopped_epoch > 0
    return run


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Loss and accuracy of `model` on (x, y)."""
    loss, accuracy = model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0)
    return {"loss": float(loss), "accuracy": float(accuracy)}

"""Keras models, optimizers and schedules built from a trial's params; knows nothing of Optuna."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from hpo.optimizers import FusedAdam, FusedAdamW, FusedSGD

Params = Mapping[str, Any]


def build_model(params: Params, input_shape: tuple[int, ...], n_classes: int) -> keras.Model:
    """The lesson's MLP (or a small CNN) with the initializer, penalties and dropout of `params`."""
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if params["architecture"] == "cnn":
        for i, filters in enumerate((params["filters"], 2 * params["filters"])):
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation=params["activation"],
                kernel_initializer=build_initializer(params),
                name=f"conv_{i + 1}",
            )(x)
            x = keras.layers.MaxPooling2D(name=f"pool_{i + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in range(params["n_layers"]):
        regularized = i == 0 or params["regularized_layers"] == "all"
        x = keras.layers.Dense(
            params["first_units"] if i == 0 else params["units"],
            activation=params["activation"],
            kernel_initializer=build_initializer(params),
            kernel_regularizer=_penalty(params, "weight_decay", "weight_decay_l2", regularized),
            activity_regularizer=_penalty(params, "activity_penalty", "activity_l1", regularized),
            bias_regularizer=_penalty(params, "bias_penalty", "bias_l2", regularized),
            name=f"dense_{i + 1}",
        )(x)
        if regularized and params["dropout"] == "on":
            x = keras.layers.Dropout(params["dropout_rate"], name=f"dropout_{i + 1}")(x)
    outputs = keras.layers.Dense(
        n_classes, activation="softmax", kernel_initializer=build_initializer(params), name="output"
    )(x)
    return keras.Model(inputs, outputs, name=params["architecture"])


def build_initializer(params: Params) -> keras.initializers.Initializer:
    """A fresh kernel initializer (a new instance per layer, so layers draw different weights)."""
    name = params["initializer"]
    if name == "random_normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=params["init_stddev"])
    return keras.initializers.get(name)


def _penalty(
    params: Params, switch: str, strength: str, regularized: bool
) -> keras.regularizers.Regularizer | None:
    if not regularized or params[switch] != "on":
        return None
    value = params[strength]
    return keras.regularizers.L1(value) if strength.endswith("l1") else keras.regularizers.L2(value)


def build_schedule(
    params: Params, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate, or its schedule over optimizer steps."""
    lr = params["learning_rate"]
    schedules = keras.optimizers.schedules
    total_steps = max(1, params["epochs"] * steps_per_epoch)
    match params["schedule"]:
        case "constant":
            return float(lr)
        case "exponential":
            return schedules.ExponentialDecay(lr, params["decay_steps"], params["decay_rate"])
        case "cosine":
            return schedules.CosineDecay(lr, total_steps, alpha=params["alpha"])
        case "cosine_restarts":
            return schedules.CosineDecayRestarts(
                lr,
                params["first_decay_steps"],
                t_mul=params["t_mul"],
                m_mul=params["m_mul"],
                alpha=params["alpha"],
            )
        case "warmup_cosine":
            warmup = min(params["warmup_steps"], total_steps - 1)
            return schedules.CosineDecay(
                0.0,
                max(1, total_steps - warmup),
                alpha=params["alpha"],
                warmup_target=lr,
                warmup_steps=warmup,
            )
    raise ValueError(f"unknown schedule {params['schedule']!r}")


def build_optimizer(params: Params, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam, SGD or AdamW with the schedule of `params` (updates fused: `hpo.optimizers`)."""
    lr = build_schedule(params, steps_per_epoch)
    match params["optimizer"]:
        case "adam":
            return FusedAdam(learning_rate=lr, beta_1=params["beta_1"])
        case "adamw":
            return FusedAdamW(
                learning_rate=lr,
                beta_1=params["beta_1"],
                weight_decay=params["decoupled_weight_decay"],
            )
        case "sgd":
            return FusedSGD(learning_rate=lr, momentum=params["momentum"])
    raise ValueError(f"unknown optimizer {params['optimizer']!r}")


def compile_model(
    model: keras.Model, params: Params, steps_per_epoch: int, steps_per_execution: int = 1
) -> keras.Model:
    """Compile with sparse categorical cross-entropy and accuracy, as the lesson does."""
    model.compile(
        optimizer=build_optimizer(params, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model

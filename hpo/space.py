"""The search space: every knob a study can fix or search, and how a trial suggests them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

ParamValue = float | int | str | bool
Param = BaseDistribution | ParamValue
"""A knob in a spec is either fixed to a value or searched over an Optuna distribution."""

OFF_ON = ("off", "on")


@dataclass(frozen=True)
class Knob:
    """One tunable setting of a trial.

    Attributes:
        kind: "float", "int", "categorical" or "bool".
        default: the value a trial uses when the spec says nothing of the knob.
        choices: the allowed values of a categorical knob.
        low, high: the allowed range of a numeric knob.
        open_low, open_high: whether `low` or `high` itself is excluded.
        stored_low: where `low` was raised after specs were stored with the old bound, that
            bound (excluded), so their studies stay readable.
        parent, when: the knob only applies when knob `parent` takes a value in `when`.
        doc: one line for the README and error messages.
    """

    kind: str
    default: ParamValue
    doc: str
    choices: tuple[ParamValue, ...] = ()
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    stored_low: float | None = None
    parent: str | None = None
    when: tuple[ParamValue, ...] = ()


def _float(default: float, doc: str, high: float = math.inf, zero: bool = False, **kw: Any) -> Knob:
    """A float knob above 0 (or at least 0 where `zero`)."""
    return Knob("float", default, doc, low=0.0, high=high, open_low=not zero, **kw)


def _int(default: int, doc: str, low: int = 1, **kw: Any) -> Knob:
    return Knob("int", default, doc, low=low, **kw)


def _cat(default: str, choices: tuple[str, ...], doc: str, **kw: Any) -> Knob:
    return Knob("categorical", default, doc, choices=choices, **kw)


SCHEDULES = ("constant", "exponential", "cosine", "cosine_restarts", "warmup_cosine")
INITIALIZERS = (
    "random_normal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "selu", "gelu")

# Order matters: a parent comes before the knobs that depend on it.
KNOBS: dict[str, Knob] = {
    "architecture": _cat("mlp", ("mlp", "cnn"), "the lesson's MLP or a small CNN"),
    "filters": _int(
        32, "filters of the CNN's first conv layer", parent="architecture", when=("cnn",)
    ),
    "n_layers": _int(2, "number of hidden Dense layers"),
    "first_units": _int(128, "units of the first hidden layer"),
    "units": _int(128, "units of every hidden layer after the first"),
    "activation": _cat("relu", ACTIVATIONS, "activation of the hidden layers"),
    "initializer": _cat("glorot_uniform", INITIALIZERS, "kernel initializer of every layer"),
    "init_stddev": _float(
        0.05,
        "stddev of the random_normal initializer",
        parent="initializer",
        when=("random_normal",),
    ),
    "optimizer": _cat("adam", ("adam", "sgd", "adamw"), "the optimizer"),
    "learning_rate": _float(1e-3, "the (initial) learning rate"),
    "beta_1": _float(
        0.9,
        "Adam's beta_1",
        high=1.0,
        open_high=True,
        zero=True,
        parent="optimizer",
        when=("adam", "adamw"),
    ),
    "momentum": _float(
        0.0,
        "SGD's momentum",
        high=1.0,
        open_high=True,
        zero=True,
        parent="optimizer",
        when=("sgd",),
    ),
    "decoupled_weight_decay": _float(
        0.004, "AdamW's decoupled weight decay", zero=True, parent="optimizer", when=("adamw",)
    ),
    "schedule": _cat("constant", SCHEDULES, "the learning-rate schedule"),
    "decay_steps": _int(
        1000,
        "steps per decay of the exponential schedule",
        parent="schedule",
        when=("exponential",),
    ),
    "decay_rate": _float(
        0.9,
        "factor per decay_steps of the exponential schedule",
        high=1.0,
        parent="schedule",
        when=("exponential",),
    ),
    "first_decay_steps": _int(
        1000,
        "steps of the first cosine cycle before the first restart",
        parent="schedule",
        when=("cosine_restarts",),
    ),
    # Below 1 the cycles shrink and end for good after first_decay_steps / (1 - t_mul) steps,
    # where Keras's formula takes the log of a number <= 0: the learning rate is NaN from then.
    "t_mul": Knob(
        "float",
        2.0,
        "cycle length multiplier of cosine restarts (at least 1)",
        low=1.0,
        stored_low=0.0,
        parent="schedule",
        when=("cosine_restarts",),
    ),
    "m_mul": _float(
        1.0,
        "peak learning-rate multiplier of cosine restarts",
        parent="schedule",
        when=("cosine_restarts",),
    ),
    "warmup_steps": _int(
        500,
        "steps of linear warm-up before the cosine decay",
        parent="schedule",
        when=("warmup_cosine",),
    ),
    "alpha": _float(
        0.0,
        "floor of a cosine schedule, as a fraction of the peak",
        high=1.0,
        zero=True,
        parent="schedule",
        when=("cosine", "cosine_restarts", "warmup_cosine"),
    ),
    "weight_decay": _cat("off", OFF_ON, "L2 penalty on kernels"),
    "weight_decay_l2": _float(
        1e-4, "L2 kernel penalty strength", parent="weight_decay", when=("on",)
    ),
    "activity_penalty": _cat("off", OFF_ON, "L1 penalty on layer outputs"),
    "activity_l1": _float(
        1e-5, "L1 activity penalty strength", parent="activity_penalty", when=("on",)
    ),
    "bias_penalty": _cat("off", OFF_ON, "L2 penalty on biases"),
    "bias_l2": _float(1e-4, "L2 bias penalty strength", parent="bias_penalty", when=("on",)),
    "dropout": _cat("off", OFF_ON, "dropout after the regularized layers"),
    "dropout_rate": _float(
        0.1,
        "fraction of units dropped",
        high=1.0,
        open_high=True,
        zero=True,
        parent="dropout",
        when=("on",),
    ),
    "regularized_layers": _cat(
        "first", ("first", "all"), "which hidden layers get penalties and dropout"
    ),
    "early_stopping": _cat("off", OFF_ON, "Keras early stopping on val_loss"),
    "patience": _int(
        5, "epochs without improvement before stopping", parent="early_stopping", when=("on",)
    ),
    "min_delta": _float(
        0.0,
        "smallest change of val_loss that counts as improvement",
        zero=True,
        parent="early_stopping",
        when=("on",),
    ),
    "restore_best_weights": Knob(
        "bool",
        True,
        "end with the best epoch's weights",
        choices=(True, False),
        parent="early_stopping",
        when=("on",),
    ),
    "batch_size": _int(100, "training batch size"),
    "epochs": _int(20, "epoch budget of a trial"),
}

# The switches a report compares "with" against "without", and the knobs with several options.
TECHNIQUE_SWITCHES = (
    "weight_decay",
    "activity_penalty",
    "bias_penalty",
    "dropout",
    "early_stopping",
)


def is_active(name: str, params: Mapping[str, Any]) -> bool:
    """Whether knob `name` applies given the values of the knobs before it."""
    knob = KNOBS[name]
    if knob.parent is None:
        return True
    return is_active(knob.parent, params) and params.get(knob.parent) in knob.when


def suggest_params(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, ParamValue]:
    """Resolve every active knob for `trial`: fixed values as given, searched ones suggested.

    Knobs the space leaves out take their defaults. Knobs whose parent does not select them
    are left out of the result, so a trial only records what it used.
    """
    params: dict[str, ParamValue] = {}
    for name, knob in KNOBS.items():
        if not is_active(name, params):
            continue
        param = space.get(name, knob.default)
        params[name] = (
            _suggest(trial, name, param) if isinstance(param, BaseDistribution) else param
        )
    return params


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> ParamValue:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)  # type: ignore[return-value]
    raise TypeError(f"unsupported distribution for {name!r}: {dist!r}")


def complete_params(
    given: Mapping[str, ParamValue], space: Mapping[str, Param]
) -> dict[str, ParamValue]:
    """Fill the searched knobs an enqueued trial leaves out with their defaults.

    Returns only searched knobs (the ones Optuna suggests), active under the resulting values.
    """
    resolved: dict[str, ParamValue] = {}
    searched: dict[str, ParamValue] = {}
    for name, knob in KNOBS.items():
        if not is_active(name, resolved):
            continue
        param = space.get(name, knob.default)
        if isinstance(param, BaseDistribution):
            value = given.get(name, knob.default)
            searched[name] = value
        else:
            value = param
        resolved[name] = value
    return searched

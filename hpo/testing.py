"""Helpers for tests and benchmarks only; the library never imports this module.

Made-up finished trials with known technique effects, written into a study without training
(the answer a report should find is set here by hand), and full parameter sets for calling
`hpo.model` and `hpo.train` directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from hpo.space import KNOBS, ParamValue, suggest_params
from hpo.spec import Spec


def add_fake_trials(
    study: optuna.Study,
    spec: Spec,
    n_trials: int,
    effects: Mapping[str, float] | None = None,
    **options: Any,
) -> None:
    """Add `fake_trials(...)` to `study`, their seeds numbered after its trials."""
    start = len(study.get_trials(deepcopy=False))
    study.add_trials(fake_trials(spec, n_trials, effects, start=start, **options))


def fake_trials(
    spec: Spec,
    n_trials: int,
    effects: Mapping[str, float] | None = None,
    *,
    base: float = 0.2,
    noise: float = 0.01,
    pruned_share: float = 0.0,
    n_failed: int = 0,
    seed: int = 0,
    start: int = 0,
) -> list[FrozenTrial]:
    """`n_trials` finished trials plus `n_failed` failed ones, params drawn at random.

    A trial's value is `base` plus the effect of each technique it uses plus Gaussian noise.
    `effects` maps a switch ("dropout", meaning on) or "knob=choice" ("schedule=cosine") to the
    amount it adds. A share `pruned_share` of trials ends pruned part-way.
    """
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n_trials + n_failed):
        fixed = FixedTrial({k: _draw(rng, d) for k, d in spec.searched().items()})
        params = suggest_params(fixed, spec.space)  # type: ignore[arg-type]
        value = base + _effect(params, effects or {}) + noise * float(rng.normal())
        if i >= n_trials:
            state = TrialState.FAIL
        elif rng.random() < pruned_share:
            state = TrialState.PRUNED
        else:
            state = TrialState.COMPLETE
        trials.append(fake_trial(spec, params, fixed.params, value, state, rng, seed=start + i))
    return trials


def add_fake_experiments(
    study: optuna.Study, spec: Spec, values: Mapping[str, float], seed: int = 0
) -> None:
    """Add one complete trial per enqueued experiment of `spec`, with the given values."""
    rng = np.random.default_rng(seed)
    trials = []
    for entry in spec.enqueue:
        fixed = FixedTrial(dict(entry.params))
        params = suggest_params(fixed, spec.space)  # type: ignore[arg-type]
        trial = fake_trial(
            spec, params, fixed.params, values[entry.name], TrialState.COMPLETE, rng, seed=0
        )
        trial.user_attrs["experiment"] = entry.name
        trials.append(trial)
    study.add_trials(trials)


def fake_trial(
    spec: Spec,
    params: Mapping[str, Any],
    searched: Mapping[str, Any],
    value: float,
    state: TrialState,
    rng: np.random.Generator,
    seed: int,
) -> FrozenTrial:
    """A trial with the user attributes the objective records (`hpo.objective.run_trial`'s
    14 for a complete trial: training and validation curves, versions, final score), its
    validation curve ending near `value`."""
    budget = int(params["epochs"])
    n_epochs, stopped_by = budget, "budget"
    if state == TrialState.PRUNED:
        n_epochs, stopped_by = int(rng.integers(1, max(2, budget // 2) + 1)), "pruner"
    elif state == TrialState.FAIL:
        n_epochs, stopped_by = int(rng.integers(1, budget + 1)), "diverged"
    elif params.get("early_stopping") == "on":
        n_epochs = int(rng.integers(max(1, budget // 2), budget + 1))
        stopped_by = "early_stopping" if n_epochs < budget else "budget"
    rise = 1 - 0.5 * np.exp(-np.arange(budget) / 3)
    wobble = 1 + 0.01 * rng.normal(size=budget)
    curve = (value * rise * wobble / (rise[-1] * wobble.max()))[:n_epochs]
    best_epoch = int(np.argmax(curve)) + 1
    metric = "val_accuracy" if spec.metric == "val_accuracy" else "val_loss"
    other = "val_loss" if metric == "val_accuracy" else "val_accuracy"
    train = curve * 1.2  # training runs ahead of validation
    user_attrs: dict[str, Any] = {
        "params": dict(params),
        "n_epochs": n_epochs,
        "epoch_budget": budget,
        "best_epoch": best_epoch,
        "seconds_per_epoch": [round(1.0 + 0.1 * float(rng.random()), 4) for _ in curve],
        "n_params": 100_000,
        "versions": {"tensorflow": "2.21.0", "keras": "3.15.1", "optuna": optuna.__version__},
        "seed": seed,
        "stopped_by": stopped_by,
        f"curve_{metric}": [float(v) for v in curve],
        f"curve_{other}": [float(1 - v) for v in curve],
        f"curve_{metric.removeprefix('val_')}": [float(v) for v in train],
        f"curve_{other.removeprefix('val_')}": [float(1 - v) for v in train],
    }
    finished = state == TrialState.COMPLETE
    score = float(curve.max()) if finished else None
    if state != TrialState.FAIL:  # the final model's score: the value of a complete trial
        user_attrs[f"final_{spec.metric}"] = score if finished else float(curve[-1])
    if state == TrialState.FAIL:
        user_attrs["fail_reason"] = f"diverged: training loss was not finite at epoch {n_epochs}"
    return optuna.trial.create_trial(
        state=state,
        value=score,
        params=dict(searched),
        distributions={k: spec.searched()[k] for k in searched},
        user_attrs=user_attrs,
        intermediate_values={i: float(v) for i, v in enumerate(curve)},
    )


def _effect(params: Mapping[str, Any], effects: Mapping[str, float]) -> float:
    total = 0.0
    for name, amount in effects.items():
        knob, _, choice = name.partition("=")
        if params.get(knob) == (choice or "on"):
            total += amount
    return total


def _draw(rng: np.random.Generator, dist: BaseDistribution) -> ParamValue:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]  # type: ignore[return-value]
    if isinstance(dist, IntDistribution):
        return dist.low + dist.step * int(rng.integers((dist.high - dist.low) // dist.step + 1))
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            n = round((dist.high - dist.low) / dist.step)
            return dist.low + dist.step * int(rng.integers(n + 1))
        if dist.log:
            return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        return float(rng.uniform(dist.low, dist.high))
    raise TypeError(f"cannot draw from {dist!r}")


def full_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every knob at its default (active or not), updated with `overrides`; for direct use."""
    params = {name: knob.default for name, knob in KNOBS.items()}
    params.update(overrides or {})
    return params

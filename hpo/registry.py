"""Names of Optuna's samplers and pruners as a spec spells them, mapped to their constructors."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "bruteforce": optuna.samplers.BruteForceSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
}

PRUNERS: dict[str, Callable[..., optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "patient": optuna.pruners.PatientPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}

# Arguments hpo supplies itself rather than reading from the spec.
_SUPPLIED = {"grid": {"search_space"}, "patient": {"wrapped_pruner"}}


def accepted_args(registry: Mapping[str, Callable[..., Any]], name: str) -> set[str]:
    """The keyword arguments the constructor of `name` accepts from a spec."""
    params = inspect.signature(registry[name]).parameters
    return {p for p in params if p not in ("self", "args", "kwargs")} - _SUPPLIED.get(name, set())


def make_sampler(
    name: str, args: Mapping[str, Any], seed: int, space: Mapping[str, Any]
) -> optuna.samplers.BaseSampler:
    """Build the sampler `name`; the grid sampler gets its grid from the searched knobs."""
    kwargs = dict(args)
    if "seed" in accepted_args(SAMPLERS, name):
        kwargs.setdefault("seed", seed)
    if name == "grid":
        kwargs["search_space"] = grid_of(space)
    return SAMPLERS[name](**kwargs)


def grid_of(space: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every searched knob as a list of values, for grid search."""
    grid: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution):
            if dist.step is None:
                raise ValueError(f"grid search needs `step` or `choices` for '{name}'")
            n = round((dist.high - dist.low) / dist.step)
            grid[name] = [dist.low + i * dist.step for i in range(n + 1)]
        elif isinstance(dist, BaseDistribution):
            raise ValueError(f"grid search cannot enumerate '{name}'")
    return grid


def make_pruner(name: str, args: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """Build the pruner `name`; a patient pruner wraps the pruner its `wrapped` table names."""
    kwargs = dict(args)
    if name == "patient":
        wrapped = dict(kwargs.pop("wrapped"))
        kwargs["wrapped_pruner"] = make_pruner(wrapped.pop("type"), wrapped)
    return PRUNERS[name](**kwargs)

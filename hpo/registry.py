"""Names of Optuna's samplers and pruners as a spec spells them, mapped to their constructors."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

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


# Samplers whose random draws are seeded per trial. The others keep their place in a sequence
# in the storage (grid, brute force, QMC), so every process must share one seed.
TRIAL_SEEDED = frozenset({"tpe", "random", "cmaes"})


def make_sampler(
    name: str, args: Mapping[str, Any], seed: int, space: Mapping[str, Any]
) -> optuna.samplers.BaseSampler:
    """Build the sampler `name`; the grid sampler gets its grid from the searched knobs.

    A `seed` in `args` (the spec's `[sampler] seed`) replaces the study seed as the base.
    Samplers of TRIAL_SEEDED draw each trial from a seed fixed by the base and the trial's
    number, so no two processes on one storage draw the same points, and a study run again
    from scratch draws what it drew before, however many processes ran it.
    """
    kwargs = dict(args)
    base = int(kwargs.pop("seed", seed))
    if name == "grid":
        kwargs["search_space"] = grid_of(space)
    if name in TRIAL_SEEDED:
        return TrialSeeded(lambda s: SAMPLERS[name](seed=s, **kwargs), base)
    if "seed" in accepted_args(SAMPLERS, name):
        kwargs["seed"] = base
    return SAMPLERS[name](**kwargs)


def sampler_seed(base: int, trial_number: int) -> int:
    """The seed of one trial's draws: a fixed function of the base seed and the trial number."""
    return (base * 1_000_003 + trial_number * 104_723 + 29) % 2**32


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler rebuilt before each trial with that trial's own seed.

    Trial numbers are unique in a study (the storage assigns them), so processes that start
    together draw different points, where one seed per process would repeat them. TPE, random
    and CMA-ES keep nothing between trials that the storage does not hold.
    """

    def __init__(self, build: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._build = build
        self._seed = seed
        self.inner = build(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner = self._build(sampler_seed(self._seed, trial.number))
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


MAX_GRID_POINTS = 1_000_000
"""The most points a grid (or a brute-force search) may hold: at seconds a trial, more than a
study could run, and Optuna builds the whole grid in memory."""


def grid_of(space: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every searched knob as a list of values, for grid search."""
    # Not capped here: a study stored before the cap keeps its grid (a new spec is checked).
    sizes = grid_sizes(space, limit=None)
    grid: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution):
            grid[name] = [dist.low + i * dist.step for i in range(sizes[name])]  # type: ignore[operator]
    return grid


def grid_sizes(
    space: Mapping[str, Any],
    search: str = "grid search",
    whole: bool = True,
    limit: int | None = MAX_GRID_POINTS,
) -> dict[str, int]:
    """How many values each searched knob takes in a grid, checked before any is listed: a
    knob that cannot be enumerated, or a grid (with `whole`; else one knob) of more than
    `limit` points, is refused."""
    sizes: dict[str, int] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            sizes[name] = len(dist.choices)
        elif isinstance(dist, IntDistribution):
            sizes[name] = (dist.high - dist.low) // dist.step + 1
        elif isinstance(dist, FloatDistribution):
            if dist.step is None:
                raise ValueError(f"{search} needs `step` or `choices` for '{name}'")
            sizes[name] = round((dist.high - dist.low) / dist.step) + 1
        elif isinstance(dist, BaseDistribution):
            raise ValueError(f"{search} cannot enumerate '{name}'")
    total = math.prod(sizes.values()) if whole else max(sizes.values(), default=0)
    if limit is not None and total > limit:
        widest = max(sizes, key=lambda k: sizes[k])
        raise ValueError(
            f"{search} over {total:,} points is more than {limit:,} "
            f"('{widest}' alone takes {sizes[widest]:,} values): give fewer values or a "
            "coarser step"
        )
    return sizes


def never_prunes(name: str, args: Mapping[str, Any], last_step: int) -> str | None:
    """Why pruner `name` with `args` can prune no trial whose last report is at step
    `last_step` (the epochs' 0-based index), or None where it can. Read from the arguments as
    Optuna's pruners use them: each waits for a step of at least its first rung or warm-up."""
    if name in ("median", "percentile", "threshold"):
        warmup = int(args.get("n_warmup_steps", 0))
        if warmup > last_step:
            return f"n_warmup_steps = {warmup} waits past the last epoch's step ({last_step})"
    if name == "threshold":
        # It prunes a value below `lower` or above `upper`: a bound that no finite value
        # passes (missing, nan, or the infinity on its own side) prunes nothing.
        lower, upper = args.get("lower"), args.get("upper")
        if _never_passed(lower, -math.inf) and _never_passed(upper, math.inf):
            return f"no finite value is below lower = {lower} or above upper = {upper}"
    if name in ("successive_halving", "hyperband"):
        low = args.get("min_resource", "auto" if name == "successive_halving" else 1)
        high = args.get("max_resource", "auto")
        if isinstance(low, int):
            factor = int(args.get("reduction_factor", 4 if name == "successive_halving" else 3))
            first = low
            for _ in range(int(args.get("min_early_stopping_rate", 0))):
                if first > last_step:
                    break
                first *= factor
            if first > last_step:
                return f"its first rung is past the last epoch's step ({last_step})"
            if isinstance(high, int) and high < low:
                return f"max_resource = {high} is below min_resource = {low}"
    if name == "patient":
        # It compares the best before its last `patience` + 1 reports with the best of them.
        patience = int(args.get("patience", 0))
        if patience >= last_step:
            return f"patience = {patience} needs more than the {last_step + 1} epochs' reports"
        delta = args.get("min_delta", 0.0)
        if isinstance(delta, float) and math.isnan(delta):
            return "min_delta = nan compares false with every value"
        wrapped = dict(args.get("wrapped", {}))
        kind = str(wrapped.pop("type", "none"))
        if kind == "none":
            return 'its wrapped pruner is type "none", which prunes nothing'
        inner = never_prunes(kind, wrapped, last_step)
        return None if inner is None else f"its wrapped pruner: {inner}"
    return None


def _never_passed(bound: Any, infinity: float) -> bool:
    return bound is None or (isinstance(bound, float) and (math.isnan(bound) or bound == infinity))


def make_pruner(name: str, args: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """Build the pruner `name`; a patient pruner wraps the pruner its `wrapped` table names."""
    kwargs = dict(args)
    if name == "patient":
        wrapped = dict(kwargs.pop("wrapped"))
        kwargs["wrapped_pruner"] = make_pruner(wrapped.pop("type"), wrapped)
    return PRUNERS[name](**kwargs)

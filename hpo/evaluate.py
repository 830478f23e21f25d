"""Honest evaluation: retrain chosen configurations with several seeds, test each run once.

Every (params, seed) result is stored as a study user attribute keyed by their hash, so a later
report reads it back instead of training again, and no configuration sees the test set twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FixedTrial, FrozenTrial

from hpo.errors import HpoError
from hpo.space import KNOBS, suggest_params
from hpo.spec import Spec

ATTR_PREFIX = "test:"


@dataclass(frozen=True)
class Config:
    """A configuration to retrain: a label for the report, its full params, its source trial."""

    label: str
    params: Mapping[str, Any]
    trial: int | None = None

    @property
    def key(self) -> str:
        return _digest(self.params)[:12]


@dataclass(frozen=True)
class Summary:
    """Test accuracy of one configuration over its seeds."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    val_mean: float


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def result_key(params: Mapping[str, Any], seed: int) -> str:
    """The study user attribute that holds the test result of `params` trained with `seed`."""
    return ATTR_PREFIX + _digest({"params": dict(params), "seed": seed})[:16]


def evaluation_seeds(spec: Spec, n_seeds: int) -> list[int]:
    """K seeds, fixed by the study seed and apart from every trial's seed stream."""
    return seed_stream(spec.seed, n_seeds)


def seed_stream(study_seed: int, n_seeds: int) -> list[int]:
    """The first `n_seeds` retraining seeds of a study: the test evaluation's and ablations'."""
    return [(study_seed * 1_000_003 + 999_983 + i * 104_729) % (2**31 - 1) for i in range(n_seeds)]


def default_params(spec: Spec) -> dict[str, Any]:
    """The full params of the configuration with every searched knob at its default.

    A default may lie outside its knob's searched range or choices (a study of SGD against
    AdamW still has Adam as its default): the baseline is the lesson's configuration whether
    or not the search could sample it.
    """
    defaults = {name: KNOBS[name].default for name in spec.searched()}
    return suggest_params(FixedTrial({}), {**spec.space, **defaults})  # type: ignore[arg-type]


def resolved_params(trial: FrozenTrial, spec: Spec) -> dict[str, Any]:
    """A trial's full params: its recorded `params` attribute, else resolved from trial.params."""
    recorded = trial.user_attrs.get("params")
    if recorded:
        return dict(recorded)
    try:
        return suggest_params(FixedTrial(dict(trial.params)), spec.space)  # type: ignore[arg-type]
    except ValueError as err:
        # Only a trial that another program wrote into the study lacks what its spec searches.
        reason = str(err).strip().splitlines()[0].split(". ")[0].rstrip(".")
        raise HpoError(
            f"trial {trial.number} does not hold the params its study's spec searches "
            f"({reason[:1].lower() + reason[1:]}): was it written by another program?"
        ) from err


def stored_results(study: optuna.Study, config: Config) -> list[dict[str, Any]]:
    """Every stored test result of `config`, ordered by seed."""
    found = [
        value
        for key, value in study.user_attrs.items()
        if key.startswith(ATTR_PREFIX) and value.get("config") == config.key
    ]
    return sorted(found, key=lambda r: r["seed"])


def summarize(results: Sequence[Mapping[str, Any]]) -> Summary | None:
    if not results:
        return None
    test = np.asarray([r["test_accuracy"] for r in results], dtype=float)
    val = np.asarray([r["val_accuracy"] for r in results], dtype=float)
    sd = float(test.std(ddof=1)) if len(test) > 1 else math.nan
    return Summary(
        len(test), float(test.mean()), sd, float(test.min()), float(test.max()), float(val.mean())
    )


def evaluate_configs(
    study: optuna.Study,
    spec: Spec,
    configs: Sequence[Config],
    n_seeds: int,
    data_path: Path | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Train and test each configuration with each of `n_seeds` seeds not yet stored.

    Returns how many runs were trained.
    """
    stored = set(study.user_attrs)
    unique = {c.key: c for c in configs}
    missing = [
        (config, seed)
        for config in unique.values()
        for seed in evaluation_seeds(spec, n_seeds)
        if result_key(config.params, seed) not in stored
    ]
    if not missing:
        return 0
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()
    from hpo.data import load_dataset
    from hpo.interrupts import BetweenSteps

    data = load_dataset(spec.data, data_path)
    # Ctrl-C stops between training steps, or after a result is stored: never halfway.
    with BetweenSteps():
        for i, (config, seed) in enumerate(missing, start=1):
            echo(f"test evaluation {i}/{len(missing)}: {config.label}, seed {seed}")
            result = run_once(config.params, data, seed)
            study.set_user_attr(result_key(config.params, seed), dict(result, config=config.key))
    return len(missing)


def run_once(params: Mapping[str, Any], data: Any, seed: int) -> dict[str, Any]:
    """Fit on the training split, then score the final model once on validation and test."""
    import keras
    import tensorflow as tf

    import hpo
    from hpo.train import evaluate, fit

    run = fit(params, data, seed, reuse=True)
    val = evaluate(run.model, data.x_val, data.y_val)
    test = evaluate(run.model, data.x_test, data.y_test)
    return {
        "params": dict(params),
        "seed": seed,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"] if math.isfinite(test["loss"]) else None,
        "val_accuracy": val["accuracy"],
        "n_epochs": run.n_epochs,
        "seconds": round(sum(run.seconds_per_epoch), 2),
        "versions": {
            "hpo": hpo.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }

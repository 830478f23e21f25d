"""What a report reads, gathered once from a study: the facts and the numbers its parts share.

The report's entry point (`hpo.report.writer`), its sections and its figures all import
from here, and this module imports none of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.ablate import Analysis
from hpo.evaluate import Config, Summary
from hpo.report.ranking import Row
from hpo.spec import Spec

ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class Facts:
    """What the sections read, gathered once from the study."""

    study: optuna.Study
    spec: Spec
    trials: list[FrozenTrial]
    complete: list[FrozenTrial]
    rows: list[Row]
    configs: list[Config]
    baseline: Config
    results: dict[str, Summary | None] = field(default_factory=dict)
    evaluator: str = ""
    importances: dict[str, float] | None = None
    importance_note: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    figure_notes: dict[str, str] = field(default_factory=dict)
    activation_rows: list[list[str]] = field(default_factory=list)
    probe_images: int = 0
    """How many training images the activations at initialization were measured on."""
    expected_best_n: int = 0
    """How many finished trials with a score the expected-best curve is drawn from."""
    ablation: Analysis | None = None
    ablation_runs: dict[tuple[str, int], Any] = field(default_factory=dict)

    @property
    def only_experiments(self) -> bool:
        """Whether every trial is a named experiment: a comparison, not a search."""
        return bool(self.trials) and all("experiment" in t.user_attrs for t in self.trials)

    @property
    def experiments(self) -> list[FrozenTrial]:
        return [t for t in self.trials if "experiment" in t.user_attrs and t.state in ENDED]


def epochs_account(trials: Sequence[FrozenTrial]) -> dict[str, tuple[int, float]]:
    """Epochs and estimated seconds: the full budget, what ran, what each stop saved."""
    account: dict[str, list[float]] = {
        key: [0, 0.0] for key in ("budget", "run", "pruner", "early_stopping", "diverged")
    }
    for trial in trials:
        attrs = trial.user_attrs
        if "epoch_budget" not in attrs or "n_epochs" not in attrs:
            continue
        seconds = [float(s) for s in attrs.get("seconds_per_epoch", [])]
        per_epoch = sum(seconds) / len(seconds) if seconds else 0.0
        budget, ran = int(attrs["epoch_budget"]), int(attrs["n_epochs"])
        left = max(0, budget - ran)
        account["budget"][0] += budget
        account["budget"][1] += sum(seconds) + left * per_epoch
        account["run"][0] += ran
        account["run"][1] += sum(seconds)
        stop = _stopped_by(trial)
        if stop in account and left:
            account[stop][0] += left
            account[stop][1] += left * per_epoch
    return {k: (int(v[0]), float(v[1])) for k, v in account.items()}


def _stopped_by(trial: FrozenTrial) -> str:
    stop = trial.user_attrs.get("stopped_by")
    if stop:
        return str(stop)
    return "pruner" if trial.state == TrialState.PRUNED else "budget"


def stop_counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        if "n_epochs" in trial.user_attrs and trial.state in ENDED:
            key = _stopped_by(trial)
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def curve(trial: FrozenTrial, metric: str) -> list[float]:
    """The trial's per-epoch `metric`, from its curve attribute or its intermediate values."""
    values = trial.user_attrs.get(f"curve_{metric}")
    if values is None:
        values = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
    return [float(v) if v is not None else math.nan for v in values]


@dataclass(frozen=True)
class Anytime:
    """The best value so far each time a trial ended, against what the search had spent."""

    epochs: list[float]  # epochs trained by all trials together
    seconds: list[float]  # wall seconds since the first trial started
    best: list[float]  # best complete value so far (NaN before the first)


def anytime(trials: Sequence[FrozenTrial], maximize: bool) -> Anytime:
    """The study's anytime curve, trials taken in the order they ended (workers included)."""
    ended = sorted(
        (t for t in trials if t.state in ENDED and t.datetime_complete and t.datetime_start),
        key=lambda t: (t.datetime_complete, t.number),
    )
    points = Anytime([], [], [])
    if not ended:
        return points
    start = min(t.datetime_start for t in ended)  # type: ignore[type-var]
    spent, best = 0.0, math.nan
    for t in ended:
        spent += int(t.user_attrs.get("n_epochs", len(t.intermediate_values)))
        value = t.value if t.state == TrialState.COMPLETE and t.value is not None else math.nan
        if math.isfinite(value) and (
            math.isnan(best) or (value > best if maximize else value < best)
        ):
            best = value
        points.epochs.append(spent)
        points.seconds.append((t.datetime_complete - start).total_seconds())  # type: ignore[operator]
        points.best.append(best)
    return points

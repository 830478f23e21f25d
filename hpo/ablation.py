"""Ablations: which variants of a finished study's configurations to train, paired by seed.

Two designs answer two questions. *Leave one out*: the study's best configuration (chosen on
validation) against the same configuration with one technique switched off or reset to the
baseline's setting ("what does each technique contribute here?"). *Add one in*: the baseline
against the baseline with one technique switched on as the study found it best ("what does each
technique do on its own?"); for a study of named experiments, each experiment against the
baseline, and each searched technique that no experiment and no leave-one-out comparison
changes, so that every technique the study searched is compared. Every variant is trained with
the same seeds, so its scores pair with the others'.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError
from hpo.space import KNOBS, is_active
from hpo.spec import Spec

LEAVE_ONE_OUT = "leave-one-out"
ADD_ONE_IN = "add-one-in"
DESIGNS = (LEAVE_ONE_OUT, ADD_ONE_IN)

# A technique is the knobs it switches or chooses; the knobs that depend on them come along.
TECHNIQUES: dict[str, tuple[str, ...]] = {
    "weight_decay": ("weight_decay",),
    "activity_penalty": ("activity_penalty",),
    "bias_penalty": ("bias_penalty",),
    "dropout": ("dropout",),
    "early_stopping": ("early_stopping",),
    "schedule": ("schedule",),
    "initializer": ("initializer",),
    "optimizer": ("optimizer", "learning_rate"),
}

SHARED: dict[str, tuple[str, ...]] = {
    t: ("regularized_layers",)
    for t in ("weight_decay", "activity_penalty", "bias_penalty", "dropout")
}
"""Knobs a technique shares with others: switched on alone, it takes them from the
configuration it comes from (a penalty the study found best on all layers goes on all layers);
switched off, it leaves them to the techniques still on."""


@dataclass(frozen=True)
class Variant:
    """One configuration an ablation trains with every seed: a unique key and full params."""

    key: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Comparison:
    """A technique's paired comparison: variant `with_` against variant `without`.

    `changes` says what `with_` sets that `without` does not, knob by knob.
    """

    design: str
    technique: str
    with_: str
    without: str
    changes: str


@dataclass(frozen=True)
class Plan:
    """What an ablation of study `of` trains and compares."""

    of: str
    variants: tuple[Variant, ...]
    comparisons: tuple[Comparison, ...]
    best_trial: int
    baseline: str
    best: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            of=data["of"],
            variants=tuple(Variant(v["key"], v["params"]) for v in data["variants"]),
            comparisons=tuple(Comparison(**c) for c in data["comparisons"]),
            best_trial=data["best_trial"],
            baseline=data["baseline"],
            best=data.get("best") or _best_key(data),
        )

    def variant(self, key: str) -> Variant:
        return next(v for v in self.variants if v.key == key)


def family(technique: str) -> list[str]:
    """The knobs of `technique`: its own and every knob that depends on one of them."""
    heads = set(TECHNIQUES[technique])
    members: list[str] = []
    for name, knob in KNOBS.items():
        if name in heads or knob.parent in members:
            members.append(name)
    return members


def resolve(values: Mapping[str, Any]) -> dict[str, Any]:
    """Full params: every knob active under `values`, taken from them or its default."""
    params: dict[str, Any] = {}
    for name, knob in KNOBS.items():
        if is_active(name, params):
            params[name] = values.get(name, knob.default)
    return params


def switch(base: Mapping[str, Any], technique: str, source: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with the knobs of `technique` set as `source` sets them."""
    values = dict(base)
    for name in family(technique):
        if name in source:
            values[name] = source[name]
        else:
            values.pop(name, None)
    return resolve(values)


def switch_on(base: Mapping[str, Any], technique: str, source: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `technique` set as `source` sets it, with the knobs it shares (`SHARED`)
    where no other technique that shares them is on in `base` (it would move too)."""
    values = switch(base, technique, source)
    for knob in SHARED.get(technique, ()):
        others = [t for t, knobs in SHARED.items() if knob in knobs and t != technique]
        if knob in source and not any(base.get(t, "off") != "off" for t in others):
            values[knob] = source[knob]
    return resolve(values)


def uses(params: Mapping[str, Any], technique: str, baseline: Mapping[str, Any]) -> bool:
    """Whether `params` set `technique` otherwise than the baseline does."""
    return any(params.get(k) != baseline.get(k) for k in family(technique))


def changed_knobs(without: Mapping[str, Any], with_: Mapping[str, Any]) -> list[str]:
    """The knobs `with_` sets otherwise than `without` (or that only one of them has), in the
    registry's order."""
    return [name for name in KNOBS if with_.get(name) != without.get(name)]


def not_compared(
    techniques: Iterable[str], comparisons: Iterable[tuple[str, Iterable[str]]]
) -> list[str]:
    """The `techniques` that none of `comparisons` ((technique, changed knobs) pairs)
    compares: none is of that technique, and none changes a knob of its family."""
    named: set[str] = set()
    knobs: set[str] = set()
    for technique, changed in comparisons:
        named.add(technique)
        knobs.update(changed)
    return [t for t in techniques if t not in named and not knobs & set(family(t))]


def describe_changes(
    without: Mapping[str, Any], with_: Mapping[str, Any], leading_only: bool = False
) -> str:
    """`name=value` for each knob `with_` sets otherwise than `without`; with `leading_only`,
    without the knobs that only come with another change (the rate of switching dropout on)."""
    names = changed_knobs(without, with_)
    if leading_only:
        names = [k for k in names if KNOBS[k].parent not in names]
    return ", ".join(f"{k}={_short(with_.get(k, 'unused'))}" for k in names) or "nothing"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def searched_techniques(spec: Spec) -> list[str]:
    """The techniques whose knobs the study searches, in the registry's order."""
    searched = spec.searched()
    return [t for t, heads in TECHNIQUES.items() if any(h in searched for h in heads)]


def digest(params: Mapping[str, Any]) -> str:
    text = json.dumps(dict(params), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def plan_ablation(
    trials: Sequence[FrozenTrial],
    spec: Spec,
    designs: Iterable[str] = DESIGNS,
    techniques: Sequence[str] | None = None,
) -> Plan:
    """The variants and comparisons of an ablation of a finished study.

    `techniques` limits it to some techniques (or, in a study of named experiments, some
    experiments); each must be one the study searched.
    """
    from hpo.evaluate import default_params, resolved_params

    complete = [t for t in trials if t.state == TrialState.COMPLETE and _finite(t.value)]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and _finite(t.value)]
    if not complete:
        raise HpoError(f"study '{spec.name}' has no complete trial to ablate: run it first")
    sign = 1 if spec.direction == "maximize" else -1
    best = max(complete, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
    # The spec's own baseline experiment (whether or not its trial ran), else the defaults.
    entries = {e.name: e for e in spec.enqueue}
    baseline = (
        experiment_params(spec, entries["baseline"].params)
        if "baseline" in entries
        else default_params(spec)
    )
    experiments = [e for e in spec.enqueue if e.name != "baseline"]
    chosen = _chosen(spec, techniques, [e.name for e in experiments])
    changes = {
        e.name: changed_knobs(baseline, experiment_params(spec, e.params)) for e in experiments
    }
    if techniques:
        # The whole plan compares a technique that experiments change through them (it adds
        # no comparison of its own): asking for the technique asks for those experiments.
        covering = {
            e.name
            for e in experiments
            if any(set(changes[e.name]) & set(family(t)) for t in chosen.techniques)
        }
        chosen = _Chosen(
            chosen.techniques,
            [e.name for e in experiments if e.name in chosen.experiments or e.name in covering],
        )
    builder = _Builder()
    base_key = builder.add("baseline", baseline)
    best_key = builder.add(best.user_attrs.get("experiment", "best"), resolved_params(best, spec))
    best_params = builder.params[best_key]
    comparisons: list[Comparison] = []
    designs = list(designs)
    if LEAVE_ONE_OUT in designs:
        for t in chosen.techniques:
            if uses(best_params, t, baseline):
                without = builder.add(f"best - {t}", switch(best_params, t, baseline))
                comparisons.append(builder.compare(LEAVE_ONE_OUT, t, best_key, without))
    if ADD_ONE_IN in designs:
        for entry in experiments:
            if entry.name not in chosen.experiments:
                continue
            key = builder.add(entry.name, experiment_params(spec, entry.params))
            comparisons.append(builder.compare(ADD_ONE_IN, entry.name, key, base_key))
        # Beside named experiments, the techniques that neither an experiment (chosen or not:
        # a chosen part plans nothing the whole would not) nor a leave-one-out comparison
        # changes: so every technique the study searched and some trial used is compared.
        alone = chosen.techniques
        if experiments:
            # A leave-one-out comparison changes only its own technique's family.
            covered: list[tuple[str, Sequence[str]]] = [
                (c.technique, ()) for c in comparisons if c.design == LEAVE_ONE_OUT
            ]
            covered += [(e.name, changes[e.name]) for e in experiments]
            alone = not_compared(alone, covered)
        for t in alone:
            # As the best complete trial that used it had it; where the search pruned every
            # trial that did, as the pruned one with the best last report had it.
            top = _top_user(complete, t, spec, baseline, sign) or _top_user(
                pruned, t, spec, baseline, sign
            )
            if top is None:
                continue
            source = resolved_params(top, spec)
            key = builder.add(f"baseline + {t}", switch_on(baseline, t, source))
            comparisons.append(builder.compare(ADD_ONE_IN, t, key, base_key))
    comparisons = [c for c in comparisons if c.with_ != c.without]
    used = {base_key, best_key} | {c.with_ for c in comparisons} | {c.without for c in comparisons}
    variants = tuple(Variant(k, builder.params[k]) for k in builder.order if k in used)
    return Plan(spec.name, variants, tuple(comparisons), best.number, base_key, best_key)


def _top_user(
    trials: Sequence[FrozenTrial],
    technique: str,
    spec: Spec,
    baseline: Mapping[str, Any],
    sign: int,
) -> FrozenTrial | None:
    """Of `trials` (each with a finite value), the best that sets `technique` otherwise than
    the baseline; the earliest of equals."""
    from hpo.evaluate import resolved_params

    users = [t for t in trials if uses(resolved_params(t, spec), technique, baseline)]
    return max(users, key=lambda t: sign * float(t.value), default=None)  # type: ignore[arg-type]


def _best_key(data: Mapping[str, Any]) -> str:
    # Plans stored before the best variant's key was recorded: the `with` side of every
    # leave-one-out comparison, else the variant named "best", else the baseline.
    for c in data["comparisons"]:
        if c["design"] == LEAVE_ONE_OUT:
            return str(c["with_"])
    keys = [v["key"] for v in data["variants"]]
    return "best" if "best" in keys else str(data["baseline"])


def experiment_params(spec: Spec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The full params of a named experiment of `spec`."""
    from optuna.trial import FixedTrial

    from hpo.space import complete_params, suggest_params

    fixed = FixedTrial(complete_params(given, spec.space))
    return suggest_params(fixed, spec.space)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Chosen:
    techniques: list[str]
    experiments: list[str]


def _chosen(spec: Spec, asked: Sequence[str] | None, experiments: list[str]) -> _Chosen:
    searched = searched_techniques(spec)
    if not asked:
        return _Chosen(searched, experiments)
    for name in asked:
        if name in experiments or name in searched:
            continue
        if name in TECHNIQUES:
            raise HpoError(
                f"study '{spec.name}' never searched technique '{name}' "
                f"(it searched: {', '.join(searched) or 'none'})"
            )
        known = ", ".join([*TECHNIQUES, *experiments])
        raise HpoError(f"unknown technique '{name}' (known: {known})")
    return _Chosen([t for t in searched if t in asked], [e for e in experiments if e in asked])


class _Builder:
    """Collects variants, giving configurations with equal params one key."""

    def __init__(self) -> None:
        self.params: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self._by_digest: dict[str, str] = {}

    def add(self, key: str, params: Mapping[str, Any]) -> str:
        found = self._by_digest.get(digest(params))
        if found is not None:
            return found
        # Another configuration under a name already taken (an experiment the spec calls
        # "best", or "best - dropout") gets its own key: a key names one configuration.
        wanted, n = key, 2
        while key in self.params:
            key, n = f"{wanted} ({n})", n + 1
        self._by_digest[digest(params)] = key
        self.params[key] = dict(params)
        self.order.append(key)
        return key

    def compare(self, design: str, technique: str, with_: str, without: str) -> Comparison:
        changes = describe_changes(self.params[without], self.params[with_])
        return Comparison(design, technique, with_, without, changes)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)

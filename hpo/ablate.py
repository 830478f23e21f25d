"""An ablation as a study: its runs enqueued in a companion study, their scores, the verdicts.

The companion of study NAME is `NAME:ablation` in the same storage. It keeps NAME's spec (for
the data), the plan (variants and comparisons), and the seeds; each (variant, seed) run is an
enqueued trial, so the ablation resumes after Ctrl-C or a killed worker and runs on
`--workers N` or on many machines like any study.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.ablation import DESIGNS, LEAVE_ONE_OUT, Comparison, Plan, plan_ablation
from hpo.errors import HpoError
from hpo.secrets import mask
from hpo.spec import load_spec_text
from hpo.stats import (
    ALPHA,
    DELTA,
    HELPS,
    HURTS,
    INCONCLUSIVE,
    MAX_SEEDS,
    PENDING,
    Effect,
    Verdict,
    judge,
    paired_effect,
    stage_alpha,
    t_interval,
)
from hpo.storage import open_storage
from hpo.study import (
    ABLATION_SUFFIX,
    FIXED_ONLY,
    FIXED_RUN,
    N_RUNS,
    SPEC_ATTR,
    load_study,
    study_names,
    tally,
)

DEFAULT_SEEDS = 10
"""Paired seeds of a new ablation when `--seeds` is not given."""
PLAN_ATTR = "ablation"
SEEDS_ATTR = "seeds"
DELTA_ATTR = "delta"
STAGE_PREFIX = "stage:"
"""An attribute `stage:N` marks an analysis stage of N seeds, one per `hpo ablate` that added
seeds: one attribute each, so two `hpo ablate` adding seeds at once both count."""
SPENT_PREFIX = "ablation_stage:"
"""On the study itself, `ablation_stage:K`: its ablations have begun K analysis stages (the
largest K counts; one attribute each, so two `hpo ablate` at once never lower it). Kept when an
ablation is deleted: its seeds are a fixed stream, so an ablation planned anew runs the same
seeds again, and its analyses go on from there rather than at the first stage's level."""
STAGE_OFFSET_ATTR = "stage_offset"
"""On an ablation: the stages that earlier, deleted ablations of its study had begun."""
METRICS = ("test_accuracy", "val_accuracy")
PRESENT = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
"""The states of a run that is done or on its way: such a run is not queued again."""


def ablation_name(name: str) -> str:
    return name + ABLATION_SUFFIX


def ablation_seeds(study_seed: int, n_seeds: int) -> list[int]:
    """K seeds fixed by the study seed, the same stream as the test evaluation's."""
    from hpo.evaluate import seed_stream

    return seed_stream(study_seed, n_seeds)


def prepare_ablation(
    name: str,
    url: str,
    n_seeds: int | None,
    designs: Sequence[str] = DESIGNS,
    techniques: Sequence[str] | None = None,
    delta: float | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[optuna.Study, Plan, int]:
    """Create (or extend) the ablation of study `name` and enqueue its missing runs.

    `delta`, the margin of "no effect" (a fraction), is stored for the report's verdicts;
    None keeps the one stored before (`DELTA` for a new ablation).

    Returns the companion study, its plan and the number of runs it must finish. An existing
    ablation keeps its plan; more seeds extend it, and begin its next analysis stage (its
    verdicts are then tested at that stage's level, `hpo.stats.stage_alpha`). A plan made now
    that only adds to the stored one (same best trial, every stored comparison made with the
    same two configurations) leaves it as it is, said through `echo`; any other difference
    is refused.
    """
    if n_seeds is not None and n_seeds < 2:
        raise HpoError(f"--seeds must be at least 2 to pair differences, got {n_seeds}")
    if name.endswith(ABLATION_SUFFIX):
        raise HpoError(f"'{name}' is an ablation already; ablate the study it belongs to")
    parent, spec = load_study(name, url, heartbeat_interval=None)
    # Read before the ablation is made: one made beside this one cannot have raised it yet.
    offset = stages_spent(parent.user_attrs)
    storage = open_storage(url, heartbeat_interval=None)
    companion_name = ablation_name(name)
    plan = plan_ablation(parent.get_trials(deepcopy=False), spec, designs, techniques)
    if not plan.comparisons and not _has_plan(storage, companion_name):
        what = ", ".join(techniques) if techniques else "a technique it searched"
        if list(designs) == [LEAVE_ONE_OUT]:
            why = f"its best trial does not set {what} otherwise than its baseline"
            hint = "; `--design add-one-in` compares what other trials used"
        else:
            why = (
                f"no complete or pruned trial with a score sets {what} otherwise than its "
                "baseline, and no experiment of its spec does"
            )
            hint = ""
        raise HpoError(
            f"nothing to compare in study '{name}': {why} (an ablation would train only the "
            f"baseline){hint}"
        )
    try:
        if companion_name in study_names(storage):
            raise optuna.exceptions.DuplicatedStudyError
        companion = optuna.create_study(
            study_name=companion_name, storage=storage, direction="maximize"
        )
    except optuna.exceptions.DuplicatedStudyError:  # made before, or just now beside this
        companion = optuna.load_study(study_name=companion_name, storage=storage)
        _check_companion(companion, name, url, spec.text)
    _check_margin(companion, delta)  # before anything is written
    stored_plan = companion.user_attrs.get(PLAN_ATTR)
    if stored_plan is not None:
        stored = Plan.from_json(stored_plan)
        if _shape(stored) != _shape(plan):
            anew = (
                f"`hpo study delete {companion_name}` and `hpo ablate {name}` plan it anew "
                "(it runs the same seeds, so its analyses go on from the next stage)"
            )
            if not _extends(plan, stored):
                raise HpoError(
                    f"study '{companion_name}' in {mask(url)} holds an ablation with another "
                    f"plan ({_difference(stored, plan)}): {anew}"
                )
            # Of the same best trial, and every stored comparison made alike: the runs go on
            # as planned (a planner that now plans more, or more is asked for).
            echo(
                f"the ablation keeps the plan it was made with ({_difference(stored, plan)}); "
                f"{anew} (its {tally(companion).total()} runs are deleted then)"
            )
        plan = stored
        seeds = stored_seeds(companion.user_attrs, spec.seed)
    else:  # new, or its preparation was cut short: the plan is a function of the study
        companion.set_user_attr(FIXED_ONLY, True)  # first: never run as a sampled study
        if STAGE_OFFSET_ATTR not in companion.user_attrs:
            companion.set_user_attr(STAGE_OFFSET_ATTR, offset)
        companion.set_user_attr(SPEC_ATTR, spec.text)
        companion.set_user_attr(PLAN_ATTR, plan.to_json())
        seeds = []
    # No count given: the ablation's own (a resumed one goes on as it was), else the default.
    wanted = ablation_seeds(spec.seed, n_seeds or len(seeds) or DEFAULT_SEEDS)
    stages = stages_of(companion.user_attrs)
    if seeds and not stages:  # made before stages were recorded: its seeds were the first
        companion.set_user_attr(f"{STAGE_PREFIX}{len(seeds)}", True)
        stages = [len(seeds)]
    seeds = seeds + [s for s in wanted if s not in seeds]
    n_runs = len(plan.variants) * len(seeds)
    companion.set_user_attr(SEEDS_ATTR, seeds)
    if not stages or len(seeds) > stages[-1]:
        companion.set_user_attr(f"{STAGE_PREFIX}{len(seeds)}", True)
    keep_stages(parent, companion)
    if delta is not None or DELTA_ATTR not in companion.user_attrs:
        companion.set_user_attr(DELTA_ATTR, DELTA if delta is None else delta)
    companion.set_user_attr(N_RUNS, n_runs)
    enqueue_missing(companion, plan, seeds)
    return companion, plan, n_runs


def _check_margin(companion: optuna.Study, delta: float | None) -> None:
    """Refuse a margin of "no effect" other than the stored one once runs have finished: a
    margin chosen after seeing results would choose the verdicts ("no effect" is judged first,
    so a wider one turns "helps" into "no effect")."""
    stored = companion.user_attrs.get(DELTA_ATTR)
    if stored is None or delta is None or math.isclose(stored, delta, abs_tol=1e-12):
        return
    if tally(companion)[TrialState.COMPLETE]:
        raise HpoError(
            f"the ablation '{companion.study_name}' has results judged with a margin of no "
            f"effect of +-{100 * stored:g} points: a margin is chosen before the results are "
            f"seen; leave out --delta, or give --delta {100 * stored:g}"
        )


def _has_plan(storage: optuna.storages.BaseStorage, companion_name: str) -> bool:
    """Whether the ablation study `companion_name` exists and holds its plan."""
    if companion_name not in study_names(storage):
        return False
    companion = optuna.load_study(study_name=companion_name, storage=storage)
    return PLAN_ATTR in companion.user_attrs


def _extends(plan: Plan, stored: Plan) -> bool:
    """Whether `plan` is of the same best trial as `stored` and makes every comparison of it
    with the same two configurations."""
    made = _trained(plan)
    return plan.best_trial == stored.best_trial and all(
        made.get(pair) == configs for pair, configs in _trained(stored).items()
    )


def _trained(plan: Plan) -> dict[tuple[str, str], tuple[str, str]]:
    """(design, technique) -> the digests of the params its two sides train."""
    from hpo.ablation import digest

    params = {v.key: digest(v.params) for v in plan.variants}
    return {(c.design, c.technique): (params[c.with_], params[c.without]) for c in plan.comparisons}


def _difference(stored: Plan, plan: Plan) -> str:
    """What a plan made now would do otherwise than the stored one, in a few words."""
    was, now = _trained(stored), _trained(plan)

    def named(pairs: Sequence[tuple[str, str]]) -> str:
        return ", ".join(f"{technique} ({design})" for design, technique in pairs)

    parts = []
    if stored.best_trial != plan.best_trial:
        parts.append(f"its best trial is {stored.best_trial}, the study's now {plan.best_trial}")
    if gone := [p for p in was if p not in now]:
        parts.append(f"it compares {named(gone)}, not asked now")
    if other := [p for p in was if p in now and now[p] != was[p]]:
        parts.append(f"it trains {named(other)} otherwise than a new plan would")
    if added := [p for p in now if p not in was]:
        parts.append(f"a new plan would also compare {named(added)}")
    return "; ".join(parts) or "the same comparisons, listed or named otherwise"


def _shape(plan: Plan) -> tuple[Any, ...]:
    from hpo.ablation import digest

    return (
        plan.best_trial,
        tuple((c.design, c.technique) for c in plan.comparisons),
        tuple((v.key, digest(v.params)) for v in plan.variants),
    )


def _check_companion(companion: optuna.Study, name: str, url: str, spec_text: str) -> None:
    """Refuse a study named NAME:ablation that is not an ablation of this study NAME: an
    ordinary study of that name (made before the name was kept for ablations), or the
    ablation of an earlier study NAME that was deleted and made again with another spec.
    Their runs would be taken for this study's."""
    attrs = companion.user_attrs
    delete = f"`hpo study delete {companion.study_name}`"
    if not attrs.get(FIXED_ONLY) and companion.get_trials(deepcopy=False):
        raise HpoError(
            f"study '{companion.study_name}' in {mask(url)} is not an ablation (it holds "
            f"trials of its own): rename or delete it ({delete}) before ablating '{name}'"
        )
    stored = attrs.get(SPEC_ATTR)
    if attrs.get(FIXED_ONLY) and stored is not None and stored != spec_text:
        raise HpoError(
            f"study '{companion.study_name}' in {mask(url)} is the ablation of an earlier "
            f"study '{name}' with another spec: delete it with {delete} to ablate this one"
        )


def enqueue_missing(study: optuna.Study, plan: Plan, seeds: Sequence[int]) -> int:
    """Enqueue every (variant, seed) run with no complete, waiting or running trial."""
    present = {
        (t.user_attrs.get("variant"), t.user_attrs.get("seed"))
        for t in study.get_trials(deepcopy=False, states=PRESENT)
    }
    n = 0
    for seed in seeds:
        for variant in plan.variants:
            if (variant.key, seed) in present:
                continue
            attrs = {FIXED_RUN: True, "variant": variant.key, "seed": seed}
            study.enqueue_trial({}, user_attrs={**attrs, "params": dict(variant.params)})
            n += 1
    return n


def load_ablation(name: str, url: str) -> tuple[optuna.Study, Plan, list[int]] | None:
    """The ablation of study `name`, if there is one."""
    storage = open_storage(url, heartbeat_interval=None)
    companion_name = ablation_name(name)
    if companion_name not in study_names(storage):
        return None
    study = optuna.load_study(study_name=companion_name, storage=storage)
    parent = optuna.load_study(study_name=name, storage=storage).user_attrs.get(SPEC_ATTR)
    _check_companion(study, name, url, str(parent))
    if N_RUNS not in study.user_attrs:  # the last attribute its preparation writes
        raise HpoError(
            f"the ablation '{companion_name}' was cut short while it was prepared: "
            f"`hpo ablate {name}` prepares it again"
        )
    attrs = study.user_attrs
    spec = load_spec_text(str(parent), f"the spec stored with study '{name}'", stored=True)
    seeds = stored_seeds(attrs, spec.seed)
    return study, Plan.from_json(attrs[PLAN_ATTR]), seeds


def stored_seeds(attrs: Mapping[str, Any], study_seed: int) -> list[int]:
    """The ablation's seeds, from its study's attributes: the first N of its seed stream, N
    the most that any `hpo ablate` asked for. Two calls at once with other --seeds each write
    their own list, and the last write wins; each also marks its stage, so the larger count
    is kept and the runs both queued are all used."""
    seeds = list(attrs.get(SEEDS_ATTR, []))
    n = max([len(seeds), *stages_of(attrs)])
    return seeds + [s for s in ablation_seeds(study_seed, n) if s not in seeds]


def stages_of(attrs: Mapping[str, Any]) -> list[int]:
    """The seed counts of an ablation's analysis stages so far, from its study's attributes."""
    found = {int(k.removeprefix(STAGE_PREFIX)) for k in attrs if k.startswith(STAGE_PREFIX)}
    return sorted(found)


def stored_offset(companion: optuna.Study) -> int:
    """The analysis stages that earlier, deleted ablations of the study had begun."""
    return _offset(companion.user_attrs)


def stored_stage(companion: optuna.Study) -> int:
    """The ablation's current analysis stage: 1, plus one for each time seeds were added, plus
    the stages that earlier, deleted ablations of its study had begun."""
    return _stage(companion.user_attrs)


def _offset(attrs: Mapping[str, Any]) -> int:
    return int(attrs.get(STAGE_OFFSET_ATTR, 0))


def _stage(attrs: Mapping[str, Any]) -> int:
    return _offset(attrs) + max(1, len(stages_of(attrs)))


def stages_spent(attrs: Mapping[str, Any]) -> int:
    """The analysis stages a study's ablations have begun, from the study's attributes."""
    return max(
        (int(k.removeprefix(SPENT_PREFIX)) for k in attrs if k.startswith(SPENT_PREFIX)),
        default=0,
    )


def keep_stages(parent: optuna.Study, companion: optuna.Study) -> None:
    """Mark on study `parent` the stages its ablation `companion` has begun (if it has seeds),
    where that is more than marked: an ablation deleted and planned anew goes on from there."""
    attrs = companion.user_attrs
    if not attrs.get(SEEDS_ATTR) and not stages_of(attrs):
        return  # its preparation was cut short before any seed: no run, no analysis
    spent = _stage(attrs)
    if spent > stages_spent(parent.user_attrs):
        parent.set_user_attr(f"{SPENT_PREFIX}{spent}", True)


def collect_runs(trials: Sequence[FrozenTrial]) -> dict[tuple[str, int], Mapping[str, Any]]:
    """The user attributes of each (variant, seed) run's first complete trial."""
    runs: dict[tuple[str, int], Mapping[str, Any]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.state != TrialState.COMPLETE or not t.user_attrs.get(FIXED_RUN):
            continue
        runs.setdefault((t.user_attrs["variant"], int(t.user_attrs["seed"])), t.user_attrs)
    return runs


@dataclass(frozen=True)
class Row:
    """One comparison's verdicts, on test and on validation accuracy."""

    comparison: Comparison
    test: Verdict
    val: Verdict


@dataclass(frozen=True)
class Analysis:
    """What an ablation found: a row per comparison, and each variant's scores over seeds."""

    plan: Plan
    seeds: list[int]
    rows: list[Row]
    n_runs: int
    n_done: int
    delta: float
    stage: int = 1
    interim: bool = False
    earlier: int = 0
    """Of `stage`, the stages begun by earlier, deleted ablations of the study."""

    @property
    def alpha(self) -> float:
        """The family-wise error this stage's verdicts are tested at (`stage_alpha`)."""
        return stage_alpha(self.stage)

    def rows_of(self, design: str) -> list[Row]:
        return [r for r in self.rows if r.comparison.design == design]


def analyze(
    plan: Plan,
    seeds: Sequence[int],
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
    delta: float = DELTA,
    stage: int = 1,
    earlier: int = 0,
) -> Analysis:
    """Verdicts for every comparison of `plan`, each design a family for Holm's correction,
    tested at the level of analysis stage `stage` (`hpo.stats.stage_alpha`; `earlier` of the
    stages were begun by deleted ablations of the study); the seeds that would settle an
    inconclusive one are planned for the next stage's level.

    Only seeds with a finished run on both sides of a comparison pair up. While any planned
    run is missing the analysis is interim and every label is "pending": a verdict on the
    first seeds, then another on all of them, would be two looks at one stage's level.
    """
    alpha, settle = stage_alpha(stage), stage_alpha(stage + 1)
    interim = any((v.key, s) not in runs for v in plan.variants for s in seeds)
    rows: list[Row] = []
    for design in DESIGNS:
        comparisons = [c for c in plan.comparisons if c.design == design]
        verdicts = {
            metric: judge(
                [_effect(c, seeds, runs, metric) for c in comparisons], delta, alpha, settle
            )
            for metric in METRICS
        }
        if interim:
            verdicts = {k: [pending(v) for v in found] for k, found in verdicts.items()}
        for i, c in enumerate(comparisons):
            rows.append(Row(c, verdicts["test_accuracy"][i], verdicts["val_accuracy"][i]))
    n_runs = len(plan.variants) * len(seeds)
    return Analysis(plan, list(seeds), rows, n_runs, len(runs), delta, stage, interim, earlier)


def analyze_stored(
    companion: optuna.Study,
    plan: Plan,
    seeds: Sequence[int],
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
) -> Analysis:
    """`analyze` with the margin and the stage the ablation `companion` stores."""
    attrs = companion.user_attrs
    delta = float(attrs.get(DELTA_ATTR, DELTA))
    return analyze(plan, seeds, runs, delta, _stage(attrs), _offset(attrs))


def pending(v: Verdict) -> Verdict:
    """The verdict with its label held back until its analysis has all its runs."""
    return dataclasses.replace(v, label=PENDING)


def _effect(
    c: Comparison,
    seeds: Sequence[int],
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
    metric: str,
) -> Effect:
    return paired_scores(c.with_, c.without, seeds, runs, metric)


def paired_scores(
    with_: str,
    without: str,
    seeds: Sequence[int],
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
    metric: str = "test_accuracy",
) -> Effect:
    """The effect of variant `with_` against variant `without`, paired by seed."""
    pairs = [
        (runs[(with_, s)][metric], runs[(without, s)][metric])
        for s in seeds
        if (with_, s) in runs and (without, s) in runs
    ]
    # A run whose score was not a number (stored by hand, or by an older version) pairs with
    # nothing: it would make the whole comparison's mean and spread NaN.
    pairs = [(a, b) for a, b in pairs if _finite(a) and _finite(b)]
    return paired_effect([a for a, _ in pairs], [b for _, b in pairs])


@dataclass(frozen=True)
class Scores:
    """One variant's scores over seeds: mean with a 95% t interval, and the spread."""

    n: int
    mean: float
    low: float
    high: float
    sd: float


def variant_scores(
    key: str,
    seeds: Sequence[int],
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
    metric: str = "test_accuracy",
) -> Scores:
    found = [runs[(key, s)].get(metric) for s in seeds if (key, s) in runs]
    # A run without a finite score (a diverged one) has no score to average.
    values = np.asarray([v for v in found if _finite(v)], dtype=float)
    if len(values) == 0:
        return Scores(0, math.nan, math.nan, math.nan, math.nan)
    if len(values) == 1:
        return Scores(1, float(values[0]), math.nan, math.nan, math.nan)
    centered = values - values.mean()
    low, high, _ = t_interval(centered, 0.95)
    mean = float(values.mean())
    return Scores(len(values), mean, mean + low, mean + high, float(values.std(ddof=1)))


def paired_seeds(analysis: Analysis) -> str:
    """How many paired seeds the verdicts rest on: fewer than planned while runs are missing."""
    planned = len(analysis.seeds)
    counts = sorted({row.test.effect.n for row in analysis.rows})
    if not counts or counts == [planned]:
        return f"{planned} paired seeds"
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{span} paired seeds of the {planned} planned (runs are missing)"


def verdict_lines(analysis: Analysis) -> list[str]:
    """The verdicts as plain text, one line per comparison, for the command line."""
    lines = [
        f"ablation of '{analysis.plan.of}': {analysis.n_done}/{analysis.n_runs} runs, "
        f"{paired_seeds(analysis)}; effects on test accuracy in points "
        f"(higher is better), {stage_text(analysis)}, "
        f"no effect = within +-{100 * analysis.delta:.1f}; in order of the validation effect"
    ]
    if analysis.interim:
        lines.append(f"{INTERIM}; `hpo ablate {analysis.plan.of}` runs them")
    for design in DESIGNS:
        rows = analysis.rows_of(design)
        if not rows:
            continue
        lines.append(f"{design}:")
        for row in sorted(rows, key=validation_order):
            lines.append(f"  {row.comparison.technique:<20} {verdict_text(row.test)}")
    return lines


def confidence(analysis: Analysis) -> str:
    """`97.5%`: the family-wise confidence of this stage's intervals."""
    return f"{100 * (1 - analysis.alpha):g}%"


def which_analysis(analysis: Analysis) -> str:
    """`analysis 2 of this ablation`; counting stages that deleted ablations of the study began,
    `analysis 3 of this study's ablations (2 of them by ablations deleted since, ...)`."""
    if not analysis.earlier:
        return f"analysis {analysis.stage} of this ablation"
    return (
        f"analysis {analysis.stage} of this study's ablations ({analysis.earlier} of them by "
        "ablations deleted since, on the same seeds)"
    )


def stage_text(analysis: Analysis) -> str:
    """Which analysis of the ablation this is and the level its verdicts are tested at."""
    spent = sum(stage_alpha(k) for k in range(1, analysis.stage + 1))
    return (
        f"{which_analysis(analysis)}: family-wise {confidence(analysis)} t "
        f"intervals and Holm-corrected verdicts at {100 * analysis.alpha:g}% "
        f"({100 * spent:g}% of the {100 * ALPHA:g}% spent so far; adding seeds starts the "
        "next analysis at half the level)"
    )


def verdict_text(v: Verdict) -> str:
    """`+1.2 [+0.4, +2.0] pp, p(Holm) 0.012 -> helps` (points, one decimal)."""
    e = v.effect
    if v.label == PENDING and e.n < 2:
        return f"{e.n} paired seeds so far -> {PENDING}"
    if e.n < 2:
        return f"{e.n} paired seeds: too few -> inconclusive"
    interval = (
        f"[{100 * v.low:+.1f}, {100 * v.high:+.1f}]"
        if math.isfinite(v.low) and math.isfinite(v.high)
        else "[no interval]"
    )
    text = (
        f"{100 * e.mean:+5.1f} {interval} pp, "
        f"P(better) {e.p_better:.2f}, p(Holm) {v.p_holm:.3f} -> {v.label}"
    )
    if v.label == INCONCLUSIVE:
        text += f" ({seeds_to_settle_text(v)})"
    if touches_zero(v):
        text += f" ({TOUCHES_ZERO})"
    return text


TOUCHES_ZERO = "Holm's test rejects no difference; the simultaneous interval still touches zero"
INTERIM = (
    "runs of this analysis are missing: every verdict is pending until they finish (a "
    "verdict on part of the seeds and another on all of them would be two looks at one level)"
)


def touches_zero(v: Verdict) -> bool:
    """A helps/hurts whose family-wise interval still holds zero: Holm's step-down test is
    more powerful than the Bonferroni interval, so the two can disagree near the line."""
    return (
        v.label in (HELPS, HURTS)
        and math.isfinite(v.low)
        and math.isfinite(v.high)
        and v.low <= 0 <= v.high
    )


def seeds_to_settle_text(v: Verdict) -> str:
    """`about 40 seeds in all (30 more) would settle it`, or that more than MAX_SEEDS would be
    needed."""
    if v.n_seeds_needed is None:
        return f"more than {MAX_SEEDS:,} seeds would be needed at this spread"
    more = v.n_seeds_needed - v.effect.n
    return f"about {v.n_seeds_needed} seeds in all ({more} more) would settle it"


def validation_order(row: Row) -> tuple[bool, float]:
    """The key that orders an ablation's rows: the validation effect, largest first, rows
    without one last (the test set orders and picks nothing)."""
    value = row.val.effect.mean
    return (math.isnan(value), 0.0 if math.isnan(value) else -value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)

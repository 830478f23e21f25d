"""The report's Answer: what helped, what hurt, what is unknown and why, and what to use.

Every sentence is generated from the ablation's verdicts and scores that the tables below it
show, so the answer and the tables cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hpo.ablate import (
    INTERIM,
    TOUCHES_ZERO,
    Analysis,
    Row,
    confidence,
    paired_scores,
    paired_seeds,
    pending,
    seeds_to_settle_text,
    touches_zero,
    variant_scores,
    which_analysis,
)
from hpo.ablation import (
    ADD_ONE_IN,
    LEAVE_ONE_OUT,
    Plan,
    changed_knobs,
    describe_changes,
    not_compared,
)
from hpo.report.ablation_section import interval_points, points
from hpo.report.markdown import DASH, table
from hpo.stats import (
    ALPHA,
    HELPS,
    HURTS,
    INCONCLUSIVE,
    NO_EFFECT,
    PENDING,
    Verdict,
    judge,
    paired_effect,
    stage_alpha,
)

WORDS = {
    HELPS: "helps",
    HURTS: "hurts",
    NO_EFFECT: "no effect",
    INCONCLUSIVE: "unknown",
    PENDING: "pending",
}


def answer(
    analysis: Analysis | None,
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
    name: str,
    searched: Sequence[str] = (),
) -> list[str]:
    """The Answer section: a paragraph and a table per technique, or how to get one.

    `searched` are the techniques the study searched: any that no comparison covers is named
    as not compared, so a reader does not take silence for an answer.
    """
    head = "## Answer"
    if analysis is None or not analysis.rows:
        return [
            head,
            "Unknown yet: which technique helps needs a controlled comparison, and this study "
            f"has none. `hpo ablate {name} --seeds 10` trains each technique with and without "
            "on the same 10 seeds; the report then opens with the answer. The screening and "
            "the best trials below are hints, not answers.",
        ]
    plan = analysis.plan
    base = variant_scores(plan.baseline, analysis.seeds, runs)
    by_technique: dict[str, dict[str, Row]] = {}
    for row in analysis.rows:
        by_technique.setdefault(row.comparison.technique, {})[row.comparison.design] = row
    groups: dict[str, list[str]] = {label: [] for label in WORDS}
    for technique, rows in by_technique.items():
        row = rows.get(ADD_ONE_IN) or rows[LEAVE_ONE_OUT]
        named = _named(technique, row, plan) + _early_stops(row, plan, runs, analysis.seeds)
        groups[row.test.label].append(named)
    sentences = [
        "Each technique or experiment's effect on test accuracy, in points (higher is "
        f"better) over {paired_seeds(analysis)}, with family-wise {confidence(analysis)} "
        f"intervals ({which_analysis(analysis)}; each design's verdicts over "
        f"all its analyses hold at a family-wise error of {ALPHA:.0%}). *On its own* is the "
        "technique switched on in the baseline, where the study tested it so; *in the best "
        "configuration* is the technique taken out of the study's best configuration, "
        "otherwise. In brackets, what the comparison changes:"
    ]
    for label, intro in (
        (HELPS, "**Helps**"),
        (HURTS, "**Hurts**"),
        (NO_EFFECT, f"**No effect** (within ±{100 * analysis.delta:.1f} points)"),
        (INCONCLUSIVE, "**Unknown** (too few seeds for this spread)"),
        (PENDING, f"**Pending** ({INTERIM}; `hpo ablate {name}` runs them)"),
    ):
        if groups[label]:
            sentences.append(f"{intro}: {'; '.join(groups[label])}.")
    compared = [(r.comparison.technique, changed_knobs(*_sides(plan, r))) for r in analysis.rows]
    missing = not_compared(searched, compared)
    if missing:
        sentences.append(
            f"**Not compared**: {', '.join(missing)}. The study searched them, but no "
            "comparison of this ablation changes them (no complete or pruned trial with a "
            "score set them otherwise than the baseline, `--design` or `--technique` left "
            "them out, or the ablation was planned before every searched technique got a "
            "comparison): this report says nothing about them."
        )
    recommend = _recommendation(analysis, runs)
    return [
        head,
        " ".join(sentences),
        recommend,
        _table(by_technique, plan),
        f"One run's test accuracy varies by about {points(base.sd, False)} points from seed "
        "to seed (the baseline's sd): a single comparison of two runs cannot tell effects of "
        "that size apart, which is why each verdict pairs many seeds.",
    ]


def _recommendation(analysis: Analysis, runs: Mapping[tuple[str, int], Mapping[str, Any]]) -> str:
    """The variant with the best mean validation score over the ablation's seeds: a choice on
    validation, with its test accuracy reported beside the baseline's."""
    plan, seeds = analysis.plan, analysis.seeds
    if analysis.interim:
        # A choice on part of the seeds would be a look at this analysis before its end.
        return (
            f"**Use**: unknown until the ablation's runs finish ({analysis.n_done} of "
            f"{analysis.n_runs} done; `hpo ablate {plan.of}` runs the rest)."
        )
    val = {v.key: variant_scores(v.key, seeds, runs, "val_accuracy") for v in plan.variants}
    chosen = max(
        (k for k in val if val[k].n), key=lambda k: (val[k].mean, k == plan.best), default=None
    )
    if chosen is None:
        return "**Use**: unknown until the ablation's runs finish."
    test = variant_scores(chosen, seeds, runs)
    base = variant_scores(plan.baseline, seeds, runs)
    how = (
        f"the highest mean validation accuracy over the ablation's {val[chosen].n} seeds, "
        f"{points(val[chosen].mean, False)}%; the test set chose nothing"
    )
    expect = (
        f"Expect about {points(test.mean, False)}% test accuracy (sd {points(test.sd, False)} "
        f"points from seed to seed, over {test.n} seeds; a little optimistic, as the runs "
        "that chose it on validation are the ones scored)"
    )
    if chosen == plan.baseline:
        text = f"**Use** the baseline ({how}). {expect}."
    else:
        changes = describe_changes(plan.variant(plan.baseline).params, plan.variant(chosen).params)
        against, source = _against_baseline(analysis, runs, chosen)
        lead = (
            f"**Use** `{chosen}`"
            if against.label == HELPS
            else "**Nothing is shown to beat the baseline.** The validation choice would be "
            f"`{chosen}`"
        )
        if against.effect.n == 0:
            versus = "Against the baseline on test: no paired runs yet."
        else:
            zero = f"; {TOUCHES_ZERO}" if touches_zero(against) else ""
            versus = (
                f"Against the baseline on test, paired over {against.effect.n} seeds: "
                f"{points(against.effect.mean)} {interval_points(against.low, against.high)} "
                f"points (a {_percent(1 - against.level)} interval), {WORDS[against.label]} "
                f"({source}{zero})."
            )
        text = (
            f"{lead} ({how}), which changes from the baseline: {changes}. {versus} "
            f"{expect}, against {points(base.mean, False)}% (sd {points(base.sd, False)}) "
            "for the baseline."
        )
    if chosen != plan.best:
        best = variant_scores(plan.best, seeds, runs)
        text += (
            f" The study's best trial (#{plan.best_trial}, `{plan.best}`, one seed) scores "
            f"{points(best.mean, False)}% on test over these seeds: a single run's validation "
            "score picked it."
        )
    return text


def _against_baseline(
    analysis: Analysis, runs: Mapping[tuple[str, int], Mapping[str, Any]], chosen: str
) -> tuple[Verdict, str]:
    """The chosen variant against the baseline on test accuracy, paired by seed, and where
    that verdict comes from.

    Validation chose the variant from all of them, and validation and test score the same
    runs, so a test of the chosen one alone would carry the choice's luck. Where the variant
    is one side of a comparison with the baseline (add one in), its row's verdict is the
    answer: it holds together with its whole family, whichever row the choice picked. Else
    the comparison is judged as one of as many as there were variants to choose from
    (Holm and the interval at 1 - alpha/K), which no choice among them can loosen.
    """
    plan = analysis.plan
    for row in analysis.rows:
        if (row.comparison.with_, row.comparison.without) == (chosen, plan.baseline):
            return row.test, f"its {row.comparison.design} verdict"
    effect = paired_scores(chosen, plan.baseline, analysis.seeds, runs)
    k = max(1, len(plan.variants) - 1)
    family = [effect, *[paired_effect([], [])] * (k - 1)]
    verdict = judge(family, analysis.delta, analysis.alpha, stage_alpha(analysis.stage + 1))[0]
    if analysis.interim:
        verdict = pending(verdict)
    return verdict, f"judged as one of the {k} variants validation chose from"


def _named(technique: str, row: Row, plan: Plan) -> str:
    """The technique, which comparison judged it, everything that comparison changes (the
    strength too: dropout at rate 0.3 is not dropout at 0.1), its effect and interval."""
    e, v = row.test.effect, row.test
    where = "on its own" if row.comparison.design == ADD_ONE_IN else "in the best configuration"
    changes = describe_changes(*_sides(plan, row))
    text = f"{technique} {where} ({changes}) {points(e.mean)} {interval_points(v.low, v.high)}"
    if v.label == INCONCLUSIVE and e.n >= 2:
        text += f", {seeds_to_settle_text(v)}"
    if touches_zero(v):
        text += f" ({TOUCHES_ZERO})"
    return text


def _early_stops(
    row: Row, plan: Plan, runs: Mapping[tuple[str, int], Mapping[str, Any]], seeds: Sequence[int]
) -> str:
    """For a comparison that switches early stopping on: in how many of its runs it acted.

    It acts by stopping a run before its budget, and, restoring the best weights, by ending a
    run on an earlier epoch's weights (Keras restores them at the end of every fit, stopped or
    not). A verdict of no effect on a technique that never acted says nothing of it.
    """
    without, with_ = _sides(plan, row)
    if with_.get("early_stopping") != "on" or without.get("early_stopping") == "on":
        return ""
    done = [runs[row.comparison.with_, s] for s in seeds if (row.comparison.with_, s) in runs]
    if not done:
        return ""
    stopped = sum(r.get("stopped_by") == "early_stopping" for r in done)
    text = f" (early stopping stopped {stopped} of its {len(done)} runs early"
    if with_.get("restore_best_weights"):
        delta = float(with_.get("min_delta") or 0.0)
        earlier = sum(_ends_before_best(r.get("curve_val_loss"), delta) for r in done)
        text += f" and ended {earlier} on an earlier epoch's weights"
        acted = stopped or earlier
    else:
        acted = stopped
    return text + (")" if acted else ": it never acted here)")


def _ends_before_best(curve: Sequence[float | None] | None, min_delta: float) -> bool:
    """Whether early stopping, restoring its best weights, ends a run on an earlier epoch's:
    its last improvement of `val_loss` by more than `min_delta` (Keras's rule) is not the
    run's last epoch."""
    if not curve:
        return False
    best, best_epoch = math.inf, None
    for epoch, value in enumerate(curve):
        if value is not None and value < best - min_delta:
            best, best_epoch = value, epoch
    return best_epoch is not None and best_epoch < len(curve) - 1


def _percent(level: float) -> str:
    """A confidence level as a percentage, never rounded up to a level it does not reach:
    97.5%, 99.7917%, as `confidence` writes the family-wise one."""
    return f"{100 * level:g}%"


def _main_changes(plan: Plan, row: Row) -> str:
    """What the comparison's `with` side changes, without the knobs that only come along."""
    return describe_changes(*_sides(plan, row), leading_only=True)


def _sides(plan: Plan, row: Row) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The params of the comparison's `without` and `with` sides."""
    c = row.comparison
    return plan.variant(c.without).params, plan.variant(c.with_).params


def _table(by_technique: Mapping[str, Mapping[str, Row]], plan: Plan) -> str:
    rows = []
    for technique, designs in by_technique.items():
        rows.append(
            [
                technique,
                *(_cell(designs.get(d), plan) for d in (ADD_ONE_IN, LEAVE_ONE_OUT)),
                _why(designs),
            ]
        )
    return table(
        [
            "technique",
            "on its own (add one in), test pp",
            "in the best configuration (leave one out), test pp",
            "why unknown",
        ],
        rows,
    )


def _cell(row: Row | None, plan: Plan) -> str:
    if row is None:
        return DASH
    v = row.test
    text = f"{WORDS[v.label]}: {points(v.effect.mean)} {interval_points(v.low, v.high)}"
    changes = _main_changes(plan, row)
    if "," in changes:
        text += f" ({changes})"
    if touches_zero(v):
        text += f" ({TOUCHES_ZERO})"
    return text


def _why(designs: Mapping[str, Row]) -> str:
    reasons = []
    for design, row in designs.items():
        if row.test.label == PENDING:
            reasons.append(f"{design}: runs missing")
        if row.test.label != INCONCLUSIVE:
            continue
        if row.test.effect.n < 2:
            reasons.append(f"{design}: fewer than 2 paired seeds")
        else:
            reasons.append(
                f"{design}: spread {points(row.test.effect.sd, False)} points, "
                f"{seeds_to_settle_text(row.test)}"
            )
    return "; ".join(reasons) or DASH

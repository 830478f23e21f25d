"""The report's Markdown, section by section, from the facts gathered in `hpo.report.writer`."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.ablation import describe_changes, searched_techniques
from hpo.evaluate import Config, Summary
from hpo.report.answer import answer
from hpo.report.drawing import figure_section
from hpo.report.markdown import (
    DASH,
    duration,
    number,
    params_text,
    pct,
    pp,
    share,
    table,
    units,
    value_text,
)
from hpo.report.ranking import CONFIDENCE, MIN_TRIALS, N_BOOTSTRAP
from hpo.secrets import mask
from hpo.summary import state_counts

if TYPE_CHECKING:
    from hpo.report.facts import Facts
    from hpo.spec import Spec

TOP_K = 10
SCREENING = "Screening: trials with and without each technique"
GENERATED = "Generated "
"""The one line that differs between two reports of an unchanged study."""


def render(facts: Facts, url: str) -> str:
    spec = facts.spec
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# Study report: {spec.name}",
        spec.description,
        f"{GENERATED}{now} by `hpo report {spec.name}` from {mask(url)}.",
        *answer(facts.ablation, facts.ablation_runs, spec.name, searched_techniques(spec)),
        *summary(facts),
        *ablation(facts),
        *ranking(facts),
        *expected_best(facts),
        *test_evaluation(facts),
        *experiments(facts),
        *importances(facts),
        *best_trials(facts),
        *figure_section(facts),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def note_markdown(facts: Facts) -> str:
    """The study's note in optuna-dashboard: the ranking and, if stored, the test results."""
    return "\n\n".join(
        [
            f"# {facts.spec.name}: technique ranking",
            *ablation(facts, with_figures=False)[1:],
            *ranking(facts),
            *test_evaluation(facts),
        ]
    )


def ablation(facts: Facts, with_figures: bool = True) -> list[str]:
    from hpo.report.ablation_section import section

    figures = facts.figures if with_figures else {}
    return section(facts.ablation, facts.ablation_runs, figures, facts.spec.name)


def expected_best(facts: Facts) -> list[str]:
    if "expected_best" not in facts.figures:
        return []
    rising = "rising" if facts.spec.direction == "maximize" else "falling"
    return [
        "## Was the budget enough?",
        *spending(facts),
        f"The expected best `{facts.spec.metric}` of a study of n trials, drawn from this "
        f"study's {facts.expected_best_n} finished trials with a score (complete trials at "
        "their score, pruned ones at their last report, which the pruner judged worse), with "
        f"± 1 sd: where the curve is still {rising} at the right, more trials would likely "
        "find better configurations.",
        f"![Expected best against trials]({facts.figures['expected_best']})",
    ]


def spending(facts: Facts) -> list[str]:
    """The anytime curve: what the search had found after each share of what it spent."""
    if "anytime" not in facts.figures:
        return []
    from hpo.report.facts import anytime

    spent = anytime(facts.trials, facts.spec.direction == "maximize")
    total, final = spent.epochs[-1], spent.best[-1]
    half = [b for e, b in zip(spent.epochs, spent.best, strict=True) if e <= total / 2]
    at_half = next((b for b in reversed(half) if b == b), math.nan)
    if at_half == at_half:
        gain, unit = abs(final - at_half), units(facts.spec.metric)
        verdict = (
            f"The second half of the epochs ({total - total / 2:.0f} of {total:.0f}) moved the "
            f"best `{facts.spec.metric}` by {unit.change(gain)} (from {at_half:.4f} to "
            f"{final:.4f})"
            + (
                ": still improving, so more budget would likely help."
                if gain >= unit.moving
                else ": the search had all but converged."
            )
        )
    else:
        verdict = "No trial had completed by half of the epochs spent."
    return [
        f"Best `{facts.spec.metric}` so far against what the search spent: epochs trained by "
        "all trials together (pruned and failed ones included) and wall time. " + verdict,
        f"![Best so far against epochs and time]({facts.figures['anytime']})",
        "",
    ]


def describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "one of " + ", ".join(value_text(c) for c in dist.choices)
    if isinstance(dist, FloatDistribution | IntDistribution):
        scale = ", log" if dist.log else ""
        step = f", step {value_text(dist.step)}" if dist.step not in (None, 1) else ""
        return f"[{value_text(dist.low)}, {value_text(dist.high)}]{scale}{step}"
    return str(dist)


def _args(args: dict) -> str:
    return f" ({params_text(dict(sorted(args.items())))})" if args else ""


def summary(facts: Facts) -> list[str]:
    from hpo.report.facts import epochs_account, stop_counts
    from hpo.report.probes import n_train_images

    spec, data = facts.spec, facts.spec.data
    split = f"validation fraction {data.validation_fraction:g}, split seed {data.seed}"
    sizes = f"{n_train_images(data):,} training images"
    if data.n_validation is not None:
        sizes += f", at most {data.n_validation:,} validation images"
    fixed = {k: v for k, v in spec.space.items() if not isinstance(v, BaseDistribution)}
    lines = [
        "## Summary",
        "\n".join(
            [
                f"- Objective: {spec.direction} `{spec.metric}` of the model each trial ends "
                f"with{_restored(spec)}",
                f"- Sampler: `{spec.sampler.type}`{_args(dict(spec.sampler.args))}, "
                f"seed {spec.seed}",
                f"- Pruner: `{spec.pruner.type}`{_args(dict(spec.pruner.args))}",
                f"- Data: {data.dataset}, {split}, {sizes}, scaling `{data.scaling}`",
                f"- Fixed: {params_text(fixed) if fixed else 'nothing'}",
            ]
        ),
        "### Search space",
        table(["param", "searched over"], [[k, describe(d)] for k, d in spec.searched().items()]),
        "### Trials",
        table(
            ["state", "trials"],
            [[k.lower(), v] for k, v in state_counts(facts.trials).items()],
            numeric=[1],
        ),
    ]
    stops = stop_counts(facts.trials)
    if stops:
        lines.append("Stopped by: " + ", ".join(f"{k} {v}" for k, v in stops.items()) + ".")
    account = epochs_account(facts.trials)
    budget = account["budget"][0]
    names = {
        "budget": "full budget (every trial to its epoch budget)",
        "run": "run",
        "pruner": "saved by pruning",
        "early_stopping": "saved by early stopping",
        "diverged": "cut short by divergence",
    }
    rows = [
        [names[k], f"{e:,}", share(e, budget), duration(s)]
        for k, (e, s) in account.items()
        if k in ("budget", "run") or e
    ]
    lines += [
        "### Training time and epochs",
        table(["", "epochs", "share of budget", "training time"], rows, numeric=[1, 2, 3]),
        "Times are the sums of measured epoch times; the unrun epochs are priced at each "
        "trial's own mean epoch time.",
    ]
    return lines


def ranking(facts: Facts) -> list[str]:
    if not facts.rows:
        return [f"## {SCREENING}", "The spec searches no technique switch or option."]
    unit = units(facts.spec.metric)
    scores = (
        "Scores are in %, differences in percentage points (pp)"
        if unit.accuracy
        else f"Scores and differences are in `{facts.spec.metric}`'s own units"
    )
    headers = [
        "rank",
        "technique",
        "against",
        "trials with",
        "trials without",
        f"best with{unit.score_unit}",
        f"best without{unit.score_unit}",
        f"median with{unit.score_unit}",
        f"median without{unit.score_unit}",
        f"Δ mean{unit.diff_unit}",
        f"{CONFIDENCE:.0%} interval{unit.diff_unit}",
        "screening hint",
    ]
    rows = [
        [
            i,
            r.technique.name,
            r.technique.baseline_label,
            _counts(r.n_with, r.n_pruned_with, r.n_failed_with),
            _counts(r.n_without, r.n_pruned_without, r.n_failed_without),
            unit.score(r.best_with),
            unit.score(r.best_without),
            unit.score(r.median_with),
            unit.score(r.median_without),
            unit.diff(r.difference),
            unit.interval(r.interval),
            r.verdict,
        ]
        for i, r in enumerate(facts.rows, start=1)
    ]
    better = "higher" if facts.spec.direction == "maximize" else "lower"
    return [
        f"## {SCREENING}",
        "Screening, not a verdict: this compares trials the sampler chose, so it can only "
        "suggest what the ablation above should test. "
        f"Each technique is compared on `{facts.spec.metric}` of complete trials that use it "
        f"against complete trials with the baseline choice (the switch off, or the lesson's "
        f"default option, else the first option searched). {scores}; Δ mean "
        f"is the mean with minus the mean without ({better} is better); the interval "
        f"is a percentile bootstrap over trials ({N_BOOTSTRAP:,} "
        f"resamples), drawn only with at least {MIN_TRIALS} complete trials on each side. "
        f"Rows that can conclude come first, each group ranked by effect. Trial counts are "
        f"complete trials, then pruned and failed ones, which have no final value.",
        table(headers, rows, numeric=[0, 5, 6, 7, 8, 9]),
        *(
            [
                (
                    "This study's trials are named experiments, "
                    if facts.only_experiments
                    else f"{len(facts.experiments)} of this study's trials are named experiments, "
                )
                + "so each group above mixes unrelated changes: "
                + (
                    "the ablation above compares each experiment with the baseline on paired seeds."
                    if facts.ablation is not None
                    else f"`hpo ablate {facts.spec.name}` compares each experiment with the "
                    "baseline on paired seeds."
                )
            ]
            if facts.experiments
            else []
        ),
        "Read with care: a sampler does not vary one technique at a time, so trials with and "
        "without a technique differ in other params too, and a technique whose bad trials "
        "were pruned or failed looks better than it is. Each interval is 95% on its own: "
        "about one technique in twenty without any effect still gets an interval that "
        "excludes zero. The test evaluation retrains chosen configurations on fresh seeds.",
    ]


def _restored(spec: Spec) -> str:
    """What the objective's model is where early stopping can be on."""
    if spec.space.get("early_stopping", "off") == "off":
        return ""
    text = " (early stopping's restored weights where it restores them"
    if spec.metric != "val_loss":
        text += (
            "; early stopping watches `val_loss`, so its best epoch can differ from the "
            f"`{spec.metric}` peak shown below"
        )
    return text + ")"


def _counts(n: int, pruned: int, failed: int) -> str:
    extra = [f"{k} {v}" for k, v in (("pruned", pruned), ("failed", failed)) if v]
    return f"{n}" + (f" (+ {', '.join(extra)})" if extra else "")


def _summary_cells(s: Summary | None, base: Summary | None) -> list[str]:
    if s is None:
        return [DASH] * 5
    spread = f"{pct(s.low)}, {pct(s.high)}"
    delta = pp(s.mean - base.mean) if base is not None else DASH
    return [pct(s.mean), pp(s.sd, sign=False), spread, delta, pct(s.val_mean)]


def test_evaluation(facts: Facts) -> list[str]:
    name = facts.spec.name
    head = "## Test evaluation"
    stored = [(c, facts.results.get(c.key)) for c in facts.configs]
    if not any(s for _, s in stored):
        return [
            head,
            f"Not run yet: `hpo report {name} --evaluate-test --seeds K` retrains the baseline "
            f"and each technique's best configuration ({len(facts.configs)} configurations) "
            "with K seeds on the training split and tests each run once.",
        ]
    base = facts.results.get(facts.baseline.key)
    metric, unit = facts.spec.metric, units(facts.spec.metric)
    # Ordered by validation, never by test: the test set only scores.
    order = sorted(
        stored, key=lambda cs: (cs[1] is None, -(cs[1].val_mean if cs[1] else 0), cs[0].label)
    )
    values = {t.number: t.value for t in facts.trials}
    rows = [
        [
            c.label,
            _trial(c),
            describe_changes(facts.baseline.params, c.params)
            if c.key != facts.baseline.key
            else "(the baseline)",
            s.n if s else 0,
            *_summary_cells(s, base),
            unit.score(values.get(c.trial) if c.trial is not None else None),
        ]
        for c, s in order
    ]
    return [
        head,
        "Each configuration was retrained from scratch on the training split with fresh seeds "
        "(by `--evaluate-test`, or as a run of the ablation when it trained the same params) "
        "and scored once on the test set, which no choice in the study "
        f"saw. Ordered by the retrained models' mean validation accuracy (the test column "
        f"only scores); Δ is against `{facts.baseline.label}`; sd is the sample standard "
        "deviation over seeds. Every score is of the model a run ends with, as in the study; "
        f"the trial's `{metric}` is one seed, so the two differ by seed noise (and by any "
        "change to the training code since the study ran)."
        + (
            f" Rows with 0 seeds have no retrained runs yet: `hpo report {name} "
            "--evaluate-test` trains them."
            if not all(s for _, s in stored)
            else ""
        ),
        table(
            [
                "configuration",
                "from trial",
                "what it changes from the baseline",
                "seeds",
                "test accuracy (%)",
                "sd (pp)",
                "min, max (%)",
                "Δ test (pp)",
                "val accuracy, retrained (%)",
                f"trial {metric}{unit.score_unit}",
            ],
            rows,
            numeric=[3, 4, 5, 6, 7, 8, 9],
        ),
    ]


def _trial(config: Config) -> str:
    return f"#{config.trial}" if config.trial is not None else "defaults"


def experiments(facts: Facts) -> list[str]:
    trials = facts.experiments
    if not trials:
        return []
    base = next((t for t in trials if t.user_attrs["experiment"] == "baseline"), trials[0])
    base_test = facts.results.get(facts.baseline.key)
    metric, unit = facts.spec.metric, units(facts.spec.metric)
    better = "higher" if facts.spec.direction == "maximize" else "lower"
    rows = []
    for t in trials:
        changes = {k: v for k, v in t.params.items() if base.params.get(k) != v}
        config = next((c for c in facts.configs if c.trial == t.number), None)
        s = facts.results.get(config.key) if config else None
        epochs = f"{t.user_attrs.get('n_epochs', DASH)} ({t.user_attrs.get('best_epoch', DASH)})"
        value = t.value if t.value is not None else float("nan")
        rows.append(
            [
                t.user_attrs["experiment"],
                f"#{t.number}",
                params_text(changes) if changes else "(reference)",
                unit.score(value),
                unit.diff(value - base.value) if base.value is not None else DASH,
                epochs,
                f"{pct(s.mean)} ± {pp(s.sd, sign=False)} ({s.n})" if s else DASH,
                pp(s.mean - base_test.mean) if s and base_test else DASH,
            ]
        )
    return [
        "## Experiments side by side",
        f"Each experiment changes what its `changes` column lists against "
        f"`{base.user_attrs['experiment']}`. "
        f"`{metric}` is the trial's one seed ({better} is better), test accuracy the mean ± sd "
        "over retrained seeds; accuracy in %, differences in points.",
        table(
            [
                "experiment",
                "trial",
                "changes",
                f"{metric}{unit.score_unit}",
                f"Δ {metric}{unit.diff_unit}",
                "epochs (peak)",
                "test accuracy (%)",
                "Δ test (pp)",
            ],
            rows,
            numeric=[3, 4, 6, 7],
        ),
    ]


def importances(facts: Facts) -> list[str]:
    if facts.only_experiments:
        return []  # named experiments, not a search: nothing to attribute a spread to
    head = [
        "## Parameter importances (screening)",
        f"Evaluator: Optuna's `{facts.evaluator}`. It measures how much of the spread of "
        "the good trials' scores each parameter explains, not whether a technique helps or "
        "by how much (that is the ablation's question); a switch (`dropout`) and its "
        "strength (`dropout_rate`) are scored apart, so they are listed together here.",
    ]
    if facts.importances is None:
        return [*head, f"No importances: {facts.importance_note}."]
    rows = [
        [technique_of(k), k, f"{v:.3f}"]
        for k, v in sorted(
            facts.importances.items(), key=lambda kv: (technique_order(kv[0], facts), kv[0])
        )
    ]
    lines = [*head, table(["technique", "param", "importance"], rows, numeric=[2])]
    if facts.importance_note:
        lines.append(f"Note: {facts.importance_note}.")
    if "importances" in facts.figures:
        lines.append(f"![Parameter importances]({facts.figures['importances']})")
    return lines


def technique_of(param: str) -> str:
    """The technique (switch or option) a param belongs to, or the param itself."""
    from hpo.ablation import TECHNIQUES, family

    for technique in TECHNIQUES:
        if param in family(technique):
            return technique
    return param


def technique_order(param: str, facts: Facts) -> float:
    """Techniques by their most important param, most important first."""
    assert facts.importances is not None
    group = technique_of(param)
    return -max(v for k, v in facts.importances.items() if technique_of(k) == group)


def best_trials(facts: Facts) -> list[str]:
    rows = []
    for i, t in enumerate(facts.complete[:TOP_K], start=1):
        attrs = t.user_attrs
        seconds = sum(float(s) for s in attrs.get("seconds_per_epoch", []))
        name = attrs.get("experiment", "")
        rows.append(
            [
                i,
                f"#{t.number}" + (f" {name}" if name else ""),
                number(t.value),
                f"{attrs.get('n_epochs', DASH)}/{attrs.get('epoch_budget', DASH)}",
                attrs.get("best_epoch", DASH),
                duration(seconds),
                attrs.get("stopped_by", DASH),
                params_text(dict(t.params)),
            ]
        )
    headers = ["rank", "trial", "value", "epochs", "best epoch", "time", "stopped by", "params"]
    return [
        f"## Best trials (top {len(rows)})",
        table(headers, rows, numeric=[0, 2, 4, 5]),
    ]

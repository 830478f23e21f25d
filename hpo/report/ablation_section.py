"""The report's ablation: verdicts ranked by effect, the headline number, their figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hpo.ablate import (
    INTERIM,
    Analysis,
    Row,
    Scores,
    ablation_name,
    confidence,
    seeds_to_settle_text,
    stage_text,
    validation_order,
    variant_scores,
)
from hpo.ablation import ADD_ONE_IN, DESIGNS, LEAVE_ONE_OUT
from hpo.report.markdown import DASH, table
from hpo.stats import ALPHA, INCONCLUSIVE, Verdict, stage_alpha

QUESTIONS = {
    LEAVE_ONE_OUT: "what each technique contributes to the best configuration: the best "
    "configuration against the same with that technique switched off (or reset to the "
    "baseline's setting)",
    ADD_ONE_IN: "what each technique does on its own: the baseline against the baseline with "
    "that technique switched on as the study found it best",
}


def points(value: float, sign: bool = True) -> str:
    """A fraction of accuracy as points with one decimal: 0.0123 -> +1.2, -0.0004 -> -0.0.

    The sign is the value's own, also where it rounds to zero: an interval's end just below
    zero reads "-0.0", not "+0.0". Exactly zero reads "+0.0"."""
    if not math.isfinite(value):
        return DASH
    if not sign:  # a score, or a spread: printed as it is, no "-0.0" for a rounded zero
        return f"{round(100 * value, 1) + 0.0:.1f}"
    return f"{'-' if value < 0 else '+'}{abs(round(100 * value, 1)):.1f}"


def interval_points(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return DASH
    return f"[{points(low)}, {points(high)}]"


def verdict_cell(v: Verdict) -> str:
    if v.label == INCONCLUSIVE and v.effect.n >= 2:
        return f"inconclusive: {seeds_to_settle_text(v)}"
    return v.label


def headline(analysis: Analysis, runs: Mapping[tuple[str, int], Mapping[str, Any]]) -> str:
    """The best configuration's test accuracy over the ablation's seeds."""
    plan = analysis.plan
    best = plan.best
    s = variant_scores(best, analysis.seeds, runs)
    b = variant_scores(plan.baseline, analysis.seeds, runs)
    return (
        f"**Headline: the study's best configuration (trial #{plan.best_trial}, `{best}`, "
        f"chosen on validation) scores {_scores_text(s)} test accuracy over {s.n} seeds; the "
        f"baseline scores {_scores_text(b)}.**"
    )


def _scores_text(s: Scores) -> str:
    if s.n < 2:
        return f"{points(s.mean, sign=False)}%"
    return (
        f"{points(s.mean, sign=False)}% (95% interval {points(s.low, False)}-"
        f"{points(s.high, False)}%, sd {points(s.sd, False)} points)"
    )


def section(
    analysis: Analysis | None,
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
    figures: Mapping[str, str],
    name: str,
) -> list[str]:
    """The report's lead section: the ablation, or how to run one."""
    head = "## Technique ranking: controlled ablation"
    if analysis is None:
        return [
            head,
            f"No ablation yet. `hpo ablate {name} --seeds 10` trains the baseline, the best "
            "configuration and one variant per technique with the same 10 seeds each and "
            "ranks every technique by its paired effect; the screening below is only a hint.",
        ]
    lines = [
        head,
        f"From `hpo ablate` (study `{ablation_name(name)}`): {analysis.n_done} of "
        f"{analysis.n_runs} runs, {len(analysis.seeds)} paired seeds. Seed s drives the "
        "initialization, the data order and the dropout masks of every variant alike; the "
        "train/validation split is the study's, the same for all. Each run is scored once, "
        "on the model it ends with (early stopping's restored weights where it restores "
        "them), on validation and on the test set; every choice was made on validation "
        "before. Effects are **test accuracy in points, with minus without (higher is "
        "better)**: the mean paired difference over seeds with its family-wise "
        f"{confidence(analysis)} t interval (Bonferroni: each comparison's at "
        f"1 - {100 * analysis.alpha:g}%/m, m the comparisons of its design, so all of a "
        f"design's intervals hold together {confidence(analysis)} of the time), P(better) "
        "the share of seeds where the variant with the technique scored higher, and sd the "
        f"seed-to-seed spread of the difference. This is {stage_text(analysis)}. Every "
        "verdict an ablation gives, over all its analyses, holds at a family-wise error of "
        f"{ALPHA:.0%} within each design (analysis k tests at {ALPHA:.0%}/2^k, so looking "
        "again after adding seeds cannot raise it): **no effect** when the interval lies within "
        f"±{100 * analysis.delta:.1f} points (any effect is smaller than that); else "
        "**helps** / **hurts** when the paired t-test rejects no difference after Holm's "
        "step-down correction (more powerful than the interval: it can reject where the "
        "interval still touches zero); otherwise **inconclusive**, with the seeds that "
        "would settle it at the observed spread (80% power, tested at the next analysis's "
        f"{100 * stage_alpha(analysis.stage + 1):g}%). Rows are in order of the "
        "validation effect; the test set orders and picks nothing.",
    ]
    if analysis.interim:
        lines.append(f"**Interim**: {INTERIM}; `hpo ablate {name}` runs them.")
    lines.append(headline(analysis, runs))
    for design in DESIGNS:
        rows = analysis.rows_of(design)
        if not rows:
            continue
        lines += [f"### {design.capitalize()}", f"Question: {QUESTIONS[design]}."]
        lines.append(_table(rows, confidence(analysis)))
    if "effects" in figures:
        lines.append(
            f"![Paired differences with family-wise {confidence(analysis)} intervals]"
            f"({figures['effects']})"
        )
    gaps = [d for d in DESIGNS if f"gap_{d}" in figures]
    if gaps:
        lines += [
            "### The overfitting gap",
            "What regularization is for: training accuracy (solid) against validation "
            "accuracy (dashed) over epochs, with each technique (blue) and without it (grey), "
            "mean over the ablation's seeds with the min-max band. A technique that "
            "regularizes narrows the gap; one that only slows learning lowers both lines. "
            "Training accuracy is Keras's average over each epoch's batches, with dropout "
            "active, so with dropout it can sit below validation accuracy.",
        ]
        lines += [f"![Overfitting gap, {d}]({figures[f'gap_{d}']})" for d in gaps]
    return lines


def _table(rows: Sequence[Row], level: str) -> str:
    body = [
        [
            r.comparison.technique,
            r.comparison.changes,
            points(r.val.effect.mean),
            interval_points(r.val.low, r.val.high),
            r.val.label,
            points(r.test.effect.mean),
            interval_points(r.test.low, r.test.high),
            points(r.test.effect.sd, sign=False),
            f"{r.test.effect.p_better:.2f}" if math.isfinite(r.test.effect.p_better) else DASH,
            _p(r.test.p_holm),
            r.test.effect.n,
            f"**{verdict_cell(r.test)}**",
        ]
        for r in sorted(rows, key=validation_order)
    ]
    headers = [
        "technique",
        "what it changes",
        "Δ val (pp)",
        f"val interval (family-wise {level})",
        "val verdict",
        "Δ test (pp)",
        f"interval (family-wise {level})",
        "sd (pp)",
        "P(better)",
        "p (Holm)",
        "seeds",
        "verdict (test)",
    ]
    return table(headers, body, numeric=[2, 5, 7, 8, 9, 10])


def _p(p: float) -> str:
    if not math.isfinite(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def draw_effects(analysis: Analysis, path: Path) -> Path:
    """Each comparison's mean paired difference on test accuracy with its family-wise
    interval, the one its verdict reads, in order of the validation effect."""
    from hpo.report.figures import plot_effects

    groups = []
    for design in DESIGNS:
        rows = sorted(analysis.rows_of(design), key=validation_order, reverse=True)
        if rows:
            groups.append(
                (
                    design,
                    [
                        (
                            r.comparison.technique,
                            100 * r.test.effect.mean,
                            100 * r.test.low,
                            100 * r.test.high,
                            r.test.label,
                        )
                        for r in rows
                    ],
                )
            )
    return plot_effects(groups, 100 * analysis.delta, path, confidence(analysis))


def draw_gaps(
    analysis: Analysis,
    runs: Mapping[tuple[str, int], Mapping[str, Any]],
    design: str,
    path: Path,
) -> Path | None:
    """The overfitting-gap figure of one design's comparisons, from the runs' curves."""
    import numpy as np

    from hpo.report.figures import plot_gaps

    def curves(key: str) -> dict[str, np.ndarray]:
        found = [runs[(key, s)] for s in analysis.seeds if (key, s) in runs]
        out = {}
        for metric in ("accuracy", "val_accuracy"):
            series = [r.get(f"curve_{metric}") or [] for r in found]
            width = max((len(c) for c in series), default=0)
            grid = np.full((max(1, len(series)), max(1, width)), np.nan)
            for i, c in enumerate(series):
                grid[i, : len(c)] = [np.nan if v is None else v for v in c]
            out[metric] = grid
        return out

    rows = sorted(analysis.rows_of(design), key=validation_order)
    panels = [
        (
            f"{r.comparison.technique} ({points(r.test.effect.mean)} pp, {r.test.label})",
            {"with": curves(r.comparison.with_), "without": curves(r.comparison.without)},
        )
        for r in rows
    ]
    drawn = any(
        np.isfinite(side["val_accuracy"]).any() for _, sides in panels for side in sides.values()
    )
    return plot_gaps(panels, path) if drawn else None

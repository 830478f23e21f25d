"""How often the ablation's verdicts are wrong, on techniques whose true effect is known.

    .venv/bin/python -m benchmarks.ranking_calibration [--replications 20] [--seeds 10]
        [--simulated 2000] [--simulated-seeds 10] [--skip-training]

Two measurements, both through the shipped code (`hpo.stats.judge`, `hpo.ablate.analyze`):

1. Trained: a synthetic-image study with two named experiments against its baseline, a
   technique with no effect (dropout at rate 0) and a harmful one (an L2 penalty of 1 on the
   first layer's kernel), ablated by `hpo ablate` with replications x seeds paired seeds. Each
   replication is a disjoint set of seeds, analysed on its own. Dropout at rate 0 trains
   bit for bit as the baseline: its differences are all zero, a check of that path only. The
   placebo has spread: the baseline's runs of the replication's first half of seeds against
   its runs of the second half, paired in order: independent runs of one configuration, so
   any verdict but "no effect" or "inconclusive" is a false alarm. (Pairing seed i with
   seed i+1 round the same set, as this did before, makes differences that sum to zero:
   that placebo could not fail.) Twenty replications see only a gross miscalibration: a
   true 10% false-alarm rate stays within "at most 1 of 20" 39% of the time.
2. Simulated: per-seed scores with a shared seed effect and known differences (four with no
   effect, one costing 3 points), many ablations, at each spread of a difference given
   (1.41 and 2 points by default; the lesson's own spreads are 0.5-4), each analysed as
   `hpo ablate` does: a first analysis, and where a comparison is inconclusive a second with
   three times the seeds, at their stages' levels (`hpo.stats.stage_alpha`). Reported: the
   rate at which no-effect techniques are called helps/hurts, at the first analysis and at
   either, and the power on the harmful one against the paired t-test's power at the first
   analysis's level over 5 (which Holm's procedure reaches at least).

Bounds: no-effect techniques are called helps or hurts in at most 5% of the ablations, over
both analyses; a harmful one is called hurts at least as often as the power computed for it.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

KNOWN = """
name = "known"
seed = 5
n_trials = 3

[data]
dataset = "synthetic"
n_samples = 600
n_classes = 4
image_size = 4
validation_fraction = 0.25

[sampler]
type = "random"

[pruner]
type = "none"

[params]
first_units = 16
units = 16
epochs = 3
batch_size = 50
learning_rate = 0.01
dropout_rate = 0.0
weight_decay_l2 = 1.0
dropout = { choices = ["off", "on"] }
weight_decay = { choices = ["off", "on"] }

[[enqueue]]
name = "baseline"

[[enqueue]]
name = "dropout_zero"
params = { dropout = "on" }

[[enqueue]]
name = "l2_one"
params = { weight_decay = "on" }
"""
WRONG = ("helps", "hurts")


def trained(n_replications: int, n_seeds: int) -> None:
    from scipy import stats

    from hpo.ablate import analyze, collect_runs, load_ablation, prepare_ablation
    from hpo.runner import run_study
    from hpo.spec import load_spec_text
    from hpo.stats import judge, paired_effect, stage_alpha
    from hpo.study import create_study

    folder = Path(tempfile.mkdtemp(prefix="calibration-"))
    url = f"sqlite:///{folder / 'studies.db'}"
    create_study(load_spec_text(KNOWN), url)
    run_study("known", url, None, echo=lambda _: None)
    began = time.monotonic()
    companion, plan, n_runs = prepare_ablation(
        "known", url, n_replications * n_seeds, designs=["add-one-in"]
    )
    run_study(companion.study_name, url, None, echo=lambda _: None)
    found = load_ablation("known", url)
    assert found is not None
    study, plan, seeds = found
    runs = collect_runs(study.get_trials(deepcopy=False))
    print(
        f"trained: {len(runs)}/{n_runs} runs of {len(plan.variants)} variants in "
        f"{time.monotonic() - began:.0f} s; {n_replications} replications x {n_seeds} seeds"
    )
    labels: dict[str, Counter[str]] = {}
    for r in range(n_replications):
        part = seeds[r * n_seeds : (r + 1) * n_seeds]
        for row in analyze(plan, part, runs).rows:
            labels.setdefault(row.comparison.technique, Counter())[row.test.label] += 1
        # Placebo: independent runs of the baseline, one half of the seeds against the other.
        half = len(part) // 2
        with_ = [runs[("baseline", s)]["test_accuracy"] for s in part[:half]]
        without = [runs[("baseline", s)]["test_accuracy"] for s in part[half : 2 * half]]
        [verdict] = judge([paired_effect(with_, without)], alpha=stage_alpha(1))
        labels.setdefault("placebo (independent runs)", Counter())[verdict.label] += 1
    for technique, counts in labels.items():
        wrong = sum(counts[w] for w in WRONG) if technique != "l2_one" else None
        line = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        if wrong is not None:
            # A first analysis tests at stage_alpha(1): above that only if a calibrated test
            # would show this many false alarms in fewer than 1% of runs of the benchmark
            # (one-sided binomial test).
            level = stage_alpha(1)
            chance = stats.binomtest(wrong, n_replications, level, alternative="greater").pvalue
            verdict = "ok" if chance >= 0.01 else f"ABOVE {level:.1%}"
            print(
                f"  {technique:<26} {line}: helps/hurts {wrong / n_replications:.0%} "
                f"(P(this many | {level:.1%}) {chance:.2f}) [{verdict}]"
            )
        else:
            rate = counts["hurts"] / n_replications
            verdict = "ok" if rate >= 0.95 else "BELOW 95%"
            print(f"  {technique:<26} {line}: hurts {rate:.0%} [{verdict}]")


def simulated(n_replications: int, n_seeds: int, sd: float) -> None:
    """An ablation's two analyses as `hpo ablate` makes them: the first at `n_seeds` seeds
    (level `stage_alpha(1)`), and, where a comparison is inconclusive, a second with three
    times the seeds, the first ones included (level `stage_alpha(2)`)."""
    from scipy import stats

    from hpo.stats import ALPHA, stage_alpha

    rng = np.random.default_rng(0)
    effects = [0.0, 0.0, 0.0, 0.0, -0.03]
    wrong = np.zeros(4)
    any_wrong = any_wrong_twice = hurts = hurts_twice = 0
    more = 3 * n_seeds
    for _ in range(n_replications):
        base = rng.normal(0.2, 0.02, more)
        sides = [base + e + rng.normal(0, sd, more) for e in effects]
        first = _labels(sides, base, n_seeds, 1)
        hits = np.isin(first[:4], WRONG)
        wrong += hits
        any_wrong += bool(hits.any())
        hurts += first[4] == "hurts"
        second = _labels(sides, base, more, 2) if "inconclusive" in first else first
        any_wrong_twice += bool(hits.any() or np.isin(second[:4], WRONG).any())
        hurts_twice += "hurts" in (first[4], second[4])
    rate = wrong.mean() / n_replications
    print(
        f"simulated: {n_replications} ablations, 4 no-effect techniques and one at -3.0 "
        f"points, sd of a difference {100 * sd:.2f} points; analysis 1 at {n_seeds} seeds "
        f"(level {stage_alpha(1):.2%}), analysis 2 at {more} where one is inconclusive "
        f"({stage_alpha(2):.2%})"
    )
    twice = any_wrong_twice / n_replications
    print(
        f"  no effect called helps/hurts: {rate:.1%} per technique, "
        f"{any_wrong / n_replications:.1%} of ablations call any at analysis 1; "
        f"{twice:.1%} at either analysis [{'ok' if twice <= ALPHA else 'ABOVE 5%'}] "
        f"(family-wise, nominal at most {ALPHA:.0%})"
    )
    found = hurts / n_replications
    level = stage_alpha(1) / len(effects)
    critical = stats.t.ppf(1 - level / 2, n_seeds - 1)
    power = float(stats.nct.cdf(-critical, n_seeds - 1, -0.03 * math.sqrt(n_seeds) / sd))
    # The count of "hurts" is binomial: allow three of its standard errors below the power.
    slack = 3 * math.sqrt(power * (1 - power) / n_replications)
    verdict = "ok" if found >= power - slack else "BELOW THE POWER"
    print(
        f"  harmful called hurts: {found:.1%} at analysis 1, the t-test's power at "
        f"{stage_alpha(1):.1%}/5 {power:.1%} [{verdict}]; "
        f"{hurts_twice / n_replications:.1%} by analysis 2"
    )


def _labels(sides: list[np.ndarray], base: np.ndarray, n: int, stage: int) -> list[str]:
    """The verdicts of analysis `stage` on the first `n` seeds."""
    from hpo.stats import judge, paired_effect, stage_alpha

    found = [paired_effect(side[:n], base[:n]) for side in sides]
    return [v.label for v in judge(found, alpha=stage_alpha(stage))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--simulated", type=int, default=2000, help="simulated replications")
    parser.add_argument(
        "--simulated-seeds", type=int, default=10, help="paired seeds per simulated replication"
    )
    parser.add_argument(
        "--spread",
        type=float,
        nargs="+",
        default=[0.02 / math.sqrt(2), 0.02],
        help="sd of a simulated difference (fractions of accuracy)",
    )
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sd in args.spread:
        simulated(args.simulated, args.simulated_seeds, sd)
    if not args.skip_training:
        trained(args.replications, args.seeds)


if __name__ == "__main__":
    main()

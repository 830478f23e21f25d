"""Paired comparisons over seeds: effects with t intervals, Holm's correction, verdicts.

A comparison holds one score per seed for a variant with a technique and for the same variant
without it, trained with the same seeds. Everything here works on the per-seed differences
(with minus without), in the score's own units (accuracy as a fraction; reports show points).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
"""Family-wise error rate of all the verdicts an ablation ever gives (per design and metric),
over every analysis of it: see `stage_alpha`."""
DELTA = 0.005
"""Default margin of "no effect": 0.5 accuracy points."""
POWER = 0.8
"""Power asked of the number of seeds that would settle an inconclusive comparison."""
MAX_SEEDS = 100_000
"""Beyond this many seeds, "seeds to settle" is not given."""
SAME = 1e-6
"""Differences of scores closer than this are equal. Keras gives scores as float32 (about 7
significant digits): two runs that both gain exactly one point differ by some 1e-8 after
rounding, and a tolerance under that would let rounding stand for a spread."""
QUANTILES = 2048
"""Points of the sample variance's distribution averaged over in `settle_power`."""

HELPS, HURTS, NO_EFFECT, INCONCLUSIVE = "helps", "hurts", "no effect", "inconclusive"
PENDING = "pending"
"""An ablation's label while runs of its analysis are missing: no verdict on part of the seeds."""


def stage_alpha(stage: int, alpha: float = ALPHA) -> float:
    """The error an ablation's analysis number `stage` (1, 2, ...) may spend: alpha / 2^stage.

    An inconclusive comparison asks for more seeds, and analysing the same comparisons again
    with them is a second look at the data: testing each look at the full alpha would call
    a technique with no effect "helps" or "hurts" more often than alpha over the two (about
    2.6 times as often, simulated). Each analysis spends half of what the earlier ones left,
    so all of them together, however many, stay within alpha (a Bonferroni bound over the
    analyses, valid whatever their dependence): the first tests at 2.5%, the second at
    1.25%, and so on.
    """
    if stage < 1:
        raise ValueError(f"an ablation's analyses are numbered from 1, got {stage}")
    return alpha / 2**stage


@dataclass(frozen=True)
class Effect:
    """What the paired differences of one comparison say.

    Attributes:
        n: seeds with a score on both sides.
        mean: mean difference, with minus without (> 0: the technique scores higher).
        sd: standard deviation of the differences.
        low, high: the 95% t interval of the mean difference.
        p: two-sided p-value of the paired t-test (mean difference 0).
        p_better: share of seeds where the variant with the technique scores higher (ties
            count half).
    """

    n: int
    mean: float
    sd: float
    low: float
    high: float
    p: float
    p_better: float


@dataclass(frozen=True)
class Verdict:
    """An effect judged within its family of comparisons.

    Attributes:
        effect: the uncorrected effect.
        p_holm: `effect.p` after Holm's step-down correction over the family.
        low, high: the interval at level 1 - alpha/m (Bonferroni, m comparisons), used to
            call "no effect": the whole interval must lie inside +-delta.
        label: helps, hurts, no effect or inconclusive.
        delta: the margin of "no effect".
        level: alpha/m, the level of each comparison's interval and test.
        settle_level: the level `n_seeds_needed` plans for: the next analysis's alpha/m
            where the seeds would be added to these (`stage_alpha`), else `level`.
    """

    effect: Effect
    p_holm: float
    low: float
    high: float
    label: str
    delta: float
    level: float
    settle_level: float

    @functools.cached_property
    def n_seeds_needed(self) -> int | None:
        """For an inconclusive comparison with two seeds or more, the seeds in all that would
        settle it with 80% power at the observed spread, tested at `settle_level`; None
        otherwise. Computed when asked (tens of milliseconds): a family judged only for its
        labels does not pay it."""
        if self.label != INCONCLUSIVE or self.effect.n < 2:
            return None
        return seeds_to_settle(self.effect, self.delta, self.settle_level)


def paired_effect(with_: Sequence[float], without: Sequence[float]) -> Effect:
    """The effect of a technique from scores paired by seed (same order on both sides)."""
    a = np.asarray(with_, dtype=float)
    b = np.asarray(without, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must have one shape, got {a.shape} and {b.shape}")
    d = a - b
    n = len(d)
    if n == 0:
        return Effect(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = float(d.mean())
    p_better = float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    if n < 2:
        return Effect(n, mean, math.nan, math.nan, math.nan, math.nan, p_better)
    if np.allclose(d, d[0], rtol=0.0, atol=SAME):
        return _without_spread(n, mean, p_better)
    low, high, p = t_interval(d, 1 - ALPHA)
    return Effect(n, mean, float(d.std(ddof=1)), low, high, p, p_better)


def _without_spread(n: int, mean: float, p_better: float) -> Effect:
    """Differences that are all equal, where the t-test is undefined.

    All zero (a technique that changes nothing, bit for bit): no effect, exactly. All the
    same non-zero shift: the exact sign-flip test, whose p-value is the chance that n
    differences of a technique with no effect all share one sign, 2^(1-n) (0.5 with two
    seeds); no interval, since no spread was seen to size one.
    """
    if abs(mean) <= SAME:
        return Effect(n, 0.0, 0.0, 0.0, 0.0, 1.0, p_better)
    return Effect(n, mean, 0.0, math.nan, math.nan, min(1.0, 2.0 ** (1 - n)), p_better)


def t_interval(d: np.ndarray, level: float) -> tuple[float, float, float]:
    """The t interval of mean(d) at `level`, and the two-sided p-value of mean 0.

    Differences that are all equal have no spread: the interval is that value and the
    p-value 1 where it is 0, else 0 (scipy's test is undefined there).
    """
    if np.allclose(d, d[0], rtol=0.0, atol=SAME):
        value = float(d.mean())
        return value, value, 1.0 if abs(value) <= SAME else 0.0
    from scipy import stats

    result = stats.ttest_1samp(d, 0.0)
    ci = result.confidence_interval(confidence_level=level)
    return float(ci.low), float(ci.high), float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values.

    A NaN (a comparison with too few seeds to test yet) stays NaN but counts in the family,
    as the largest p-value would: verdicts on the others do not loosen while it is missing.
    """
    indexed = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    m = len(pvalues)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def judge(
    effects: Sequence[Effect],
    delta: float = DELTA,
    alpha: float = ALPHA,
    settle_alpha: float | None = None,
) -> list[Verdict]:
    """Verdicts for a family of comparisons judged together.

    "no effect": the Bonferroni interval (level 1 - alpha/m) lies inside +-`delta`, so any
    effect is smaller than the margin (even one that is consistently not zero). Else
    "helps"/"hurts": Holm-adjusted p below `alpha`, by the sign of the mean. Otherwise
    "inconclusive", with the seeds that would settle it in a family tested at `settle_alpha`
    (default `alpha`: a fresh family; an ablation's next analysis passes its own).
    """
    adjusted = holm([e.p for e in effects])
    m = max(1, len(effects))  # every comparison of the family, tested yet or not
    settle = (alpha if settle_alpha is None else settle_alpha) / m
    verdicts = []
    for effect, p_holm in zip(effects, adjusted, strict=True):
        if effect.n < 2:
            verdicts.append(
                Verdict(effect, p_holm, math.nan, math.nan, INCONCLUSIVE, delta, alpha / m, settle)
            )
            continue
        d_low, d_high = _corrected(effect, 1 - alpha / m)
        if effect.sd == 0 and p_holm < alpha:
            # One shift on every seed, which Holm's sign-flip test says is no chance (so does
            # Bonferroni's, where it does): the shift itself is the effect, and inside the
            # margin it is "no effect".
            d_low = d_high = effect.mean
        if -delta < d_low and d_high < delta:
            label = NO_EFFECT
        elif p_holm < alpha and effect.mean != 0:
            label = HELPS if effect.mean > 0 else HURTS
        else:
            label = INCONCLUSIVE
        verdicts.append(Verdict(effect, p_holm, d_low, d_high, label, delta, alpha / m, settle))
    return verdicts


def _corrected(effect: Effect, level: float) -> tuple[float, float]:
    if math.isnan(effect.sd):
        return effect.low, effect.high  # no interval at all
    if effect.sd == 0:
        # No spread. All zero: exactly no difference. One shift on every seed: no interval
        # here; `judge` takes the shift itself once Holm's sign-flip p rules out chance.
        return (0.0, 0.0) if effect.mean == 0 else (math.nan, math.nan)
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, effect.n - 1)) * effect.sd / math.sqrt(effect.n)
    return effect.mean - half, effect.mean + half


def seeds_to_settle(effect: Effect, delta: float, alpha: float) -> int | None:
    """Seeds in all for the comparison to reach a verdict with probability `POWER`, if its
    mean difference and spread are what was observed; None where they are not numbers or
    past MAX_SEEDS.

    A verdict is either conclusion: an effect (the paired t-test at level `alpha` rejects a
    zero mean) or "no effect" (the interval at level 1 - `alpha` lies inside +-`delta`). The
    chance that n seeds reach one of them is computed exactly (`settle_power`), so a mean
    between the two, which either conclusion may settle, is not charged for both. Differences
    without spread are settled by the sign-flip test, which needs 2^(1-n) < alpha.
    """
    size = abs(effect.mean)
    if not (math.isfinite(size) and math.isfinite(effect.sd)):
        return None
    least = max(effect.n + 1, 2)
    if effect.sd == 0:
        return max(least, math.floor(1 + math.log2(1 / alpha)) + 1)
    return _least_n(lambda n: settle_power(n, size, effect.sd, delta, alpha), least)


def settle_power(n: int, mean: float, sd: float, delta: float, alpha: float) -> float:
    """The chance that n paired seeds whose differences are normal with `mean` and `sd` give
    a verdict at level `alpha`: |mean difference| above the t-test's threshold, or the whole
    interval inside +-`delta`.

    Given the sample sd s, the test rejects where |x| > a = t s / sqrt(n) (t the t quantile
    at 1 - alpha/2) and "no effect" holds where |x| < delta - a; the mean x is normal,
    independent of s. So the chance of neither is P(max(delta - a, 0) <= |x| <= a), averaged
    over s: s^2 (n-1) / sd^2 is chi-squared with n - 1 degrees of freedom, taken at
    QUANTILES evenly spaced quantiles (the midpoint rule on its distribution: the same seed
    counts as adaptive quadrature at eight settings; tests/test_stats.py checks it against
    simulation to 0.025).
    """
    from scipy import special, stats

    df = n - 1
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    se = sd / math.sqrt(n)
    v = special.chdtri(df, (np.arange(QUANTILES) + 0.5) / QUANTILES)
    a = critical * se * np.sqrt(v / df)
    b = np.maximum(delta - a, 0.0)
    between = special.ndtr((a - mean) / se) - special.ndtr((b - mean) / se)
    between += special.ndtr((-b - mean) / se) - special.ndtr((-a - mean) / se)
    return 1.0 - float(np.mean(np.where(b < a, between, 0.0)))


def _least_n(power: Callable[[int], float], least: int) -> int | None:
    """The least n >= `least` with power(n) >= POWER (power rising with n), or None past
    MAX_SEEDS: doubling, then halving the bracket."""
    if least > MAX_SEEDS:
        return None
    low, high = least - 1, least
    while power(high) < POWER:
        if high >= MAX_SEEDS:
            return None
        low, high = high, min(2 * high, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if power(middle) >= POWER else (middle, high)
    return high


def expected_best(
    values: Sequence[float], n_max: int, maximize: bool = True, n_points: int = 200
) -> tuple[list[int], list[float], list[float]]:
    """Expected best of n trials drawn from a study's scores, with its sd, for n = 1..n_max.

    The "show your work" estimate: the best of n draws with replacement from the empirical
    distribution of the scores, whose k-th smallest value is the best with probability
    (k/N)^n - ((k-1)/N)^n. Above `n_points` values of n, it is given at `n_points` of them
    spaced evenly on a log scale (1 and n_max included), enough to draw the curve.
    """
    v = np.sort(np.asarray(values, dtype=float))
    if not maximize:
        v = v[::-1]
    n_values = len(v)
    if n_values == 0 or n_max < 1:
        return [], [], []
    if n_max <= n_points:
        ns = np.arange(1, n_max + 1)
    else:
        ns = np.unique(np.geomspace(1, n_max, n_points).round().astype(int))
    # P(best of n <= the k-th smallest) = (k/N)^n for k = 0..N; its steps are the weights.
    cdf = (np.arange(n_values + 1) / n_values)[None, :] ** ns[:, None]
    weights = np.diff(cdf, axis=1)
    means = weights @ v
    variances = np.maximum(0.0, weights @ v**2 - means**2)
    return ns.tolist(), means.tolist(), np.sqrt(variances).tolist()

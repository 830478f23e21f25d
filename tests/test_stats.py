"""Paired statistics: known values, and known answers over many simulated replications."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hpo.stats import (
    ALPHA,
    DELTA,
    HELPS,
    HURTS,
    INCONCLUSIVE,
    NO_EFFECT,
    expected_best,
    holm,
    judge,
    paired_effect,
    seeds_to_settle,
    settle_power,
    stage_alpha,
)


def test_holm_matches_the_textbook_step_down() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, then max(0.06, 0.04*1) = 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # A comparison not testable yet still counts in the family, as the largest p-value.
    assert holm([0.5, math.nan]) == [1.0, pytest.approx(math.nan, nan_ok=True)]
    assert holm([0.01, math.nan, math.nan]) == [
        0.03,
        pytest.approx(math.nan, nan_ok=True),
        pytest.approx(math.nan, nan_ok=True),
    ]


def test_paired_effect_is_the_t_interval_of_the_differences() -> None:
    with_ = [0.22, 0.21, 0.25, 0.20, 0.23]
    without = [0.20, 0.20, 0.22, 0.20, 0.21]
    e = paired_effect(with_, without)
    d = np.subtract(with_, without)
    assert e.n == 5 and e.mean == pytest.approx(d.mean())
    half = 2.7764451 * d.std(ddof=1) / math.sqrt(5)  # t(0.975, 4)
    assert (e.low, e.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert e.p_better == pytest.approx((4 + 0.5) / 5)  # one tie counts half
    assert 0 < e.p < 0.05


def test_identical_runs_have_no_spread_and_no_effect() -> None:
    e = paired_effect([0.2, 0.3, 0.25], [0.2, 0.3, 0.25])
    assert (e.mean, e.sd, e.low, e.high, e.p) == (0.0, 0.0, 0.0, 0.0, 1.0)
    [v] = judge([e])
    assert v.label == NO_EFFECT


def test_an_equal_shift_on_two_seeds_is_no_evidence_yet() -> None:
    # Two equal differences have no spread: the t-test is undefined, and the sign-flip test
    # gives p = 2^(1-2) = 0.5. Neither "helps" nor a zero-width "no effect".
    for shift in (0.01, 0.001):
        e = paired_effect([0.2 + shift, 0.3 + shift], [0.2, 0.3])
        assert e.p == 0.5 and math.isnan(e.low) and math.isnan(e.high)
        [v] = judge([e])
        assert v.label == INCONCLUSIVE and v.n_seeds_needed == 6  # 2^-5 < 0.05 <= 2^-4


def test_an_equal_shift_on_six_seeds_is_an_effect_by_the_sign_flip_test() -> None:
    without = np.linspace(0.2, 0.3, 6)
    [v] = judge([paired_effect(without + 0.01, without)])
    assert v.label == HELPS and v.p_holm == pytest.approx(2.0**-5)


def test_an_equal_shift_in_float32_scores_is_still_an_equal_shift() -> None:
    # Keras scores are float32: a gain of exactly 100 of 10,000 test images on three seeds
    # differs by rounding (about 1e-8) from seed to seed. That is no spread: the sign-flip
    # test's 2^(1-3) = 0.25, not a t-test on rounding that calls it "helps".
    correct = np.array([3160, 3020, 2890])
    with_ = [float(np.float32(k + 100) / np.float32(10_000)) for k in correct]
    without = [float(np.float32(k) / np.float32(10_000)) for k in correct]
    d = np.subtract(with_, without)
    assert np.ptp(d) > 1e-9  # rounding does leave a spread in float64
    e = paired_effect(with_, without)
    assert e.sd == 0.0 and e.p == 0.25
    [v] = judge([e])
    assert v.label == INCONCLUSIVE
    nothing = paired_effect(without, [w + 1e-8 for w in without])
    assert nothing.p == 1.0 and judge([nothing])[0].label == NO_EFFECT


def test_an_effect_inside_the_margin_is_no_effect_even_when_consistent() -> None:
    [v] = judge([paired_effect([0.202, 0.3021, 0.2519], [0.2, 0.3, 0.25])])
    assert v.p_holm < 0.01 and v.label == NO_EFFECT


def test_a_wide_interval_is_inconclusive_with_the_seeds_to_settle_it() -> None:
    rng = np.random.default_rng(0)
    without = rng.normal(0.2, 0.02, 5)
    e = paired_effect(without + 0.004 + rng.normal(0, 0.02, 5), without)
    [v] = judge([e])
    assert v.label == INCONCLUSIVE
    assert v.n_seeds_needed is not None and v.n_seeds_needed > 5
    assert v.n_seeds_needed == seeds_to_settle(e, 0.005, 0.05)


def test_the_seeds_to_settle_an_effect_find_it_four_times_in_five() -> None:
    # A 1-point effect with 1 point of spread in the differences: the normal approximation
    # asks for 8 seeds, where the t-test finds the effect about 69% of the time.
    e = paired_effect([0.21, 0.20, 0.22], [0.20, 0.20, 0.20])
    e = type(e)(3, 0.01, 0.01, e.low, e.high, e.p, e.p_better)
    n = seeds_to_settle(e, 0.005, 0.05)
    assert n == 10
    rng = np.random.default_rng(4)

    def found(n_seeds: int) -> float:
        from scipy import stats

        d = rng.normal(0.01, 0.01, (4000, n_seeds))
        return float((stats.ttest_1samp(d, 0.0, axis=1).pvalue < 0.05).mean())

    assert found(n) >= 0.78
    assert found(8) < 0.75


def settled_share(mean: float, sd: float, n_seeds: int, m: int, seed: int) -> float:
    """Of 4,000 simulated comparisons, the share that reach a verdict at level ALPHA/m: an
    effect (the t-test rejects) or no effect (the interval inside the margin)."""
    from scipy import stats

    d = np.random.default_rng(seed).normal(mean, sd, (4000, n_seeds))
    centre = d.mean(axis=1)
    half = stats.t.ppf(1 - ALPHA / m / 2, n_seeds - 1) * d.std(axis=1, ddof=1)
    half /= math.sqrt(n_seeds)
    no_effect = (centre - half > -DELTA) & (centre + half < DELTA)
    return float((no_effect | (np.abs(centre) > half)).mean())


@pytest.mark.parametrize(
    ("mean", "sd", "m"),
    [(0.0, 0.01, 1), (0.0, 0.005, 1), (0.0, 0.01, 8), (0.002, 0.01, 1), (0.004, 0.01, 1)],
)
def test_the_seeds_to_settle_reach_a_verdict_four_times_in_five(
    mean: float, sd: float, m: int
) -> None:
    # At mean 0 only "no effect" can settle it, which needs both ends of the interval inside
    # the margin: powering one end asked for 34 seeds at 1 point of spread, which settle it
    # about 61% of the time. Between the margin and zero either verdict may come, and the
    # count is for the first of them.
    e = paired_effect([0.21, 0.20, 0.22], [0.20, 0.20, 0.20])
    e = type(e)(3, mean, sd, e.low, e.high, e.p, e.p_better)
    n = seeds_to_settle(e, DELTA, ALPHA / m)
    assert n is not None
    assert settle_power(n, mean, sd, DELTA, ALPHA / m) >= 0.8
    assert settled_share(mean, sd, n, m, seed=5) >= 0.77
    assert settled_share(mean, sd, int(0.8 * n), m, seed=6) < 0.75
    for n_seeds in (n, int(0.8 * n)):  # the formula against the simulation
        assert settle_power(n_seeds, mean, sd, DELTA, ALPHA / m) == pytest.approx(
            settled_share(mean, sd, n_seeds, m, seed=7), abs=0.025
        )


def test_an_effect_on_the_margin_is_rarely_called_no_effect() -> None:
    # Eight comparisons whose true effect is exactly the margin: "no effect" is a false
    # claim for each. The interval at 1 - alpha/8 lies inside +-delta in about alpha/16 of
    # them (0.3%); without the correction it would be 2.5%, with a 90% interval 5%.
    rng = np.random.default_rng(6)
    calls = []
    for _ in range(300):
        base = rng.normal(0.2, 0.02, 10)
        # 0.2 points of spread: narrow enough that a 10-seed interval can fit the margin
        found = [paired_effect(base + DELTA + rng.normal(0, 0.002, 10), base) for _ in range(8)]
        calls += [v.label == NO_EFFECT for v in judge(found)]
    # Seen: 0.29% of 2,400; with the level of one comparison (alpha = 0.4 for eight) 2.2%,
    # with a 90% interval 4.6%.
    assert np.mean(calls) <= 0.01
    # And the rule does say "no effect" where it is true: the same spread, no effect at all.
    base = rng.normal(0.2, 0.02, 10)
    found = [paired_effect(base + rng.normal(0, 0.002, 10), base) for _ in range(8)]
    assert [v.label for v in judge(found)] == [NO_EFFECT] * 8


def test_a_consistent_shift_inside_the_margin_is_no_effect() -> None:
    # +0.01 points on every one of ten seeds: not chance (the sign-flip test), and too small to
    # matter. It was called "helps", while the same shift with a little spread was "no effect".
    without = np.linspace(0.2, 0.3, 10)
    [v] = judge([paired_effect(without + 0.0001, without)])
    assert v.label == NO_EFFECT and (v.low, v.high) == pytest.approx((0.0001, 0.0001))
    jitter = np.random.default_rng(7).normal(0, 0.0001, 10)
    [v] = judge([paired_effect(without + 0.0001 + jitter, without)])
    assert v.label == NO_EFFECT


def test_a_consistent_shift_that_holm_establishes_is_judged_by_its_size() -> None:
    # Six equal shifts (sign-flip p 2^-5 = 0.031) beside a clear effect: Holm rejects at
    # 2 x 0.031 only for the clear one first, then at 1 x 0.031 for the shift; the Bonferroni
    # interval (at 1 - 0.05/2) still has none. The shift is tiny: "no effect", not "helps".
    without = np.linspace(0.2, 0.3, 6)
    clear = paired_effect(without + 0.05 + np.linspace(0, 0.001, 6), without)
    tiny = paired_effect(without + 0.0001, without)
    verdicts = judge([clear, tiny])
    assert verdicts[1].p_holm < ALPHA
    assert [v.label for v in verdicts] == [HELPS, NO_EFFECT]


def test_the_words_for_no_count_and_no_interval() -> None:
    from hpo.ablate import seeds_to_settle_text, verdict_text

    # 60 points of spread and no effect against a 0.5-point margin: past MAX_SEEDS seeds
    e = paired_effect([0.2, 0.5, 0.1, 0.6], [0.4, 0.2, 0.5, 0.1])
    [v] = judge([type(e)(4, 0.0, 0.6, -0.9, 0.9, 1.0, 0.5)])
    assert v.label == INCONCLUSIVE and v.n_seeds_needed is None
    assert seeds_to_settle_text(v) == "more than 100,000 seeds would be needed at this spread"
    shift = paired_effect([0.21, 0.31], [0.2, 0.3])  # no spread, too few seeds for a test
    [w] = judge([shift])
    assert "[no interval]" in verdict_text(w)
    assert "about 6 seeds in all (4 more) would settle it" in verdict_text(w)


def looked_twice(levels: tuple[float, float], n_reps: int, seed: int) -> float:
    """How often an ablation of three techniques with no effect calls any of them helps or
    hurts, analysed at 10 seeds and, where one is inconclusive, again at 30 (the same runs
    and 20 more), each analysis at its level in `levels`; 2 points of spread."""
    rng = np.random.default_rng(seed)
    wrong = 0
    for _ in range(n_reps):
        d = rng.normal(0.0, 0.02, (3, 30))
        first = judge([paired_effect(row[:10], np.zeros(10)) for row in d], alpha=levels[0])
        if any(v.label in (HELPS, HURTS) for v in first):
            wrong += 1
        elif any(v.label == INCONCLUSIVE for v in first):
            second = judge([paired_effect(row, np.zeros(30)) for row in d], alpha=levels[1])
            wrong += any(v.label in (HELPS, HURTS) for v in second)
    return wrong / n_reps


def test_adding_seeds_and_analysing_again_keeps_the_family_wise_error() -> None:
    # Seen: 4.0% over both analyses at the stages' levels (2.5% then 1.25%: at most 3.75%
    # by Bonferroni); 10.7-11.8% where each analysis tested at the full 5%, what hpo did
    # before: a second look at the same runs is a second chance of a false call.
    assert (stage_alpha(1), stage_alpha(2), stage_alpha(3)) == (ALPHA / 2, ALPHA / 4, ALPHA / 8)
    assert looked_twice((stage_alpha(1), stage_alpha(2)), 1000, seed=11) <= ALPHA
    assert looked_twice((ALPHA, ALPHA), 400, seed=11) > 2 * ALPHA
    with pytest.raises(ValueError, match="from 1"):
        stage_alpha(0)


def test_the_seeds_to_settle_are_planned_for_the_next_analysis() -> None:
    rng = np.random.default_rng(5)
    e = paired_effect(rng.normal(0.0, 0.02, 10), np.zeros(10))
    [first] = judge([e], alpha=stage_alpha(1), settle_alpha=stage_alpha(2))
    [fresh] = judge([e], alpha=stage_alpha(1))
    assert first.label == fresh.label == INCONCLUSIVE
    assert first.settle_level == stage_alpha(2) and fresh.settle_level == stage_alpha(1)
    assert first.n_seeds_needed == seeds_to_settle(e, DELTA, stage_alpha(2))
    assert first.n_seeds_needed > fresh.n_seeds_needed  # type: ignore[operator]


def test_no_seeds_to_settle_a_comparison_without_numbers() -> None:
    e = paired_effect([0.2, math.nan, 0.3], [0.2, 0.21, 0.3])
    assert seeds_to_settle(e, 0.005, 0.05) is None
    [v] = judge([e])
    assert v.label == INCONCLUSIVE and v.n_seeds_needed is None


def simulate(effects: list[float], n_seeds: int, sd: float, n_reps: int, seed: int) -> np.ndarray:
    """Verdicts of `n_reps` simulated ablations: per-seed scores with a shared seed effect."""
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n_reps):
        base = rng.normal(0.2, 0.02, n_seeds)  # the seed's own luck, shared by both sides
        found = [
            paired_effect(base + effect + rng.normal(0, sd, n_seeds), base) for effect in effects
        ]
        labels.append([v.label for v in judge(found)])
    return np.asarray(labels)


@pytest.mark.parametrize("sd", [0.02 / math.sqrt(2), 0.02])
def test_known_answers_no_effect_is_rarely_called_and_harm_is_found(sd: float) -> None:
    # Four techniques with no effect and one that costs 3 points, 10 seeds, a spread of 1.41
    # or 2 points in each difference (the lesson's own spreads are 0.5-4): over 400
    # replications a no-effect technique is called helps or hurts in at most 5% of them, and
    # the harmful one is found as often as the t-test's power at alpha/5 promises (Holm finds
    # it at least that often): 99.8% at 1.41 points, 89% at 2.
    from scipy import stats

    labels = simulate([0.0, 0.0, 0.0, 0.0, -0.03], n_seeds=10, sd=sd, n_reps=400, seed=1)
    null = labels[:, :4]
    false_calls = np.isin(null, [HELPS, HURTS]).mean()
    assert false_calls <= 0.05
    # Holm keeps the family-wise rate at 5%: at most one replication in twenty has any.
    assert np.isin(null, [HELPS, HURTS]).any(axis=1).mean() <= 0.05 + 0.02
    critical = stats.t.ppf(1 - ALPHA / 5 / 2, 9)
    power = stats.nct.cdf(-critical, 9, -0.03 * math.sqrt(10) / sd)
    assert (labels[:, 4] == HURTS).mean() >= power - 0.03


def test_disjoint_seed_sets_reach_the_same_verdicts_on_clear_effects() -> None:
    first = simulate([0.0, -0.05, 0.04], 10, 0.001, 20, seed=2)
    second = simulate([0.0, -0.05, 0.04], 10, 0.001, 20, seed=3)
    for labels in (first, second):
        assert set(labels[:, 0]) == {NO_EFFECT}
        assert set(labels[:, 1]) == {HURTS} and set(labels[:, 2]) == {HELPS}


def test_expected_best_of_n_rises_from_the_mean_to_the_maximum() -> None:
    values = [0.1, 0.2, 0.3, 0.4]
    n, mean, sd = expected_best(values, 50)
    assert n[0] == 1 and mean[0] == pytest.approx(0.25)
    assert sd[0] == pytest.approx(np.std(values))
    assert all(b >= a for a, b in itertools.pairwise(mean))
    assert mean[-1] == pytest.approx(0.4, abs=1e-5)
    # Best of two draws with replacement: P(max = 0.4) = 1 - (3/4)^2, and so on.
    exact = sum(v * ((k / 4) ** 2 - ((k - 1) / 4) ** 2) for k, v in enumerate(values, 1))
    assert mean[1] == pytest.approx(exact)
    _, low_is_better, _ = expected_best(values, 2, maximize=False)
    assert low_is_better[1] < 0.25


def test_expected_best_of_a_large_study_is_given_on_a_grid_of_n_with_exact_values() -> None:
    values = np.random.default_rng(0).normal(0.2, 0.02, size=3000)
    n, mean, sd = expected_best(values, 3000, n_points=50)
    assert n[0] == 1 and n[-1] == 3000 and len(n) <= 50
    assert all(b > a for a, b in itertools.pairwise(n))
    v, size = np.sort(values), len(values)
    for i in (0, 17, len(n) - 1):
        w = [(k / size) ** n[i] - ((k - 1) / size) ** n[i] for k in range(1, size + 1)]
        exact = float(np.dot(w, v))
        assert mean[i] == pytest.approx(exact, rel=1e-9)
        assert sd[i] == pytest.approx(math.sqrt(max(0.0, np.dot(w, v**2) - exact**2)), abs=1e-7)


def test_a_family_counts_its_comparisons_not_yet_tested() -> None:
    # Three comparisons, one with a single seed: every level is alpha/3, for the test, the
    # interval and the seeds that would settle the others at the next analysis.
    rng = np.random.default_rng(5)
    e = paired_effect(rng.normal(0.0, 0.02, 10), np.zeros(10))
    untested = paired_effect([0.2], [0.21])
    verdicts = judge([e, e, untested], alpha=stage_alpha(1), settle_alpha=stage_alpha(2))
    assert [v.level for v in verdicts] == [pytest.approx(stage_alpha(1) / 3)] * 3
    assert [v.settle_level for v in verdicts] == [pytest.approx(stage_alpha(2) / 3)] * 3
    first = verdicts[0]
    assert first.label == INCONCLUSIVE and verdicts[2].label == INCONCLUSIVE
    n = first.n_seeds_needed
    assert n is not None
    # The least count with 80% power at the next analysis's level shared by three.
    settle = stage_alpha(2) / 3
    assert settle_power(n, abs(e.mean), e.sd, DELTA, settle) >= 0.8
    assert settle_power(n - 1, abs(e.mean), e.sd, DELTA, settle) < 0.8
    [alone] = judge([e], alpha=stage_alpha(1), settle_alpha=stage_alpha(2))
    assert alone.n_seeds_needed is not None and alone.n_seeds_needed < n


def test_settle_power_matches_the_integral_it_approximates() -> None:
    """The chance of a verdict, integrated over the sample sd with adaptive quadrature."""
    from scipy import integrate, stats

    def exact(n: int, mean: float, sd: float, delta: float, alpha: float) -> float:
        t = stats.t.ppf(1 - alpha / 2, n - 1)
        se = sd / math.sqrt(n)

        def neither(q: float) -> float:  # q = s^2 (n-1) / sd^2, chi-squared
            a = t * sd * math.sqrt(q / (n - 1)) / math.sqrt(n)
            lo = max(delta - a, 0.0)
            if lo >= a:
                return 0.0
            inside = stats.norm.cdf(a, mean, se) - stats.norm.cdf(lo, mean, se)
            inside += stats.norm.cdf(-lo, mean, se) - stats.norm.cdf(-a, mean, se)
            return inside * stats.chi2.pdf(q, n - 1)

        return 1 - integrate.quad(neither, 0, np.inf, limit=200, epsabs=1e-9)[0]

    for n, mean, sd in [(5, 0.0, 0.01), (20, 0.0, 0.01), (12, 0.004, 0.01), (40, 0.002, 0.01)]:
        assert settle_power(n, mean, sd, DELTA, ALPHA) == pytest.approx(
            exact(n, mean, sd, DELTA, ALPHA), abs=1e-3
        )

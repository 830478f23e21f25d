"""The technique ranking on constructed studies whose answer is set by hand."""

from __future__ import annotations

import math

import optuna
import pytest

from hpo.report.ranking import (
    MIN_TRIALS,
    Row,
    Technique,
    bootstrap_interval,
    find_techniques,
    rank,
)
from hpo.spec import Spec, load_spec_text
from hpo.testing import add_fake_trials

SPEC = """
name = "fake"
seed = 1

[data]
dataset = "synthetic"
n_samples = 300
n_classes = 4
image_size = 4

[objective]
metric = "{metric}"

[sampler]
type = "random"

[params]
epochs = 6
learning_rate = {{ low = 1e-3, high = 1e-2, log = true }}
weight_decay = {{ choices = ["off", "on"] }}
dropout = {{ choices = ["off", "on"] }}
schedule = {{ choices = ["constant", "cosine"] }}
initializer = {{ choices = ["he_normal", "glorot_uniform", "random_normal"] }}
"""


def spec_for(metric: str = "val_accuracy") -> Spec:
    return load_spec_text(SPEC.format(metric=metric))


def ranked(spec: Spec, n_trials: int, effects: dict[str, float], **kw: object) -> list[Row]:
    study = optuna.create_study(direction=spec.direction)
    add_fake_trials(study, spec, n_trials, effects, **kw)  # type: ignore[arg-type]
    return rank(study.get_trials(), find_techniques(spec), spec.direction)


def by_name(rows: list[Row]) -> dict[str, Row]:
    return {r.technique.name: r for r in rows}


def test_techniques_follow_the_spec_against_the_lessons_defaults() -> None:
    found = find_techniques(spec_for())
    assert [t.name for t in found] == [
        "weight_decay",
        "dropout",
        "schedule=cosine",
        "initializer=he_normal",
        "initializer=random_normal",
    ]
    assert found[0] == Technique("weight_decay", "weight_decay", "on", "off")
    assert {t.baseline for t in found[3:]} == {"glorot_uniform"}


def test_technique_that_helps_by_a_known_margin_ranks_first() -> None:
    rows = ranked(spec_for(), 120, {"dropout": 0.05}, noise=0.01, seed=3)
    first = rows[0]
    assert first.technique.name == "dropout"
    assert first.verdict == "better with it"
    assert first.effect == pytest.approx(0.05, abs=0.01)
    assert first.interval is not None and 0.03 < first.interval[0] < 0.05 < first.interval[1]


def test_technique_without_effect_gets_an_interval_spanning_zero() -> None:
    rows = by_name(ranked(spec_for(), 120, {"dropout": 0.05}, noise=0.01, seed=3))
    for name in ("weight_decay", "schedule=cosine"):
        low, high = rows[name].interval  # type: ignore[misc]
        assert low < 0 < high, name
        assert rows[name].verdict.startswith("no clear difference")


def test_harmful_option_ranks_last_and_is_called_so() -> None:
    rows = ranked(spec_for(), 150, {"initializer=random_normal": -0.1}, noise=0.01, seed=4)
    assert rows[-1].technique.name == "initializer=random_normal"
    assert rows[-1].verdict == "worse with it"


def test_lower_is_better_for_val_loss() -> None:
    spec = spec_for("val_loss")
    rows = ranked(spec, 120, {"dropout": -0.05}, noise=0.01, seed=5)
    assert rows[0].technique.name == "dropout"
    assert rows[0].difference < 0 < rows[0].effect
    assert rows[0].verdict == "better with it"


def test_too_few_trials_say_so_and_rank_after_conclusions() -> None:
    rows = ranked(spec_for(), 12, {"dropout": 0.05}, seed=6)
    few = [r for r in rows if r.too_few]
    assert few, "12 trials over 3 initializers must leave some group below the minimum"
    for row in few:
        assert row.interval is None
        assert row.verdict.startswith("too few trials to conclude")
        assert f"needs {MIN_TRIALS} each" in row.verdict
    assert rows[-len(few) :] == few


def test_pruned_and_failed_trials_are_counted_apart() -> None:
    rows = by_name(ranked(spec_for(), 60, {}, pruned_share=0.3, n_failed=5, seed=7))
    row = rows["dropout"]
    assert row.n_pruned_with + row.n_pruned_without > 0
    assert row.n_with + row.n_without + row.n_pruned_with + row.n_pruned_without == 60
    assert row.n_failed_with + row.n_failed_without == 5


def test_bootstrap_interval_is_deterministic_and_centred() -> None:
    with_, without = [0.3, 0.31, 0.29, 0.3, 0.32], [0.2, 0.21, 0.19, 0.2, 0.22]
    first = bootstrap_interval(with_, without, seed=11)
    assert first == bootstrap_interval(with_, without, seed=11)
    assert first[0] <= 0.1 <= first[1] and first[0] > 0


def test_resampling_in_blocks_draws_what_one_block_draws() -> None:
    import numpy as np

    from hpo.report.ranking import RESAMPLE_BLOCK, _resampled_means

    values = np.random.default_rng(0).normal(size=251)  # odd: 32-bit draws end mid-word
    n = 2 * RESAMPLE_BLOCK + 37
    rng_one, rng_blocks = np.random.default_rng(5), np.random.default_rng(5)
    whole = values[rng_one.integers(0, len(values), size=(n, len(values)), dtype=np.int32)]
    blocks = _resampled_means(rng_blocks, values, n)
    np.testing.assert_array_equal(blocks, whole.mean(axis=1))
    # And the generator is left where one block leaves it.
    assert rng_one.integers(0, 1000) == rng_blocks.integers(0, 1000)


def test_a_trial_that_failed_before_its_params_counts_for_no_technique() -> None:
    from optuna.trial import TrialState, create_trial

    spec = spec_for()
    study = optuna.create_study(direction="maximize")
    add_fake_trials(study, spec, 20, {}, seed=8)
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "OOM"}))
    rows = by_name(rank(study.trials, find_techniques(spec), "maximize"))
    assert rows["dropout"].n_failed_with + rows["dropout"].n_failed_without == 0


@pytest.mark.parametrize("metric", ["val_accuracy", "val_loss"])
def test_a_techniques_best_trial_is_the_earliest_of_tied_best_ones(metric: str) -> None:
    spec = spec_for(metric)
    study = optuna.create_study(direction=spec.direction)
    add_fake_trials(study, spec, 40, {}, seed=3)
    trials = study.get_trials()
    best = (max if spec.direction == "maximize" else min)(t.value for t in trials)
    # Two more trials equal to the best, with every technique's setting of the earliest.
    tied = min((t for t in trials if t.value == best), key=lambda t: t.number)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(
            value=best, params=tied.params, distributions=tied.distributions,
            user_attrs=tied.user_attrs))  # fmt: skip
    rows = rank(study.get_trials(), find_techniques(spec), spec.direction)
    holding = [r for r in rows if r.best_with == best]
    assert holding  # the tied trials have some technique's setting
    assert all(r.best_trial == tied.number for r in holding), holding


def test_the_bootstrap_interval_is_a_95_percent_one() -> None:
    # For groups this large the bootstrap distribution of a difference of means is close to
    # normal: the 95% percentile interval spans about 1.96 standard errors each side (a 90%
    # one 1.64, a 99% one 2.58).
    import numpy as np

    rng = np.random.default_rng(2)
    with_, without = rng.normal(0.3, 0.05, 600), rng.normal(0.2, 0.05, 400)
    se = math.sqrt(with_.var() / len(with_) + without.var() / len(without))
    low, high = bootstrap_interval(list(with_), list(without), seed=4)
    centre = with_.mean() - without.mean()
    assert (centre - low) / se == pytest.approx(1.96, rel=0.06)
    assert (high - centre) / se == pytest.approx(1.96, rel=0.06)


def test_a_value_of_minus_zero_counts_as_zero() -> None:
    # -0.0 == 0.0, but it would print as "-0.0000": the ranking reads it as 0.0.
    spec = spec_for("val_loss")
    study = optuna.create_study(direction=spec.direction)
    for i in range(2 * MIN_TRIALS):
        params = {"weight_decay": "on" if i % 2 else "off"}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={"weight_decay": spec.searched()["weight_decay"]},
                value=-0.0 if i < 2 else 0.5 + i,
            )
        )
    row = by_name(rank(study.get_trials(), find_techniques(spec), spec.direction))["weight_decay"]
    assert row.best_with == 0.0 and row.best_without == 0.0
    assert math.copysign(1.0, row.best_with) == math.copysign(1.0, row.best_without) == 1.0

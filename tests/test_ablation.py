"""Planning an ablation from a finished study: which variants, which comparisons."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpo.ablation import (
    ADD_ONE_IN,
    LEAVE_ONE_OUT,
    Plan,
    describe_changes,
    family,
    plan_ablation,
    resolve,
    switch,
)
from hpo.errors import HpoError
from hpo.evaluate import default_params
from hpo.spec import Spec, load_spec, load_spec_text

from .conftest import REPO

SEARCH = """
name = "search"
seed = 1
[data]
dataset = "synthetic"
[params]
learning_rate = { low = 1e-4, high = 1e-1, log = true }
dropout = { choices = ["off", "on"] }
dropout_rate = { low = 0.1, high = 0.5 }
weight_decay = { choices = ["off", "on"] }
weight_decay_l2 = { low = 1e-6, high = 1e-2, log = true }
schedule = { choices = ["constant", "cosine"] }
"""


def trial(
    spec: Spec, value: float | None, state: TrialState = TrialState.COMPLETE, **params: Any
) -> optuna.trial.FrozenTrial:
    full = resolve({**default_params(spec), **params})
    return create_trial(state=state, value=value, user_attrs={"params": full})


def test_family_takes_the_knobs_that_depend_on_a_technique() -> None:
    assert family("dropout") == ["dropout", "dropout_rate"]
    assert family("early_stopping") == [
        "early_stopping",
        "patience",
        "min_delta",
        "restore_best_weights",
    ]
    assert set(family("optimizer")) >= {"optimizer", "learning_rate", "beta_1", "momentum"}


def test_switching_a_technique_off_drops_its_dependent_knobs() -> None:
    best = resolve({"dropout": "on", "dropout_rate": 0.3, "learning_rate": 0.01})
    off = switch(best, "dropout", resolve({}))
    assert off["dropout"] == "off" and "dropout_rate" not in off
    assert off["learning_rate"] == 0.01  # everything else is kept
    on = switch(resolve({}), "dropout", best)
    assert on["dropout_rate"] == 0.3
    assert describe_changes(off, best) == "dropout=on, dropout_rate=0.3"


def test_leave_one_out_and_add_one_in_from_a_search() -> None:
    spec = load_spec_text(SEARCH)
    trials = [
        trial(spec, 0.30, dropout="on", dropout_rate=0.2, schedule="cosine"),  # best
        trial(spec, 0.25, weight_decay="on", weight_decay_l2=1e-4),
        trial(spec, 0.22, dropout="on", dropout_rate=0.4),
        trial(spec, None, TrialState.PRUNED, weight_decay="on", weight_decay_l2=1e-2),
        trial(spec, 0.21),
    ]
    plan = plan_ablation(trials, spec)
    keys = [v.key for v in plan.variants]
    assert keys[:2] == ["baseline", "best"] and plan.best == "best"
    loo = {c.technique: c for c in plan.comparisons if c.design == LEAVE_ONE_OUT}
    assert set(loo) == {"dropout", "schedule"}  # the best uses no weight decay
    assert loo["dropout"].with_ == "best" and loo["dropout"].without == "best - dropout"
    add = {c.technique: c for c in plan.comparisons if c.design == ADD_ONE_IN}
    # Each switched on as its best trial has it: dropout 0.2 (from the best), L2 1e-4.
    # No trial changed the learning rate, so the optimizer has nothing to add.
    assert set(add) == {"dropout", "weight_decay", "schedule"}
    assert plan.variant(add["dropout"].with_).params["dropout_rate"] == 0.2
    assert plan.variant(add["weight_decay"].with_).params["weight_decay_l2"] == 1e-4
    assert all(c.without == "baseline" for c in add.values())
    assert Plan.from_json(plan.to_json()) == plan


def test_beside_experiments_every_searched_technique_still_gets_a_comparison() -> None:
    from hpo.ablation import experiment_params

    spec = load_spec_text(
        SEARCH + '[[enqueue]]\nname = "cosine"\nparams = { schedule = "cosine" }\n'
    )
    cosine = trial(spec, 0.22, schedule="cosine")
    cosine.user_attrs.update(
        experiment="cosine", params=experiment_params(spec, {"schedule": "cosine"})
    )
    trials = [
        trial(spec, 0.30, dropout="on", dropout_rate=0.2),  # best
        trial(spec, 0.25, weight_decay="on", weight_decay_l2=1e-4),
        cosine,
    ]
    plan = plan_ablation(trials, spec)
    add = {c.technique: c for c in plan.comparisons if c.design == ADD_ONE_IN}
    # The experiment covers the schedule and leaving dropout out of the best covers dropout;
    # weight decay, which neither changes, is switched on alone. No trial changed the
    # learning rate: the optimizer has nothing to add.
    assert set(add) == {"cosine", "weight_decay"}
    assert plan.variant(add["weight_decay"].with_).params["weight_decay_l2"] == 1e-4
    assert {c.technique for c in plan.comparisons if c.design == LEAVE_ONE_OUT} == {"dropout"}
    # Without leave-one-out, dropout is compared by adding it in.
    alone = plan_ablation(trials, spec, designs=[ADD_ONE_IN])
    assert {c.technique for c in alone.comparisons} == {"cosine", "weight_decay", "dropout"}


def test_a_penalty_added_in_goes_on_the_layers_it_was_found_on() -> None:
    spec = load_spec_text(SEARCH + 'regularized_layers = { choices = ["first", "all"] }\n')
    trials = [
        # The best: dropout and weight decay on all layers.
        trial(spec, 0.30, dropout="on", weight_decay="on", regularized_layers="all"),
        trial(spec, 0.20),
    ]
    plan = plan_ablation(trials, spec)
    variants = {c.design + c.technique: plan.variant(c.without) for c in plan.comparisons}
    # Left out of the best, weight decay leaves dropout on all layers...
    assert variants[LEAVE_ONE_OUT + "weight_decay"].params["regularized_layers"] == "all"
    # ...and added in alone, it goes on all layers, as the study had it.
    add = {
        c.technique: plan.variant(c.with_).params
        for c in plan.comparisons
        if c.design == ADD_ONE_IN
    }
    assert add["weight_decay"]["regularized_layers"] == "all"
    assert add["weight_decay"]["dropout"] == "off"
    assert plan.variant(plan.baseline).params["regularized_layers"] == "first"


def test_a_technique_the_search_always_pruned_is_added_in_as_its_best_pruned_trial_had_it() -> None:
    spec = load_spec_text(SEARCH)
    trials = [
        trial(spec, 0.30),  # best: nothing switched on
        trial(spec, 0.12, TrialState.PRUNED, dropout="on", dropout_rate=0.4),
        trial(spec, 0.18, TrialState.PRUNED, dropout="on", dropout_rate=0.2),
        trial(spec, 0.25, weight_decay="on", weight_decay_l2=1e-4),
        trial(spec, 0.28, TrialState.PRUNED, weight_decay="on", weight_decay_l2=1e-2),
        trial(spec, None, TrialState.PRUNED, schedule="cosine"),  # pruned before it reported
    ]
    plan = plan_ablation(trials, spec)
    add = {c.technique: plan.variant(c.with_).params for c in plan.comparisons}
    assert add["dropout"]["dropout_rate"] == 0.2
    assert add["weight_decay"]["weight_decay_l2"] == 1e-4  # a complete trial comes first
    assert "schedule" not in add


def test_a_leave_one_out_that_changes_only_a_dependent_knob_still_compares_its_technique() -> None:
    spec = load_spec_text(
        SEARCH
        + "beta_1 = { low = 0.8, high = 0.95 }\n"
        + '[[enqueue]]\nname = "cosine"\nparams = { schedule = "cosine" }\n'
    )
    trials = [
        trial(spec, 0.30, beta_1=0.85),
        trial(spec, 0.25, learning_rate=0.01),
        trial(spec, 0.20, schedule="cosine"),
    ]
    plan = plan_ablation(trials, spec)
    # Leaving the best's beta_1 out compares the optimizer: it is not added in a second time.
    pairs = [(c.design, c.technique) for c in plan.comparisons]
    assert pairs == [(LEAVE_ONE_OUT, "optimizer"), (ADD_ONE_IN, "cosine")]


def test_a_penalty_added_in_leaves_the_layers_of_one_the_baseline_has_on() -> None:
    spec = load_spec_text(
        SEARCH
        + 'regularized_layers = { choices = ["first", "all"] }\n'
        + '[[enqueue]]\nname = "baseline"\nparams = { weight_decay = "on" }\n'
    )
    trials = [trial(spec, 0.30, weight_decay="on", dropout="on", regularized_layers="all")]
    plan = plan_ablation(trials, spec, designs=[ADD_ONE_IN])
    [dropout] = [c for c in plan.comparisons if c.technique == "dropout"]
    # Moving the baseline's weight decay to all layers would be credited to dropout.
    assert plan.variant(dropout.with_).params["regularized_layers"] == "first"
    assert "regularized_layers" not in dropout.changes


def test_a_stored_plan_is_kept_only_where_a_new_plan_adds_to_it() -> None:
    from hpo.ablate import _difference, _extends

    spec = load_spec_text(SEARCH)
    trials = [trial(spec, 0.30), trial(spec, 0.25, dropout="on", dropout_rate=0.4)]
    stored = plan_ablation(trials, spec)
    assert _extends(stored, stored)
    # A new technique to compare (the study went on): the stored comparisons are kept as made.
    more = plan_ablation([*trials, trial(spec, 0.2, weight_decay="on")], spec)
    assert _extends(more, stored)
    assert _difference(stored, more) == "a new plan would also compare weight_decay (add-one-in)"
    # Dropout's add-one-in would now take another rate: kept, it would not be "as found best".
    other = plan_ablation([*trials, trial(spec, 0.29, dropout="on", dropout_rate=0.2)], spec)
    assert not _extends(other, stored)
    assert (
        _difference(stored, other)
        == "it trains dropout (add-one-in) otherwise than a new plan would"
    )
    # A new best trial: nothing of the stored plan ablates it.
    better = trial(spec, 0.35, schedule="cosine")
    for number, t in enumerate([*trials, better]):
        t.number = number
    stored = plan_ablation(trials, spec)
    best = plan_ablation([*trials, better], spec)
    assert not _extends(best, stored)
    assert _difference(stored, best).startswith("its best trial is 0, the study's now 2")


def test_techniques_can_be_chosen_but_only_searched_ones() -> None:
    spec = load_spec_text(SEARCH)
    trials = [trial(spec, 0.3, dropout="on"), trial(spec, 0.2)]
    plan = plan_ablation(trials, spec, techniques=["dropout"])
    assert {c.technique for c in plan.comparisons} == {"dropout"}
    with pytest.raises(HpoError, match="never searched technique 'early_stopping'"):
        plan_ablation(trials, spec, techniques=["early_stopping"])
    with pytest.raises(HpoError, match="unknown technique 'magic'"):
        plan_ablation(trials, spec, techniques=["magic"])


def test_a_study_without_a_complete_trial_cannot_be_ablated() -> None:
    spec = load_spec_text(SEARCH)
    with pytest.raises(HpoError, match="no complete trial to ablate"):
        plan_ablation([trial(spec, None, TrialState.PRUNED)], spec)


def test_the_lessons_add_one_in_is_its_experiments_against_the_baseline() -> None:
    spec = load_spec(REPO / "studies" / "lesson.toml")
    trials = []
    for i, entry in enumerate(spec.enqueue):
        t = trial(spec, 0.2 + (0.01 if entry.name == "weight_decay" else 0.0) - 0.001 * i)
        from hpo.ablation import experiment_params

        t.user_attrs.update(experiment=entry.name, params=experiment_params(spec, entry.params))
        trials.append(t)
    plan = plan_ablation(trials, spec, designs=[ADD_ONE_IN])
    names = [c.technique for c in plan.comparisons]
    # Its experiments change every technique it searches: nothing else is added in.
    assert names == [e.name for e in spec.enqueue if e.name != "baseline"]
    both = plan_ablation(trials, spec)
    assert [c.technique for c in both.comparisons if c.design == ADD_ONE_IN] == names
    # Nor does a part of it, chosen with --technique: a technique that experiments change is
    # compared through those experiments, as in the whole plan.
    whole = {(c.design, c.technique, c.changes) for c in both.comparisons}
    covering = {
        "schedule": {"cosine_restarts"},
        "initializer": {"init_random_normal", "init_glorot_normal", "init_he_normal"},
        # beta_1 and the learning rate are knobs of the optimizer's family
        "optimizer": {"adam_beta_1", "cosine_restarts"},
        "dropout": {"dropout"},
        "activity_penalty": {"weight_decay"},  # the experiment switches both penalties on
    }
    for technique, experiments in covering.items():
        part = plan_ablation(trials, spec, techniques=[technique]).comparisons
        assert {(c.design, c.technique, c.changes) for c in part} <= whole, technique
        assert {c.technique for c in part if c.design == ADD_ONE_IN} == experiments, technique
    by_name = {c.technique: c for c in plan.comparisons}
    assert by_name["dropout"].changes == "first_units=140, dropout=on, dropout_rate=0.1"
    assert by_name["cosine_restarts"].changes.startswith("learning_rate=0.01, schedule=")
    assert plan.best == "weight_decay"  # the best trial is an experiment: named after it


def test_the_baseline_is_the_specs_experiment_even_where_its_trial_never_ran() -> None:
    from hpo.ablation import experiment_params

    spec = load_spec(REPO / "studies" / "lesson.toml")
    entries = {e.name: e for e in spec.enqueue}
    baseline = experiment_params(spec, entries["baseline"].params)
    dropout = trial(spec, 0.2)
    dropout.user_attrs.update(
        experiment="dropout", params=experiment_params(spec, entries["dropout"].params)
    )
    # The baseline's trial was queued but never ran (cut off, or interrupted in `ask`).
    never_ran = create_trial(state=TrialState.FAIL, user_attrs={"experiment": "baseline"})
    plan = plan_ablation([dropout, never_ran], spec, designs=[ADD_ONE_IN])
    assert dict(plan.variants[0].params) == baseline
    assert plan.variants[0].key == plan.baseline


def test_an_experiment_named_like_a_variant_gets_its_own_key() -> None:
    from hpo.ablation import experiment_params

    spec = load_spec_text(
        SEARCH + '[[enqueue]]\nname = "best"\n[enqueue.params]\nlearning_rate = 0.05\n'
    )
    sampled = trial(spec, 0.30, dropout="on", dropout_rate=0.2)
    named = trial(spec, 0.20, learning_rate=0.05)
    named.user_attrs["experiment"] = "best"
    plan = plan_ablation([sampled, named], spec, designs=[LEAVE_ONE_OUT, ADD_ONE_IN])
    keys = [v.key for v in plan.variants]
    assert len(keys) == len(set(keys)) and "best (2)" in keys
    assert plan.variant("best").params["dropout"] == "on"
    experiment = plan.variant("best (2)").params
    assert experiment == experiment_params(spec, {"learning_rate": 0.05})
    [add] = [c for c in plan.comparisons if c.design == ADD_ONE_IN]
    assert (add.technique, add.with_, add.without) == ("best", "best (2)", "baseline")

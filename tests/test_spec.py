"""Spec validation: one test per class of bad input, and the shipped specs load."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.errors import SpecError
from hpo.spec import _alternatives, _spellable, load_spec, load_spec_text

from .conftest import REPO, TINY_SPEC, as_cifar100


def with_params(extra: str) -> str:
    return TINY_SPEC.replace("[params]\n", f"[params]\n{extra}\n")


def test_shipped_specs_load() -> None:
    for name in ("smoke", "lesson", "regularization"):
        spec = load_spec(REPO / "studies" / f"{name}.toml")
        assert spec.name == name


def test_tiny_spec_parses_into_distributions() -> None:
    spec = load_spec_text(TINY_SPEC)
    assert spec.space["learning_rate"] == FloatDistribution(1e-3, 1e-2, log=True)
    assert spec.space["epochs"] == 2
    assert spec.data.dataset == "synthetic"
    assert spec.direction == "maximize"


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(SpecError, match=r"x\.toml is not valid TOML"):
        load_spec_text("name = ", "x.toml")


def test_a_spec_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_text((REPO / "studies" / "lesson.toml").read_text(), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    spec, lesson = load_spec(path), load_spec(REPO / "studies" / "lesson.toml")
    assert (spec.text, spec.space, spec.enqueue) == (lesson.text, lesson.space, lesson.enqueue)


def test_missing_name_is_rejected() -> None:
    with pytest.raises(SpecError, match="missing key 'name'"):
        load_spec_text("seed = 1")


def test_unknown_top_level_key_is_rejected_with_a_hint() -> None:
    with pytest.raises(SpecError, match="unknown key 'samplr'.*did you mean 'sampler'"):
        load_spec_text(TINY_SPEC + "\n[samplr]\ntype = 'tpe'\n")


def test_unknown_knob_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"unknown key 'learning_rte' in \[params\]"):
        load_spec_text(with_params("learning_rte = 0.1"))


def test_low_above_high_is_rejected() -> None:
    with pytest.raises(SpecError, match="`low <= high` must hold for 'dropout_rate'.*in x.toml"):
        load_spec_text(
            with_params('dropout = "on"\ndropout_rate = { low = 0.5, high = 0.1 }'), "x.toml"
        )


def test_value_out_of_bounds_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"dropout_rate must be in \[0.0, 1.0\), got 1.5"):
        load_spec_text(with_params('dropout = "on"\ndropout_rate = 1.5'))


def test_cosine_restarts_that_shrink_their_cycles_are_rejected() -> None:
    """Below 1 the learning rate is NaN once the cycles run out; at 1 they repeat."""
    restarts = 'schedule = "cosine_restarts"\nfirst_decay_steps = 100\n'
    with pytest.raises(SpecError, match=r"t_mul must be in \[1.0, inf\], got 0.5"):
        load_spec_text(with_params(restarts + "t_mul = 0.5"))
    with pytest.raises(SpecError, match=r"t_mul"):
        load_spec_text(with_params(restarts + "t_mul = { low = 0.5, high = 2.0 }"))
    assert load_spec_text(with_params(restarts + "t_mul = 1.0")).space["t_mul"] == 1.0


def test_hyperband_needs_a_reduction_factor_of_at_least_two() -> None:
    def hyperband(extra: str) -> str:
        return TINY_SPEC.replace('[pruner]\ntype = "none"', f'[pruner]\ntype = "hyperband"{extra}')

    assert load_spec_text(hyperband("\nreduction_factor = 2")).pruner.args == {
        "reduction_factor": 2
    }
    for factor in (1, 0, -2):
        with pytest.raises(
            SpecError, match=rf"reduction_factor must be a finite number >= 2, got {factor}"
        ):
            load_spec_text(hyperband(f"\nreduction_factor = {factor}"))


@pytest.mark.parametrize(
    ("section", "table", "rule"),
    [
        (
            "pruner",
            'type = "hyperband"\nmin_resource = 0',
            "min_resource must be a finite number >= 1, got 0",
        ),
        (
            "sampler",
            'type = "tpe"\nn_ei_candidates = 0',
            "n_ei_candidates must be a finite number >= 1, got 0",
        ),
        (
            "sampler",
            'type = "tpe"\nprior_weight = -1.0',
            "prior_weight must be a finite number >= 0, got -1.0",
        ),
        ("sampler", 'type = "tpe"\nn_startup_trials = -3', "n_startup_trials must be a finite"),
        ("sampler", 'type = "tpe"\nprior_weight = nan', "prior_weight must be a finite number"),
        ("sampler", 'type = "tpe"\nprior_weight = inf', "prior_weight must be a finite number"),
    ],
)
def test_a_value_optuna_checks_only_after_trials_ran_is_refused_at_load(
    section: str, table: str, rule: str
) -> None:
    # Each passed `create` and failed every trial once TPE's start-up trials were done or
    # Hyperband made its brackets.
    with pytest.raises(SpecError, match=rf"\[{section}\] {rule}"):
        load_spec_text(f'name = "x"\n[{section}]\n{table}\n')


def test_a_step_that_does_not_divide_the_range_is_refused() -> None:
    # Optuna lowers `high` to the last whole step and warns on every command that loads it.
    bad = TINY_SPEC.replace("log = true }", "step = 1.0 }")
    with pytest.raises(SpecError, match=r"learning_rate step 1.0 must divide high - low"):
        load_spec_text(bad)
    with pytest.raises(SpecError, match=r"batch_size step 30 must divide high - low, got low=50 "):
        load_spec_text(
            TINY_SPEC.replace("batch_size = 50", "batch_size = { low = 50, high = 100, step = 30 }")
        )
    fine = TINY_SPEC.replace(
        "low = 1e-3, high = 1e-2, log = true", "low = 0.25, high = 1.0, step = 0.25"
    )
    assert load_spec_text(fine).space["learning_rate"].step == 0.25


def test_a_step_too_fine_for_optuna_is_one_line() -> None:
    tiny_step = TINY_SPEC.replace("log = true }", "step = 1e-40 }")
    with pytest.raises(SpecError, match=r"learning_rate step 1e-40 is out of reach"):
        load_spec_text(tiny_step)


def test_the_readme_spec_loads() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = load_spec_text(block, source="README.md")
    assert spec.name == "regularization" and [e.name for e in spec.enqueue] == ["baseline"]


def test_a_choice_listed_twice_and_an_unnamed_enqueued_trial_are_refused() -> None:
    twice = TINY_SPEC.replace("batch_size = 50", "batch_size = { choices = [50, 100, 50] }")
    with pytest.raises(SpecError, match=r"\[params\] batch_size choices list 50 twice"):
        load_spec_text(twice)
    unnamed = TINY_SPEC + '\n[[enqueue]]\nname = " "\nparams = { learning_rate = 0.005 }\n'
    with pytest.raises(SpecError, match=r"\[\[enqueue\]\] #1 name must not be blank"):
        load_spec_text(unnamed)


@pytest.mark.parametrize(
    "text",
    [
        TINY_SPEC.replace("batch_size = 50", "batch_size = { choices = [50, 50] }"),
        TINY_SPEC.replace("log = true }", "step = 1.0 }"),
        TINY_SPEC + '\n[[enqueue]]\nname = ""\n',
        TINY_SPEC.replace('type = "none"', 'type = "hyperband"\nmin_resource = 0'),
        TINY_SPEC.replace('name = "tiny"', 'name = "bell\\u0007"'),
    ],
    ids=["choice-twice", "step", "unnamed-enqueued", "min-resource", "name"],
)
def test_rules_added_since_a_study_was_made_do_not_lock_it_out(text: str) -> None:
    with pytest.raises(SpecError):
        load_spec_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_spec_text(text, stored=True)


def test_a_study_name_has_no_control_characters_and_is_short() -> None:
    for bad in ("a\\u0000b", "bell\\u0007", "x" * 129):
        with pytest.raises(SpecError, match=r"'name' must be 1-128 characters without spaces"):
            load_spec_text(TINY_SPEC.replace('name = "tiny"', f'name = "{bad}"'))
    # letters of any script, emoji, and the joiners some words need
    for good in ("x" * 128, "étude_中文", "run🚀", "می‌خواهم"):
        assert load_spec_text(TINY_SPEC.replace('name = "tiny"', f'name = "{good}"')).name == good


def test_non_positive_learning_rate_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"learning_rate must be in \(0.0"):
        load_spec_text(
            TINY_SPEC.replace(
                "learning_rate = { low = 1e-3, high = 1e-2, log = true }", "learning_rate = 0"
            )
        )


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(SpecError, match="epochs must be an integer, got a string 'two'"):
        load_spec_text(TINY_SPEC.replace("epochs = 2", 'epochs = "two"'))


def test_unknown_choice_is_rejected() -> None:
    with pytest.raises(SpecError, match="initializer must be one of"):
        load_spec_text(with_params('initializer = { choices = ["he_normal", "xavier"] }'))


def test_log_range_from_zero_is_rejected() -> None:
    with pytest.raises(SpecError, match="log = true` needs low > 0"):
        load_spec_text(
            with_params('dropout = "on"\ndropout_rate = { low = 0.0, high = 0.5, log = true }')
        )


def test_range_on_a_categorical_knob_is_rejected() -> None:
    with pytest.raises(SpecError, match="search it with `choices`"):
        load_spec_text(with_params("schedule = { low = 1, high = 2 }"))


def test_conditional_knob_whose_parent_is_fixed_off_is_rejected() -> None:
    with pytest.raises(SpecError, match="'dropout_rate' only applies when dropout is one of"):
        load_spec_text(with_params("dropout_rate = 0.2"))


def test_conditional_knob_with_searched_parent_is_accepted() -> None:
    spec = load_spec_text(
        with_params(
            'dropout = { choices = ["off", "on"] }\ndropout_rate = { low = 0.1, high = 0.3 }'
        )
    )
    assert spec.space["dropout"] == CategoricalDistribution(["off", "on"])


def test_metric_and_direction_must_agree() -> None:
    with pytest.raises(SpecError, match="direction for val_loss must be minimize"):
        load_spec_text(TINY_SPEC + '\n[objective]\nmetric = "val_loss"\ndirection = "maximize"\n')


def test_unknown_sampler_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"\[sampler\] type must be one of"):
        load_spec_text(TINY_SPEC.replace('type = "random"', 'type = "bayes"'))


def test_unknown_pruner_argument_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"unknown key 'n_warmup' in \[pruner\]"):
        load_spec_text(TINY_SPEC.replace('type = "none"', 'type = "median"\nn_warmup = 3'))


def test_patient_pruner_needs_a_wrapped_pruner() -> None:
    with pytest.raises(SpecError, match="needs a table 'wrapped'"):
        load_spec_text(TINY_SPEC.replace('type = "none"', 'type = "patient"\npatience = 2'))


def test_grid_sampler_needs_discrete_knobs() -> None:
    with pytest.raises(SpecError, match="grid search needs `step` or `choices`"):
        load_spec_text(TINY_SPEC.replace('type = "random"', 'type = "grid"'))


def test_bad_data_section_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"validation_fraction must be in \(0, 1\)"):
        load_spec_text(TINY_SPEC.replace("validation_fraction = 0.25", "validation_fraction = 1.5"))
    with pytest.raises(SpecError, match="dataset must be 'cifar100' or 'synthetic'"):
        load_spec_text(TINY_SPEC.replace('dataset = "synthetic"', 'dataset = "mnist"'))


def test_a_synthetic_images_shape_on_cifar100_is_refused_unless_stored() -> None:
    real = as_cifar100(TINY_SPEC)
    assert load_spec_text(real).data.dataset == "cifar100"
    for line in ("n_samples = 400", "n_classes = 4", "image_size = 4"):
        text = real.replace("[data]\n", f"[data]\n{line}\n")
        key = line.split()[0]
        with pytest.raises(SpecError, match=rf"\[data\] {key} shapes the synthetic .* dataset ="):
            load_spec_text(text)
        # A study stored with such a spec still loads: its trials are not lost.
        assert load_spec_text(text, stored=True).data.dataset == "cifar100"


def test_keep_weights_without_artifact_dir_is_refused_unless_stored() -> None:
    text = "keep_weights = true\n" + TINY_SPEC
    with pytest.raises(SpecError, match="keep_weights = true stores .* in artifact_dir, which"):
        load_spec_text(text)
    assert load_spec_text(text, stored=True).keep_weights  # a study's stored spec still loads
    assert load_spec_text('artifact_dir = "a"\n' + text).keep_weights
    with pytest.raises(SpecError, match="keep_weights = true stores"):
        load_spec_text('artifact_dir = ""\n' + text)  # an empty folder name stores nothing too


def test_enqueued_trial_may_only_set_searched_knobs() -> None:
    text = TINY_SPEC + '\n[[enqueue]]\nname = "a"\nparams = { epochs = 3 }\n'
    with pytest.raises(SpecError, match="sets 'epochs', which the spec does not search"):
        load_spec_text(text)


def test_enqueued_value_outside_distribution_is_rejected() -> None:
    text = TINY_SPEC + '\n[[enqueue]]\nname = "a"\nparams = { learning_rate = 0.5 }\n'
    with pytest.raises(SpecError, match="value 0.5 for 'learning_rate' is outside"):
        load_spec_text(text)


def test_enqueued_trial_gets_defaults_for_unnamed_knobs() -> None:
    text = with_params('dropout = { choices = ["off", "on"] }') + (
        '\n[[enqueue]]\nname = "base"\nparams = { learning_rate = 0.005 }\n'
    )
    (entry,) = load_spec_text(text).enqueue
    assert entry.params == {"learning_rate": 0.005, "dropout": "off"}


def test_an_enqueued_trial_sets_nothing_its_other_values_leave_unused() -> None:
    # weight_decay_l2 applies only with weight_decay on: left off, the experiment would be the
    # baseline under another name.
    text = with_params(
        'weight_decay = { choices = ["off", "on"] }\n'
        "weight_decay_l2 = { low = 1e-6, high = 1e-2, log = true }\n"
        "first_units = { choices = [8, 16] }"
    ).replace("first_units = 8\n", "")
    for given, found in (
        ("weight_decay_l2 = 1e-2", "(here 'off')"),
        ('weight_decay = "off", weight_decay_l2 = 1e-3', "(here 'off')"),
    ):
        with pytest.raises(SpecError, match=r"sets 'weight_decay_l2', which only applies when"):
            load_spec_text(text + f'\n[[enqueue]]\nname = "strong"\nparams = {{ {given} }}\n')
        with pytest.raises(SpecError, match=re.escape(found)):
            load_spec_text(text + f'\n[[enqueue]]\nname = "strong"\nparams = {{ {given} }}\n')
    # A float for an integer knob: the trial would build a layer of 16.0 units.
    with pytest.raises(SpecError, match="'first_units' must be an integer, got a float"):
        load_spec_text(text + '\n[[enqueue]]\nname = "f"\nparams = { first_units = 16.0 }\n')
    (entry,) = load_spec_text(
        text + '\n[[enqueue]]\nname = "ok"\n'
        'params = { first_units = 16, weight_decay = "on", weight_decay_l2 = 1e-3 }\n'
    ).enqueue
    assert entry.params == {
        "first_units": 16,
        "learning_rate": 1e-3,
        "weight_decay": "on",
        "weight_decay_l2": 1e-3,
    }


def test_numbers_and_grids_too_large_to_hold_are_refused_at_load() -> None:
    with pytest.raises(SpecError, match="holds an integer beyond 64 bits"):
        load_spec_text(TINY_SPEC.replace("\nunits = 8\n", "\nunits = 1" + "0" * 400 + "\n"))
    with pytest.raises(SpecError, match="is not valid TOML"):  # past Python's 4,300 digits
        load_spec_text(TINY_SPEC.replace("seed = 3", "seed = 1" + "0" * 5000))
    with pytest.raises(SpecError, match="nests arrays or tables too deeply"):
        load_spec_text(TINY_SPEC.replace("seed = 3", "seed = 3\nx = " + "[" * 3000 + "]" * 3000))
    huge = TINY_SPEC.replace("\nunits = 8\n", "\nunits = { low = 1, high = 1000000000000000 }\n")
    for sampler in ("grid", "bruteforce"):
        message = f"{sampler} search over 1,000,000,000,000,000 points is more than 1,000,000"
        with pytest.raises(SpecError, match=message):
            load_spec_text(
                huge.replace('type = "random"', f'type = "{sampler}"').replace(
                    "learning_rate = { low = 1e-3, high = 1e-2, log = true }",
                    "learning_rate = 1e-3",
                )
            )
    fine = TINY_SPEC.replace('type = "random"', 'type = "grid"').replace(
        "learning_rate = { low = 1e-3, high = 1e-2, log = true }",
        "learning_rate = { low = 1e-3, high = 1e-2, step = 1e-8 }",
    )
    with pytest.raises(SpecError, match=r"\('learning_rate' alone takes 900,001 values\)"):
        load_spec_text(fine.replace("\nunits = 8\n", "\nunits = { low = 1, high = 2 }\n"))
    assert load_spec_text(fine).sampler.type == "grid"  # 900,001 points: allowed
    # A brute-force search lists one knob's values at a time, not the whole grid.
    wide = fine.replace('type = "grid"', 'type = "bruteforce"').replace(
        "\nunits = 8\n", "\nunits = { low = 1, high = 1000 }\n"
    )
    assert load_spec_text(wide).sampler.type == "bruteforce"  # 900 million points
    # A study made before the limit keeps its grid: only a new spec is checked.
    from hpo.registry import grid_of

    wider = {
        "units": IntDistribution(1, 2000),
        "first_units": IntDistribution(1, 1000),
    }
    assert {k: len(v) for k, v in grid_of(wider).items()} == {"units": 2000, "first_units": 1000}


@pytest.mark.parametrize(
    ("pruner", "why"),
    [
        ('type = "median"\nn_warmup_steps = 2', "n_warmup_steps = 2 waits past the last"),
        ('type = "percentile"\npercentile = 25.0\nn_warmup_steps = 9', "waits past"),
        ('type = "threshold"\nlower = nan', "no finite value is below lower = nan or above"),
        ('type = "threshold"\nlower = -inf\nupper = inf', "below lower = -inf or above upper"),
        ('type = "successive_halving"\nmin_resource = 2', "its first rung is past"),
        (
            'type = "successive_halving"\nmin_resource = 1\nmin_early_stopping_rate = 1',
            "its first rung is past the last epoch's step (1)",
        ),
        (
            'type = "successive_halving"\nmin_resource = 1\nmin_early_stopping_rate = 10000',
            "its first rung is past",
        ),
        ('type = "hyperband"\nmin_resource = 3', "its first rung is past"),
        (
            'type = "patient"\npatience = 0\nwrapped = { type = "none" }',
            'its wrapped pruner is type "none"',
        ),
        (
            'type = "patient"\npatience = 12\nwrapped = { type = "median" }',
            "patience = 12 needs more than the 2 epochs' reports",
        ),
        (
            'type = "patient"\npatience = 0\nwrapped = { type = "median", n_warmup_steps = 5 }',
            "its wrapped pruner: n_warmup_steps = 5",
        ),
    ],
)
def test_a_pruner_that_can_prune_no_trial_is_refused(pruner: str, why: str) -> None:
    # TINY_SPEC trains 2 epochs: reports at steps 0 and 1.
    text = TINY_SPEC.replace('[pruner]\ntype = "none"', f"[pruner]\n{pruner}")
    with pytest.raises(SpecError, match=r"\(type '\w+'\) can prune no trial of at most 2"):
        load_spec_text(text)
    with pytest.raises(SpecError, match=re.escape(why)):
        load_spec_text(text)
    # With a budget long enough, each can act (a nan bound never can).
    longer = text.replace("epochs = 2\n", "epochs = { low = 2, high = 12 }\n")
    if not any(never in pruner for never in ("nan", "inf", '"none"', "10000")):
        assert load_spec_text(longer.replace("patience = 12", "patience = 3")).pruner.type in pruner
    hyperband = 'type = "hyperband"\nmin_resource = 2\nmax_resource = 1'
    with pytest.raises(SpecError, match="max_resource = 1 is below min_resource = 2"):
        load_spec_text(longer.replace(f"[pruner]\n{pruner}", f"[pruner]\n{hyperband}"))


def test_a_threshold_with_one_bound_that_can_prune_is_kept() -> None:
    # A nan lower bound prunes nothing, but the upper one still prunes a loss above it.
    text = TINY_SPEC.replace('type = "none"', 'type = "threshold"\nlower = nan\nupper = 0.9')
    assert load_spec_text(text).pruner.args["upper"] == 0.9


def test_the_default_pruner_is_kept_where_it_cannot_act_yet() -> None:
    text = TINY_SPEC.replace('[pruner]\ntype = "none"\n', "")
    assert load_spec_text(text).pruner.type == "median"  # 5 warm-up epochs, 2 trained


def test_a_cnn_on_images_too_small_to_pool_twice_is_refused() -> None:
    for architecture in ('"cnn"', '{ choices = ["mlp", "cnn"] }'):
        text = with_params(f"architecture = {architecture}").replace(
            "image_size = 4", "image_size = 3"
        )
        with pytest.raises(SpecError, match=r"needs \[data\] image_size >= 4, got 3"):
            load_spec_text(text)
        assert load_spec_text(text.replace("image_size = 3", "image_size = 4")).data.image_size == 4
    assert load_spec_text(TINY_SPEC.replace("image_size = 4", "image_size = 3"))  # an MLP


def test_a_blank_storage_and_the_names_dot_and_dot_dot_are_refused() -> None:
    with pytest.raises(SpecError, match="'storage' must not be blank"):
        load_spec_text('storage = " "\n' + TINY_SPEC)
    for bad in (".", ".."):
        with pytest.raises(SpecError, match="and not '.' or '..'"):
            load_spec_text(TINY_SPEC.replace('name = "tiny"', f'name = "{bad}"'))
    assert load_spec_text(TINY_SPEC.replace('name = "tiny"', 'name = "..x"')).name == "..x"


def test_int_range_becomes_int_distribution() -> None:
    spec = load_spec_text(
        TINY_SPEC.replace("units = 8\n", "units = { low = 8, high = 64, step = 8 }\n")
    )
    assert spec.space["units"] == IntDistribution(8, 64, step=8)


def test_epochs_budget_is_the_largest_possible() -> None:
    spec = load_spec(REPO / "studies" / "lesson.toml")
    assert spec.epochs_budget() == 50


def test_a_spec_without_sampler_or_pruner_gets_the_benchmarks_choice() -> None:
    from hpo.spec import DEFAULT_PRUNER, DEFAULT_SAMPLER

    spec = load_spec_text('name = "bare"\n[params]\nepochs = 3\n')
    assert spec.sampler == DEFAULT_SAMPLER and spec.pruner == DEFAULT_PRUNER
    assert spec.sampler.args["group"] and spec.sampler.args["constant_liar"]
    explicit = load_spec_text('name = "x"\n[sampler]\ntype = "tpe"\n[pruner]\ntype = "median"\n')
    assert explicit.sampler.args == {} and explicit.pruner.args == {}


def test_a_sampler_or_pruner_table_without_a_type_is_refused_unless_stored() -> None:
    # It took Optuna's defaults of hpo's default type, silently unlike hpo's own defaults.
    patient = '[pruner]\ntype = "patient"\npatience = 2\n'
    for table, typed, fragment in (
        (
            "[sampler]\nseed = 1",
            '[sampler]\ntype = "tpe"\nseed = 1',
            r"^\[sampler\] sets 'seed' but",
        ),
        ("[pruner]\nn_startup_trials = 2", '[pruner]\ntype = "median"\nn_startup_trials = 2', ""),
        (
            patient + "wrapped = { n_startup_trials = 2 }",
            patient + 'wrapped = { type = "median", n_startup_trials = 2 }',
            r"wrapped sets 'n_startup_trials' but no type: name the pruner",
        ),
        (patient + "wrapped = {}", patient + 'wrapped = { type = "median" }', "wrapped is empty"),
    ):
        text = f'name = "x"\n{table}\n'
        with pytest.raises(SpecError, match=fragment or r"sets 'n_startup_trials' but no type"):
            load_spec_text(text)
        stored = load_spec_text(text, stored=True)  # a study's stored spec keeps its meaning
        assert stored.sampler.args if "seed" in table else stored.pruner.args
        assert load_spec_text(f'name = "x"\n{typed}\n')
    # hpo's defaults are named, and a misspelt key is found before the missing type.
    with pytest.raises(SpecError, match=r"are tpe with multivariate = true, group = true"):
        load_spec_text('name = "x"\n[sampler]\nseed = 1\n')
    with pytest.raises(SpecError, match=r"unknown key 'seeed' .* \(did you mean 'seed'\?\)"):
        load_spec_text('name = "x"\n[sampler]\nseeed = 1\n')


def test_units_with_only_one_hidden_layer_is_refused_unless_stored() -> None:
    for layers in (
        "n_layers = 1",
        "n_layers = { choices = [1] }",
        "n_layers = { low = 1, high = 1 }",
    ):
        text = TINY_SPEC.replace("\nunits = 8\n", f"\nunits = 8\n{layers}\n")
        with pytest.raises(SpecError, match=r"units sets the hidden layers after the first, but"):
            load_spec_text(text)
        assert load_spec_text(text, stored=True)  # a study's stored spec still loads
    for layers in (
        "n_layers = 2",
        "n_layers = { choices = [1, 3] }",
        "n_layers = { low = 1, high = 2 }",
    ):
        assert load_spec_text(TINY_SPEC.replace("\nunits = 8\n", f"\nunits = 8\n{layers}\n"))
    assert load_spec_text(TINY_SPEC.replace("\nunits = 8\n", "\nn_layers = 1\n"))


def test_a_sampler_whose_package_is_missing_is_one_clear_error() -> None:
    import importlib.util

    if importlib.util.find_spec("cmaes") is not None:
        pytest.skip("the cmaes package is installed here")
    with pytest.raises(SpecError, match="needs the cmaes package"):
        load_spec_text('name = "x"\n[sampler]\ntype = "cmaes"\n')


def test_sampler_and_pruner_values_are_checked_when_the_spec_loads() -> None:
    # Each passes the check of names, and failed only later, in every command that loaded it.
    for table, fragment in (
        ('type = "percentile"', r"\[pruner\] \(type 'percentile'\)"),
        ('type = "threshold"', r"\[pruner\] \(type 'threshold'\)"),
        ('type = "median"\nn_startup_trials = -1', r"\[pruner\] \(type 'median'\)"),
    ):
        with pytest.raises(SpecError, match=fragment):
            load_spec_text(TINY_SPEC.replace('type = "none"', table))
    with pytest.raises(SpecError, match=r"\[sampler\] seed must be an integer, got a string"):
        load_spec_text(TINY_SPEC.replace('type = "random"', 'type = "random"\nseed = "x"'))


def test_a_range_step_and_log_must_be_what_they_say() -> None:
    rate = "learning_rate = { low = 1e-3, high = 1e-2, log = true }"
    for bad, fragment in (
        ("learning_rate = { low = 1e-3, high = 1e-2, step = 0.0 }", "step must be > 0"),
        ('learning_rate = { low = 1e-3, high = 1e-2, step = "a" }', "step"),
        ('learning_rate = { low = 1e-3, high = 1e-2, log = "false" }', "log"),
    ):
        with pytest.raises(SpecError, match=fragment):
            load_spec_text(TINY_SPEC.replace(rate, bad))
    with pytest.raises(SpecError, match="step must be > 0"):
        load_spec_text(TINY_SPEC.replace("epochs = 2", "epochs = { low = 1, high = 3, step = 0 }"))


def test_a_negative_data_seed_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"\[data\] seed must be in \[0, 2\*\*32 - 1\], got -1"):
        load_spec_text(
            TINY_SPEC.replace("validation_fraction = 0.25", "validation_fraction = 0.25\nseed = -1")
        )


def test_a_spec_that_is_not_utf8_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(TINY_SPEC.replace("tiny", "caf\xe9").encode("latin-1"))
    with pytest.raises(SpecError, match="latin1.toml is not UTF-8"):
        load_spec(path)


def top_level(extra: str) -> str:
    """TINY_SPEC with `extra` among the top-level keys, before the first table."""
    return TINY_SPEC.replace("n_trials = 4\n", f"n_trials = 4\n{extra}\n")


@pytest.mark.parametrize(
    ("enqueue", "got"),
    [
        ("[1, 2]", "an integer 1"),
        ("[[1]]", r"an array \[1\]"),
        ("[[]]", r"an array \[\]"),
        ('["name"]', "a string 'name'"),
    ],
)
def test_an_enqueue_entry_that_is_not_a_table_is_rejected(enqueue: str, got: str) -> None:
    with pytest.raises(SpecError, match=rf"\[\[enqueue\]\] #1 must be a table, got {got}"):
        load_spec_text(top_level(f"enqueue = {enqueue}"))


def test_an_enqueue_entry_without_a_name_is_rejected() -> None:
    with pytest.raises(SpecError, match=r"\[\[enqueue\]\] #1 needs a 'name'"):
        load_spec_text(TINY_SPEC + "\n[[enqueue]]\nparams = { learning_rate = 0.005 }\n")


@pytest.mark.parametrize("metric", ['["val_loss"]', '{ name = "val_loss" }'])
def test_a_metric_that_is_not_a_string_is_rejected(metric: str) -> None:
    with pytest.raises(
        SpecError, match=r"\[objective\] metric must be a string, got an? (array|table)"
    ):
        load_spec_text(TINY_SPEC + f"\n[objective]\nmetric = {metric}\n")


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('type = "random"', 'type = ["tpe"]', r"\[sampler\] type"),
        ('type = "random"', "type = { name = 'tpe' }", r"\[sampler\] type"),
        ('type = "none"', 'type = ["median"]', r"\[pruner\] type"),
        (
            'type = "none"',
            'type = "patient"\npatience = 1\nwrapped = { type = ["median"] }',
            r"\[pruner\] wrapped type",
        ),
    ],
)
def test_a_sampler_or_pruner_type_that_is_not_a_string_is_rejected(
    old: str, new: str, where: str
) -> None:
    with pytest.raises(SpecError, match=rf"{where} must be a string, got an? (array|table)"):
        load_spec_text(TINY_SPEC.replace(old, new))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            TINY_SPEC.replace(
                "validation_fraction = 0.25", "validation_fraction = 0.25\nseed = 5000000000"
            ),
            r"\[data\] seed",
        ),
        (TINY_SPEC.replace("seed = 3", "seed = 5000000000"), "'seed'"),
        (TINY_SPEC.replace("seed = 3", "seed = -1"), "'seed'"),
        (
            TINY_SPEC.replace('type = "random"', 'type = "random"\nseed = 4294967296'),
            r"\[sampler\] seed",
        ),
    ],
)
def test_a_seed_outside_a_numpy_random_state_is_rejected(text: str, where: str) -> None:
    # scikit-learn's random_state and Optuna's samplers take seeds in [0, 2**32 - 1] only.
    with pytest.raises(SpecError, match=rf"{where} must be in \[0, 2\*\*32 - 1\], got -?\d+"):
        load_spec_text(text)


def test_the_largest_numpy_seed_is_accepted() -> None:
    text = TINY_SPEC.replace("seed = 3", "seed = 4294967295").replace(
        "validation_fraction = 0.25", "validation_fraction = 0.25\nseed = 4294967295"
    )
    spec = load_spec_text(text)
    assert spec.seed == spec.data.seed == 2**32 - 1


@pytest.mark.parametrize(
    ("section", "table", "where", "rule"),
    [
        ("sampler", 'type = "tpe"\nn_startup_trials = [1]', "n_startup_trials", "an integer"),
        ("sampler", 'type = "tpe"\nn_ei_candidates = "24"', "n_ei_candidates", "an integer"),
        ("sampler", 'type = "tpe"\nmultivariate = 1', "multivariate", "a boolean"),
        ("sampler", 'type = "random"\nseed = 1.5', "seed", "an integer"),
        ("sampler", 'type = "random"\nseed = true', "seed", "an integer"),
        ("pruner", 'type = "hyperband"\nmin_resource = [1]', "min_resource", "an integer"),
        (
            "pruner",
            'type = "successive_halving"\nmin_resource = { n = 1 }',
            "min_resource",
            "a string or an integer",
        ),
    ],
)
def test_a_sampler_or_pruner_argument_of_the_wrong_type_is_rejected(
    section: str, table: str, where: str, rule: str
) -> None:
    # Optuna keeps these unchecked and fails on them only once a study runs.
    with pytest.raises(SpecError, match=rf"\[{section}\] {where} must be {rule}, got"):
        load_spec_text(f'name = "x"\n[{section}]\n{table}\n')


def test_a_sampler_argument_no_toml_value_can_be_is_rejected() -> None:
    # TPE calls `gamma` as a function: a number here failed the first trial after start-up.
    with pytest.raises(SpecError, match=r"\[sampler\] gamma cannot be set in a spec"):
        load_spec_text('name = "x"\n[sampler]\ntype = "tpe"\ngamma = 0.25\n')


def test_an_array_of_what_no_spec_can_write_is_rejected() -> None:
    # CMA-ES takes `source_trials` as Optuna trial objects: an array of numbers passed as "an
    # array" and failed inside Optuna.
    with pytest.raises(SpecError, match=r"\[sampler\] source_trials cannot be set in a spec"):
        load_spec_text('name = "x"\n[sampler]\ntype = "cmaes"\nsource_trials = [1, 2]\n')


def test_union_annotations_split_at_their_top_level_only() -> None:
    assert _alternatives("dict[str, int | float] | None") == ["dict[str, int | float]", "None"]
    assert _spellable("dict[str, int | float]") and _spellable("Sequence[float]")
    assert _spellable("dict[str, Any]") and not _spellable("list[FrozenTrial]")
    assert not _spellable("Callable[[int], int]")


def test_a_pruner_value_that_fails_only_at_the_first_trial_is_refused_at_load() -> None:
    # Hyperband builds with max_resource = 0 and fails when the first trial reports.
    text = TINY_SPEC.replace('type = "none"', 'type = "hyperband"\nmax_resource = 0')
    with pytest.raises(SpecError, match=r"\[pruner\] \(type 'hyperband'\): math domain error"):
        load_spec_text(text)

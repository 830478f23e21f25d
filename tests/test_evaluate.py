"""Test evaluation bookkeeping: keys, seeds, the default configuration, summaries."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FixedTrial, TrialState, create_trial

from hpo.errors import HpoError
from hpo.evaluate import (
    Config,
    default_params,
    evaluation_seeds,
    resolved_params,
    result_key,
    summarize,
)
from hpo.objective import trial_seed
from hpo.space import KNOBS, suggest_params
from hpo.spec import load_spec, load_spec_text
from hpo.testing import full_params

from .conftest import REPO


def test_result_key_is_stable_and_tells_params_and_seeds_apart() -> None:
    params = full_params()
    assert result_key(params, 1) == result_key(dict(reversed(params.items())), 1)
    assert result_key(params, 1) != result_key(params, 2)
    assert result_key(params, 1) != result_key({**params, "dropout": "on"}, 1)
    assert result_key(params, 1).startswith("test:")


def test_config_key_ignores_the_label() -> None:
    assert Config("a", full_params()).key == Config("b", full_params(), trial=3).key


def test_seeds_are_fixed_distinct_and_apart_from_trial_seeds() -> None:
    spec = load_spec(REPO / "studies" / "lesson.toml")
    seeds = evaluation_seeds(spec, 5)
    assert seeds == evaluation_seeds(spec, 5) and seeds[:2] == evaluation_seeds(spec, 2)
    assert len(set(seeds)) == 5
    assert not set(seeds) & {trial_seed(spec.seed, n) for n in range(10_000)}


def test_default_configuration_is_the_lessons_baseline() -> None:
    spec = load_spec(REPO / "studies" / "lesson.toml")
    (baseline,) = [e for e in spec.enqueue if e.name == "baseline"]
    assert default_params(spec) == suggest_params(FixedTrial(dict(baseline.params)), spec.space)


def test_a_trial_without_its_specs_params_is_named_in_one_line() -> None:
    spec = load_spec(REPO / "studies" / "smoke.toml")
    foreign = create_trial(
        state=TrialState.COMPLETE,
        value=0.1,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
    )
    foreign.number = 2
    with pytest.raises(HpoError, match=r"^trial 2 does not hold the params its study's spec "
                       r"searches \(the value of the parameter '\w+' is not found\): was it "
                       r"written by another program\?$"):  # fmt: skip
        resolved_params(foreign, spec)


def test_the_defaults_are_the_baseline_even_where_the_search_leaves_them_out() -> None:
    text = (REPO / "studies" / "lesson.toml").read_text().split("[[enqueue]]")[0]
    spec = load_spec_text(
        text.replace("[params]", '[params]\noptimizer = { choices = ["sgd", "adamw"] }', 1)
    )
    assert spec.searched()["optimizer"].choices == ("sgd", "adamw")  # type: ignore[attr-defined]
    params = default_params(spec)
    assert params["optimizer"] == KNOBS["optimizer"].default == "adam"
    assert params == {**default_params(load_spec_text(text)), "optimizer": "adam"}


def test_summary_gives_mean_sample_sd_and_range() -> None:
    results = [
        {"test_accuracy": 0.2, "val_accuracy": 0.21},
        {"test_accuracy": 0.3, "val_accuracy": 0.29},
    ]
    summary = summarize(results)
    assert summary is not None
    assert summary.mean == pytest.approx(0.25) and summary.val_mean == pytest.approx(0.25)
    assert summary.sd == pytest.approx(math.sqrt(0.005))
    assert (summary.low, summary.high, summary.n) == (0.2, 0.3, 2)
    single = summarize(results[:1])
    assert single is not None and math.isnan(single.sd)
    assert summarize([]) is None


def test_test_results_are_compared_on_the_seeds_every_configuration_has() -> None:
    from hpo.report.writer import on_common_seeds

    def runs(*seeds: int) -> list[dict[str, float]]:
        return [{"seed": s, "test_accuracy": 0.2 + s / 100, "val_accuracy": 0.2} for s in seeds]

    found = on_common_seeds({"a": runs(1, 2, 3, 4, 5), "b": runs(1, 2, 3), "c": []})
    assert [r["seed"] for r in found["a"]] == [1, 2, 3] and len(found["b"]) == 3
    assert found["c"] == []
    # Nothing in common: each keeps its own rather than showing nothing.
    assert len(on_common_seeds({"a": runs(1, 2), "b": runs(3)})["a"]) == 2

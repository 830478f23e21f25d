"""The bulk trial writer of the scale benchmarks reads back exactly as Optuna's add_trials."""

from __future__ import annotations

import uuid

import optuna
import pytest

from benchmarks.bulk import write_trials
from benchmarks.report_scale import spec_text
from hpo.spec import load_spec_text
from hpo.testing import fake_trials

from .test_workers import POSTGRES, server_url

SPEC = spec_text()


def _same_trials_both_ways(url: str) -> None:
    spec = load_spec_text(SPEC)
    trials = fake_trials(spec, 12, {"dropout": 0.03}, pruned_share=0.3, n_failed=2, seed=4)
    trials[0].user_attrs["note"] = {"nested": [1, "two"]}
    trials[1].system_attrs["failed_trial"] = 7
    trials[2].intermediate_values[99] = float("nan")
    tag = uuid.uuid4().hex[:8]
    slow = optuna.create_study(storage=url, study_name=f"slow-{tag}", direction="maximize")
    fast = optuna.create_study(storage=url, study_name=f"fast-{tag}", direction="maximize")
    try:
        slow.add_trials(trials)
        write_trials(url, fast.study_name, trials)
        fast = optuna.load_study(study_name=fast.study_name, storage=url)
        got, want = fast.get_trials(), slow.get_trials()
        assert len(got) == len(want) == 14
        for a, b in zip(got, want, strict=True):
            assert (a.number, a.state, a.params, a.distributions) == (
                b.number, b.state, b.params, b.distributions
            )  # fmt: skip
            assert a.value == b.value and a.user_attrs == b.user_attrs
            assert a.system_attrs == b.system_attrs
            assert a.intermediate_values.keys() == b.intermediate_values.keys()
            assert repr(a.intermediate_values) == repr(b.intermediate_values)  # NaN == NaN
        # The study goes on as usual: numbers and ids continue after the written trials.
        write_trials(url, fast.study_name, trials[:2])
        trial = fast.ask()
        fast.tell(trial, 0.01)
        assert [t.number for t in fast.get_trials()] == list(range(17))
        assert fast.best_value == max(t.value for t in trials if t.value is not None)
    finally:
        for name in (slow.study_name, fast.study_name):
            optuna.delete_study(study_name=name, storage=url)


def test_bulk_written_trials_read_back_as_add_trials_wrote_them_on_sqlite(
    sqlite_url: str,
) -> None:
    _same_trials_both_ways(sqlite_url)


@pytest.mark.postgres
def test_bulk_written_trials_read_back_as_add_trials_wrote_them_on_postgresql() -> None:
    _same_trials_both_ways(server_url(POSTGRES, "POSTGRES"))

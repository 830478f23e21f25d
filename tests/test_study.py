"""Studies: create one from a spec, load it by the rules it was made under, refuse others'."""

from __future__ import annotations

import os

import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import HpoError, SpecError, StudyNotFoundError
from hpo.spec import load_spec_text
from hpo.storage import open_storage
from hpo.study import SPEC_ATTR, create_study, load_study

from .conftest import TINY_SPEC


def test_create_stores_the_spec_and_enqueues_named_trials(sqlite_url: str) -> None:
    text = TINY_SPEC + '\n[[enqueue]]\nname = "slow"\nparams = { learning_rate = 0.001 }\n'
    create_study(load_spec_text(text), sqlite_url)
    study, spec = load_study("tiny", sqlite_url)
    assert spec.text == text
    (waiting,) = study.trials
    assert waiting.state == TrialState.WAITING
    assert waiting.user_attrs["experiment"] == "slow"


def test_a_create_that_fails_halfway_leaves_no_study(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec_text(TINY_SPEC)

    def refused(self: optuna.Study, *args: object, **kwargs: object) -> None:
        raise RuntimeError("value too long")

    monkeypatch.setattr(optuna.Study, "set_user_attr", refused)
    with pytest.raises(RuntimeError):
        create_study(spec, sqlite_url)
    monkeypatch.undo()
    assert optuna.get_all_study_summaries(sqlite_url) == []
    create_study(spec, sqlite_url)  # and the name is free again


def test_a_study_hpo_did_not_make_is_one_clear_error(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url, create=True)
    odd = optuna.create_study(study_name="odd", storage=storage)
    odd.set_user_attr("spec_toml", 42)
    two = optuna.create_study(study_name="two", storage=storage, directions=["maximize"] * 2)
    two.set_user_attr("spec_toml", TINY_SPEC)
    for name, why in (("odd", "its spec is not text"), ("two", "it has 2 objectives")):
        with pytest.raises(HpoError, match=f"was not created by hpo \\({why}\\)"):
            load_study(name, sqlite_url)


def test_a_stored_spec_is_read_by_the_rules_it_was_made_under(sqlite_url: str) -> None:
    # Accepted and run before argument types were checked: a float where Optuna annotates int.
    text = TINY_SPEC.replace('type = "none"', 'type = "median"\nn_warmup_steps = 5.0')
    with pytest.raises(HpoError, match="n_warmup_steps must be an integer"):
        load_spec_text(text)
    create_study(load_spec_text(text, stored=True), sqlite_url)
    assert load_study("tiny", sqlite_url)[1].pruner.args == {"n_warmup_steps": 5.0}


def test_creating_twice_is_an_error(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    with pytest.raises(HpoError, match="already exists"):
        create_study(load_spec_text(TINY_SPEC), sqlite_url)


def test_unknown_study_lists_the_known_ones(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    with pytest.raises(StudyNotFoundError, match=r"no study 'tyni'.*known studies: tiny"):
        load_study("tyni", sqlite_url)


MYSQL = os.environ.get("HPO_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")


@pytest.mark.mysql
def test_a_study_runs_on_mysql(tiny_spec_text: str) -> None:
    import socket
    import uuid
    from urllib.parse import urlsplit

    from hpo.runner import run_study
    from hpo.spec import load_spec_text

    parts = urlsplit(MYSQL)
    try:
        socket.create_connection((parts.hostname, parts.port or 3306), timeout=2).close()
    except OSError as err:
        pytest.skip(f"no MySQL/MariaDB server at {parts.hostname}:{parts.port}: {err}")
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    create_study(load_spec_text(tiny_spec_text.replace('"tiny"', f'"{name}"')), MYSQL)
    try:
        study = run_study(name, MYSQL, 2, echo=lambda _: None)
        assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(MYSQL))


def test_a_study_stored_before_a_bound_was_raised_still_loads(sqlite_url: str) -> None:
    """`t_mul` below 1 was accepted once; new specs refuse it, stored ones keep working."""
    spec = load_spec_text(TINY_SPEC)
    study = create_study(spec, sqlite_url)
    old = TINY_SPEC.replace(
        "[params]", '[params]\nschedule = "cosine_restarts"\nfirst_decay_steps = 10\nt_mul = 0.5'
    )
    with pytest.raises(SpecError, match="t_mul must be in"):
        load_spec_text(old)
    study.set_user_attr(SPEC_ATTR, old)
    _, stored = load_study("tiny", sqlite_url)
    assert stored.space["t_mul"] == 0.5

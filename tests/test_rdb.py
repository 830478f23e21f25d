"""hpo's fast RDB reads give what Optuna's own reads give, on every RDB storage it supports."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from benchmarks.report_scale import spec_text
from hpo.optimize import _taken_before
from hpo.rdb import KNOWN_SCHEMAS, reader_for
from hpo.spec import load_spec_text
from hpo.storage import open_storage, storage_failure
from hpo.study import FINISHED, all_trials, count, create_study, load_study, tally
from hpo.testing import add_fake_trials

from .test_study import MYSQL
from .test_workers import POSTGRES, server_url


def test_the_installed_optunas_schema_is_one_the_reader_knows(sqlite_url: str) -> None:
    # Fails loudly on an Optuna whose RDB schema changed: check hpo.rdb against it, then add
    # the new version to KNOWN_SCHEMAS (until then hpo falls back to Optuna's slower reads).
    storage = optuna.storages.RDBStorage(sqlite_url)
    assert storage.get_current_version() in KNOWN_SCHEMAS


def _fields(trial: FrozenTrial) -> tuple[object, ...]:
    """Every field of a trial; floats as text so that NaN equals NaN."""
    return (
        trial.number,
        trial.state,
        repr(trial.values),
        trial.datetime_start,
        trial.datetime_complete,
        trial.params,
        trial.distributions,
        trial.user_attrs,
        trial.system_attrs,
        repr(sorted(trial.intermediate_values.items())),
        trial._trial_id,
    )


def _reads_agree(url: str) -> None:
    spec = load_spec_text(spec_text().replace("report-scale", f"rdb-{uuid.uuid4().hex[:8]}"))
    create_study(spec, url)
    study, _ = load_study(spec.name, url, heartbeat_interval=None)
    try:
        add_fake_trials(study, spec, 20, {"dropout": 0.03}, pruned_share=0.3, n_failed=2)
        # The spec's 4 enqueued trials come first: one ends at +inf, one stays running.
        running = [study.ask() for _ in range(2)]
        # Values that a joined decoding could split wrongly: separators inside strings.
        running[0].set_user_attr("awkward", {"a": [1, 'x,]"[y'], "b": float("inf"), "c": ""})
        running[0].set_user_attr("text", "],[")
        # Special intermediate values, each stored as a type beside an empty value.
        for step, value in enumerate([float("-inf"), float("nan"), float("inf"), -0.0]):
            running[0].report(value, step)
        study.tell(running[0], float("inf"))
        fresh, _ = load_study(spec.name, url, heartbeat_interval=None)
        ours = all_trials(fresh)
        plain = open_storage(url, heartbeat_interval=None)
        theirs = optuna.load_study(study_name=spec.name, storage=plain).get_trials()
        assert len(ours) == len(theirs) == 26
        for a, b in zip(ours, theirs, strict=True):
            assert _fields(a) == _fields(b)
            assert list(a.params) == list(b.params)  # in the order they were suggested
        assert count(fresh) == sum(t.state in FINISHED for t in theirs) == 21
        assert count(fresh, (TrialState.FAIL,)) == 2
        assert count(fresh, (TrialState.RUNNING,)) == 1 and running[1].number == 1
        assert count(fresh, (TrialState.WAITING,)) == 2
        assert _taken_before(fresh, 1) == 21 and _taken_before(fresh, 2) == 22
        assert _taken_before(fresh, 4) == 24  # the waiting 2 and 3 are popped first
        assert tally(fresh) == Counter(t.state for t in theirs)
        # The running trial was asked without a heartbeat; once it records one, it has one.
        reader = reader_for(open_storage(url, heartbeat_interval=None), spec.name)
        assert reader is not None
        assert reader.running_without_heartbeat() == [running[1]._trial_id]
        open_storage(url).record_heartbeat(running[1]._trial_id)  # type: ignore[attr-defined]
        assert reader.running_without_heartbeat() == []
    finally:
        optuna.delete_study(study_name=spec.name, storage=open_storage(url))


def test_fast_reads_agree_with_optuna_on_sqlite(sqlite_url: str) -> None:
    _reads_agree(sqlite_url)


@pytest.mark.postgres
def test_fast_reads_agree_with_optuna_on_postgresql() -> None:
    _reads_agree(server_url(POSTGRES, "POSTGRES"))


@pytest.mark.mysql
def test_fast_reads_agree_with_optuna_on_mysql() -> None:
    _reads_agree(server_url(MYSQL, "MYSQL"))


@pytest.mark.postgres
def test_a_read_the_server_refuses_is_a_storage_failure_of_one_line() -> None:
    base = server_url(POSTGRES, "POSTGRES")
    # A lock held elsewhere, and a server that waits 0.3 s for it at most.
    url = (
        make_url(base)
        .update_query_dict({"options": "-c lock_timeout=300"})
        .render_as_string(hide_password=False)
    )
    spec = load_spec_text(spec_text().replace("report-scale", f"rdb-{uuid.uuid4().hex[:8]}"))
    create_study(spec, base)
    study, _ = load_study(spec.name, url, heartbeat_interval=None)
    add_fake_trials(study, spec, 5)
    locker = sa.create_engine(base).connect()
    try:
        locker.exec_driver_sql("LOCK TABLE trial_params IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(sa.exc.OperationalError) as raised:
            all_trials(study)
        assert "lock timeout" in (storage_failure(raised.value, url) or "")
    finally:
        locker.rollback()
        locker.close()
        optuna.delete_study(study_name=spec.name, storage=open_storage(base))


def test_a_journal_study_is_counted_through_optuna(tmp_path: Path, tiny_spec_text: str) -> None:
    url = f"journal:{tmp_path / 'j.log'}"
    spec = load_spec_text(tiny_spec_text)
    create_study(spec, url)
    study, _ = load_study(spec.name, url)
    study.tell(study.ask(), 0.5)
    assert count(study) == 1 and [t.number for t in all_trials(study)] == [0]
    assert tally(study) == Counter({TrialState.COMPLETE: 1})

"""Storages and studies: create, load, mask secrets, run to a total, resume after interruption."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo.data import load_dataset
from hpo.errors import HpoError, StorageError, StudyNotFoundError
from hpo.objective import make_objective
from hpo.spec import load_spec_text
from hpo.study import (
    FIXED_ONLY,
    FIXED_RUN,
    N_RUNS,
    _surplus,
    _taken_before,
    count,
    create_study,
    default_heartbeat_interval,
    load_study,
    mask,
    open_storage,
    optimize,
    storage_url,
    supports_heartbeat,
)

from .conftest import TINY_SPEC


def test_password_is_masked() -> None:
    assert mask("postgresql://hpo:s3cret@db:5432/hpo") == "postgresql://hpo:***@db:5432/hpo"
    assert mask("sqlite:///studies/hpo.db") == "sqlite:///studies/hpo.db"
    assert mask("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"


def test_storage_url_prefers_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert storage_url() == "sqlite:///studies/hpo.db"
    monkeypatch.setenv("HPO_STORAGE", "journal:x.log")
    assert storage_url() == "journal:x.log"
    assert storage_url("sqlite:///y.db") == "sqlite:///y.db"


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()


def test_reading_a_sqlite_file_without_studies_leaves_it_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    foreign = tmp_path / "someone's data.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    before = foreign.read_bytes()
    with pytest.raises(StorageError, match="holds no studies"):
        open_storage(f"sqlite:///{foreign}")
    assert foreign.read_bytes() == before
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("plain text, long enough to have a header " * 10)
    with pytest.raises(StorageError, match="cannot open storage"):
        open_storage(f"sqlite:///{not_sqlite}")


def test_a_study_file_a_killed_writer_left_mid_commit_still_opens(
    sqlite_url: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    db = tmp_path / "studies.db"
    # A writer killed after its changes reached the file: a hot journal is left to roll back.
    killed = (
        "import os, signal, sqlite3\n"
        f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "db.execute('PRAGMA cache_size = 1')\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "db.execute('CREATE TABLE big (x)')\n"
        "db.executemany('INSERT INTO big VALUES (?)', ((b'x' * 1000,) for _ in range(5000)))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", killed], check=False)
    assert (tmp_path / "studies.db-journal").exists()
    study, _ = load_study("tiny", sqlite_url)
    assert len(study.get_trials()) == len(load_spec_text(TINY_SPEC).enqueue)


def test_unreachable_server_is_one_line_without_the_password() -> None:
    with pytest.raises(StorageError) as info:
        open_storage("postgresql://hpo:topsecret@127.0.0.1:1/hpo")
    message = str(info.value)
    assert "cannot open storage postgresql://hpo:***@127.0.0.1:1/hpo" in message
    assert "topsecret" not in message and "\n" not in message


def test_a_server_that_never_answers_is_one_line_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket
    import threading

    import hpo.study

    monkeypatch.setattr(hpo.study, "CONNECT_TIMEOUT_S", 2)
    # The kernel completes the TCP handshake of a listening socket; nothing ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://hpo:pw@127.0.0.1:{silent.getsockname()[1]}/hpo"
        found: list[BaseException] = []

        def open_it() -> None:
            try:
                open_storage(url)
            except BaseException as err:
                found.append(err)

        opener = threading.Thread(target=open_it, daemon=True)
        opener.start()
        opener.join(timeout=30)
        assert not opener.is_alive(), "opening a silent server hangs"
    assert len(found) == 1 and isinstance(found[0], StorageError), found
    assert "cannot open storage postgresql://hpo:***@" in str(found[0])


def test_the_connect_timeout_goes_only_where_libpq_takes_it_and_nothing_sets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpo.study import CONNECT_TIMEOUT_S, _connect_timeout

    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("PGSERVICE", raising=False)
    ours = {"connect_timeout": CONNECT_TIMEOUT_S}
    assert _connect_timeout("postgresql+psycopg://u@h/db") == ours
    assert _connect_timeout("postgresql+psycopg2://u@h/db") == ours
    for url in (
        "postgresql+pg8000://u@h/db",  # its option is `timeout`: ours would break every open
        "postgresql+psycopg://u@h/db?connect_timeout=3",
        "postgresql+psycopg://u@h/db?service=main",
        "mysql+pymysql://u@h/db",
    ):
        assert _connect_timeout(url) == {}, url
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "30")
    assert _connect_timeout("postgresql+psycopg://u@h/db") == {}


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_a_sqlite_url_without_a_file_is_refused(url: str) -> None:
    # SQLAlchemy reads these as a database in memory: a study created there is gone at once.
    with pytest.raises(StorageError, match="names no file"):
        open_storage(url, create=True)


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


def test_journal_file_storage_works(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'j.log'}"
    create_study(load_spec_text(TINY_SPEC), url)
    study, _ = load_study("tiny", url)
    assert study.study_name == "tiny"


def run(url: str, n_trials: int) -> optuna.Study:
    study, spec = load_study("tiny", url)
    optimize(study, make_objective(spec, load_dataset(spec.data)), n_trials)
    return study


def test_n_trials_is_the_study_total(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    assert count(run(sqlite_url, 2)) == 2
    assert count(run(sqlite_url, 3)) == 3
    assert len(run(sqlite_url, 3).trials) == 3


def test_resume_after_interruption_keeps_finished_trials(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    study, spec = load_study("tiny", sqlite_url)
    objective = make_objective(spec, load_dataset(spec.data))

    def interrupted(trial: optuna.Trial) -> float:
        if trial.number == 1:
            raise KeyboardInterrupt
        return objective(trial)

    with pytest.raises(KeyboardInterrupt):
        optimize(study, interrupted, 3)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL]
    study = run(sqlite_url, 3)
    assert count(study) == 3
    assert next(t.state for t in study.trials) == TrialState.COMPLETE


def test_resumed_sampler_does_not_repeat_its_start_up_points(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    run(sqlite_url, 2)
    study = run(sqlite_url, 4)
    rates = [t.params["learning_rate"] for t in study.trials]
    assert len(set(rates)) == 4


def test_a_trial_counts_finished_trials_and_running_ones_started_before_it(
    sqlite_url: str,
) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    study = run(sqlite_url, 1)
    storage = open_storage(sqlite_url, heartbeat_interval=None)
    study = optuna.load_study(study_name="tiny", storage=storage)
    earlier, mine, later = study.ask(), study.ask(), study.ask()
    # One finished trial plus one that another worker started first: with n_trials = 2,
    # `mine` is surplus and must not train.
    assert _taken_before(study, mine.number) == 2
    assert _taken_before(study, earlier.number) == 1
    study.tell(later, 0.5)
    assert _taken_before(study, earlier.number) == 2


def test_a_new_trial_leaves_its_place_to_a_retry_enqueued_while_it_was_made() -> None:
    """A dead worker's trial is failed and its retry enqueued just as another worker makes a new
    trial: the retry has the lower number and is still waiting when the new trial counts the
    target. The new trial must leave the place to it, or both train and the study ends over
    its n_trials."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    study.add_trial(optuna.trial.create_trial(value=0.5))
    study.enqueue_trial({})  # the copy, as Optuna's retry enqueues it: WAITING
    made = storage.create_new_trial(storage.get_study_id_from_name(study.study_name))
    mine = optuna.trial.Trial(study, made)
    assert (mine.number, _taken_before(study, mine.number)) == (2, 2)
    assert _surplus(study, mine, 2, fixed_only=False) == "surplus: the study already had n_trials"
    # The retry, popped next, goes on.
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert _taken_before(study, retry.number) == 1


def test_a_trial_left_running_before_its_first_heartbeat_is_failed_and_retried(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process killed between Optuna creating its trial and the first heartbeat leaves a
    # RUNNING trial with no heartbeat, which Optuna's stale check never fails: without hpo's
    # own check the study below would wait for it until the timeout.
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    study, _ = load_study("tiny", sqlite_url)
    # Asked as the killed process did, without ever starting its heartbeat.
    plain = open_storage(sqlite_url, heartbeat_interval=None)
    orphan = optuna.load_study(study_name="tiny", storage=plain).ask()
    orphan.suggest_float("learning_rate", 1e-3, 1e-2, log=True)
    start = time.monotonic()
    optimize(
        study,
        lambda trial: trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True),
        n_trials=3,
        timeout=60,
    )
    assert time.monotonic() - start < 30
    trials = study.get_trials(deepcopy=False)
    failed = trials[orphan.number]
    assert failed.state == TrialState.FAIL
    assert "before the trial's first heartbeat" in failed.user_attrs["fail_reason"]
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    assert "fail_reason" not in retry.user_attrs


def test_heartbeat_interval_comes_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HPO_HEARTBEAT_INTERVAL", raising=False)
    assert default_heartbeat_interval() == 30
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "2")
    storage = open_storage(sqlite_url, create=True)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert (storage.heartbeat_interval, storage.grace_period) == (2, 4)
    without = open_storage(sqlite_url, heartbeat_interval=None)
    assert isinstance(without, optuna.storages.RDBStorage) and without.heartbeat_interval is None


def test_a_heartbeat_interval_below_one_second_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "0")
    with pytest.raises(StorageError, match="HPO_HEARTBEAT_INTERVAL must be .* >= 1, got '0'"):
        default_heartbeat_interval()


def test_only_rdb_storages_notice_dead_workers() -> None:
    assert supports_heartbeat("sqlite:///x.db")
    assert supports_heartbeat("postgresql://u:p@db/hpo")
    assert not supports_heartbeat("journal:x.log")
    assert not supports_heartbeat("redis://127.0.0.1:6379/0")


def test_plain_urls_name_a_driver_that_is_installed() -> None:
    from hpo.study import _with_installed_driver

    def only(*installed: str):
        return lambda name: name in installed

    pg = "postgresql://u@db/hpo"
    assert _with_installed_driver(pg, only("psycopg", "psycopg2")) == pg
    assert _with_installed_driver(pg, only("psycopg2")) == "postgresql+psycopg2://u@db/hpo"
    my = "mysql://root@db/test"
    assert _with_installed_driver(my, only("pymysql")) == "mysql+pymysql://root@db/test"
    assert _with_installed_driver(my, only("MySQLdb", "pymysql")) == my
    explicit = "postgresql+asyncpg://u@db/x"
    assert _with_installed_driver(explicit, only("psycopg2")) == explicit


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


class InterruptingSampler(optuna.samplers.RandomSampler):
    """Sends Ctrl-C to this process from inside `study.ask`, after the trial was created."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_inside_study_ask_still_records_the_trial_as_failed() -> None:
    # Raised inside `ask`, the interrupt would leave the new trial RUNNING for good.
    study = optuna.create_study(sampler=InterruptingSampler())
    with pytest.raises(KeyboardInterrupt):
        optimize(study, lambda trial: trial.suggest_float("x", 0, 1), 5)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_ctrl_c_during_the_objective_fails_that_trial_at_once() -> None:
    study = optuna.create_study()

    def objective(trial: optuna.Trial) -> float:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        return 0.0

    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        optimize(study, objective, 5)
    assert time.monotonic() - began < 4
    assert [t.state for t in study.trials] == [TrialState.FAIL]


class FinishingSampler(optuna.samplers.RandomSampler):
    """While `study.ask` creates a trial, another worker finishes one (once)."""

    done = False

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not self.done:
            self.done = True
            study.add_trial(optuna.trial.create_trial(value=0.5))


def with_an_experiment(n_trials: int) -> str:
    """The tiny spec searching dropout, with one named experiment ("exp": dropout on)."""
    text = TINY_SPEC.replace("n_trials = 4", f"n_trials = {n_trials}")
    text = text.replace("[params]", '[params]\ndropout = { choices = ["off", "on"] }')
    return text + '\n[[enqueue]]\nname = "exp"\nparams = { dropout = "on" }\n'


def test_an_enqueued_trial_that_meets_the_surplus_check_goes_back_to_the_queue(
    sqlite_url: str,
) -> None:
    create_study(load_spec_text(with_an_experiment(n_trials=1)), sqlite_url)
    storage = open_storage(sqlite_url, heartbeat_interval=None)
    study = optuna.load_study(study_name="tiny", storage=storage, sampler=FinishingSampler())
    optimize(study, lambda trial: 1.0, 1)
    trials = study.get_trials(deepcopy=False)
    surplus = [t for t in trials if t.state == TrialState.FAIL]
    assert len(surplus) == 1 and surplus[0].user_attrs["fail_reason"].startswith("surplus")
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1
    assert waiting[0].user_attrs["experiment"] == "exp"
    assert waiting[0].user_attrs["enqueued_params"]["dropout"] == "on"
    assert "fail_reason" not in waiting[0].user_attrs


def test_a_loaded_study_knows_whether_its_storage_has_a_heartbeat(sqlite_url: str) -> None:
    from hpo.study import heartbeat_enabled

    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    with_heartbeat, _ = load_study("tiny", sqlite_url)
    without, _ = load_study("tiny", sqlite_url, heartbeat_interval=None)
    # Workers wait for a dead worker's trial to be retried only where this is true.
    assert heartbeat_enabled(with_heartbeat)
    assert not heartbeat_enabled(without)


def test_an_interrupted_named_experiment_goes_back_to_the_queue_and_runs_on_resume(
    sqlite_url: str,
) -> None:
    create_study(load_spec_text(with_an_experiment(n_trials=2)), sqlite_url)
    study, _ = load_study("tiny", sqlite_url)

    def interrupted(trial: optuna.Trial) -> float:
        trial.set_user_attr("seed", 123)  # set while running: not part of what was enqueued
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize(study, interrupted, 2)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert [t.user_attrs["fail_reason"] for t in failed] == ["interrupted; put back in the queue"]
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert len(waiting) == 1
    assert set(waiting[0].user_attrs) == {"experiment", "enqueued_params"}  # as enqueued
    assert waiting[0].user_attrs["enqueued_params"]["dropout"] == "on"
    study = run(sqlite_url, 2)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    assert [t.params["dropout"] for t in done if t.user_attrs.get("experiment") == "exp"] == ["on"]


def fixed_only_study(n_runs: int, n_enqueued: int) -> optuna.Study:
    """A study of enqueued fixed runs, as an ablation's companion is."""
    study = optuna.create_study(study_name="s:ablation", direction="maximize")
    study.set_user_attr(FIXED_ONLY, True)
    study.set_user_attr(N_RUNS, n_runs)
    for seed in range(n_enqueued):
        attrs = {FIXED_RUN: True, "variant": "v", "seed": seed, "params": {"x": 1}}
        study.enqueue_trial({}, user_attrs=attrs)
    return study


def fixed_runs() -> Callable[[optuna.Trial], float]:
    """An objective that scores fixed runs as `hpo.objective` does: a trial with no run fails
    as surplus; the test fails (instead of spinning) if `optimize` keeps making such trials."""
    surplus = []

    def fixed_run(trial: optuna.Trial) -> float:
        if not trial.user_attrs.get(FIXED_RUN):
            surplus.append(trial.number)
            if len(surplus) > 5:
                pytest.fail(f"optimize went on making surplus trials: {surplus}")
            trial.set_user_attr("fail_reason", "surplus: no enqueued run was left")
            return math.nan
        return float(trial.user_attrs["seed"])

    return fixed_run


def test_an_interrupted_or_failed_fixed_run_goes_back_to_the_queue() -> None:
    study = fixed_only_study(3, 3)

    interrupted = []
    fixed_run = fixed_runs()

    def failing(trial: optuna.Trial) -> float:
        if trial.user_attrs["seed"] == 0 and not interrupted:
            interrupted.append(trial.number)
            raise KeyboardInterrupt
        if trial.user_attrs["seed"] == 1:
            raise RuntimeError("out of memory")
        return fixed_run(trial)

    with pytest.raises(KeyboardInterrupt):
        optimize(study, failing, 3)
    with pytest.raises(HpoError, match="failed trials in a row"):
        optimize(study, failing, 3, max_failures=2)
    optimize(study, fixed_runs(), 3)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["seed"] for t in done) == [0, 1, 2]
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def test_a_study_of_fixed_runs_with_an_empty_queue_stops_with_the_remedy() -> None:
    study = fixed_only_study(3, 2)
    with pytest.raises(HpoError, match=r"2 of its 3 runs finished .* `hpo ablate s` queues"):
        optimize(study, fixed_runs(), 3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # no surplus trials


def test_a_fixed_run_enqueued_twice_trains_once() -> None:
    # Two `hpo ablate` started at once both find no run queued and both enqueue every run.
    study = fixed_only_study(2, 0)
    for seed in (0, 0, 0, 1, 1):
        attrs = {FIXED_RUN: True, "variant": "v", "seed": seed, "params": {"x": 1}}
        study.enqueue_trial({}, user_attrs=attrs)
    trained: list[int] = []
    fixed_run = fixed_runs()

    def counting(trial: optuna.Trial) -> float:
        trained.append(trial.user_attrs["seed"])
        return fixed_run(trial)

    optimize(study, counting, 2, max_failures=2)  # two copies in a row are no failure streak
    assert trained == [0, 1]
    copies = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert [t.user_attrs["fail_reason"] for t in copies] == [
        "surplus: run v seed 0 is trial 0's (it was enqueued twice)",
        "surplus: run v seed 0 is trial 0's (it was enqueued twice)",
    ]
    # The study ends with its runs done; a copy left in the queue fails the same way if popped.
    (left,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert left.user_attrs["seed"] == 1


def test_of_two_copies_of_a_fixed_run_running_at_once_exactly_one_goes_on(
    sqlite_url: str,
) -> None:
    from hpo.study import _twin

    storage = open_storage(sqlite_url, create=True, heartbeat_interval=None)
    study = optuna.create_study(study_name="s:ablation", storage=storage)
    for _ in range(2):
        attrs = {FIXED_RUN: True, "variant": "v", "seed": 7, "params": {"x": 1}}
        study.enqueue_trial({}, user_attrs=attrs)
    first, second = study.ask(), study.ask()  # both popped, both running
    assert _twin(study, first) is None
    twin = _twin(study, second)
    assert twin is not None and twin.number == first.number
    study.tell(first, state=TrialState.FAIL)  # failed (and requeued): no longer a twin
    assert _twin(study, second) is None


def test_ctrl_c_while_optuna_pops_an_enqueued_run_puts_it_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study = fixed_only_study(1, 1)
    ask = optuna.Study.ask

    def ask_then_ctrl_c(self: optuna.Study, *args: object, **kwargs: object) -> optuna.Trial:
        trial = ask(self, *args, **kwargs)  # the enqueued run is popped: RUNNING now
        os.kill(os.getpid(), signal.SIGINT)
        return trial

    monkeypatch.setattr(optuna.Study, "ask", ask_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        optimize(study, fixed_runs(), 1)
    monkeypatch.undo()
    (failed,) = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    assert failed.user_attrs["fail_reason"] == "interrupted; put back in the queue"
    (waiting,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert waiting.user_attrs["seed"] == 0
    optimize(study, fixed_runs(), 1)
    assert [t.user_attrs["seed"] for t in study.get_trials(states=(TrialState.COMPLETE,))] == [0]


def test_a_copy_put_back_while_its_trial_is_still_running_runs() -> None:
    from hpo.study import _twin, requeue

    study = fixed_only_study(1, 1)
    first = study.ask()
    requeue(study, first)  # an error or Ctrl-C: the copy is queued before the trial ends
    copy = study.ask()  # another worker pops the copy while `first` is still RUNNING
    assert _twin(study, copy) is None


def test_a_study_of_fixed_runs_counts_a_run_completed_twice_once() -> None:
    study = fixed_only_study(2, 0)
    for seed in (0, 0, 1):
        attrs = {FIXED_RUN: True, "variant": "v", "seed": seed, "params": {"x": 1}}
        study.enqueue_trial({}, user_attrs=attrs)
    for _ in range(2):  # both copies of run 0 ran to the end (however it came about)
        study.tell(study.ask(), 0.0)
    optimize(study, fixed_runs(), 2)  # not done: run 1 has yet to train
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert sorted(t.user_attrs["seed"] for t in done) == [0, 0, 1]

"""Worker processes sharing one study: exact totals, hard kills and clean stops on each storage."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import HpoError, StorageError
from hpo.secrets import mask, redact
from hpo.spec import load_spec_text
from hpo.storage import open_storage
from hpo.study import FINISHED, count, create_study, load_study
from hpo.workers import (
    CIFAR100_MEMORY,
    TENSORFLOW_MEMORY,
    available_memory,
    check_memory,
    fail_orphans,
    run_workers,
    thread_shares,
    worker_label,
)

from .conftest import REPO, TINY_SPEC

POSTGRES = os.environ.get("HPO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("HPO_TEST_REDIS", "redis://127.0.0.1:6379/15")
N_TRIALS = 6
# Seconds a test waits for a whole multi-process run before it fails (and kills what is left).
RUN_LIMIT_S = 240
HEARTBEAT_S = 2


def server_url(url: str, name: str) -> str:
    """`url` if its server answers; else the test is skipped, saying why."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
        open_storage(url, heartbeat_interval=None)
    except (OSError, StorageError) as err:
        pytest.skip(f"no usable {name} server at {mask(url)} (set HPO_TEST_{name}): {err}")
    return url


@pytest.fixture(
    params=[
        "sqlite",
        "journal",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    if kind == "journal":
        return f"journal:{tmp_path / 'studies.log'}"
    if kind == "postgresql":
        return server_url(POSTGRES, "POSTGRES")
    return server_url(REDIS, "REDIS")


@pytest.fixture
def study_name(storage: str) -> Iterator[str]:
    """A name no one else uses on a shared server; the study is deleted afterwards."""
    name = f"tiny-{uuid.uuid4().hex[:10]}"
    yield name
    store = open_storage(storage, heartbeat_interval=None)
    if name in {s.study_name for s in store.get_all_studies()}:
        optuna.delete_study(study_name=name, storage=store)


def create(name: str, url: str, spec: str = TINY_SPEC) -> None:
    create_study(load_spec_text(spec.replace('name = "tiny"', f'name = "{name}"')), url)


def load(name: str, url: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_cores_are_shared_evenly_with_at_least_one_thread_each() -> None:
    assert thread_shares(2, 16) == [8, 8]
    assert thread_shares(3, 16) == [6, 5, 5]
    assert thread_shares(4, 2) == [1, 1, 1, 1]


def test_workers_are_refused_beyond_the_memory_they_need_at_least() -> None:
    gb = 1_000_000_000
    check_memory(4, 4 * TENSORFLOW_MEMORY)
    check_memory(4, 4 * CIFAR100_MEMORY, "cifar100")
    check_memory(500, None)  # a system that does not say how much it has
    refusal = (
        r"^--workers 4 needs at least 5\.9 GB \(a worker holds TensorFlow and CIFAR-100, "
        r"1\.47 GB\) and this machine has 4\.0 GB available: give --workers 2 or fewer, and run "
        r"more on other machines"
    )
    with pytest.raises(HpoError, match=refusal):
        check_memory(4, 4 * gb, "cifar100")
    check_memory(4, 4 * gb, "synthetic")  # 0.73 GB each
    with pytest.raises(HpoError, match=r"holds TensorFlow, 0\.73 GB.*: one process \(no --workers"):
        check_memory(2, gb)
    available = available_memory()
    assert available is not None and 0 < available < 1 << 50  # this is a Linux machine


def test_a_password_is_redacted_anywhere_in_a_message() -> None:
    url = "postgresql://hpo:s3cret@db/hpo"
    assert redact("FATAL: password s3cret rejected", url) == "FATAL: password *** rejected"
    assert redact("nothing to hide", "sqlite:///x.db") == "nothing to hide"


def test_a_dead_workers_trial_is_failed_and_retried_with_its_params(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'j.log'}"
    create("tiny", url)
    study = load("tiny", url)
    mine, other = study.ask(), study.ask()
    for trial in (mine, other):
        trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True)
    mine.set_user_attr("worker", worker_label(12345))
    other.set_user_attr("worker", worker_label(os.getpid()))
    assert fail_orphans(study, {worker_label(12345)}, retry=True) == [mine.number]
    failed, running, retry = study.get_trials(deepcopy=False)
    assert (failed.state, running.state, retry.state) == (
        TrialState.FAIL,
        TrialState.RUNNING,
        TrialState.WAITING,
    )
    assert failed.user_attrs["fail_reason"] == "its worker died"
    assert retry.params == failed.params
    assert retry.system_attrs["failed_trial"] == failed.number
    assert "fail_reason" not in retry.user_attrs


def test_a_stopped_workers_named_experiment_goes_back_to_the_queue(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'j.log'}"
    create("tiny", url)
    study = load("tiny", url)
    queued = {"experiment": "low", "enqueued_params": {"learning_rate": 0.002}}
    sampled = study.ask()
    study.enqueue_trial({"learning_rate": 0.002}, user_attrs=queued)
    experiment = study.ask()
    for trial in (sampled, experiment):
        trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True)
        trial.set_user_attr("worker", worker_label(12345))
    assert experiment.user_attrs["experiment"] == "low"
    assert fail_orphans(study, {worker_label(12345)}, retry=False) == [0, 1]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].user_attrs == queued
    assert trials[2].system_attrs["fixed_params"] == {"learning_rate": 0.002}


def test_three_workers_reach_exactly_n_trials(storage: str, study_name: str) -> None:
    create(study_name, storage)
    lines: list[str] = []
    study = run_workers(study_name, storage, N_TRIALS, n_workers=3, echo=lines.append)
    output = "\n".join(lines)
    assert count(study) == N_TRIALS, output
    assert TrialState.RUNNING not in states(study) and TrialState.WAITING not in states(study)
    # A worker that lost the race for the last trial records a surplus failure, nothing else.
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        assert trial.user_attrs.get("fail_reason", "").startswith("surplus"), output
    assert "locked" not in output and "error" not in output, output
    assert f"holds {N_TRIALS} finished trials" in lines[-1]
    finished = study.get_trials(deepcopy=False, states=FINISHED)
    relayed = [line for line in lines[1:-1] if not line.startswith("warning: ")]
    assert all(line.startswith(("[w0] ", "[w1] ", "[w2] ")) for line in relayed), output
    assert len({t.params["learning_rate"] for t in finished}) == N_TRIALS
    assert all(t.user_attrs["worker"].startswith(socket.gethostname()) for t in finished)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """`hpo` processes a test starts; each leads its own session, killed whole at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_hpo(
    processes: list[subprocess.Popen[str]], *args: str, namespace: str | None = None
) -> subprocess.Popen[str]:
    """`hpo study ARGS` in its own session (inside network namespace `namespace` if given)."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "hpo", "study", *args],
        cwd=REPO,
        env={**os.environ, "HPO_HEARTBEAT_INTERVAL": str(HEARTBEAT_S)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    processes.append(process)
    return process


def wait_until(process: subprocess.Popen[str], reached: Callable[[], bool]) -> None:
    deadline = time.monotonic() + RUN_LIMIT_S
    while not reached():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the workers did not get there in time"
        time.sleep(0.1)


def running_pid(study: optuna.Study) -> int | None:
    """The process id of a worker that is training a trial now (its params are set), if any."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "worker" in trial.user_attrs and trial.params:
            return int(trial.user_attrs["worker"].rsplit(":", 1)[1])
    return None


@pytest.mark.parametrize(
    "kind", [pytest.param("postgresql", marks=pytest.mark.postgres), "journal"]
)
def test_a_sigkilled_workers_trial_fails_and_a_retried_copy_completes(
    kind: str, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    url = (
        server_url(POSTGRES, "POSTGRES")
        if kind == "postgresql"
        else f"journal:{tmp_path / 'j.log'}"
    )
    name = f"tiny-{uuid.uuid4().hex[:10]}"
    create(name, url)
    try:
        process = start_hpo(
            processes, "run", name, "--workers", "3", "--n-trials", str(N_TRIALS), "--storage", url
        )
        study = load(name, url)
        wait_until(process, lambda: running_pid(study) is not None)
        victim = running_pid(study)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        out, err = process.communicate(timeout=RUN_LIMIT_S)
        assert process.returncode == 0, err
        assert "killed by SIGKILL" in out
        trials = load(name, url).get_trials(deepcopy=False)
        (killed,) = [
            t
            for t in trials
            if t.state == TrialState.FAIL and t.user_attrs.get("worker") == worker_label(victim)
        ]
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
        assert len(retried) == 1 and retried[0].params == killed.params, out
        assert sum(t.state in FINISHED for t in trials) == N_TRIALS, out
        if retried[0].state == TrialState.WAITING:
            # A worker that looked between the killed trial's failing and its copy's enqueueing
            # started a new trial, which took the last place: the copy waits in the queue, and
            # the next run pops it first. Every trial that ran is numbered below it (one above
            # it must have left the place to it).
            ran = [t.number for t in trials if t.state in FINISHED]
            assert max(ran) < retried[0].number, out
            more = start_hpo(
                processes, "run", name, "--n-trials", str(N_TRIALS + 1), "--storage", url
            )
            out, err = more.communicate(timeout=RUN_LIMIT_S)
            assert more.returncode == 0, err
            trials = load(name, url).get_trials(deepcopy=False)
        assert trials[retried[0].number].state in FINISHED, out
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], out
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


def test_sigterm_stops_every_worker_and_a_new_run_resumes(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    create("tiny", url, TINY_SPEC.replace("epochs = 2", "epochs = 40"))
    # A target the first run cannot reach before the signal, whatever the machine's speed.
    process = start_hpo(
        processes, "run", "tiny", "--workers", "2", "--n-trials", "100", "--storage", url
    )
    study = load("tiny", url)
    wait_until(process, lambda: count(study) >= 1 and running_pid(study) is not None)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=RUN_LIMIT_S)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert "[w0] stopped" in out and "[w1] stopped" in out, out + err
    trials = study.get_trials(deepcopy=False)
    assert TrialState.RUNNING not in states(study) and TrialState.FAIL in states(study)
    for pid in {
        int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in trials if "worker" in t.user_attrs
    }:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    kept = {t.number for t in trials if t.state in FINISHED}
    # However many trials finished before the workers stopped (more on a fast moment), the
    # new run must add three to them and keep them.
    target = len(kept) + 3
    study = run_workers("tiny", url, target, n_workers=2, echo=lambda line: None)
    assert count(study) == target
    assert kept <= {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
    rates = [t.params["learning_rate"] for t in study.get_trials(deepcopy=False) if t.params]
    assert len(set(rates)) == len(rates)


def test_two_runs_started_at_once_never_draw_the_same_point(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """Two terminals (or machines) start `hpo study run` on one storage in the same moment."""
    url = f"journal:{tmp_path / 'j.log'}"
    create("tiny", url)
    args = ("run", "tiny", "--n-trials", "8", "--storage", url)
    both = [start_hpo(processes, *args), start_hpo(processes, *args)]
    for process in both:
        _, err = process.communicate(timeout=RUN_LIMIT_S)
        assert "Traceback" not in err, err
    trials = load("tiny", url).get_trials(deepcopy=False)
    rates = [t.params["learning_rate"] for t in trials if t.params]
    assert count(load("tiny", url)) == 8
    assert len(rates) >= 8 and len(set(rates)) == len(rates), rates


def test_two_loads_of_one_study_before_any_trial_draw_different_points(tmp_path: Path) -> None:
    """The same race without timing luck: both processes load before either starts a trial."""
    url = f"journal:{tmp_path / 'j.log'}"
    create("tiny", url)
    first, _ = load_study("tiny", url)
    second, _ = load_study("tiny", url)
    for _ in range(4):
        for study in (first, second):
            study.optimize(lambda t: t.suggest_float("learning_rate", 1e-3, 1e-2), n_trials=1)
    rates = [t.params["learning_rate"] for t in first.get_trials(deepcopy=False)]
    assert len(rates) == 8 and len(set(rates)) == 8, rates


def test_a_pool_that_ends_short_of_its_target_says_how_many_are_missing(tmp_path: Path) -> None:
    """A journal has no heartbeat: a trial another machine left RUNNING holds its place."""
    url = f"journal:{tmp_path / 'j.log'}"
    create("tiny", url)
    lost = load("tiny", url).ask()  # a trial of a machine that went away, never to return
    lost.suggest_float("learning_rate", 1e-3, 1e-2, log=True)
    with pytest.raises(HpoError, match="holds 2 of its 3 finished trials: 1 missing"):
        run_workers("tiny", url, 3, n_workers=2, echo=lambda line: None)
    assert count(load("tiny", url)) == 2


def test_a_bad_heartbeat_setting_stops_before_any_worker_starts(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.workers import run_workers

    # Checked first, in this process: not once per spawned worker after they start.
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "0")
    with pytest.raises(StorageError, match="HPO_HEARTBEAT_INTERVAL must be"):
        run_workers("any", sqlite_url, 2, n_workers=2)

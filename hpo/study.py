"""Storages and studies: open a storage from its URL, create a study from a spec, run it."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError, StorageError, StudyNotFoundError
from hpo.heap import collector_paused
from hpo.interrupts import HeldInterrupts
from hpo.registry import make_pruner, make_sampler
from hpo.secrets import mask, redact
from hpo.spec import Component, Spec, load_spec_text

if TYPE_CHECKING:
    from hpo.rdb import Reader

# Heartbeats and the stale-trial retry are marked experimental; they are what fault recovery uses.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

DEFAULT_STORAGE = "sqlite:///studies/hpo.db"
SPEC_ATTR = "spec_toml"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT_INTERVAL = 30
HEARTBEAT_ENV = "HPO_HEARTBEAT_INTERVAL"
SQLITE_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL server has to answer a new connection."""
POLL_S = 1.0
ORPHAN_INTERVALS = 4
"""Heartbeat intervals a waiting worker watches a RUNNING trial that has no heartbeat at all
before failing it (twice the grace period after which a heartbeat that stopped is stale)."""
MAX_FAILURES = 10
MAX_RETRIES = 3
"""Copies of a trial whose process died that are retried before it is left failed."""
FIXED_RUN = "fixed_run"
"""Trial user attribute: the trial was enqueued with its full params and seed (an ablation run)."""
FIXED_ONLY = "fixed_runs_only"
"""Study user attribute: every trial of the study is an enqueued fixed run (an ablation)."""
ENQUEUED_PARAMS = "enqueued_params"
"""Trial user attribute of a named experiment: the params it was enqueued with."""
REQUEUED = "requeued"
"""Trial user attribute: the trial ends without its result and a copy of it is in the queue."""
N_RUNS = "n_runs"
ABLATION_SUFFIX = ":ablation"
"""The ablation of study NAME is the study NAME:ablation, in the same storage."""
"""Study user attribute of a study of fixed runs: how many it must finish."""


def storage_url(url: str | None = None) -> str:
    """The storage URL to use: the one given, else $HPO_STORAGE, else the default SQLite file."""
    return url or os.environ.get("HPO_STORAGE") or DEFAULT_STORAGE


def supports_heartbeat(url: str) -> bool:
    """Whether the storage at `url` can notice a dead worker: RDB storages can, journals cannot."""
    return not url.startswith(("journal:", "redis://", "rediss://"))


def default_heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats: $HPO_HEARTBEAT_INTERVAL, else 30.

    A trial is stale, and so failed and retried, after two intervals without one.
    """
    raw = os.environ.get(HEARTBEAT_ENV)
    if raw is None:
        return HEARTBEAT_INTERVAL
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise StorageError(f"{HEARTBEAT_ENV} must be a whole number of seconds >= 1, got {raw!r}")
    return seconds


def open_storage(
    url: str,
    *,
    create: bool = False,
    heartbeat_interval: int | Literal["default"] | None = "default",
) -> BaseStorage:
    """Open the storage at `url` (sqlite://, postgresql://, mysql://, journal:PATH, redis://).

    A SQLite or journal file that does not exist is only made when `create` is set, so that
    commands which only read never leave files behind. RDB storages get Optuna's heartbeat
    (every `heartbeat_interval` seconds, "default" for `default_heartbeat_interval()`, None for
    none): a trial whose worker died is marked failed and retried.
    """
    if heartbeat_interval == "default":
        heartbeat_interval = default_heartbeat_interval()
    try:
        if url.startswith("journal:"):
            return _journal_file(url.removeprefix("journal:"), create)
        if url.startswith(("redis://", "rediss://")):
            from optuna.storages.journal import JournalRedisBackend, JournalStorage

            storage = JournalStorage(JournalRedisBackend(url))
            storage.get_all_studies()
            return storage
        return _rdb(url, create, heartbeat_interval)
    except HpoError:
        raise
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot open storage {mask(url)}: {redact(reason, url)}") from err


def _journal_file(path: str, create: bool) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    file = Path(path.removeprefix("//"))
    if not file.exists():
        if not create:
            raise StorageError(f"journal file {file} does not exist")
        file.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(file)))


def _rdb(url: str, create: bool, heartbeat_interval: int | None) -> BaseStorage:
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:") and url.partition("://")[2].removeprefix("/").strip() in (
        "",
        ":memory:",
    ):
        # `sqlite://`, `sqlite:///` and `sqlite:///:memory:` are a database in memory, gone
        # when the command ends, and its study with it.
        raise StorageError(
            f"{url} names no file: give one, e.g. sqlite:///studies/hpo.db (relative) or "
            "sqlite:////abs/path/hpo.db"
        )
    if url.startswith("sqlite:///"):
        file = Path(url.removeprefix("sqlite:///"))
        if not file.exists():
            if not create:
                raise StorageError(
                    f"SQLite file {file} does not exist (no study was created there)"
                )
            file.parent.mkdir(parents=True, exist_ok=True)
        elif not create and not _holds_optuna_tables(file):
            # Opening it through Optuna would add Optuna's tables to someone else's database.
            raise StorageError(f"SQLite file {file} holds no studies (it has no Optuna tables)")
        # Several local workers write the same file: wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True
        url = _with_installed_driver(url)
        engine_kwargs["connect_args"] = _connect_timeout(url)
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": 2 * heartbeat_interval,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRIES
            ),
        }
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)


def _connect_timeout(url: str) -> dict[str, Any]:
    """libpq's `connect_timeout` for a PostgreSQL URL that sets none of its own, or nothing.

    A server that accepts the connection but never answers would hang every command. Only
    libpq's drivers (psycopg, psycopg2) take the option; the URL, `PGCONNECT_TIMEOUT` and a
    service file may set their own.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() not in (
        "psycopg",
        "psycopg2",
    ):
        return {}
    if {"connect_timeout", "service"} & set(parsed.query) or {
        "PGCONNECT_TIMEOUT",
        "PGSERVICE",
    } & set(os.environ):
        return {}
    return {"connect_timeout": CONNECT_TIMEOUT_S}


def _holds_optuna_tables(file: Path) -> bool:
    """Whether the SQLite file has Optuna's tables, read without adding any.

    Read-write (`mode=rw` never creates a file): a read-only connection cannot roll back the
    journal a writer killed mid-commit leaves, which the next read-write open does.
    """
    import sqlite3

    uri = file.resolve().as_uri() + "?mode=rw"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S)) as db:
        found = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
            "AND name IN ('studies', 'version_info')"
        ).fetchone()
    return bool(found and found[0] == 2)


def _with_installed_driver(url: str, find: Callable[[str], object] | None = None) -> str:
    """A plain URL names SQLAlchemy's default driver; name an installed one instead.

    postgresql:// means psycopg 3 to SQLAlchemy 2.1: psycopg2 is used if only it is installed.
    mysql:// means mysqlclient (a C extension): PyMySQL, which hpo installs, is used unless
    mysqlclient is there. `find` looks a module up (importlib's `find_spec`; tests replace it).
    """
    import importlib.util

    find = find or importlib.util.find_spec
    if url.startswith("postgresql://") and not find("psycopg") and find("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    if url.startswith("mysql://") and not find("MySQLdb") and find("pymysql"):
        return "mysql+pymysql://" + url.removeprefix("mysql://")
    return url


def create_study(spec: Spec, url: str) -> optuna.Study:
    """Create `spec`'s study in the storage, store the spec with it, enqueue its named trials."""
    storage = open_storage(url, create=True)
    if spec.name in study_names(storage):
        raise HpoError(
            f"study '{spec.name}' already exists in {mask(url)}; run it with "
            f"`hpo study run {spec.name}` or remove it with `hpo study delete {spec.name}`"
        )
    direction = optuna.study.StudyDirection[spec.direction.upper()]
    study = optuna.create_study(study_name=spec.name, storage=storage, direction=direction)
    try:
        # The spec's own storage URL is only needed here: its credentials are not stored.
        study.set_user_attr(SPEC_ATTR, redact(spec.text, spec.storage))
        study.set_user_attr("metric", spec.metric)
        for entry in spec.enqueue:
            study.enqueue_trial(
                dict(entry.params),
                user_attrs={"experiment": entry.name, ENQUEUED_PARAMS: dict(entry.params)},
            )
    except BaseException:
        # A study without its spec cannot be run, reported or made again under its name.
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=spec.name, storage=storage)
        raise
    return study


def study_names(storage: BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def find_study(name: str, url: str, **kwargs: Any) -> optuna.Study:
    """The study `name` as stored (Optuna's default sampler and pruner), whatever its spec."""
    return _stored(name, url, **kwargs)[1]


def _stored(name: str, url: str, **kwargs: Any) -> tuple[BaseStorage, optuna.Study]:
    storage = open_storage(url, **kwargs)
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise StudyNotFoundError(f"no study '{name}' in {mask(url)} (known studies: {known})")
    return storage, optuna.load_study(study_name=name, storage=storage)


def load_study(name: str, url: str, **kwargs: Any) -> tuple[optuna.Study, Spec]:
    """Load a study made by `create_study`, with the sampler and pruner its spec names.

    The sampler seeds each trial's draws from the trial's number (`hpo.registry.TrialSeeded`),
    so a resumed study, a second worker or a second machine never repeats the points of another.
    """
    storage, study = _stored(name, url, **kwargs)
    text = study.user_attrs.get(SPEC_ATTR)
    if not isinstance(text, str) or len(study.directions) != 1:
        if text is None:
            why = "it has no spec"
        elif not isinstance(text, str):
            why = "its spec is not text"
        else:
            why = f"it has {len(study.directions)} objectives"
        raise HpoError(f"study '{name}' in {mask(url)} was not created by hpo ({why})")
    # The study's own name: `hpo study create --name` stores the spec file's text unchanged.
    spec = dataclasses.replace(
        load_spec_text(text, f"the spec stored with study '{name}'", stored=True), name=name
    )
    if study.user_attrs.get(FIXED_ONLY):
        if N_RUNS not in study.user_attrs:
            of = name.removesuffix(ABLATION_SUFFIX)
            raise HpoError(
                f"the ablation '{name}' was cut short while it was prepared: "
                f"`hpo ablate {of}` prepares it again"
            )
        # An ablation keeps its study's spec for the data; its runs are enqueued, never pruned.
        spec = dataclasses.replace(
            spec,
            name=name,
            n_trials=int(study.user_attrs[N_RUNS]),
            sampler=Component("random"),
            pruner=Component("none"),
        )
    sampler = make_sampler(spec.sampler.type, spec.sampler.args, spec.seed, spec.searched())
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=make_pruner(spec.pruner.type, spec.pruner.args),
    )
    from hpo.rdb import reader_for

    reader = reader_for(storage, name)
    if reader is not None:
        _READERS[study] = reader
    return study, spec


# Studies loaded by `load_study` from an RDB storage, and the reader that counts their trials
# by state and reads them all at once without Optuna's per-row objects (`hpo.rdb`).
_READERS: weakref.WeakKeyDictionary[optuna.Study, Reader] = weakref.WeakKeyDictionary()


def count(study: optuna.Study, states: Sequence[TrialState] = FINISHED) -> int:
    """How many trials are in `states`: one counting query where the storage allows it."""
    counts = tally(study)
    return sum(counts[state] for state in states)


def tally(study: optuna.Study) -> Counter[TrialState]:
    """How many trials are in each state: one query where the storage allows it."""
    reader = _READERS.get(study)
    if reader is not None:
        return Counter(reader.tally())
    return Counter(t.state for t in study.get_trials(deepcopy=False))


def all_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial of the study in number order, read at once where the storage allows it."""
    reader = _READERS.get(study)
    with collector_paused():
        if reader is not None:
            return reader.trials()
        return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def best_so_far(study: optuna.Study) -> tuple[float, int] | None:
    """The best complete trial's value and number, if there is one."""
    if count(study, (TrialState.COMPLETE,)) == 0:
        return None
    best = study.best_trial
    return (float(best.value), best.number) if best.value is not None else None


TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


def optimize(
    study: optuna.Study,
    objective: Callable[[optuna.trial.Trial], float],
    n_trials: int | None,
    timeout: float | None = None,
    callbacks: Sequence[TrialCallback] = (),
    max_failures: int = MAX_FAILURES,
) -> None:
    """Run trials until the study holds `n_trials` finished ones, all workers together.

    After `max_failures` failed trials in a row (surplus ones aside) it raises HpoError: a
    study whose every trial fails (a range that always diverges, a missing resource, a bug)
    stops instead of spinning. Finished trials stay.

    Finished means complete or pruned; a failed trial does not count. A worker starts a trial
    only while finished plus running trials stay below the target, and a trial that finds the
    target already taken (another worker won the race, or a retry enqueued meanwhile waits
    below it) ends at once as failed with the reason "surplus", so the count is never
    exceeded. While the rest of the target is running elsewhere the worker waits: if one of
    those workers dies, its heartbeat goes stale (or, dead before its trial's first heartbeat,
    it never had one: `_NeverBeat`), the trial is failed and re-enqueued, and a surviving
    worker runs it.
    """
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    target = math.inf if n_trials is None else n_trials
    waits = heartbeat_enabled(study)
    fixed_only = bool(study.user_attrs.get(FIXED_ONLY))

    with HeldInterrupts() as interrupts:
        taken: list[FrozenTrial] = []

        def guarded(trial: optuna.trial.Trial) -> float:
            try:
                surplus = _surplus(study, trial, target, fixed_only)
                if surplus:
                    trial.set_user_attr("fail_reason", surplus)
                    return math.nan
                with interrupts.delivered():
                    return objective(trial)
            except optuna.TrialPruned:
                raise
            except BaseException as err:
                # Interrupted, an enqueued trial goes back to the queue: `run` resumes it.
                # A fixed run also goes back after an error (repeated ones stop the study),
                # a storage error in the checks above included.
                if isinstance(err, Exception):
                    if trial.user_attrs.get(FIXED_RUN):
                        requeue(study, trial)
                else:
                    again = requeue(study, trial)
                    reason = "interrupted" + ("; put back in the queue" if again else "")
                    trial.set_user_attr("fail_reason", reason)
                raise
            finally:
                if waits:  # only a heartbeat fails a running trial from elsewhere
                    taken.extend(_finished_elsewhere(study, trial))

        failures = _FailureStreak(max_failures)
        never_beat = _NeverBeat()

        while time.monotonic() < deadline:
            interrupts.raise_pending()
            if waits:
                optuna.storages.fail_stale_trials(study)
            states = tally(study)
            finished = sum(states[s] for s in FINISHED)
            if fixed_only:  # a run enqueued twice counts once, should both copies complete
                finished = len(_run_keys(study, TrialState.COMPLETE))
            if finished >= target:
                return
            if fixed_only and not states[TrialState.WAITING]:
                _no_run_left(study, finished, states[TrialState.RUNNING], target)
            if finished + states[TrialState.RUNNING] >= target:
                if not waits:
                    return
                never_beat.fail_overdue(study)
                with interrupts.delivered():
                    time.sleep(POLL_S)
                continue
            try:
                study.optimize(
                    guarded, n_trials=1, callbacks=[*callbacks, failures], catch=(Exception,)
                )
            except ValueError:
                # Optuna refuses to record a trial another worker already failed (this one lost
                # its heartbeat: a cut link, a paused machine). Its result here is discarded.
                if not taken:
                    raise
                lost = taken.pop()
                for callback in callbacks:
                    callback(study, lost)
                failures(study, lost)


QUEUED_ATTRS = {
    FIXED_RUN: (FIXED_RUN, "params", "seed", "variant"),
    ENQUEUED_PARAMS: ("experiment", ENQUEUED_PARAMS),
}
"""The user attributes that make an enqueued trial what it is: a fixed run's, a named
experiment's (the attributes a trial sets while it runs are not among them)."""


def requeue(study: optuna.Study, trial: optuna.trial.Trial | FrozenTrial) -> bool:
    """Enqueue again an enqueued trial (a fixed run, a named experiment) that ends without its
    result, with the attributes it was enqueued with. False for a sampled trial."""
    attrs = trial.user_attrs
    for marker, keys in QUEUED_ATTRS.items():
        if marker in attrs:
            queued = {k: attrs[k] for k in keys if k in attrs}
            if isinstance(trial, optuna.trial.Trial):
                # Still RUNNING until Optuna stores its end: its copy must not defer to it.
                trial.set_user_attr(REQUEUED, True)
            study.enqueue_trial(dict(queued.get(ENQUEUED_PARAMS, {})), user_attrs=queued)
            return True
    return False


def _no_run_left(study: optuna.Study, finished: int, running: int, target: float) -> None:
    """Stop a study of enqueued runs whose queue is empty before its target is reached.

    Its trials can only be enqueued runs, so a new trial would fail at once as surplus, again
    and again. Runs still running may end it; otherwise runs are missing from the queue
    (one whose worker died more often than `MAX_RETRIES`, say)."""
    if finished + running >= target:
        return
    of = study.study_name.removesuffix(ABLATION_SUFFIX)
    raise HpoError(
        f"study '{study.study_name}' holds {finished} of its {target:g} runs finished and "
        f"{running} running, with none left in its queue: `hpo ablate {of}` queues the "
        "missing runs again and runs them"
    )


class _NeverBeat:
    """RUNNING trials that have never recorded a heartbeat, as a waiting worker sees them.

    A process killed between Optuna creating its trial and the trial's first heartbeat (the
    first comes as soon as `ask` returns) leaves the trial RUNNING with no heartbeat, and
    Optuna's `fail_stale_trials` only fails trials whose heartbeat stopped: the study would
    wait for it forever. One this worker has seen without a heartbeat for `ORPHAN_INTERVALS`
    heartbeat intervals is failed and retried with its params. Only where `hpo.rdb` can read
    the heartbeats (RDB storages of a known schema); elsewhere nothing changes.
    """

    def __init__(self) -> None:
        self.first_seen: dict[int, float] = {}

    def fail_overdue(self, study: optuna.Study) -> None:
        """Fail and retry the ones overdue."""
        reader = _READERS.get(study)
        if reader is None:
            return
        now = time.monotonic()
        silent = reader.running_without_heartbeat()
        self.first_seen = {tid: self.first_seen.get(tid, now) for tid in silent}
        patience = ORPHAN_INTERVALS * study._storage.get_heartbeat_interval()  # type: ignore[attr-defined]
        for trial_id, since in self.first_seen.items():
            if now - since < patience:
                continue
            trial = study._storage.get_trial(trial_id)
            reason = "its process ended before the trial's first heartbeat"
            fail_trial(study, trial, reason, retry=True)


def fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str, retry: bool) -> bool:
    """Fail a RUNNING trial whose process is gone, recording `reason`.

    With `retry`, the study gets a WAITING copy with the same params, as Optuna's heartbeat
    retry makes, so a surviving worker runs it; without, an enqueued trial (a fixed run, a
    named experiment) still goes back to the queue, as an interrupted one does. False where
    the trial had already finished (another worker failed it first).
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    if retry:
        # `trial` was read before the reason was set: the copy does not inherit it.
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)
    else:
        requeue(study, trial)
    return True


class _FailureStreak:
    """A trial callback that counts this worker's failed trials in a row."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.n = 0
        self.first_reason = ""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        reason = str(trial.user_attrs.get("fail_reason", ""))
        if trial.state != TrialState.FAIL:
            self.n = 0
            return
        if reason.startswith("surplus"):
            return
        self.n += 1
        if self.n == 1:
            self.first_reason = reason or "no reason recorded"
        if self.n >= self.limit:
            raise HpoError(
                f"stopped after {self.n} failed trials in a row; the first failed with: "
                f"{self.first_reason}"
            )


def heartbeat_enabled(study: optuna.Study) -> bool:
    """Whether the study's storage notices dead workers (RDB storages with a heartbeat)."""
    # Optuna has no public way from a study to its storage; tests/test_private_apis.py
    # fails loudly if `_storage` goes. A loaded study wraps an RDBStorage in a cache that
    # passes `get_heartbeat_interval` through, so ask for the method, not the class.
    interval = getattr(study._storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None


def _finished_elsewhere(study: optuna.Study, trial: optuna.trial.Trial) -> list[FrozenTrial]:
    """The trial as stored, if another worker finished it (failed it as stale) meanwhile."""
    try:
        # No public call reads one trial by number; tests/test_private_apis.py guards both.
        stored = study._storage.get_trial(trial._trial_id)
    except Exception:  # the storage is out of reach: Optuna's own tell reports that
        return []
    if not stored.state.is_finished():
        return []
    # For this worker's trial line only: the stored trial cannot change any more.
    stored.set_user_attr(
        "fail_reason",
        "lost its heartbeat: another worker failed it as stale and retried it; "
        "the result here is discarded",
    )
    return [stored]


def _surplus(
    study: optuna.Study, trial: optuna.trial.Trial, target: float, fixed_only: bool
) -> str:
    """Why `trial` must not run (the study's target is taken, or its run is another trial's),
    or "" if it should. An enqueued trial over the target goes back to the queue."""
    if trial.user_attrs.get(FIXED_RUN):
        twin = _twin(study, trial)
        if twin is not None:  # enqueued twice (two `hpo ablate` at once): the run is not lost
            attrs = trial.user_attrs
            return (
                f"surplus: run {attrs.get('variant')} seed {attrs.get('seed')} "
                f"is trial {twin.number}'s (it was enqueued twice)"
            )
    if fixed_only:
        taken = len(_run_keys(study, TrialState.COMPLETE, before=trial.number))
    else:
        taken = _taken_before(study, trial.number)
    if taken < target:
        return ""
    # An enqueued trial popped by the race goes back to the queue, never lost.
    requeue(study, trial)
    return "surplus: the study already had n_trials"


def _run_key(trial: optuna.trial.Trial | FrozenTrial) -> tuple[Any, Any]:
    return (trial.user_attrs.get("variant"), trial.user_attrs.get("seed"))


def _run_keys(
    study: optuna.Study, *states: TrialState, before: int | None = None
) -> set[tuple[Any, Any]]:
    """The distinct fixed runs (variant, seed) of trials in `states`, and with `before`, of
    RUNNING trials numbered below it too (those not ending without their result)."""
    wanted = (*states, TrialState.RUNNING) if before is not None else states
    return {
        _run_key(t)
        for t in study.get_trials(deepcopy=False, states=wanted)
        if t.user_attrs.get(FIXED_RUN)
        and (
            t.state in states
            or (before is not None and t.number < before and not t.user_attrs.get(REQUEUED))
        )
    }


def _twin(study: optuna.Study, trial: optuna.trial.Trial) -> FrozenTrial | None:
    """Another trial of the same fixed run (variant and seed) that is complete, or running
    with a lower number: a run enqueued twice then trains once.

    Optuna pops waiting trials lowest number first, so of two copies running at once the
    lower-numbered one started first; both read the same numbers, so one of them, and only
    one, goes on (no clock is compared: workers' clocks differ). A copy that failed, or that
    is ending and was put back in the queue, is no twin.
    """
    key = _run_key(trial)
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if other.number == trial.number or _run_key(other) != key:
            continue
        if other.state == TrialState.COMPLETE:
            return other
        if other.number < trial.number and not other.user_attrs.get(REQUEUED):
            return other
    return None


def _taken_before(study: optuna.Study, number: int) -> int:
    """Finished trials, and running or waiting ones numbered below `number`.

    A running one started first. A waiting one was enqueued first (a dead worker's retry, a
    named experiment) while this trial was being made; Optuna pops the lowest-numbered waiting
    trial, so the next worker to ask runs it, and it keeps its place in the target.
    """
    reader = _READERS.get(study)
    if reader is not None:
        return reader.taken_before(number)
    states = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(t.state in FINISHED or t.number < number for t in trials)

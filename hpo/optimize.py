"""One worker's share of a study: trials until the study's target, the trials of dead workers
failed and retried, and never a trial past the target."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError
from hpo.interrupts import HeldInterrupts
from hpo.storage import MAX_RETRIES
from hpo.study import (
    ABLATION_SUFFIX,
    ENQUEUED_PARAMS,
    FINISHED,
    FIXED_ONLY,
    FIXED_RUN,
    REQUEUED,
    fast_reader,
    tally,
)

POLL_S = 1.0
ORPHAN_INTERVALS = 4
"""Heartbeat intervals a waiting worker watches a RUNNING trial that has no heartbeat at all
before failing it (twice the grace period after which a heartbeat that stopped is stale)."""
MAX_FAILURES = 10

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
        started: list[optuna.trial.Trial] = []

        def guarded(trial: optuna.trial.Trial) -> float:
            started[:] = [trial]
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
                    # A storage that refuses these writes must not turn the interrupt into
                    # an error that `study.optimize` catches and goes on after.
                    with contextlib.suppress(Exception):
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
                    guarded,
                    n_trials=1,
                    # Once told, the trial is this worker's: no error after it is a lost trial.
                    callbacks=[lambda study, trial: started.clear(), *callbacks, failures],
                    catch=(Exception,),
                )
            except (ValueError, AssertionError, UpdateFinishedTrialError) as err:
                # Optuna refuses to record a trial another worker already failed (this one lost
                # its heartbeat: a cut link, a paused machine). Its result here is discarded.
                # Failed between the objective's end and Optuna's tell, the refusal comes as
                # Optuna's "Should not reach" assertion (a value), or as the storage's
                # UpdateFinishedTrialError (pruned, or failed), and the check above missed it.
                if waits and not taken and started and _refused_as_finished(err):
                    taken.extend(_finished_elsewhere(study, started[0]))
                started.clear()
                if not taken:
                    raise
                lost = taken.pop()
                for callback in callbacks:
                    callback(study, lost)
                failures(study, lost)


def _refused_as_finished(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised while handling, is Optuna refusing to record
    a trial that is already finished (any other error is no lost trial: it is raised)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, UpdateFinishedTrialError) or (
            isinstance(seen, ValueError) and str(seen).startswith("Cannot tell a ")
        ):
            return True
        seen = seen.__context__
    return False


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
        reader = fast_reader(study)
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
    elif not trial.user_attrs.get(REQUEUED):  # else its process put it back before it died
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
    reader = fast_reader(study)
    if reader is not None:
        return reader.taken_before(number)
    states = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(t.state in FINISHED or t.number < number for t in trials)

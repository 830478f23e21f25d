"""The worker loop: a study-wide total, resume, dead workers' trials retried, Ctrl-C, fixed runs."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpo.data import load_dataset
from hpo.errors import HpoError
from hpo.objective import make_objective
from hpo.optimize import _surplus, _taken_before, optimize
from hpo.spec import load_spec_text
from hpo.storage import open_storage
from hpo.study import FIXED_ONLY, FIXED_RUN, N_RUNS, count, create_study, load_study

from .conftest import TINY_SPEC


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


def heartbeat_study(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> optuna.Study:
    """The tiny study, loaded with a heartbeat every second."""
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    study, _ = load_study("tiny", sqlite_url)
    return study


def test_a_trial_left_running_before_its_first_heartbeat_is_failed_and_retried(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process killed between Optuna creating its trial and the first heartbeat leaves a
    # RUNNING trial with no heartbeat, which Optuna's stale check never fails: without hpo's
    # own check the study below would wait for it until the timeout.
    study = heartbeat_study(sqlite_url, monkeypatch)
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


class FailingElsewhereSampler(optuna.samplers.RandomSampler):
    """Another worker fails trial 0 as stale while Optuna's tell of it is under way (after
    Optuna checked that it is RUNNING, before it stores the end)."""

    def __init__(self, elsewhere: optuna.storages.BaseStorage) -> None:
        super().__init__(seed=0)
        self.elsewhere = elsewhere

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        if trial.number == 0:
            self.elsewhere.set_trial_state_values(trial._trial_id, TrialState.FAIL)


@pytest.mark.parametrize("outcome", ["value", "pruned", "error"])
def test_a_trial_failed_elsewhere_during_its_tell_is_discarded_not_a_crash(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    # Optuna then raises its "Should not reach" assertion (a value) or the storage's
    # UpdateFinishedTrialError (pruned, or an error), not the ValueError of a trial failed
    # before its tell began.
    study = heartbeat_study(sqlite_url, monkeypatch)
    study.sampler = FailingElsewhereSampler(open_storage(sqlite_url, heartbeat_interval=None))

    def objective(trial: optuna.Trial) -> float:
        value = trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True)
        if trial.number == 0 and outcome == "pruned":
            raise optuna.TrialPruned()
        if trial.number == 0 and outcome == "error":
            raise RuntimeError("diverged")
        return value

    ended: list[FrozenTrial] = []
    optimize(study, objective, n_trials=2, callbacks=[lambda study, t: ended.append(t)])
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
    # The trial line says why this worker's result was dropped.
    assert ended[0].number == 0 and ended[0].state == TrialState.FAIL
    assert "lost its heartbeat" in ended[0].user_attrs["fail_reason"]


class BrokenAfterTrialSampler(optuna.samplers.RandomSampler):
    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        raise ValueError("a sampler bug")


def test_an_error_after_the_objective_is_raised_not_taken_for_a_lost_trial(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Optuna still stores the trial's end when its sampler fails: the trial is finished, but
    # by this worker, and the error must surface.
    study = heartbeat_study(sqlite_url, monkeypatch)
    study.sampler = BrokenAfterTrialSampler(seed=0)
    with pytest.raises(ValueError, match="a sampler bug"):
        optimize(study, lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)


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


def test_ctrl_c_stops_the_run_even_when_the_storage_refuses_to_record_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from optuna.exceptions import StorageInternalError

    study = optuna.create_study()
    record = optuna.Trial.set_user_attr

    def refusing(trial: optuna.Trial, key: str, value: object) -> None:
        if key == "fail_reason":
            raise StorageInternalError("attempt to write a readonly database")
        record(trial, key, value)

    monkeypatch.setattr(optuna.Trial, "set_user_attr", refusing)

    def objective(trial: optuna.Trial) -> float:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize(study, objective, 3)
    assert len(study.trials) == 1


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
    from hpo.optimize import heartbeat_enabled

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
    from hpo.optimize import _twin

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
    from hpo.optimize import _twin, requeue

    study = fixed_only_study(1, 1)
    first = study.ask()
    requeue(study, first)  # an error or Ctrl-C: the copy is queued before the trial ends
    copy = study.ask()  # another worker pops the copy while `first` is still RUNNING
    assert _twin(study, copy) is None


def test_a_run_put_back_by_its_process_is_not_put_back_again_when_the_process_dies() -> None:
    from hpo.optimize import fail_trial, requeue

    study = fixed_only_study(1, 1)
    first = study.ask()
    requeue(study, first)  # Ctrl-C: the copy is queued, then the process is killed before
    stored = study.get_trials(deepcopy=False)[first.number]  # Optuna's tell: left RUNNING
    assert fail_trial(study, stored, "its worker died", retry=False)
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 1


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

"""Running a study in this process: data loaded once, a line per trial, a status on a terminal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError
from hpo.optimize import MAX_FAILURES, optimize
from hpo.progress import Progress
from hpo.study import FINISHED, best_so_far, count, load_study, nothing_to_run
from hpo.summary import trial_line


def run_study(
    name: str,
    url: str,
    n_trials: int | None,
    timeout: float | None = None,
    data_path: Path | None = None,
    echo: Callable[[str], None] = print,
    debug: bool = False,
    max_failures: int = MAX_FAILURES,
) -> optuna.Study:
    """Run the study `name` until it holds `n_trials` finished trials (or `timeout` passes).

    Stops with HpoError after `max_failures` failed trials in a row."""
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()
    from hpo.data import load_dataset
    from hpo.objective import make_objective

    # Each trial gets its own line (failures with their reason); Optuna's log only with --debug.
    optuna.logging.set_verbosity(optuna.logging.INFO if debug else optuna.logging.ERROR)
    study, spec = load_study(name, url)
    target = n_trials if n_trials is not None else spec.n_trials
    if target is None and timeout is None:
        raise HpoError(f"study '{name}' has no n_trials in its spec: give --n-trials or --timeout")
    already = count(study)
    if target is not None and already >= target:
        echo(nothing_to_run(study, already, target))
        return study
    data = load_dataset(spec.data, data_path)
    progress = Progress(target, already, best_so_far(study), spec.direction == "maximize", echo)

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        value = trial.value if trial.state == TrialState.COMPLETE else None
        progress.trial(0, trial_line(trial), trial.state in FINISHED, value, trial.number)

    def on_epoch(number: int, epoch: int, budget: int) -> None:
        progress.epoch(0, number, epoch, budget)

    try:
        optimize(
            study,
            make_objective(spec, data, on_epoch if progress.live else None),
            target,
            timeout,
            callbacks=[report],
            max_failures=max_failures,
        )
    finally:
        progress.close()
    if target is not None and timeout is None:
        _say_what_is_missing(study, target, echo)
    return study


def _say_what_is_missing(study: optuna.Study, target: int, echo: Callable[[str], None]) -> None:
    """Say so when the run ends short of the target: trials running elsewhere hold the rest.

    Only on a storage without a heartbeat (journal, Redis), where this process cannot tell a
    trial running on another machine from one left RUNNING by a process that is gone.
    """
    finished = count(study)
    if finished >= target:
        return
    running = count(study, (TrialState.RUNNING,))
    echo(
        f"study '{study.study_name}' holds {finished} of its {target} finished trials and "
        f"{running} running: this process stops here, as the rest are running elsewhere; a "
        "trial left RUNNING by a process that is gone needs the fix in docs/scale-out.md"
    )

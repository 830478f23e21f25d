"""Running a study in this process: load data once, show progress, one line per finished trial."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from hpo.errors import HpoError
from hpo.study import FINISHED, MAX_FAILURES, count, load_study, optimize
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
    from tqdm import tqdm

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
        echo(
            f"study '{name}' already holds {already} finished trials (target {target}): "
            "nothing to run; give a larger --n-trials to run more"
        )
        return study
    data = load_dataset(spec.data, data_path)
    bar = tqdm(
        total=target,
        initial=min(already, target or 0),
        unit="trial",
        disable=None,
        leave=False,
        dynamic_ncols=True,
    )

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in FINISHED:
            bar.update(1)
        bar.write(trial_line(trial)) if not bar.disable else echo(trial_line(trial))

    try:
        optimize(
            study,
            make_objective(spec, data),
            target,
            timeout,
            callbacks=[report],
            max_failures=max_failures,
        )
    finally:
        bar.close()
    return study

"""`hpo report`: a study's trials in, a Markdown report with PNG figures out, in a fixed order."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import math
import random
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.ablate import analyze_stored, collect_runs, load_ablation
from hpo.errors import HpoError
from hpo.evaluate import (
    Config,
    default_params,
    evaluate_configs,
    resolved_params,
    stored_results,
    summarize,
)
from hpo.heap import kept_out_of_collections
from hpo.report.facts import Facts
from hpo.report.ranking import Row, find_techniques, rank
from hpo.spec import Spec
from hpo.storage import check_not_storage
from hpo.study import ABLATION_SUFFIX, FIXED_ONLY, all_trials, best_first, load_study
from hpo.summary import state_counts

MIN_IMPORTANCE_TRIALS = 20
# Above this many complete trials, importances come from a random sample of this size.
MAX_IMPORTANCE_TRIALS = 2000


def write_report(
    name: str,
    url: str,
    out: Path | None = None,
    *,
    evaluate_test: bool = False,
    n_seeds: int = 3,
    data_path: Path | None = None,
    activations: bool = False,
    note: bool = False,
    echo: Callable[[str], None] = print,
) -> Path:
    """Write the report of study `name` to `out` (default reports/NAME.md), figures beside it.

    Without options it only reads the storage and writes files. With `evaluate_test`, each
    technique's best configuration and the baseline are retrained with `n_seeds` seeds and
    tested once; results are stored in the study and reused. With `activations`, the image data
    is loaded to draw activations at initialization. With `note`, the ranking becomes the
    study's note in optuna-dashboard (a write to the storage).
    """
    from hpo.report.sections import note_markdown, render

    out = Path(out) if out is not None else Path("reports") / f"{name}.md"
    check_not_storage(out, url)
    if out.is_dir():
        raise HpoError(f"{out} is a folder: name the report's file, e.g. {out / name}.md")
    if not out.suffix:
        raise HpoError(
            f"name the report's file with a suffix, e.g. {out}.md: its figures go in a folder "
            f"beside it named without one ({out})"
        )
    study, spec = load_study(name, url, heartbeat_interval=None)
    if study.user_attrs.get(FIXED_ONLY):
        of = name.removesuffix(ABLATION_SUFFIX)
        raise HpoError(
            f"study '{name}' is the ablation of study '{of}': `hpo report {of}` reports it"
        )
    if activations and "initializer" not in spec.searched():
        raise HpoError(
            f"--activations compares the initializers a study searches, and study '{name}' "
            "searches none"
        )
    if evaluate_test and data_path is not None:
        from hpo.data import resolve_source

        resolve_source(spec.data, data_path)  # refused now, even with nothing left to train
    if activations:
        from hpo.data import load_dataset

        load_dataset(spec.data, data_path)  # kept for the figure: data it cannot load fails now
    trials = all_trials(study)
    check_reportable(name, trials)
    # A large study is a million objects with no cycles: the collections below need not walk them.
    with kept_out_of_collections():
        figures_dir = out.parent / out.stem
        if figures_dir.exists() and not figures_dir.is_dir():
            raise HpoError(
                f"{figures_dir} is a file, and the report's figures go in a folder of that "
                f"name beside {out}: move it, or name the report otherwise"
            )
        with _writing(out):
            figures_dir.mkdir(parents=True, exist_ok=True)

        facts = gather(study, spec, trials)
        found = load_ablation(name, url)
        if found is not None:
            companion, plan, seeds = found
            facts.ablation_runs = dict(collect_runs(companion.get_trials(deepcopy=False)))
            facts.ablation = analyze_stored(companion, plan, seeds, facts.ablation_runs)
        if evaluate_test:
            evaluate_configs(study, spec, facts.configs, n_seeds, data_path, echo)
        tested = {
            c.key: stored_results(study, c) or _ablation_results(facts, c) for c in facts.configs
        }
        facts.results = {k: summarize(v) for k, v in on_common_seeds(tested).items()}
        facts.evaluator, facts.importances, facts.importance_note = importances(
            facts.complete, spec.direction
        )

        from hpo.report.drawing import draw_figures

        echo(f"drawing figures in {figures_dir}")
        draw_figures(facts, figures_dir, data_path, activations)
        with _writing(out):
            out.write_text(render(facts, url))
        if note:
            from optuna_dashboard import save_note

            save_note(study, note_markdown(facts))
    return out


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """A file system error while writing the report `out`, as one line."""
    try:
        yield
    except OSError as err:
        raise HpoError(f"cannot write the report to {out}: {err.strerror or err}") from err


def on_common_seeds(
    found: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, list[Mapping[str, Any]]]:
    """Each configuration's test results on the seeds that every configuration with results
    has, so that their means and differences are over the same seeds (configurations tested
    with different `--seeds` at different times would otherwise compare other seeds' luck).
    Where no seed is common to all, each keeps its own."""
    seed_sets = [{r["seed"] for r in results} for results in found.values() if results]
    common = set.intersection(*seed_sets) if seed_sets else set()
    if not common:
        return {key: list(results) for key, results in found.items()}
    return {key: [r for r in results if r["seed"] in common] for key, results in found.items()}


def _ablation_results(facts: Facts, config: Config) -> list[dict[str, Any]]:
    """The ablation's runs of `config`'s params, as test results (the same retraining: fresh
    seeds from the same stream, final model scored once on test and on validation)."""
    if facts.ablation is None:
        return []
    from hpo.ablation import digest

    wanted = digest(config.params)
    keys = [v.key for v in facts.ablation.plan.variants if digest(v.params) == wanted]
    return [
        dict(facts.ablation_runs[(key, seed)], seed=seed)
        for key in keys[:1]
        for seed in facts.ablation.seeds
        if (key, seed) in facts.ablation_runs
    ]


def check_reportable(name: str, trials: Sequence[FrozenTrial]) -> None:
    """A report needs at least one complete trial with a finite value."""
    if not trials:
        raise HpoError(
            f"study '{name}' has no trials yet: run it with `hpo study run {name}` first"
        )
    if not any(_finite(t) for t in trials):
        counts = ", ".join(f"{k.lower()} {v}" for k, v in state_counts(list(trials)).items() if v)
        reasons = [str(t.user_attrs.get("fail_reason", "")) for t in trials]  # number order
        first = next((r for r in reasons if r), "")
        why = f"; first failure: {first}" if first else ""
        raise HpoError(
            f"study '{name}' has no complete trial with a value to report ({counts}){why}"
        )


def _finite(trial: FrozenTrial) -> bool:
    return (
        trial.state == TrialState.COMPLETE
        and trial.value is not None
        and math.isfinite(trial.value)
    )


def ranked(trials: Sequence[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """Complete trials with a finite value, best first; ties go to the earlier trial."""
    return best_first([t for t in trials if _finite(t)], StudyDirection[direction.upper()])


def gather(study: optuna.Study, spec: Spec, trials: list[FrozenTrial]) -> Facts:
    rows = rank(trials, find_techniques(spec), spec.direction)
    baseline, configs = choose_configs(spec, trials, rows)
    complete = ranked(trials, spec.direction)
    if complete:
        resolved_params(complete[0], spec)  # the figures read it: refuse a foreign one early
    return Facts(
        study=study,
        spec=spec,
        trials=trials,
        complete=complete,
        rows=rows,
        configs=configs,
        baseline=baseline,
    )


def choose_configs(
    spec: Spec, trials: Sequence[FrozenTrial], rows: Sequence[Row]
) -> tuple[Config, list[Config]]:
    """The baseline, the lesson's experiments and each technique's best trial, once each.

    The baseline is the experiment named "baseline" if the study has one, else the
    configuration with every searched knob at its default (trained even if no trial ran it).
    """
    by_number = {t.number: t for t in trials}
    experiments = [t for t in trials if _finite(t) and "experiment" in t.user_attrs]
    named = {t.user_attrs["experiment"]: t for t in experiments}
    if "baseline" in named:
        trial = named["baseline"]
        baseline = Config("baseline", resolved_params(trial, spec), trial.number)
    else:
        baseline = Config("baseline (defaults)", default_params(spec))
    labelled: dict[str, tuple[list[str], Config]] = {baseline.key: ([baseline.label], baseline)}

    def add(label: str, trial: FrozenTrial) -> None:
        config = Config(label, resolved_params(trial, spec), trial.number)
        labels, found = labelled.setdefault(config.key, ([], config))
        if found.trial is None:  # the defaults, which this trial ran: it is their source
            labelled[config.key] = (labels, dataclasses.replace(found, trial=trial.number))
        if label not in labels:
            labels.append(label)

    for trial in experiments:
        add(trial.user_attrs["experiment"], trial)
    for row in rows:
        if row.best_trial is not None:
            add(row.technique.name, by_number[row.best_trial])
    configs = [
        Config(" / ".join(labels), config.params, config.trial)
        for labels, config in labelled.values()
    ]
    return configs[0], configs


def importances(
    complete: Sequence[FrozenTrial], direction: str
) -> tuple[str, dict[str, float] | None, str]:
    """Optuna's parameter importances with its default evaluator, or why there are none.

    Computed on a study in memory holding the complete trials (a random sample of
    `MAX_IMPORTANCE_TRIALS` of them in a larger study, said in the note): the study's own
    storage is not read again.
    """
    importance = importance_api()
    evaluator = importance.PedAnovaImportanceEvaluator()
    name = type(evaluator).__name__
    if len(complete) < 2:
        return name, None, "needs at least 2 complete trials"
    sample = list(complete)
    if len(sample) > MAX_IMPORTANCE_TRIALS:
        sample = random.Random(0).sample(sample, MAX_IMPORTANCE_TRIALS)
    memory = optuna.create_study(direction=direction)  # type: ignore[arg-type]
    memory.add_trials(_bare(t) for t in sample)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = importance.get_param_importances(memory, evaluator=evaluator)
    except (ValueError, RuntimeError) as err:
        return name, None, f"not computed: {err}"
    if not found:
        return name, None, "the complete trials vary no searched parameter"
    note = ""
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        note = (
            f"only {len(complete)} complete trials (fewer than {MIN_IMPORTANCE_TRIALS}): "
            "these importances are rough at best"
        )
    elif len(sample) < len(complete):
        note = (
            f"computed on a random sample of {len(sample)} of the {len(complete)} complete trials"
        )
    # Optuna leaves ties in the order params came out of a set, which varies per process.
    ordered = sorted(found.items(), key=lambda kv: (-round(kv[1], 9), kv[0]))
    return name, {k: round(float(v), 9) for k, v in ordered}, note


class _SharedTrial(FrozenTrial):
    """A trial that an in-memory study copies shallowly (`copy.deepcopy` asks the object).

    The study keeps a deep copy of each trial it is given and of each trial an evaluator reads
    back: for 2,000 trials, deep copies of their distributions were half of this function's
    time. These trials are made for the one study and never changed, so sharing their
    dictionaries is safe; the study still sets its own number and id on each copy.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedTrial:
        return copy.copy(self)


def _bare(trial: FrozenTrial) -> FrozenTrial:
    """Only what an evaluator reads of `trial`: its value, params and distributions."""
    now = datetime.datetime.now()
    return _SharedTrial(
        number=-1,
        state=TrialState.COMPLETE,
        value=trial.value,
        datetime_start=now,
        datetime_complete=now,
        params=dict(trial.params),
        distributions=dict(trial.distributions),
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )


def importance_api() -> ModuleType:
    """`optuna.importance`, imported as it is where scikit-learn is not installed.

    The package imports scikit-learn for its fANOVA evaluator, which the report does not use:
    about a second, an eighth of a large study's report. PED-ANOVA needs none of it, and
    Optuna supports an installation without scikit-learn (only fANOVA then refuses to run, in
    this process). Where either is already imported, this is a plain import.
    """
    if "optuna.importance" in sys.modules or "sklearn" in sys.modules:
        import optuna.importance

        return optuna.importance
    sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        import optuna.importance
    finally:
        sys.modules.pop("sklearn", None)
    return optuna.importance

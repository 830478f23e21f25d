"""Studies: create one from a spec, find and load it, count and read its trials."""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import HpoError, StudyNotFoundError
from hpo.heap import collector_paused
from hpo.registry import make_pruner, make_sampler
from hpo.secrets import mask, redact
from hpo.spec import Component, Spec, load_spec_text
from hpo.storage import open_storage

if TYPE_CHECKING:
    from hpo.rdb import Reader

SPEC_ATTR = "spec_toml"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FIXED_RUN = "fixed_run"
"""Trial user attribute: the trial was enqueued with its full params and seed (an ablation run)."""
FIXED_ONLY = "fixed_runs_only"
"""Study user attribute: every trial of the study is an enqueued fixed run (an ablation)."""
ENQUEUED_PARAMS = "enqueued_params"
"""Trial user attribute of a named experiment: the params it was enqueued with."""
REQUEUED = "requeued"
"""Trial user attribute: the trial ends without its result and a copy of it is in the queue."""
N_RUNS = "n_runs"
"""Study user attribute of a study of fixed runs: how many it must finish."""
ABLATION_SUFFIX = ":ablation"
"""The ablation of study NAME is the study NAME:ablation, in the same storage."""


def create_study(spec: Spec, url: str) -> optuna.Study:
    """Create `spec`'s study in the storage, store the spec with it, enqueue its named trials."""
    storage = open_storage(url, create=True)
    exists = HpoError(
        f"study '{spec.name}' already exists in {mask(url)}; run it with "
        f"`hpo study run {spec.name}` or remove it with `hpo study delete {spec.name}`"
    )
    if spec.name.endswith(ABLATION_SUFFIX):
        of = spec.name.removesuffix(ABLATION_SUFFIX)
        raise HpoError(
            f"study names ending in '{ABLATION_SUFFIX}' are kept for ablations "
            f"(`hpo ablate {of}` makes '{spec.name}'): choose another name"
        )
    if spec.name in study_names(storage):
        raise exists
    direction = optuna.study.StudyDirection[spec.direction.upper()]
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=direction)
    except optuna.exceptions.DuplicatedStudyError as err:  # another `create` won the race
        raise exists from err
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


def nothing_to_run(study: optuna.Study, already: int, target: int) -> str:
    """The line for a run of a study that already holds its target, and how to run more."""
    name = study.study_name
    more = "give a larger --n-trials to run more"
    if study.user_attrs.get(FIXED_ONLY):  # an ablation: its total is its seeds' runs
        parent = name.removesuffix(ABLATION_SUFFIX)
        more = f"`hpo ablate {parent} --seeds K` with more seeds runs more"
    return (
        f"study '{name}' already holds {already} finished trials (target {target}): "
        f"nothing to run; {more}"
    )


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


def with_value(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The complete trials that hold a value (a damaged storage can lose a trial's value)."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def best_first(complete: list[FrozenTrial], direction: StudyDirection) -> list[FrozenTrial]:
    """`complete` best first; a tie goes to the earlier trial."""
    sign = -1 if direction == StudyDirection.MAXIMIZE else 1
    return sorted(complete, key=lambda t: (sign * t.value, t.number))  # type: ignore[operator]


def best_complete(trials: list[FrozenTrial], direction: StudyDirection) -> FrozenTrial | None:
    """The best of `trials` that completed with a value, or None: `Study.best_trial` without
    its failure where complete trials lost their values."""
    complete = with_value(trials)
    return best_first(complete, direction)[0] if complete else None


def best_so_far(study: optuna.Study) -> tuple[float, int] | None:
    """The best complete trial's value and number, if there is one: asked of the storage,
    which reads that trial alone, never all of them."""
    try:
        best = study.best_trial
    except (ValueError, TypeError):
        # No complete trial; or complete trials without a value, in a storage damaged outside
        # Optuna: RDB storages find no best trial, the others compare None with None.
        return None
    return (float(best.value), best.number) if best.value is not None else None


def fast_reader(study: optuna.Study) -> Reader | None:
    """The fast reader of a study `load_study` loaded from an RDB storage, if it has one."""
    return _READERS.get(study)

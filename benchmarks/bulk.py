"""Write many finished trials into an Optuna RDB study at once, for scale benchmarks.

`study.add_trials` writes one trial per transaction through Optuna's ORM: about 90 ms a trial
here, so a 10,000-trial study takes a quarter of an hour to build. `write_trials` inserts the
same rows with a few multi-row statements on the tables Optuna's RDB schema defines (reflected
from the database, no private Optuna module), so the study reads back through Optuna exactly as
`add_trials` would have written it; `tests/test_bulk.py` checks that against `add_trials` and
fails loudly if the schema changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial

from hpo.rdb import TABLES


def write_trials(url: str, study_name: str, trials: Sequence[FrozenTrial]) -> None:
    """Append `trials` (finished, single objective) to study `study_name` in storage `url`.

    Numbers continue after the study's last trial, as `add_trials` numbers them.
    """
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, only=TABLES)
    t = meta.tables
    with engine.begin() as db:
        study_id = db.execute(
            sa.select(t["studies"].c.study_id).where(t["studies"].c.study_name == study_name)
        ).scalar_one()
        last = db.execute(
            sa.select(sa.func.max(t["trials"].c.number)).where(t["trials"].c.study_id == study_id)
        ).scalar()
        first = 0 if last is None else last + 1
        rows = [
            {
                "number": first + i,
                "study_id": study_id,
                "state": trial.state.name,
                "datetime_start": trial.datetime_start,
                "datetime_complete": trial.datetime_complete,
            }
            for i, trial in enumerate(trials)
        ]
        inserted = db.execute(
            sa.insert(t["trials"]).returning(
                t["trials"].c.trial_id, t["trials"].c.number, sort_by_parameter_order=True
            ),
            rows,
        ).all()
        ids = [row.trial_id for row in sorted(inserted, key=lambda row: row.number)]
        children: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES[2:]}
        for trial_id, trial in zip(ids, trials, strict=True):
            _rows_of(trial_id, trial, children)
        for name, many in children.items():
            if many:
                db.execute(sa.insert(t[name]), many)
    engine.dispose()


def _rows_of(trial_id: int, trial: FrozenTrial, out: dict[str, list[dict[str, Any]]]) -> None:
    for name, value in trial.params.items():
        dist = trial.distributions[name]
        out["trial_params"].append(
            {
                "trial_id": trial_id,
                "param_name": name,
                "param_value": dist.to_internal_repr(value),
                "distribution_json": distribution_to_json(dist),
            }
        )
    if trial.value is not None:
        value, kind = _stored(trial.value)
        out["trial_values"].append(
            {"trial_id": trial_id, "objective": 0, "value": value, "value_type": kind}
        )
    for step, value in trial.intermediate_values.items():
        stored, kind = _stored(value)
        out["trial_intermediate_values"].append(
            {
                "trial_id": trial_id,
                "step": step,
                "intermediate_value": stored,
                "intermediate_value_type": kind,
            }
        )
    for table, attrs in (
        ("trial_user_attributes", trial.user_attrs),
        ("trial_system_attributes", trial.system_attrs),
    ):
        for key, value in attrs.items():
            out[table].append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})


def _stored(value: float) -> tuple[float | None, str]:
    """A float as Optuna's schema stores it: the value and its kind."""
    if math.isnan(value):
        return None, "NAN"
    if math.isinf(value):
        return None, "INF_POS" if value > 0 else "INF_NEG"
    return value, "FINITE"

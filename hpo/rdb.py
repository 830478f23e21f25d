"""Fast reads of a study in an RDB storage (SQLite, PostgreSQL, MySQL): counts and every trial.

Optuna reads an RDB study through its ORM: at 10,000 trials of the regularization space (30
parameters, 20 intermediate values and a dozen attributes each: 400,000 rows) that takes 20-40 s
here, almost all of it building ORM objects. A study's bookkeeping only needs how many trials
are in which state, and a report needs the trials once. This module asks the database for
exactly that with plain SQL on the tables of Optuna's schema: counts by state in one query, and
every trial in one query per table, built into `FrozenTrial`s with Optuna's public constructor.

Optuna's schema is versioned (its migrations); a reader is made only for the schema versions
listed in `KNOWN_SCHEMAS`. Any other storage or version gets `None`, and callers fall back to
Optuna's own reads, so a changed schema costs speed, never correctness.
`tests/test_rdb.py` reads studies both ways and fails loudly when the installed Optuna's
schema is not one of these.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

KNOWN_SCHEMAS = frozenset({"v3.2.0.a"})
# Optuna's tables that hold a study's trials (benchmarks.bulk writes the same ones).
TABLES = (
    "studies",
    "trials",
    "trial_params",
    "trial_values",
    "trial_intermediate_values",
    "trial_user_attributes",
    "trial_system_attributes",
)
# The columns read from each table of a trial's parts, after its trial_id.
_CHILD_COLUMNS = {
    "trial_params": ("param_name", "param_value", "distribution_json"),
    "trial_values": ("value", "value_type"),
    "trial_intermediate_values": ("step", "intermediate_value", "intermediate_value_type"),
    "trial_user_attributes": ("key", "value_json"),
    "trial_system_attributes": ("key", "value_json"),
}
_JSON_TABLES = frozenset({"trial_user_attributes", "trial_system_attributes"})
_FLOAT_COLUMNS = frozenset({"param_value", "value", "intermediate_value"})
_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


class Reader:
    """Counts and full reads of one study, straight from its tables."""

    def __init__(self, engine: sa.Engine, study_name: str) -> None:
        meta = sa.MetaData()
        meta.reflect(engine, only=(*TABLES, "trial_heartbeats"))
        self._engine = engine
        self._t = meta.tables
        studies = self._t["studies"]
        with engine.connect() as db:
            self._study_id = db.execute(
                sa.select(studies.c.study_id).where(studies.c.study_name == study_name)
            ).scalar_one()

    def taken_before(self, number: int) -> int:
        """Finished trials, and RUNNING or WAITING ones numbered below `number`, in one query."""
        trials = self._t["trials"]
        where = sa.or_(
            trials.c.state.in_(["COMPLETE", "PRUNED"]),
            sa.and_(trials.c.state.in_(["RUNNING", "WAITING"]), trials.c.number < number),
        )
        query = (
            sa.select(sa.func.count())
            .select_from(trials)
            .where(trials.c.study_id == self._study_id, where)
        )
        with self._engine.connect() as db:
            return int(db.execute(query).scalar_one())

    def tally(self) -> dict[TrialState, int]:
        """How many trials are in each state, in one query."""
        trials = self._t["trials"]
        query = (
            sa.select(trials.c.state, sa.func.count())
            .where(trials.c.study_id == self._study_id)
            .group_by(trials.c.state)
        )
        with self._engine.connect() as db:
            return {TrialState[state]: int(n) for state, n in db.execute(query).all()}

    def running_without_heartbeat(self) -> list[int]:
        """Trial ids of the study's RUNNING trials that have never recorded a heartbeat."""
        trials, beats = self._t["trials"], self._t["trial_heartbeats"]
        query = sa.select(trials.c.trial_id).where(
            trials.c.study_id == self._study_id,
            trials.c.state == "RUNNING",
            ~sa.exists().where(beats.c.trial_id == trials.c.trial_id),
        )
        with self._engine.connect() as db:
            return [int(tid) for tid in db.execute(query).scalars()]

    def trials(self) -> list[FrozenTrial]:
        """Every trial of the study, in number order, as Optuna's `get_trials` gives them."""
        t = self._t
        trials = t["trials"]
        mine = sa.select(trials.c.trial_id).where(trials.c.study_id == self._study_id)
        rows: dict[str, dict[int, list[tuple[Any, ...]]]] = {}
        with self._engine.connect() as db:
            heads = db.execute(
                sa.select(
                    trials.c.trial_id,
                    trials.c.number,
                    trials.c.state,
                    trials.c.datetime_start,
                    trials.c.datetime_complete,
                ).where(trials.c.study_id == self._study_id)
            ).all()
            for name, columns in _CHILD_COLUMNS.items():
                table = t[name]
                # In the order they were written, as Optuna gives params and attributes.
                query = (
                    sa.select(*(_column(table, c) for c in ("trial_id", *columns)))
                    .where(table.c.trial_id.in_(mine))
                    .order_by(*table.primary_key.columns)
                )
                found: Sequence[Any] = _fetch(db, query)
                if name in _JSON_TABLES:
                    found = _decoded(found)
                by_trial: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
                for row in found:
                    by_trial[row[0]].append(tuple(row[1:]))
                rows[name] = by_trial
        return sorted((_trial(head, rows) for head in heads), key=lambda trial: trial.number)


def _fetch(db: sa.Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """The query's rows as the driver returns them, plain tuples.

    SQLAlchemy's rows, with their per-row processing, take twice the driver's time (0.3 s of a
    10,000-trial read here). Only for numbers and text, which every driver returns as Python's
    own; its bound values (ids) are written into the statement.
    """
    sql = str(query.compile(dialect=db.dialect, compile_kwargs={"literal_binds": True}))
    driver_error = db.dialect.loaded_dbapi.Error
    cursor = db.connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    except driver_error as err:
        # As SQLAlchemy raises it (what hpo's storage errors catch), and a lost connection
        # leaves the pool as it would.
        lost = db.dialect.is_disconnect(err, db.connection.dbapi_connection, cursor)
        if lost:
            db.invalidate(err)
        raise sa.exc.DBAPIError.instance(
            sql, None, err, driver_error, connection_invalidated=lost, dialect=db.dialect
        ) from err
    finally:
        with contextlib.suppress(driver_error):
            cursor.close()


def _column(table: sa.Table, name: str) -> sa.ColumnElement[Any]:
    # A reflected MySQL DOUBLE would come back as a Decimal of 10 places: read floats as floats.
    if name in _FLOAT_COLUMNS:
        return sa.type_coerce(table.c[name], sa.Double()).label(name)
    return table.c[name]


def reader_for(storage: BaseStorage, study_name: str) -> Reader | None:
    """A fast reader of the study, or None where the storage is not an RDB of a known schema."""
    if not isinstance(storage, RDBStorage):
        return None
    if storage.get_current_version() not in KNOWN_SCHEMAS:
        return None
    return Reader(storage.engine, study_name)


def _trial(head: Any, rows: dict[str, dict[int, list[tuple[Any, ...]]]]) -> FrozenTrial:
    tid, number, state, start, complete = head
    params, distributions = {}, {}
    for name, stored, text in rows["trial_params"].get(tid, ()):
        dist = _distribution(text)
        distributions[name] = dist
        params[name] = dist.to_external_repr(stored)
    values = rows["trial_values"].get(tid)
    return FrozenTrial(
        number=number,
        state=TrialState[state],
        value=_float(*values[0]) if values else None,
        datetime_start=start,
        datetime_complete=complete,
        params=params,
        distributions=distributions,
        user_attrs=dict(rows["trial_user_attributes"].get(tid, ())),
        system_attrs=dict(rows["trial_system_attributes"].get(tid, ())),
        intermediate_values={
            step: _float(value, kind)
            for step, value, kind in rows["trial_intermediate_values"].get(tid, ())
        },
        trial_id=tid,
    )


@functools.lru_cache(maxsize=4096)
def _distribution(text: str) -> BaseDistribution:
    # Every trial of a study repeats the same few distributions: parse each once.
    return json_to_distribution(text)


def _float(value: float | None, kind: str) -> float:
    return _SPECIAL[kind] if kind in _SPECIAL else float(value)  # type: ignore[arg-type]


def _decoded(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """(trial_id, key, value_json) rows with each value decoded, all in one `json.loads`.

    One call over the joined texts decodes the same values as a call per row, without the
    per-call overhead that was most of a large study's decoding time.
    """
    values = json.loads("[" + ",".join(text for _, _, text in rows) + "]")
    return [(tid, key, value) for (tid, key, _), value in zip(rows, values, strict=True)]

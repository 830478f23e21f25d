"""Plain-text views of studies for the CLI: counts by state, best trial, top-k, exports."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.study import all_trials, best_first, best_so_far, with_value

if TYPE_CHECKING:
    # Imported where a frame is made: `hpo report` counts states from here and makes none,
    # and pandas is a fifth of a second of its start.
    import pandas as pd

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = Counter(t.state.name for t in trials)
    return {state: counts.get(state, 0) for state in STATES}


def trial_line(trial: FrozenTrial) -> str:
    """One compact line for a finished trial: number, state, value, epochs, seconds."""
    attrs = trial.user_attrs
    name = f" [{attrs['experiment']}]" if "experiment" in attrs else ""
    if "variant" in attrs:
        name = f" [{attrs['variant']}, seed {attrs['seed']}]"
    value = trial.value if trial.value is not None else math.nan
    epochs = f"{attrs.get('n_epochs', 0)}/{attrs.get('epoch_budget', '?')}"
    seconds = sum(attrs.get("seconds_per_epoch", []))
    line = (
        f"trial {trial.number:>4}{name}  {trial.state.name:<8}  value {value:.4f}  "
        f"epochs {epochs:>7}  {seconds:7.1f} s"
    )
    reason = attrs.get("fail_reason") or trial.system_attrs.get("fail_reason")
    if trial.state == TrialState.FAIL and reason:
        line += f"  ({str(reason).splitlines()[0][:120]})"
    return line


def list_lines(storage: optuna.storages.BaseStorage) -> list[str]:
    """One row per study in `storage`: its name, direction(s), trial count and best value.

    Counts by one query and asks the storage for the best trial only, where Optuna's study
    summaries read every trial of every study (seconds at 10,000 trials); a best trial that a
    damaged storage cannot give (complete trials without a value) shows as "-".
    """
    from hpo.rdb import reader_for

    rows = []
    for name in sorted(optuna.get_all_study_names(storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        reader = reader_for(storage, name)
        n_trials = sum(reader.tally().values()) if reader else len(study.get_trials(deepcopy=False))
        # A study of another tool on a shared storage may have several objectives: it has no
        # single direction or best value (`Study.direction` raises there).
        best = best_so_far(study) if len(study.directions) == 1 else None
        rows.append(
            {
                "study": name,
                "direction": "/".join(d.name.lower() for d in study.directions),
                "trials": n_trials,
                "best": "-" if best is None else f"{best[0]:.4f}",
            }
        )
    if not rows:
        return ["no studies"]
    import pandas as pd

    return pd.DataFrame(rows).to_string(index=False).splitlines()


def show_lines(study: optuna.Study, top_k: int = 10) -> list[str]:
    """Counts by state, the best trial with its params, and the top-k finished trials."""
    trials = all_trials(study)
    counts = state_counts(trials)
    lines = [
        f"study {study.study_name} ({study.direction.name.lower()} "
        f"{study.user_attrs.get('metric', 'value')})",
        "trials: " + ", ".join(f"{k.lower()} {v}" for k, v in counts.items()),
    ]
    complete = with_value(trials)
    if not complete:
        lost = counts["COMPLETE"]
        if lost:
            # Only a storage damaged outside Optuna stores a complete trial without its value.
            have = "trial has" if lost == 1 else "trials have"
            return [*lines, f"no complete trial with a value ({lost} complete {have} none)"]
        return [*lines, "no complete trial yet"]
    best = best_first(complete, study.direction)[0]
    lines.append(f"best: trial {best.number} value {best.value:.4f}")
    lines += [f"  {k} = {v}" for k, v in sorted(best.user_attrs.get("params", best.params).items())]
    table = top_k_frame(study, top_k, complete)
    lines += ["", f"top {len(table)}:", *table.to_string(index=False).splitlines()]
    return lines


def top_k_frame(study: optuna.Study, k: int, complete: list[FrozenTrial]) -> pd.DataFrame:
    """The k best of the study's `complete` trials."""
    rows = []
    for t in best_first(complete, study.direction)[:k]:
        row: dict[str, Any] = {
            "trial": t.number,
            "value": round(t.value, 4),  # type: ignore[arg-type]
            "epochs_run": t.user_attrs.get("n_epochs"),
            "best_epoch": t.user_attrs.get("best_epoch"),
        }
        # A searched knob named as a column above (none is yet) would not overwrite it.
        row.update({k if k not in row else f"param_{k}": v for k, v in t.params.items()})
        rows.append(row)
    import pandas as pd

    # A study without trials still gets its header: a CSV reader sees the columns, not nothing.
    columns = ["number", "state", "value", "datetime_start", "datetime_complete"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def export_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, params and the scalar user attributes."""
    rows = []
    for t in all_trials(study):
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
        }
        row.update({f"params_{k}": v for k, v in t.params.items()})
        for key, value in t.user_attrs.items():
            if not isinstance(value, (list, dict)):
                row[f"user_attrs_{key}"] = value
        rows.append(row)
    import pandas as pd

    # A study without trials still gets its header: a CSV reader sees the columns, not nothing.
    columns = ["number", "state", "value", "datetime_start", "datetime_complete"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def export_json(study: optuna.Study) -> str:
    """Every trial with all its user attributes (curves included), as JSON."""
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "user_attrs": t.user_attrs,
            "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
        }
        for t in all_trials(study)
    ]
    document = _finite_or_null({"study": study.study_name, "trials": trials})
    return json.dumps(document, indent=1, default=str, allow_nan=False)


def _finite_or_null(value: Any) -> Any:
    """`value` with every NaN or infinity made null: JSON has no such numbers, and a strict
    reader refuses the `NaN` and `Infinity` that Python writes by default."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value

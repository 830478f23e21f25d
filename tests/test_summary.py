"""Text views of a study: one line per trial, show, top-k, exports; built from real trials."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.summary import export_frame, export_json, list_lines, show_lines, state_counts, trial_line

RATE = FloatDistribution(1e-4, 1e-1, log=True)


def made(
    state: TrialState, value: float | None = None, **attrs: object
) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        value=value,
        params={"learning_rate": 0.01},
        distributions={"learning_rate": RATE},
        user_attrs=attrs,
    )


@pytest.fixture
def study() -> optuna.Study:
    study = optuna.create_study(study_name="views", direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    study.add_trial(
        made(
            TrialState.COMPLETE,
            0.5,
            n_epochs=3,
            epoch_budget=3,
            best_epoch=2,
            seconds_per_epoch=[1.0, 0.5, 0.5],
            curve_val_accuracy=[0.1, 0.5, 0.5],
        )
    )
    study.add_trial(made(TrialState.COMPLETE, 0.7, n_epochs=3, epoch_budget=3, best_epoch=3))
    study.add_trial(made(TrialState.PRUNED, 0.2, n_epochs=1, epoch_budget=3))
    study.add_trial(
        made(TrialState.FAIL, fail_reason="diverged: training loss was not finite\nmore")
    )
    return study


def test_the_top_table_keeps_the_epochs_run_beside_a_searched_epoch_budget() -> None:
    study = optuna.create_study(study_name="budget", direction="maximize")
    study.set_user_attr("metric", "val_accuracy")
    budget = optuna.distributions.IntDistribution(4, 12)
    study.add_trial(
        create_trial(
            value=0.5,
            params={"epochs": 8},
            distributions={"epochs": budget},
            user_attrs={"n_epochs": 6, "epoch_budget": 8, "best_epoch": 4},
        )
    )
    lines = show_lines(study)
    header, row = lines[lines.index("top 1:") + 1 :]
    assert header.split() == ["trial", "value", "epochs_run", "best_epoch", "epochs"]
    assert row.split() == ["0", "0.5", "6", "4", "8"]


def test_state_counts_name_every_state_even_when_absent(study: optuna.Study) -> None:
    counts = state_counts(study.get_trials())
    assert counts == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1, "RUNNING": 0, "WAITING": 0}


def test_a_trial_line_has_number_state_value_epochs_seconds(study: optuna.Study) -> None:
    line = trial_line(study.trials[0])
    assert line.split() == [
        "trial",
        "0",
        "COMPLETE",
        "value",
        "0.5000",
        "epochs",
        "3/3",
        "2.0",
        "s",
    ]


def test_a_failed_trial_line_carries_the_first_line_of_its_reason(study: optuna.Study) -> None:
    line = trial_line(study.trials[3])
    assert "FAIL" in line and "value nan" in line
    assert line.endswith("(diverged: training loss was not finite)")


def test_named_runs_show_their_experiment_or_variant_and_seed() -> None:
    assert "[baseline]" in trial_line(made(TrialState.COMPLETE, 0.1, experiment="baseline"))
    line = trial_line(made(TrialState.COMPLETE, 0.1, variant="no dropout", seed=9))
    assert "[no dropout, seed 9]" in line


def test_show_names_the_best_trial_and_ranks_the_top_k(study: optuna.Study) -> None:
    lines = show_lines(study, top_k=1)
    assert lines[0] == "study views (maximize val_accuracy)"
    assert "complete 2, pruned 1, fail 1" in lines[1]
    assert lines[2] == "best: trial 1 value 0.7000"
    assert "top 1:" in lines
    assert lines[-1].split()[:2] == ["1", "0.7"]


def test_show_without_a_complete_trial_says_so() -> None:
    study = optuna.create_study()
    study.add_trial(made(TrialState.PRUNED, 0.2))
    assert show_lines(study)[-1] == "no complete trial yet"


def test_exports_keep_scalars_in_the_table_and_everything_in_json(study: optuna.Study) -> None:
    frame = export_frame(study)
    assert list(frame["state"]) == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert "user_attrs_n_epochs" in frame and "user_attrs_curve_val_accuracy" not in frame
    assert frame["params_learning_rate"].tolist() == [0.01] * 4
    exported = json.loads(export_json(study))
    assert exported["trials"][0]["user_attrs"]["curve_val_accuracy"] == [0.1, 0.5, 0.5]
    assert exported["trials"][3]["value"] is None


def test_the_json_export_is_standard_json_where_values_are_not_finite() -> None:
    study = optuna.create_study(study_name="loss", direction="minimize")
    study.add_trial(
        create_trial(
            value=float("inf"),
            params={"learning_rate": 0.01},
            distributions={"learning_rate": RATE},
            user_attrs={"curve_val_loss": [2.5, float("nan")], "n_epochs": 2},
            intermediate_values={0: 2.5, 1: float("nan")},
        )
    )

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    exported = json.loads(export_json(study), parse_constant=refuse)
    [trial] = exported["trials"]
    assert trial["value"] is None and trial["user_attrs"]["curve_val_loss"] == [2.5, None]
    assert trial["intermediate_values"] == {"0": 2.5, "1": None}


def test_an_empty_study_exports_a_header() -> None:
    text = export_frame(optuna.create_study()).to_csv(index=False)
    assert text.splitlines() == ["number,state,value,datetime_start,datetime_complete"]


def test_list_lines_one_row_per_study_or_none() -> None:
    storage = optuna.storages.InMemoryStorage()
    assert list_lines(storage) == ["no studies"]
    for name in ("b", "a"):
        s = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        s.add_trial(made(TrialState.COMPLETE, 0.25))
    lines = list_lines(storage)
    assert [line.split()[0] for line in lines] == ["study", "a", "b"]
    assert lines[1].split()[-1] == "0.2500"


def test_a_journal_that_lost_its_values_is_listed_without_a_best(tmp_path: Path) -> None:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    log = tmp_path / "journal.log"
    study = optuna.create_study(
        study_name="lost",
        storage=JournalStorage(JournalFileBackend(str(log))),
        direction="maximize",
    )
    for value in (0.2, 0.4):
        trial = study.ask()
        study.tell(trial, value)
    text = log.read_text()
    log.write_text(
        text.replace('"values":[0.2]', '"values":null').replace('"values":[0.4]', '"values":null')
    )
    storage = JournalStorage(JournalFileBackend(str(log)))
    assert [t.value for t in optuna.load_study(study_name="lost", storage=storage).trials] == [
        None
    ] * 2
    assert list_lines(storage)[1].split() == ["lost", "maximize", "2", "-"]


def test_list_reads_no_trial_but_the_best_from_a_sql_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    study = optuna.create_study(study_name="many", storage=url, direction="minimize")
    for value in (0.3, 0.1, 0.2):
        study.add_trial(made(TrialState.COMPLETE, value))
    study.add_trial(made(TrialState.PRUNED, 0.05))

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("study list read every trial")

    monkeypatch.setattr(optuna.Study, "get_trials", refused)
    monkeypatch.setattr(optuna.Study, "trials", property(refused))
    lines = list_lines(optuna.storages.RDBStorage(url))
    assert lines[1].split() == ["many", "minimize", "4", "0.1000"]


def test_list_lines_show_a_study_with_several_objectives() -> None:
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="single", storage=storage).add_trial(
        made(TrialState.COMPLETE, 0.5)
    )
    multi = optuna.create_study(
        study_name="multi", storage=storage, directions=["maximize", "minimize"]
    )
    multi.add_trial(create_trial(values=[0.5, 1.0]))
    lines = list_lines(storage)
    assert lines[1].split() == ["multi", "maximize/minimize", "1", "-"]
    assert lines[2].split() == ["single", "minimize", "1", "0.5000"]


def test_a_value_of_zero_is_shown_as_zero() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(made(TrialState.COMPLETE, 0.0))
    assert show_lines(study)[-1].split()[:2] == ["0", "0.0"]


def test_ties_go_to_the_earlier_trial_in_either_direction() -> None:
    for direction in ("minimize", "maximize"):
        study = optuna.create_study(direction=direction)
        for value in (0.3, 0.5, 0.5, 0.3):
            study.add_trial(made(TrialState.COMPLETE, value))
        best, second = (1, 2) if direction == "maximize" else (0, 3)
        lines = show_lines(study)
        assert lines[2] == f"best: trial {best} value {[0.3, 0.5][best]:.4f}"
        table = lines[lines.index("top 4:") + 2 :]
        assert [int(row.split()[0]) for row in table][:2] == [best, second]


def test_a_storage_that_lost_its_values_is_listed_and_shown_without_a_best(
    tmp_path: Path,
) -> None:
    """A `trial_values` table dropped by hand (Optuna makes it again, empty, on opening):
    complete trials without a value, where Optuna's summaries and best trial raise."""
    url = f"sqlite:///{tmp_path / 'damaged.db'}"
    study = optuna.create_study(study_name="damaged", storage=url, direction="maximize")
    for value in (0.2, 0.4):
        study.add_trial(made(TrialState.COMPLETE, value))
    with sqlite3.connect(tmp_path / "damaged.db") as db:
        db.execute("DROP TABLE trial_values")
    storage = optuna.storages.RDBStorage(url)
    damaged = optuna.load_study(study_name="damaged", storage=storage)
    assert [(t.state, t.value) for t in damaged.trials] == [(TrialState.COMPLETE, None)] * 2
    assert list_lines(storage)[1].split() == ["damaged", "maximize", "2", "-"]
    assert show_lines(damaged)[-1] == "no complete trial with a value (2 complete trials have none)"

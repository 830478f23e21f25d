"""Running a study in this process: resume to a total, one line per trial, clear refusals."""

from __future__ import annotations

import pytest

from hpo.errors import HpoError
from hpo.runner import run_study
from hpo.spec import load_spec_text
from hpo.study import count, create_study

from .conftest import TINY_SPEC


def test_a_run_prints_one_line_per_trial_and_resumes_to_the_total(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    lines: list[str] = []
    study = run_study("tiny", sqlite_url, 2, echo=lines.append)
    assert count(study) == 2
    assert [line.split()[:3] for line in lines] == [
        ["trial", "0", "COMPLETE"],
        ["trial", "1", "COMPLETE"],
    ]
    study = run_study("tiny", sqlite_url, None, echo=lines.append)  # the spec's n_trials = 4
    assert count(study) == 4 and len(lines) == 4


def test_a_run_whose_target_is_met_says_so_and_trains_nothing(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    run_study("tiny", sqlite_url, 1, echo=lambda line: None)
    lines: list[str] = []
    study = run_study("tiny", sqlite_url, 1, echo=lines.append)
    assert lines == [
        "study 'tiny' already holds 1 finished trials (target 1): nothing to run; "
        "give a larger --n-trials to run more"
    ]
    assert len(study.trials) == 1


def test_a_study_without_a_target_needs_n_trials_or_a_timeout(sqlite_url: str) -> None:
    create_study(load_spec_text(TINY_SPEC.replace("n_trials = 4\n", "")), sqlite_url)
    with pytest.raises(HpoError, match="give --n-trials or --timeout"):
        run_study("tiny", sqlite_url, None, echo=lambda line: None)


def test_a_run_that_ends_short_of_its_target_on_a_journal_says_why(tmp_path) -> None:
    url = f"journal:{tmp_path / 'j.log'}"
    study = create_study(load_spec_text(TINY_SPEC), url)
    study.ask()  # left RUNNING, as by a process that died: a journal has no heartbeat
    lines: list[str] = []
    study = run_study("tiny", url, 1, echo=lines.append)
    assert count(study) == 0
    assert lines[-1].startswith("study 'tiny' holds 0 of its 1 finished trials and 1 running")
    assert "docs/scale-out.md" in lines[-1]

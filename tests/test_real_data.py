"""Real CIFAR-100 end to end: the loader on the real file, and short real studies (marked slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.cli import app
from hpo.data import read_cifar100
from hpo.spec import load_spec_text

from .conftest import REPO

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_real_file_has_the_canonical_layout(cifar100_path: Path) -> None:
    arrays = read_cifar100(cifar100_path)
    assert arrays.x_train.shape == (50000, 32, 32, 3) and arrays.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(arrays.y_train).tolist() == [500] * 100
    assert np.bincount(arrays.y_test).tolist() == [100] * 100
    means = arrays.x_train.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(means, [0.5071, 0.4865, 0.4409], atol=1e-3)


def short_regularization(tmp_path: Path) -> Path:
    """The regularization spec on a subset with a few epochs, so it runs in about a minute."""
    text = (REPO / "studies" / "regularization.toml").read_text()
    text = text.replace('name = "regularization"', 'name = "regularization-short"')
    text = text.replace(
        "validation_fraction = 0.1",
        "validation_fraction = 0.1\nn_train = 5000\nn_validation = 2000",
    )
    text = text.replace("epochs = 20", "epochs = 4").replace(
        "n_warmup_steps = 5", "n_warmup_steps = 1"
    )
    text = text.replace("n_startup_trials = 5", "n_startup_trials = 3")
    load_spec_text(text)
    path = tmp_path / "regularization-short.toml"
    path.write_text(text)
    return path


def test_regularization_study_on_real_data_prunes(cifar100_path: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'real.db'}"
    spec = short_regularization(tmp_path)
    assert runner.invoke(app, ["study", "create", str(spec), "--storage", url]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "study",
            "run",
            "regularization-short",
            "--n-trials",
            "10",
            "--data",
            str(cifar100_path),
            "--storage",
            url,
        ],
    )
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="regularization-short", storage=url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 10
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    epochs = sum(t.user_attrs["n_epochs"] for t in study.trials if "n_epochs" in t.user_attrs)
    assert epochs < 4 * len(study.trials)
    # A real signal: the best trial is at least twice chance (1%) on 100 classes.
    assert study.best_value > 0.02


def test_lesson_baseline_learns_on_real_data(cifar100_path: Path, tmp_path: Path) -> None:
    text = (REPO / "studies" / "lesson.toml").read_text()
    text = text.replace(
        'scaling = "rescale"', 'scaling = "rescale"\nn_train = 5000\nn_validation = 1000'
    )
    spec = tmp_path / "lesson.toml"
    spec.write_text(text)
    url = f"sqlite:///{tmp_path / 'lesson.db'}"
    assert runner.invoke(app, ["study", "create", str(spec), "--storage", url]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "study",
            "run",
            "lesson",
            "--n-trials",
            "1",
            "--data",
            str(cifar100_path),
            "--storage",
            url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "[baseline]" in result.output
    study = optuna.load_study(study_name="lesson", storage=url)
    baseline = study.trials[0]
    assert baseline.user_attrs["experiment"] == "baseline"
    assert baseline.state == TrialState.COMPLETE and baseline.value > 0.03


def test_ablation_on_real_data_finds_the_stddev_one_initializer_hurts(
    cifar100_path: Path, tmp_path: Path
) -> None:
    text = (REPO / "studies" / "lesson.toml").read_text()
    text = text.replace(
        'scaling = "rescale"', 'scaling = "rescale"\nn_train = 5000\nn_validation = 1000'
    )
    spec = tmp_path / "lesson.toml"
    spec.write_text(text.replace("n_trials = 9", "n_trials = 2"))
    url = f"sqlite:///{tmp_path / 'lesson.db'}"
    data = ["--data", str(cifar100_path), "--storage", url]
    assert runner.invoke(app, ["study", "create", str(spec), "--storage", url]).exit_code == 0
    assert runner.invoke(app, ["study", "run", "lesson", *data]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "ablate",
            "lesson",
            "--seeds",
            "3",
            "--design",
            "add-one-in",
            "--technique",
            "init_random_normal",
            *data,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "6/6 runs" in result.output  # the baseline is the best here: 2 variants x 3 seeds
    line = next(x for x in result.output.splitlines() if "init_random_normal " in x)
    assert line.endswith("-> hurts"), line
    report = runner.invoke(app, ["report", "lesson", "--out", str(tmp_path / "r.md"), *data[2:]])
    assert report.exit_code == 0, report.output
    assert "| init_random_normal | initializer=random_normal" in (tmp_path / "r.md").read_text()

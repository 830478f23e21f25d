"""`hpo study export --format keras`: a standalone script that trains the trial with plain Keras."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from hpo.cli import app
from hpo.data import load_dataset, read_cifar100
from hpo.export import optimizer_code, split_masks
from hpo.spec import load_spec_text
from hpo.testing import full_params

from .conftest import REPO, TINY_SPEC

runner = CliRunner()

# Installed here but not with tensorflow and numpy alone: the script runs as if they were absent.
ABSENT = ("hpo", "optuna", "sklearn", "pandas", "scipy", "typer", "tqdm", "matplotlib")

# Runs a script as __main__ in an interpreter where ABSENT modules cannot be imported.
GUARD = f"""
import importlib.abc, runpy, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

SPEC = TINY_SPEC.replace(
    """dataset = "synthetic"
n_samples = 400
n_classes = 4
image_size = 4
validation_fraction = 0.25""",
    """dataset = "cifar100"
validation_fraction = 0.2
scaling = "standardize\"""",
).replace("epochs = 2", "epochs = 4")


def cifar_like(path: Path, n_train: int = 800, n_classes: int = 8) -> Path:
    """A small CIFAR-100-shaped file that an MLP learns quickly: one mean image per class."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(40, 215, size=(n_classes, 32, 32, 3))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % n_classes
        rng.shuffle(y)
        x = np.clip(centres[y] + rng.normal(0, 60, size=(n, 32, 32, 3)), 0, 255)
        return x.astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(200)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def run_script(script: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-I", "-c", GUARD, str(script), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=script.parent,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def accuracy(output: str, which: str = "validation", score: str = "accuracy") -> float:
    found = re.search(rf"^{which} {score}: ([0-9.]+)$", output, re.MULTILINE)
    assert found, output[-2000:]
    return float(found.group(1))


def test_split_masks_select_exactly_the_studys_split(tmp_path: Path) -> None:
    data = cifar_like(tmp_path / "c.npz")
    spec = load_spec_text(SPEC.replace('scaling = "standardize"', 'scaling = "rescale"'))
    prepared = load_dataset(spec.data, data)
    arrays = read_cifar100(data)
    train, val = split_masks(arrays.y_train, spec.data)
    assert not (train & val).any() and train.sum() == len(prepared.y_train)

    def rows(x: np.ndarray) -> list[bytes]:
        return sorted(image.tobytes() for image in x)

    assert rows(arrays.x_train[val] / np.float32(255)) == rows(prepared.x_val)
    assert rows(arrays.x_train[train] / np.float32(255)) == rows(prepared.x_train)


@pytest.mark.parametrize(
    "schedule", ["constant", "exponential", "cosine", "cosine_restarts", "warmup_cosine"]
)
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_every_schedule_and_optimizer_is_valid_keras(schedule: str, optimizer: str) -> None:
    import keras

    params = full_params({"schedule": schedule, "optimizer": optimizer})
    code = "def build(epochs, steps_per_epoch):\n" + "".join(
        f"    {line}\n" for line in optimizer_code(params).splitlines()
    )
    scope: dict[str, object] = {"keras": keras}
    exec(code, scope)
    built = scope["build"](20, 450)  # type: ignore[operator]
    assert isinstance(built, keras.optimizers.Optimizer)


def test_exported_trial_trains_like_the_trial(tmp_path: Path) -> None:
    data = cifar_like(tmp_path / "c.npz")
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(
        SPEC + 'dropout = "on"\ndropout_rate = 0.1\nweight_decay = "on"\nearly_stopping = "on"\n'
    )
    assert runner.invoke(app, ["study", "create", str(spec_file), "--storage", url]).exit_code == 0
    run = ["study", "run", "tiny", "--n-trials", "2", "--data", str(data), "--storage", url]
    assert runner.invoke(app, run).exit_code == 0
    script = tmp_path / "best.py"
    export = ["study", "export", "tiny", "--format", "keras", "--out", str(script)]
    exported = runner.invoke(app, [*export, "--data", str(data), "--storage", url])
    assert exported.exit_code == 0, exported.output
    text = script.read_text()
    assert "import hpo" not in text and "from hpo" not in text
    assert (
        "keras.layers.Dropout(0.1)" in text and "kernel_regularizer=keras.regularizers.L2(" in text
    )
    assert "keras.callbacks.EarlyStopping(" in text
    best = optuna.load_study(study_name="tiny", storage=url).best_trial
    assert f"SEED = {best.user_attrs['seed']}" in text

    output = run_script(script, "--data", str(data), "--test")
    assert "640 training and 160 validation images" in output
    assert accuracy(output) == pytest.approx(best.value, abs=0.15)
    assert 0.0 <= accuracy(output, "test") <= 1.0
    # A val_loss study's value can be compared too: the script prints both scores.
    assert 0.0 < accuracy(output, "validation", "loss") < 10.0
    assert 0.0 < accuracy(output, "test", "loss") < 10.0


def test_exporting_needs_cifar100_and_a_real_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY_SPEC)
    runner.invoke(app, ["study", "create", str(spec_file), "--storage", url])
    export = ["study", "export", "tiny", "--format", "keras", "--storage", url]
    result = runner.invoke(app, export)
    assert result.exit_code == 2 and "no complete trial to export" in result.stderr
    runner.invoke(app, ["study", "run", "tiny", "--n-trials", "1", "--storage", url])
    result = runner.invoke(app, export)
    assert result.exit_code == 2 and "trains on synthetic images" in result.stderr
    # With --data too, the line names the synthetic study, not the unused --data.
    result = runner.invoke(app, [*export, "--data", str(tmp_path / "c.npz")])
    assert result.exit_code == 2 and "trains on synthetic images" in result.stderr
    result = runner.invoke(app, [*export, "--trial", "7"])
    assert result.exit_code == 2 and "has no trial 7" in result.stderr
    csv = ["study", "export", "tiny", "--trial", "0", "--storage", url]
    result = runner.invoke(app, csv)
    assert result.exit_code == 2 and "--trial goes with --format keras" in result.stderr


def test_a_finished_run_without_searched_params_exports_and_any_name_parses(
    tmp_path: Path,
) -> None:
    from optuna.trial import create_trial

    from hpo.errors import DataError, HpoError
    from hpo.evaluate import default_params
    from hpo.export import export_trial
    from hpo.study import FIXED_ONLY

    data = cifar_like(tmp_path / "c.npz")
    fixed = re.sub(r"(?m)^(\w+) = \{[^\n]*\}\n", "", SPEC)  # a spec that searches nothing
    spec = load_spec_text(fixed + '[objective]\nmetric = "val_loss"\n')
    assert not spec.searched()
    # An ablation's run, or a trial of this spec: no Optuna params, only what it recorded.
    name = 'c:\\new\\x1 """ end'
    study = optuna.create_study(study_name=name)
    attrs = {"seed": 7, "params": default_params(spec)}
    study.add_trial(create_trial(value=0.31, user_attrs=attrs))
    study.enqueue_trial({}, user_attrs=attrs)
    script = export_trial(study, spec, 0, data)
    compile(script, "exported.py", "exec")  # the name in its docstring does not break it
    assert "Trial 0 of study" in script and "(COMPLETE, val_loss 0.3100)" in script
    with pytest.raises(HpoError, match="trial 1 of study .* never started training"):
        export_trial(study, spec, 1, data)
    # The best trial, written by another program (no seed): one line, not a KeyError.
    foreign = optuna.create_study(study_name="foreign", direction="minimize")
    foreign.add_trial(create_trial(value=0.1, user_attrs={"params": default_params(spec)}))
    with pytest.raises(HpoError, match="^trial 0 of study 'foreign' holds no training seed"):
        export_trial(foreign, spec, None, data)
    # A pruned trial: its title says the script trains the whole budget it was cut short of.
    budget = int(default_params(spec)["epochs"])
    pruned = {**attrs, "n_epochs": 1}
    study.add_trial(create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs=pruned))
    assert (
        f"(PRUNED, no value, after 1 of {budget} epochs; this script trains all {budget}), as "
        "plain Keras." in export_trial(study, spec, 2, data)
    )
    # An ablation's runs are scored by validation accuracy, whatever the study's metric.
    study.set_user_attr(FIXED_ONLY, True)
    assert "(COMPLETE, val_accuracy 0.3100)" in export_trial(study, spec, 0, data)
    # Labels the study's split cannot stratify: one line, not scikit-learn's traceback.
    x = np.zeros((9, 32, 32, 3), np.uint8)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    np.savez(tmp_path / "odd.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match="cannot split these training labels"):
        export_trial(study, spec, 0, tmp_path / "odd.npz")


@pytest.mark.slow
def test_the_regularization_winner_exported_reaches_its_accuracy(
    cifar100_path: Path, tmp_path: Path
) -> None:
    """An earlier regularization study's best configuration (trial #35 of the
    reports/regularization.md of 2026-12-02), run by hpo and then by its exported script, on
    the real CIFAR-100."""
    winner = """
[[enqueue]]
name = "best"
[enqueue.params]
initializer = "lecun_normal"
optimizer = "sgd"
learning_rate = 0.0273
momentum = 0.886
schedule = "warmup_cosine"
warmup_steps = 1227
weight_decay = "on"
weight_decay_l2 = 0.00116
activity_penalty = "on"
activity_l1 = 6.78e-07
bias_penalty = "on"
bias_l2 = 6.84e-05
early_stopping = "on"
patience = 5
"""
    spec_file = tmp_path / "regularization.toml"
    spec = (REPO / "studies" / "regularization.toml").read_text().split("\n[[enqueue]]")[0]
    spec_file.write_text(spec + winner)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert runner.invoke(app, ["study", "create", str(spec_file), "--storage", url]).exit_code == 0
    run = ["study", "run", "regularization", "--n-trials", "1", "--data", str(cifar100_path)]
    assert runner.invoke(app, [*run, "--storage", url]).exit_code == 0
    trial = optuna.load_study(study_name="regularization", storage=url).best_trial
    script = tmp_path / "winner.py"
    export = ["study", "export", "regularization", "--format", "keras", "--out", str(script)]
    result = runner.invoke(app, [*export, "--data", str(cifar100_path), "--storage", url])
    assert result.exit_code == 0, result.output
    output = run_script(script, "--data", str(cifar100_path))
    assert "45000 training and 5000 validation images" in output
    # Seed noise of this configuration: sd 0.3 points over 10 seeds (reports/regularization.md);
    # the script's batch order differs from hpo's, which is like another seed.
    assert accuracy(output) == pytest.approx(trial.value, abs=0.015)

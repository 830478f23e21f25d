"""`hpo report` on studies of made-up trials: sections, figures, determinism, errors, the CLI."""

from __future__ import annotations

import copy
import gc
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note
from typer.testing import CliRunner

from hpo import evaluate
from hpo.cli import app
from hpo.errors import HpoError
from hpo.report.sections import GENERATED, SCREENING
from hpo.report.writer import write_report
from hpo.spec import load_spec_text
from hpo.storage import open_storage
from hpo.study import SPEC_ATTR
from hpo.testing import add_fake_experiments, add_fake_trials

from .conftest import as_cifar100

SPEC = """
name = "fake"
seed = 1

[data]
dataset = "synthetic"
n_samples = 300
n_classes = 4
image_size = 4
validation_fraction = 0.2

[sampler]
type = "tpe"

[pruner]
type = "median"
n_warmup_steps = 1

[params]
first_units = 8
units = 8
epochs = 3
batch_size = 50
learning_rate = { low = 1e-3, high = 1e-2, log = true }
weight_decay = { choices = ["off", "on"] }
dropout = { choices = ["off", "on"] }
schedule = { choices = ["constant", "cosine"] }
initializer = { choices = ["glorot_uniform", "he_normal", "random_normal"] }
init_stddev = 1.0
"""

LESSON = """
name = "mini-lesson"
seed = 2

[data]
dataset = "synthetic"
n_samples = 300
n_classes = 4
image_size = 4
validation_fraction = 0.2

[sampler]
type = "random"

[pruner]
type = "none"

[params]
first_units = 8
units = 8
epochs = 2
batch_size = 50
dropout = { choices = ["off", "on"] }

[[enqueue]]
name = "baseline"

[[enqueue]]
name = "dropout"
params = { dropout = "on" }
"""

runner = CliRunner()


def make_study(url: str, text: str) -> optuna.Study:
    """An hpo study without enqueued trials, so fake trials are all it holds."""
    spec = load_spec_text(text)
    study = optuna.create_study(
        study_name=spec.name, storage=open_storage(url, create=True), direction=spec.direction
    )
    study.set_user_attr(SPEC_ATTR, text)
    study.set_user_attr("metric", spec.metric)
    return study


@pytest.fixture(scope="module")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One study for the module: reports only read it (and rewrite its note)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fake') / 'studies.db'}"
    study = make_study(url, SPEC)
    add_fake_trials(
        study,
        load_spec_text(SPEC),
        80,
        {"dropout": 0.05, "initializer=random_normal": -0.1},
        pruned_share=0.2,
        n_failed=2,
        seed=1,
    )
    return url


@pytest.fixture(scope="module")
def fake_report(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(
        "fake",
        fake_url,
        tmp_path_factory.mktemp("a") / "fake.md",
        activations=True,
        note=True,
        echo=lambda _: None,
    )


def body(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith(GENERATED)]


def test_report_has_every_section_and_small_figures(fake_report: Path) -> None:
    text = fake_report.read_text()
    folder = fake_report.parent / "fake"
    for heading in (
        "## Summary",
        "### Search space",
        "### Training time and epochs",
        "## Technique ranking: controlled ablation",
        f"## {SCREENING}",
        "## Was the budget enough?",
        "## Test evaluation",
        "## Parameter importances",
        "## Best trials (top 10)",
        "### Activations at initialization",
    ):
        assert heading in text, heading
    assert "Evaluator: Optuna's `PedAnovaImportanceEvaluator`" in text
    assert "saved by pruning" in text and "saved by early stopping" not in text
    assert "No ablation yet. `hpo ablate fake --seeds 10`" in text
    ranking = text.split(f"## {SCREENING}")[1].split("## Was the budget")[0]
    rows = [line for line in ranking.splitlines() if line.startswith("| ")][2:]
    assert rows[0].startswith("| 1 | dropout |") and "| better with it |" in rows[0]
    assert rows[-1].startswith(f"| {len(rows)} | initializer=random_normal |")
    assert "| worse with it |" in rows[-1]
    figures = sorted(p.name for p in folder.iterdir())
    assert figures == [
        "activations.png",
        "anytime.png",
        "curves.png",
        "expected_best.png",
        "history.png",
        "importances.png",
        "learning_rates.png",
    ]
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000
    for png in folder.iterdir():  # readable: at least 1,200 px wide
        assert struct.unpack(">II", png.read_bytes()[16:24])[0] >= 1200, png.name
    for name in figures:
        assert f"(fake/{name})" in text


def test_ranking_becomes_the_dashboard_note(fake_url: str, fake_report: Path) -> None:
    study = optuna.load_study(study_name="fake", storage=fake_url)
    note = get_note(study)
    assert note.startswith("# fake: technique ranking")
    assert "| 1 | dropout |" in note


def test_a_plain_report_only_reads_even_without_its_data_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No image data, no training, no write to the storage: the file is byte for byte the same."""
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    text = as_cifar100(SPEC)
    study = make_study(url, text)
    add_fake_trials(study, load_spec_text(text), 30, {"dropout": 0.05}, seed=4)
    monkeypatch.setenv("HPO_DATA", str(tmp_path / "absent.npz"))
    before = db.read_bytes()
    out = write_report("fake", url, tmp_path / "r" / "fake.md", echo=lambda _: None)
    assert db.read_bytes() == before
    assert get_note(optuna.load_study(study_name="fake", storage=url)) == ""
    assert "`hpo report --activations` draws them" in out.read_text()
    assert not (out.parent / "fake" / "activations.png").exists()
    assert (out.parent / "fake" / "history.png").exists()


def test_two_reports_differ_only_in_the_generation_time(
    fake_url: str, fake_report: Path, tmp_path: Path
) -> None:
    # Another process with another hash seed: nothing may hang on the order of a set.
    second = tmp_path / "fake.md"
    command = [
        sys.executable,
        "-m",
        "hpo",
        "report",
        "fake",
        "--activations",
        "--storage",
        fake_url,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([*command, "--out", str(second)], env=env, check=True, capture_output=True)
    assert body(second) == body(fake_report)
    assert sum(line.startswith(GENERATED) for line in second.read_text().splitlines()) == 1
    for figure in (fake_report.parent / "fake").iterdir():
        assert figure.read_bytes() == (tmp_path / "fake" / figure.name).read_bytes()


def test_a_report_leaves_the_collector_as_it_found_it(fake_url: str, tmp_path: Path) -> None:
    gc.unfreeze()  # tests that trained in this process earlier froze objects (hpo.train)
    assert gc.isenabled()
    write_report("fake", fake_url, tmp_path / "r.md", echo=lambda _: None)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_empty_study_is_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    make_study(sqlite_url, SPEC)
    with pytest.raises(HpoError, match="study 'fake' has no trials yet: run it with"):
        write_report("fake", sqlite_url, tmp_path / "x.md")


def test_all_failed_study_is_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    add_fake_trials(make_study(sqlite_url, SPEC), load_spec_text(SPEC), 0, n_failed=3)
    with pytest.raises(HpoError, match=r"no complete trial .*\(fail 3\).*diverged"):
        write_report("fake", sqlite_url, tmp_path / "x.md")
    # The first failure is the earliest trial's, not the first reason in alphabetical order.
    study = optuna.load_study(study_name="fake", storage=sqlite_url)
    first = study.trials[0].user_attrs["fail_reason"]
    assert first > "a later one"
    failed = optuna.trial.TrialState.FAIL
    study.add_trial(
        optuna.trial.create_trial(state=failed, user_attrs={"fail_reason": "a later one"})
    )
    with pytest.raises(HpoError, match=f"first failure: {re.escape(first)}$"):
        write_report("fake", sqlite_url, tmp_path / "x.md")


def test_a_best_trial_another_program_wrote_stops_the_report_before_it_trains(
    sqlite_url: str, tmp_path: Path
) -> None:
    study = make_study(sqlite_url, SPEC)
    add_fake_trials(study, load_spec_text(SPEC), 10, seed=2)
    foreign = optuna.distributions.FloatDistribution(0, 1)
    study.add_trial(
        optuna.trial.create_trial(value=2.0, params={"x": 0.5}, distributions={"x": foreign})
    )
    lines: list[str] = []
    with pytest.raises(HpoError, match="^trial 10 does not hold the params its study's spec"):
        write_report("fake", sqlite_url, tmp_path / "x.md", evaluate_test=True, echo=lines.append)
    assert lines == [] and not any((tmp_path / "x").iterdir())  # nothing trained or drawn


def test_evaluate_test_trains_once_and_the_next_report_reuses_it(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec_text(LESSON)
    add_fake_experiments(make_study(sqlite_url, LESSON), spec, {"baseline": 0.3, "dropout": 0.35})
    lines: list[str] = []
    out = write_report(
        "mini-lesson",
        sqlite_url,
        tmp_path / "m" / "mini-lesson.md",
        evaluate_test=True,
        n_seeds=2,
        echo=lines.append,
    )
    assert sum(line.startswith("test evaluation") for line in lines) == 4
    study = optuna.load_study(study_name="mini-lesson", storage=sqlite_url)
    stored = [k for k in study.user_attrs if k.startswith(evaluate.ATTR_PREFIX)]
    assert len(stored) == 4
    result = study.user_attrs[stored[0]]
    assert 0 <= result["test_accuracy"] <= 1 and result["versions"]["hpo"]
    text = out.read_text()
    assert "## Experiments side by side" in text
    assert "| dropout | #1 | dropout=on |" in text
    table = text.split("## Test evaluation")[1].split("##")[0]
    assert "| baseline | #0 | (the baseline) | 2 |" in table
    assert "| dropout | #1 | dropout=on, dropout_rate=0.1 | 2 |" in table
    # Ordered by validation accuracy (retrained), never by test.
    rows = [r for r in table.splitlines() if r.startswith("| ") and "#" in r]
    val = [float(r.split(" | ")[-2]) for r in rows]
    assert val == sorted(val, reverse=True)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored result was trained again")

    monkeypatch.setattr(evaluate, "run_once", no_training)
    again = write_report(
        "mini-lesson",
        sqlite_url,
        tmp_path / "n" / "mini-lesson.md",
        evaluate_test=True,
        n_seeds=2,
    )
    assert body(again) == body(out)
    plain = write_report("mini-lesson", sqlite_url, tmp_path / "p" / "mini-lesson.md")
    assert body(plain) == body(out)


def test_cli_writes_the_report(fake_url: str, tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    result = runner.invoke(app, ["report", "fake", "--storage", fake_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    assert out.read_text().startswith("# Study report: fake")


def test_a_report_that_cannot_be_written_is_one_line(fake_url: str, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = {
        tmp_path: "is a folder: name the report's file",  # nothing is drawn into it first
        a_file / "x.md": "cannot write the report to",
        tmp_path / "a_file.md": "is a file, and the report's figures go in a folder",
        # Its figures' folder would be the report's own path ("--out reports/new/" too).
        tmp_path / "new": f"name the report's file with a suffix, e.g. {tmp_path / 'new'}.md",
    }
    for out, message in cases.items():
        result = runner.invoke(app, ["report", "fake", "--storage", fake_url, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {out}" if out == tmp_path else "error: ")
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_an_output_over_the_storage_file_is_refused(
    fake_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo.storage import check_not_storage

    database = Path(fake_url.removeprefix("sqlite:///"))
    before = database.read_bytes()
    monkeypatch.chdir(database.parent)
    for out in (database, Path(database.name), database.parent / ".." / database.parent.name):
        for command in (["report", "fake"], ["study", "export", "fake"]):
            result = runner.invoke(app, [*command, "--storage", fake_url, "--out", str(out)])
            if out.resolve() != database:  # the folder: refused as one, not as the storage
                assert result.exit_code == 2 and "storage" not in result.stderr
                continue
            assert result.exit_code == 2, result.output
            assert "is a file of the storage" in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1
    assert database.read_bytes() == before
    journal = tmp_path / "j.log"
    with pytest.raises(HpoError, match="is a file of the storage"):
        check_not_storage(Path(f"{journal}.lock"), f"journal:{journal}")
    with pytest.raises(HpoError, match="is a file of the storage"):
        check_not_storage(tmp_path / "s.db-wal", f"sqlite:///{tmp_path / 's.db'}")
    check_not_storage(tmp_path / "s.md", f"sqlite:///{tmp_path / 's.db'}")
    check_not_storage(tmp_path / "s.db", "postgresql://u@127.0.0.1/test")


def test_cli_turns_an_empty_study_into_one_line(sqlite_url: str, tmp_path: Path) -> None:
    make_study(sqlite_url, SPEC)
    result = runner.invoke(
        app, ["report", "fake", "--storage", sqlite_url, "--out", str(tmp_path / "x.md")]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: study 'fake' has no trials yet: run it with `hpo study run fake` first"
    )


def test_activations_asked_for_without_their_data_or_initializers_are_one_line(
    sqlite_url: str, tmp_path: Path
) -> None:
    text = as_cifar100(SPEC)
    add_fake_trials(make_study(sqlite_url, text), load_spec_text(text), 12, seed=2)
    args = ["report", "fake", "--storage", sqlite_url, "--out", str(tmp_path / "fake.md")]
    result = runner.invoke(app, [*args, "--activations", "--data", str(tmp_path / "nope.npz")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: data file ") and "nope.npz" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "fake.md").exists() and not (tmp_path / "fake").exists()
    # Options that would change nothing are refused too, before anything is read.
    for extra, message in (
        (["--seeds", "5"], "--seeds goes with --evaluate-test"),
        (["--data", "x.npz"], "--data goes with --evaluate-test or --activations"),
    ):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2 and message in result.stderr, result.output
    searched = 'initializer = { choices = ["glorot_uniform", "he_normal", "random_normal"] }'
    assert searched in SPEC
    plain = SPEC.replace(searched, 'initializer = "random_normal"')
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    add_fake_trials(make_study(url, plain), load_spec_text(plain), 4, seed=2)
    result = runner.invoke(
        app, ["report", "fake", "--storage", url, "--out", str(tmp_path / "p.md"), "--activations"]
    )
    assert result.exit_code == 2, result.output
    assert "--activations compares the initializers a study searches" in result.stderr


def add_fake_ablation(
    url: str,
    name: str,
    effects: dict[str, float],
    n_seeds: int = 10,
    val_effects: dict[str, float] | None = None,
) -> None:
    """An ablation of study `name` whose runs are made up: each comparison's `with` side
    scores its set effect above its `without` side, plus a little noise per seed; on
    validation by `val_effects` where given, else the same."""
    import numpy as np
    from optuna.trial import TrialState, create_trial

    from hpo.ablate import prepare_ablation

    companion, plan, _ = prepare_ablation(name, url, n_seeds, designs=["add-one-in"])
    rng = np.random.default_rng(0)
    seeds = companion.user_attrs["seeds"]
    luck = {s: rng.normal(0.2, 0.02) for s in seeds}
    shift = {plan.baseline: 0.0}
    val_shift = {plan.baseline: 0.0}
    for c in plan.comparisons:
        shift[c.with_] = effects.get(c.technique, 0.0)
        val_shift[c.with_] = (val_effects or effects).get(c.technique, 0.0)
    for variant in plan.variants:
        for s in seeds:
            noise = rng.normal(0, 0.002)
            score = luck[s] + shift.get(variant.key, 0.0) + noise
            val = luck[s] + val_shift.get(variant.key, 0.0) + noise
            attrs = {"fixed_run": True, "variant": variant.key, "seed": s}
            attrs |= {"val_accuracy": val, "test_accuracy": score}
            companion.add_trial(
                create_trial(state=TrialState.COMPLETE, value=score, user_attrs=attrs)
            )


def test_the_ablation_leads_the_ranking_with_its_known_answers(
    sqlite_url: str, tmp_path: Path
) -> None:
    text = LESSON.replace(
        'dropout = { choices = ["off", "on"] }',
        'dropout = { choices = ["off", "on"] }\nweight_decay = { choices = ["off", "on"] }\n'
        'initializer = { choices = ["glorot_uniform", "random_normal"] }\ninit_stddev = 1.0',
    )
    text += '[[enqueue]]\nname = "l2"\nparams = { weight_decay = "on" }\n'
    text += '[[enqueue]]\nname = "sd_one"\nparams = { initializer = "random_normal" }\n'
    values = {"baseline": 0.3, "dropout": 0.35, "l2": 0.3, "sd_one": 0.01}
    add_fake_experiments(make_study(sqlite_url, text), load_spec_text(text), values)
    add_fake_ablation(sqlite_url, "mini-lesson", {"dropout": 0.03, "sd_one": -0.08})
    path = write_report("mini-lesson", sqlite_url, tmp_path / "r.md", echo=lambda _: None)
    text = path.read_text()
    assert text.index("controlled ablation") < text.index(SCREENING)
    section = text.split("## Technique ranking: controlled ablation")[1].split(SCREENING)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    # in order of the validation effect, with no rank: the test set orders nothing
    assert rows[0].startswith("| dropout |") and "| **helps** |" in rows[0]
    assert rows[1].startswith("| l2 |") and "| **no effect** |" in rows[1]
    assert rows[2].startswith("| sd_one |") and "| **hurts** |" in rows[2]
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    low, high = (float(x) for x in cells[6].strip("[]").split(", "))  # the test interval
    assert low < 3.0 < high  # the set effect, in points, inside its interval
    assert "10 of 10 runs" not in section and "10 paired seeds" in section
    assert "(r/effects.png)" in text and (tmp_path / "r" / "effects.png").exists()
    answer = text.split("## Answer")[1].split("## Summary")[0]
    # Which comparison judged each, and all it changes: the strength too.
    assert "**Helps**: dropout on its own (dropout=on, dropout_rate=0.1) +3." in answer
    assert "Not compared" not in answer  # every searched technique has an experiment
    hurts = "**Hurts**: sd_one on its own (initializer=random_normal, init_stddev=1) -"
    assert f"{hurts}7." in answer or f"{hurts}8." in answer
    assert "**No effect** (within ±0.5 points): l2 on its own (weight_decay=on, " in answer
    assert "**Use** `dropout` (the highest mean validation accuracy" in answer
    # The seeds' own luck (sd 0.02 in the fake runs) is the spread beside each number.
    import re

    spread = re.search(r"varies by about (\d\.\d) points from seed", answer)
    assert spread is not None and 1.0 <= float(spread.group(1)) <= 3.0


def test_rows_follow_the_validation_effect_not_the_test_effect(
    sqlite_url: str, tmp_path: Path
) -> None:
    text = LESSON.replace(
        'dropout = { choices = ["off", "on"] }',
        'dropout = { choices = ["off", "on"] }\nweight_decay = { choices = ["off", "on"] }\n',
    )
    text += '[[enqueue]]\nname = "l2"\nparams = { weight_decay = "on" }\n'
    add_fake_experiments(
        make_study(sqlite_url, text),
        load_spec_text(text),
        {"baseline": 0.3, "dropout": 0.3, "l2": 0.3},
    )
    # On test dropout is ahead; on validation l2 is: the rows and the figure follow validation.
    add_fake_ablation(
        sqlite_url,
        "mini-lesson",
        {"dropout": 0.03, "l2": -0.02},
        val_effects={"dropout": -0.01, "l2": 0.02},
    )
    path = write_report("mini-lesson", sqlite_url, tmp_path / "r.md", echo=lambda _: None)
    section = path.read_text().split("controlled ablation")[1].split(SCREENING)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    assert [r.split("|")[1].strip() for r in rows] == ["l2", "dropout"]


def answer_of(url: str, tmp_path: Path, val_effect: float) -> str:
    """The Answer of a lesson whose dropout shifts test accuracy by 0.05 points, far inside
    the seeds' noise, and validation accuracy by `val_effect`."""
    text = LESSON
    values = {"baseline": 0.3, "dropout": 0.35}
    add_fake_experiments(make_study(url, text), load_spec_text(text), values)
    add_fake_ablation(url, "mini-lesson", {"dropout": 0.0005}, val_effects={"dropout": val_effect})
    path = write_report("mini-lesson", url, tmp_path / "r.md", echo=lambda _: None)
    return path.read_text().split("## Answer")[1].split("## Summary")[0]


def test_the_answer_recommends_only_what_beats_the_baseline(
    sqlite_url: str, tmp_path: Path
) -> None:
    # Validation prefers dropout by a point: it has the best validation mean, but nothing
    # shows it beats the baseline, and the answer says so.
    answer = answer_of(sqlite_url, tmp_path, 0.01)
    assert "**Use**" not in answer
    assert (
        "**Nothing is shown to beat the baseline.** The validation choice would be `dropout`"
        in answer
    )
    # one verdict per comparison: the chosen variant's own row, not a second test of it
    assert "Against the baseline on test, paired over 10 seeds" in answer
    assert "(its add-one-in verdict)" in answer


def test_the_answer_keeps_the_baseline_where_validation_prefers_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    answer = answer_of(sqlite_url, tmp_path, -0.01)
    assert "**Use** the baseline (the highest mean validation accuracy" in answer
    assert "validation choice would be" not in answer and "Against the baseline" not in answer


def test_the_effects_figure_is_wide_and_labelled(tmp_path: Path) -> None:
    from hpo.report.figures import effects_figure, plot_effects

    groups = [("add-one-in", [("dropout", 3.0, 2.0, 4.0, "helps"), ("l2", -1, -3, 1, "x")])]
    fig = effects_figure(groups, 0.5)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("test accuracy, with minus without (percentage points")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dropout", "l2"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["helps", "hurts", "no effect", "inconclusive", "±0.5 pp"]
    fig = effects_figure([("add-one-in", [("dropout", 3.0, 2.0, 4.0, "pending")])], 0.5)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["helps", "hurts", "no effect", "inconclusive", "pending", "±0.5 pp"]
    png = plot_effects(groups, 0.5, tmp_path / "e.png").read_bytes()
    width, _ = struct.unpack(">II", png[16:24])
    assert width >= 1200


def test_a_saved_figure_is_drawn_once_with_its_tight_layout(tmp_path: Path) -> None:
    from hpo.plots import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(range(100), label="a long label that a tight layout must make room for")
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="title")
    draws: list[object] = []
    fig.canvas.mpl_connect("draw_event", draws.append)
    before = fig.subplotpars.left
    save_png(fig, tmp_path / "f.png", dpi=80)
    assert len(draws) == 1  # savefig's extra layout pass, a whole draw, is skipped
    assert fig.subplotpars.left != before  # and the tight layout was still applied
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_anytime_curve_follows_the_order_trials_ended() -> None:
    import datetime as dt

    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from hpo.report.facts import anytime

    t0 = dt.datetime(2026, 1, 1)
    rate = {"learning_rate": FloatDistribution(1e-4, 1e-1)}

    def ended(number: int, state: TrialState, value: float | None, epochs: int, end_s: int):
        trial = create_trial(
            state=state,
            value=value,
            params={"learning_rate": 0.01},
            distributions=rate,
            user_attrs={"n_epochs": epochs},
        )
        trial.number = number
        trial.datetime_start = t0 + dt.timedelta(seconds=end_s - 10)
        trial.datetime_complete = t0 + dt.timedelta(seconds=end_s)
        return trial

    trials = [
        ended(0, TrialState.COMPLETE, 0.2, 20, 40),  # ended after trial 1: a second worker
        ended(1, TrialState.PRUNED, 0.1, 3, 20),
        ended(2, TrialState.FAIL, None, 5, 50),
        ended(3, TrialState.COMPLETE, 0.15, 20, 70),
        ended(4, TrialState.COMPLETE, 0.3, 20, 90),
    ]
    up = anytime(trials, maximize=True)
    assert up.epochs == [3, 23, 28, 48, 68]
    assert up.seconds == [10, 30, 40, 60, 80]
    assert up.best[0] != up.best[0] and up.best[1:] == [0.2, 0.2, 0.2, 0.3]
    assert anytime(trials, maximize=False).best[1:] == [0.2, 0.2, 0.15, 0.15]


def test_a_study_of_the_loss_reports_losses_not_percentages(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loss.db'}"
    text = SPEC.replace('name = "fake"', 'name = "loss"') + '[objective]\nmetric = "val_loss"\n'
    spec = load_spec_text(text)
    assert spec.direction == "minimize"
    study = make_study(url, text)
    add_fake_trials(study, spec, 40, {"dropout": 0.2}, base=2.5, noise=0.05, seed=3)
    out = write_report("loss", url, tmp_path / "loss.md", echo=lambda _: None)
    report = out.read_text()
    screening = report[report.index(f"## {SCREENING}") :]
    screening = screening[: screening.index("\n## ")]
    assert "`val_loss`'s own units" in screening and "best with (%)" not in screening
    header = next(line for line in screening.splitlines() if line.startswith("| rank"))
    assert "| best with |" in header and "| Δ mean |" in header
    [dropout] = [line for line in screening.splitlines() if "| dropout |" in line]
    assert re.search(r"\| 2\.\d{4} \|", dropout), dropout  # a loss, not "250.0" per cent
    assert "+0.2" in dropout and dropout.endswith("| worse with it |")  # a higher loss is worse


def test_importances_match_optunas_own_study_of_the_same_trials() -> None:
    # The report hands its in-memory study trials that copy shallowly; the importances must be
    # those of a study given ordinary trials, and the caller's trials must come out unchanged.
    from hpo.report.writer import MAX_IMPORTANCE_TRIALS, importances

    distributions = {
        "x": optuna.distributions.FloatDistribution(0.0, 1.0, log=False),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "c": optuna.distributions.CategoricalDistribution(["a", "b", "d"]),
        "k": optuna.distributions.IntDistribution(1, 8),
    }
    trials = [
        optuna.trial.create_trial(
            value=(i * 37 % 100) / 100 + (0.5 if i % 3 == 0 else 0.0) - (i % 8) / 20,
            params={
                "x": (i * 37 % 100) / 100,
                "lr": 10 ** (-4 + (i * 13 % 30) / 10),
                "c": "abd"[i % 3],
                "k": 1 + i % 8,
            },
            distributions=distributions,
            user_attrs={"curve": [0.1, 0.2]},
            intermediate_values={0: 0.1},
        )
        for i in range(80)
    ]
    before = copy.deepcopy([(t.params, t.user_attrs, t.intermediate_values) for t in trials])
    plain = optuna.create_study(direction="minimize")
    plain.add_trials(trials)
    expected = optuna.importance.get_param_importances(
        plain, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )
    name, found, note = importances(trials, "minimize")
    assert name == "PedAnovaImportanceEvaluator" and found is not None and note == ""
    assert found == {k: round(float(v), 9) for k, v in expected.items()}
    assert len(set(found.values())) > 1  # not a degenerate case where any order would do
    assert [(t.params, t.user_attrs, t.intermediate_values) for t in trials] == before
    assert len(trials) < MAX_IMPORTANCE_TRIALS  # the whole set, not a sample
    fixed = [optuna.trial.create_trial(value=0.1 * i) for i in range(30)]  # nothing searched
    assert importances(fixed, "minimize")[1:] == (
        None,
        "the complete trials vary no searched parameter",
    )


IMPORTANCES_IN_A_FRESH_PROCESS = """
import json, sys
import optuna
if sys.argv[1] == "sklearn-first":
    import sklearn.ensemble  # noqa: F401
from hpo.report.writer import importances

distributions = {
    "x": optuna.distributions.FloatDistribution(0.0, 1.0),
    "c": optuna.distributions.CategoricalDistribution(["a", "b", "d"]),
}
trials = [
    optuna.trial.create_trial(
        value=(i * 37 % 100) / 100 + (0.5 if i % 3 == 0 else 0.0),
        params={"x": (i * 37 % 100) / 100, "c": "abd"[i % 3]},
        distributions=distributions,
    )
    for i in range(60)
]
name, found, _ = importances(trials, "maximize")
loaded = "sklearn" in sys.modules
pandas = "pandas" in sys.modules
import sklearn.ensemble  # noqa: E402,F401  (still importable afterwards)
print(json.dumps({"name": name, "found": found, "sklearn": loaded, "pandas": pandas}))
"""


def test_importances_are_computed_without_importing_scikit_learn() -> None:
    # The report uses PED-ANOVA; Optuna imports scikit-learn only for fANOVA. If a new Optuna
    # needs scikit-learn to import `optuna.importance` at all, this fails loudly. The report's
    # modules leave pandas unimported too (a fifth of a second).
    import json

    def run(mode: str) -> dict[str, object]:
        command = [sys.executable, "-c", IMPORTANCES_IN_A_FRESH_PROCESS, mode]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        return dict(json.loads(done.stdout.splitlines()[-1]))

    lean, plain = run("lean"), run("sklearn-first")
    assert lean["sklearn"] is False and plain["sklearn"] is True
    assert lean["pandas"] is False
    assert lean["name"] == plain["name"] == "PedAnovaImportanceEvaluator"
    assert lean["found"] == plain["found"]
    found = lean["found"]
    assert isinstance(found, dict) and set(found) == {"x", "c"}


def test_defaults_a_named_experiment_ran_come_from_its_trial(sqlite_url: str) -> None:
    """No experiment is named "baseline": the defaults are the baseline, and the experiment
    that ran them is their source trial (its test score then shows in its row)."""
    from hpo.report.sections import ranking
    from hpo.report.writer import choose_configs, gather

    text = LESSON.replace('name = "baseline"', 'name = "reference"')
    spec = load_spec_text(text)
    study = make_study(sqlite_url, text)
    add_fake_experiments(study, spec, {"reference": 0.3, "dropout": 0.32})
    add_fake_trials(study, spec, 6, seed=1)  # sampled trials besides the experiments
    trials = study.get_trials()
    baseline, configs = choose_configs(spec, trials, [])
    assert baseline.label == "baseline (defaults) / reference"
    assert baseline.trial == 0 and configs[0] == baseline
    facts = gather(study, spec, trials)
    screening = "\n".join(ranking(facts))
    assert "2 of this study's trials are named experiments, so each group" in screening

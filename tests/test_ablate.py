"""`hpo ablate` end to end on synthetic images: known answers, resuming, storages, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from benchmarks.ranking_calibration import KNOWN as KNOWN_SPEC
from hpo.ablate import analyze, collect_runs, load_ablation
from hpo.cli import app
from hpo.errors import HpoError
from hpo.spec import load_spec_text
from hpo.stats import ALPHA, HELPS, HURTS, NO_EFFECT, judge, paired_effect
from hpo.storage import open_storage
from hpo.study import SPEC_ATTR

from .conftest import REPO, TINY_SPEC

runner = CliRunner()

# A no-effect technique (dropout at rate 0) and a harmful one (an L2 penalty of 1 on the first
# layer's kernel), each a named experiment against the baseline: the calibration benchmark's.
KNOWN = KNOWN_SPEC
KNOWN_SEED = 5


def hpo(*args: str) -> Any:
    return runner.invoke(app, list(args))


def one_line_error(result: Any, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def make_study(tmp_path: Path, url: str, text: str = KNOWN) -> str:
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    name = text.split('name = "')[1].split('"')[0]
    assert hpo("study", "create", str(spec), "--storage", url).exit_code == 0
    result = hpo("study", "run", name, "--storage", url)
    assert result.exit_code == 0, result.output
    return name


def test_known_answers_hold_on_disjoint_seed_sets(tmp_path: Path, sqlite_url: str) -> None:
    name = make_study(tmp_path, sqlite_url)
    result = hpo("ablate", name, "--seeds", "30", "--design", "add-one-in", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert "3 variants x 30 seeds = 90 runs" in result.output
    found = load_ablation(name, sqlite_url)
    assert found is not None
    study, plan, seeds = found
    runs = collect_runs(study.get_trials(deepcopy=False))
    assert len(runs) == 90 and len(seeds) == 30
    for part in (seeds[:10], seeds[10:20], seeds[20:]):
        verdicts = {r.comparison.technique: r.test for r in analyze(plan, part, runs).rows}
        assert verdicts["l2_one"].label == HURTS
        assert verdicts["l2_one"].effect.mean < -0.05
        assert verdicts["dropout_zero"].label not in (HELPS, HURTS)
    # A placebo with spread: independent runs of the baseline, half the seeds against the
    # other half (dropout at rate 0 is the baseline bit for bit: all zero). One check of a
    # 5% event on fixed runs: deterministic here, a 1-in-20 failure where other numerics
    # change the runs.
    first = [runs[("baseline", s)]["test_accuracy"] for s in seeds[:15]]
    second = [runs[("baseline", s)]["test_accuracy"] for s in seeds[15:]]
    [placebo] = judge([paired_effect(first, second)])
    assert placebo.effect.sd > 0 and placebo.label not in (HELPS, HURTS)
    everything = {r.comparison.technique: r.test for r in analyze(plan, seeds, runs).rows}
    assert everything["dropout_zero"].label == NO_EFFECT
    assert "l2_one" in result.output and "hurts" in result.output


def ablate_in_subprocess(url: str, name: str, *extra: str, env: dict[str, str] | None = None):
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", "ablate", name, "--storage", url, *extra],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def scores(url: str, name: str) -> dict[tuple[str, int], tuple[float, float]]:
    found = load_ablation(name, url)
    assert found is not None
    runs = collect_runs(found[0].get_trials(deepcopy=False))
    return {k: (v["val_accuracy"], v["test_accuracy"]) for k, v in runs.items()}


def test_a_fixed_seed_set_gives_the_same_numbers_in_two_processes(tmp_path: Path) -> None:
    numbers = []
    for i in range(2):
        url = f"sqlite:///{tmp_path / f'{i}.db'}"
        (tmp_path / str(i)).mkdir()
        name = make_study(tmp_path / str(i), url)
        proc = ablate_in_subprocess(url, name, "--seeds", "2", "--technique", "l2_one")
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        numbers.append(scores(url, name))
    # baseline, l2_one and the best configuration (kept for the headline), 2 seeds each
    assert len(numbers[0]) == 6 and numbers[0] == numbers[1]


def test_an_ablation_stopped_by_sigterm_says_how_to_resume_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    name = make_study(tmp_path, sqlite_url)
    proc = ablate_in_subprocess(sqlite_url, name, "--seeds", "8")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            study = optuna.load_study(study_name=f"{name}:ablation", storage=sqlite_url)
        except KeyError:
            continue
        if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    # With the storage it was given: the hint repeats it (this URL holds no password).
    again = f"hpo ablate {name} --storage {sqlite_url}"
    assert f"finished trials are kept; `{again}` resumes" in out, out
    # And it does resume: its own 8 seeds, in the same analysis (10 would start a second).
    from hpo.ablate import prepare_ablation, stored_stage

    companion, plan, n_runs = prepare_ablation(name, sqlite_url, None)
    assert n_runs == 8 * len(plan.variants) and stored_stage(companion) == 1


def test_an_ablation_resumes_after_its_process_is_killed(tmp_path: Path, sqlite_url: str) -> None:
    name = make_study(tmp_path, sqlite_url)
    env = {"HPO_HEARTBEAT_INTERVAL": "1"}
    proc = ablate_in_subprocess(sqlite_url, name, "--seeds", "4", env=env)
    study_name = f"{name}:ablation"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=study_name, storage=sqlite_url)
        except KeyError:
            continue
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert 3 <= len(before) < 12
    time.sleep(2.5)  # the killed run's heartbeat goes stale
    again = ablate_in_subprocess(sqlite_url, name, "--seeds", "4", env=env)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [(t.user_attrs["variant"], t.user_attrs["seed"]) for t in complete]
    assert len(keys) == 12 and len(set(keys)) == 12  # every run once: none lost, none twice
    assert {t.number for t in before} <= {t.number for t in complete}
    assert "12/12 runs" in out


@pytest.mark.postgres
def test_an_ablation_runs_with_two_workers_on_postgresql(tmp_path: Path) -> None:
    from .test_workers import POSTGRES, server_url

    url = server_url(POSTGRES, "POSTGRES")
    name = f"known-{uuid.uuid4().hex[:8]}"
    make_study(tmp_path, url, KNOWN.replace('name = "known"', f'name = "{name}"'))
    try:
        result = hpo("ablate", name, "--seeds", "3", "--workers", "2", "--storage", url)
        assert result.exit_code == 0, result.output
        assert len(scores(url, name)) == 9
        assert "9/9 runs" in result.output
    finally:
        store = open_storage(url, heartbeat_interval=None)
        for study in (name, f"{name}:ablation"):
            if study in {s.study_name for s in store.get_all_studies()}:
                optuna.delete_study(study_name=study, storage=store)


def test_bad_requests_get_one_line_and_lose_nothing(tmp_path: Path, sqlite_url: str) -> None:
    name = make_study(tmp_path, sqlite_url)
    n_before = len(optuna.load_study(study_name=name, storage=sqlite_url).trials)
    one_line_error(hpo("ablate", "nope", "--storage", sqlite_url), "no study 'nope'")
    one_line_error(hpo("ablate", name, "--seeds", "0", "--storage", sqlite_url), "--seeds", "got 0")
    one_line_error(
        hpo("ablate", name, "--technique", "early_stopping", "--storage", sqlite_url),
        "never searched technique 'early_stopping'",
    )
    one_line_error(
        hpo("ablate", name, "--technique", "magic", "--storage", sqlite_url),
        "unknown technique 'magic'",
        "l2_one",
    )
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY_SPEC)
    assert hpo("study", "create", str(tiny), "--storage", sqlite_url).exit_code == 0
    one_line_error(hpo("ablate", "tiny", "--storage", sqlite_url), "no complete trial")
    hpo("study", "run", "tiny", "--n-trials", "1", "--storage", sqlite_url)
    one_line_error(
        hpo("ablate", "tiny", "--technique", "dropout", "--storage", sqlite_url),
        "never searched technique 'dropout'",
    )
    assert len(optuna.load_study(study_name=name, storage=sqlite_url).trials) == n_before
    names = {s.study_name for s in optuna.get_all_study_summaries(sqlite_url)}
    assert names == {name, "tiny"}  # no half-made ablation study was left behind


def test_an_ablation_with_nothing_to_compare_is_refused_before_anything_is_stored(
    tmp_path: Path, sqlite_url: str
) -> None:
    # The study searched two techniques, but its one trial is the baseline: no comparison.
    alone = KNOWN.replace("n_trials = 3", "n_trials = 1").split("[[enqueue]]")
    name = make_study(tmp_path, sqlite_url, "[[enqueue]]".join(alone[:2]))
    result = hpo("ablate", name, "--seeds", "2", "--storage", sqlite_url)
    one_line_error(
        result,
        "nothing to compare in study 'known': no complete or pruned trial with a score sets a "
        "technique it searched otherwise than its baseline",
    )
    result = hpo("ablate", name, "--seeds", "2", "--technique", "dropout", "--storage", sqlite_url)
    one_line_error(result, "sets dropout otherwise")
    assert load_ablation(name, sqlite_url) is None
    assert optuna.get_all_study_names(sqlite_url) == [name]


def test_an_ablation_is_never_another_studys(tmp_path: Path, sqlite_url: str) -> None:
    name = make_study(tmp_path, sqlite_url)
    args = ("--seeds", "2", "--technique", "l2_one", "--storage", sqlite_url)
    assert hpo("ablate", name, *args).exit_code == 0
    # Deleting a study deletes its ablation: a new study of the name starts without one.
    result = hpo("study", "delete", name, "-y", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert f"deleted study '{name}:ablation' (6 trials)" in result.output
    assert f"deleted study '{name}' (" in result.output
    assert not optuna.get_all_study_summaries(sqlite_url)

    # An ablation left by an earlier study of the name (deleted some other way) is refused,
    # by `hpo ablate` and by the report, and keeps its runs.
    make_study(tmp_path, sqlite_url)
    assert hpo("ablate", name, *args).exit_code == 0
    optuna.delete_study(study_name=name, storage=sqlite_url)
    make_study(tmp_path, sqlite_url, KNOWN.replace("seed = 5", "seed = 6"))
    one_line_error(hpo("ablate", name, *args), "ablation of an earlier study", "another spec")
    report = ("report", name, "--out", str(tmp_path / "r.md"), "--storage", sqlite_url)
    one_line_error(hpo(*report), "ablation of an earlier study")
    companion = optuna.load_study(study_name=f"{name}:ablation", storage=sqlite_url)
    assert len(companion.trials) == 6

    # A study of one's own may not take an ablation's name, and one made so anyway (before
    # the name was kept) is not taken over by `hpo ablate`.
    assert hpo("study", "delete", name, "-y", "--storage", sqlite_url).exit_code == 0
    spec = tmp_path / "spec.toml"
    create = ("study", "create", str(spec), "--name", f"{name}:ablation", "--storage", sqlite_url)
    one_line_error(hpo(*create), "kept for ablations", f"`hpo ablate {name}`")
    make_study(tmp_path, sqlite_url)
    own = optuna.create_study(study_name=f"{name}:ablation", storage=sqlite_url)
    own.set_user_attr("mine", 1)
    own.add_trial(optuna.trial.create_trial(value=0.5))
    one_line_error(hpo("ablate", name, *args), "is not an ablation", "holds trials of its own")
    one_line_error(hpo(*report), "is not an ablation")
    assert own.user_attrs == {"mine": 1} and len(own.trials) == 1
    # Nor does deleting the study delete that one with it.
    result = hpo("study", "delete", name, "-y", "--storage", sqlite_url)
    assert f"kept study '{name}:ablation': it is not an ablation (1 trials)" in result.output
    assert [s.study_name for s in optuna.get_all_study_summaries(sqlite_url)] == [own.study_name]


def test_the_report_judges_with_the_margin_the_ablation_was_run_with(
    tmp_path: Path, sqlite_url: str
) -> None:
    name = make_study(tmp_path, sqlite_url)
    args = ("--seeds", "2", "--technique", "l2_one", "--storage", sqlite_url)
    result = hpo("ablate", name, *args, "--delta", "2.5")
    assert result.exit_code == 0, result.output
    assert "no effect = within +-2.5" in result.output
    # A second call without --delta (another machine sharing the runs) keeps the margin,
    # and so does one that gives it again; another margin, chosen after the results, is refused.
    for again in ((), ("--delta", "2.5")):
        result = hpo("ablate", name, *args, *again)
        assert result.exit_code == 0, result.output
        assert "no effect = within +-2.5" in result.output
        # Its runs are done: more come from more seeds (`hpo ablate` has no --n-trials).
        assert f"nothing to run; `hpo ablate {name} --seeds K` with more seeds" in result.output
    companion = optuna.load_study(study_name=f"{name}:ablation", storage=sqlite_url)
    attrs = dict(companion.user_attrs)
    one_line_error(
        hpo("ablate", name, *args, "--delta", "1"),
        f"the ablation '{name}:ablation' has results judged with a margin of no effect of "
        "+-2.5 points: a margin is chosen before the results are seen",
    )
    assert optuna.load_study(study_name=f"{name}:ablation", storage=sqlite_url).user_attrs == attrs
    out = tmp_path / "report.md"
    result = hpo("report", name, "--out", str(out), "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "±2.5 points" in text and "±0.5 points" not in text
    # A parent whose stored spec a newer rule refuses (its pruner could prune nothing) keeps
    # its ablation readable: stored specs are read as they were made.
    parent = optuna.load_study(study_name=name, storage=sqlite_url)
    old = parent.user_attrs["spec_toml"].replace(
        'type = "none"', 'type = "median"\nn_warmup_steps = 9'
    )
    with pytest.raises(HpoError, match="can prune no trial"):
        load_spec_text(old)
    made = parent.user_attrs[SPEC_ATTR]
    parent.set_user_attr(SPEC_ATTR, old)
    try:
        # Its companion's spec is the one it was made with: compare like with like.
        companion = optuna.load_study(study_name=f"{name}:ablation", storage=sqlite_url)
        companion.set_user_attr(SPEC_ATTR, old)
        assert load_ablation(name, sqlite_url) is not None
    finally:
        parent.set_user_attr(SPEC_ATTR, made)
        companion.set_user_attr(SPEC_ATTR, made)
    # The ablation's own study is not reported as a search (its values are not the metric's).
    one_line_error(
        hpo("report", f"{name}:ablation", "--out", str(out), "--storage", sqlite_url),
        f"study '{name}:ablation' is the ablation of study '{name}': `hpo report {name}`",
    )
    # While it holds a plan, an ablation planned otherwise (here: another technique) is refused.
    other = ("--seeds", "2", "--technique", "dropout_zero", "--storage", sqlite_url)
    one_line_error(
        hpo("ablate", name, *other),
        "holds an ablation with another plan (it compares l2_one (add-one-in), not asked now; "
        "a new plan would also compare dropout_zero (add-one-in))",
        f"`hpo study delete {name}:ablation` and `hpo ablate {name}` plan it anew",
    )
    # A plan that only adds to it (as a planner that plans more would) leaves it as it was.
    result = hpo("ablate", name, "--seeds", "2", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert (
        "the ablation keeps the plan it was made with (a new plan would also compare "
        "dropout (leave-one-out), dropout_zero (add-one-in))"
    ) in result.output
    assert "(its 6 runs are deleted then)" in result.output
    assert "x 2 seeds = 6 runs, 1 comparisons" in result.output


def test_an_ablation_cut_short_while_prepared_is_prepared_again(
    tmp_path: Path, sqlite_url: str
) -> None:
    from hpo.study import FIXED_ONLY, SPEC_ATTR

    name = make_study(tmp_path, sqlite_url)
    storage = open_storage(sqlite_url, heartbeat_interval=None)
    parent = optuna.load_study(study_name=name, storage=storage)
    # Stopped after its first attributes: every command names the remedy in one line.
    cut = optuna.create_study(study_name=f"{name}:ablation", storage=storage)
    cut.set_user_attr(FIXED_ONLY, True)
    cut.set_user_attr(SPEC_ATTR, parent.user_attrs[SPEC_ATTR])
    for command in (
        ("study", "run", f"{name}:ablation"),
        ("report", name, "--out", str(tmp_path / "r.md")),
    ):
        result = hpo(*command, "--storage", sqlite_url)
        one_line_error(result, "cut short while it was prepared", f"`hpo ablate {name}`")
    result = hpo("ablate", name, "--seeds", "2", "--technique", "l2_one", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert "3 variants x 2 seeds = 6 runs" in result.output
    assert len(scores(sqlite_url, name)) == 6


def a_plan() -> Any:
    from hpo.ablation import ADD_ONE_IN, Comparison, Plan, Variant

    variants = (Variant("baseline", {}), Variant("dropout", {"dropout": "on"}))
    comparison = Comparison(ADD_ONE_IN, "dropout", "dropout", "baseline", "dropout=on")
    return Plan("s", variants, (comparison,), 0, "baseline", "dropout")


def test_a_score_that_is_not_a_number_pairs_with_nothing() -> None:
    seeds = [1, 2, 3, 4]
    runs = {
        (key, seed): {"test_accuracy": 0.2 + 0.01 * seed + shift, "val_accuracy": 0.2}
        for key, shift in (("baseline", 0.0), ("dropout", -0.03))
        for seed in seeds
    }
    runs["dropout", 4] = {"test_accuracy": float("nan"), "val_accuracy": None}
    [row] = analyze(a_plan(), seeds, runs).rows
    assert row.test.effect.n == 3 and row.test.effect.mean == pytest.approx(-0.03)
    assert row.val.effect.n == 3


def test_a_run_without_a_score_leaves_the_variants_mean_and_the_choice_alone() -> None:
    from hpo.ablate import variant_scores
    from hpo.report.answer import answer

    seeds = [1, 2, 3, 4, 5, 6]
    runs = {
        (key, seed): {
            "test_accuracy": 0.2 + 0.01 * seed + shift * (1 + seed % 3 / 10),
            "val_accuracy": 0.2 + shift,
        }
        for key, shift in (("baseline", 0.0), ("dropout", 0.05))
        for seed in seeds
    }
    runs["baseline", 6] = {"test_accuracy": 0.26, "val_accuracy": None}  # diverged on validation
    val = variant_scores("baseline", seeds, runs, "val_accuracy")
    assert val.n == 5 and val.mean == pytest.approx(0.2)
    text = "\n".join(answer(analyze(a_plan(), seeds, runs), runs, "s"))
    assert "**Use** `dropout`" in text, text


def test_the_answer_says_on_how_many_pairs_a_half_done_ablation_rests() -> None:
    from hpo.ablate import verdict_lines
    from hpo.report.answer import answer

    seeds = list(range(10))
    runs = {
        (key, seed): {"test_accuracy": 0.2 + 0.001 * seed, "val_accuracy": 0.2}
        for key in ("baseline", "dropout")
        for seed in seeds[:3]
    }
    half_done = analyze(a_plan(), seeds, runs)
    text = "\n".join(answer(half_done, runs, "s"))
    assert "over 3 paired seeds of the 10 planned (runs are missing)" in text
    # No verdict on part of an analysis's seeds: a second look at its level would follow.
    assert half_done.interim and {r.test.label for r in half_done.rows} == {"pending"}
    assert "**Pending** (runs of this analysis are missing" in text
    # Nor a recommendation: the variant chosen on three seeds could change with all ten.
    assert "**Use**: unknown until the ablation's runs finish (6 of 20 done" in text
    assert "baseline (" not in text and "validation choice" not in text
    assert verdict_lines(half_done)[0].startswith(
        "ablation of 's': 6/20 runs, 3 paired seeds of the 10 planned (runs are missing);"
    )
    started = {k: v for k, v in runs.items() if k[0] == "baseline"}  # no run of dropout yet
    lines = verdict_lines(analyze(a_plan(), seeds, started))
    assert lines[-1].endswith("dropout              0 paired seeds so far -> pending"), lines
    text = "\n".join(answer(analyze(a_plan(), seeds, started), started, "s"))
    assert "**Use**: unknown until the ablation's runs finish (3 of 20 done" in text
    runs = {(key, seed): runs[key, seed % 3] for key in ("baseline", "dropout") for seed in seeds}
    text = "\n".join(answer(analyze(a_plan(), seeds, runs), runs, "s"))
    assert "over 10 paired seeds," in text


def test_an_ablation_planned_anew_goes_on_from_the_stages_spent(
    tmp_path: Path, sqlite_url: str
) -> None:
    from hpo.ablate import (
        STAGE_OFFSET_ATTR,
        analyze,
        prepare_ablation,
        stage_text,
        stages_spent,
        stored_offset,
        stored_stage,
    )

    name = make_study(tmp_path, sqlite_url)
    parent = optuna.load_study(study_name=name, storage=sqlite_url)
    for n_seeds in (2, 3):
        companion, _, _ = prepare_ablation(name, sqlite_url, n_seeds, techniques=["l2_one"])
    assert stored_stage(companion) == 2 and stages_spent(parent.user_attrs) == 2
    # The same study and ablation as an earlier version left them: no stages on the study.
    (tmp_path / "old").mkdir()
    old_url = f"sqlite:///{tmp_path / 'old' / 'old.db'}"
    assert make_study(tmp_path / "old", old_url) == name
    optuna.copy_study(
        from_study_name=companion.study_name, from_storage=sqlite_url, to_storage=old_url
    )
    # Deleted and planned anew, it runs the same seeds again: not a first look at them.
    for url in (sqlite_url, old_url):
        delete = ("study", "delete", companion.study_name, "-y", "--storage", url)
        assert hpo(*delete).exit_code == 0
        again, plan, _ = prepare_ablation(name, url, 2, techniques=["l2_one"])
        assert stored_stage(again) == 3 and stored_offset(again) == 2
        assert again.user_attrs[STAGE_OFFSET_ATTR] == 2
        marks = optuna.load_study(study_name=name, storage=url).user_attrs
        assert stages_spent(marks) == 3
    companion, _, _ = prepare_ablation(name, sqlite_url, 2, techniques=["l2_one"])
    assert stored_stage(companion) == 3  # resumed, no seeds added: the same analysis
    text = stage_text(analyze(plan, [1, 2], {}, stage=3, earlier=2))
    assert text.startswith(
        "analysis 3 of this study's ablations (2 of them by ablations deleted since, on the "
        "same seeds): family-wise 99.375% t intervals and Holm-corrected verdicts at 0.625% "
        "(4.375% of the 5% spent so far;"
    ), text
    companion, _, _ = prepare_ablation(name, sqlite_url, 4, techniques=["l2_one"])
    assert stored_stage(companion) == 4 and stages_spent(parent.user_attrs) == 4
    # Two `hpo ablate` at once each mark the stage they began: the larger one counts.
    assert stages_spent({"ablation_stage:5": True, "ablation_stage:4": True, "x": 1}) == 5


def test_adding_seeds_starts_the_next_analysis_at_half_the_level(
    tmp_path: Path, sqlite_url: str
) -> None:
    from hpo.ablate import (
        SEEDS_ATTR,
        STAGE_PREFIX,
        ablation_seeds,
        prepare_ablation,
        stages_of,
        stored_stage,
        verdict_lines,
    )

    name = make_study(tmp_path, sqlite_url)
    stages = []
    for n_seeds in (2, 2, 3, 3, 2, 5):
        companion, _, _ = prepare_ablation(name, sqlite_url, n_seeds, techniques=["l2_one"])
        stages.append(stored_stage(companion))
    # Only more seeds than before begin a new analysis; the same or fewer are the same one.
    assert stages == [1, 1, 2, 2, 2, 3]
    assert stages_of(companion.user_attrs) == [2, 3, 5]
    # Two `hpo ablate` adding seeds at once each mark their stage: neither is lost.
    attrs = {k: v for k, v in companion.user_attrs.items() if not k.startswith(STAGE_PREFIX)}
    assert stages_of({**attrs, "stage:7": True, "stage:9": True}) == [7, 9]
    # Two at once, asking for 7 and 9 seeds: the one that wrote its seed list last may be the
    # one of 7, but the runs of all 9 were queued, and the 9-seed stage was marked.
    companion.set_user_attr("stage:7", True)
    companion.set_user_attr("stage:9", True)
    companion.set_user_attr(SEEDS_ATTR, ablation_seeds(KNOWN_SEED, 7))
    _, _, found = load_ablation(name, sqlite_url)  # type: ignore[misc]
    assert found == ablation_seeds(KNOWN_SEED, 9)
    companion, _, n_runs = prepare_ablation(name, sqlite_url, 2, techniques=["l2_one"])
    assert companion.user_attrs[SEEDS_ATTR] == found and n_runs == 3 * 9
    assert stored_stage(companion) == 5
    # An ablation prepared before stages were kept: its seeds so far were its first stage.
    optuna.delete_study(study_name=companion.study_name, storage=sqlite_url)
    old = optuna.create_study(study_name=companion.study_name, storage=sqlite_url)
    for key, value in attrs.items():
        old.set_user_attr(key, value)
    companion, _, _ = prepare_ablation(name, sqlite_url, 6, techniques=["l2_one"])
    assert stages_of(companion.user_attrs) == [5, 6] and stored_stage(companion) == 2

    seeds = list(range(10))
    runs = {
        (key, seed): {"test_accuracy": 0.2 + 0.001 * seed + shift, "val_accuracy": 0.2}
        for key, shift in (("baseline", 0.0), ("dropout", 0.004))
        for seed in seeds
    }
    runs.update({("dropout", s): {"test_accuracy": 0.19, "val_accuracy": 0.2} for s in (0, 1)})
    first, second = (analyze(a_plan(), seeds, runs, stage=k) for k in (1, 2))
    v1, v2 = first.rows[0].test, second.rows[0].test
    assert (v1.level, v1.settle_level, v2.level) == (ALPHA / 2, ALPHA / 4, ALPHA / 4)
    assert v1.effect == v2.effect and v2.high - v2.low > v1.high - v1.low
    text = "\n".join(verdict_lines(second))
    assert "analysis 2 of this ablation: family-wise 98.75% t intervals" in text
    assert "(3.75% of the 5% spent so far" in text


def test_the_answer_names_what_it_did_not_compare_and_every_caveat() -> None:
    from hpo.ablate import TOUCHES_ZERO, Analysis, Row
    from hpo.ablation import ADD_ONE_IN, Comparison, Plan, Variant
    from hpo.report.ablation_section import interval_points, points
    from hpo.report.answer import answer
    from hpo.stats import DELTA, Verdict

    # The lesson's dropout experiment also widens the first layer: the answer says so, with
    # the rate (a strength); the table leaves out what only comes with switching dropout on.
    with_ = {"dropout": "on", "dropout_rate": 0.1, "first_units": 140}
    plan = Plan(
        "s",
        (Variant("baseline", {"dropout": "off"}), Variant("dropout", with_)),
        (Comparison(ADD_ONE_IN, "wider_dropout", "dropout", "baseline", "..."),),
        0,
        "baseline",
        "dropout",
    )
    seeds = list(range(10))
    runs = {
        (key, seed): {"test_accuracy": 0.2 + 0.001 * seed + up, "val_accuracy": 0.2 + up}
        for key, up in (("baseline", 0.0), ("dropout", 0.01))
        for seed in seeds
    }
    effect = paired_effect([0.21] * 10, [0.2] * 10)
    # Holm's test rejects while the simultaneous interval still holds zero (it can, m > 1).
    helps = Verdict(effect, 0.04, -0.0004, 0.02, HELPS, DELTA, ALPHA / 4, ALPHA / 8)
    row = Row(plan.comparisons[0], helps, helps)
    analysis = Analysis(plan, seeds, [row], 20, 20, DELTA, 1)
    lead, use, table = answer(analysis, runs, "s", ["dropout", "weight_decay"])[1:4]
    assert (
        "wider_dropout on its own (first_units=140, dropout=on, dropout_rate=0.1) "
        "+1.0 [-0.0, +2.0]" in lead
    )
    # The experiment changes dropout, so dropout was compared; weight decay never was.
    assert "**Not compared**: weight_decay." in lead
    assert "**Use** `dropout`" in use and TOUCHES_ZERO in use
    assert TOUCHES_ZERO in table and "(first_units=140, dropout=on)" in table
    # An interval's end just below zero keeps its sign.
    assert (points(-0.0004), points(0.0), points(0.0004)) == ("-0.0", "+0.0", "+0.0")
    assert (points(-0.035, False), points(-0.0004, False)) == ("-3.5", "0.0")  # a score
    assert interval_points(-0.0004, 0.02) == "[-0.0, +2.0]"


def test_runs_queued_twice_and_two_ablates_at_once_train_each_run_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    from hpo.ablate import prepare_ablation

    name = make_study(tmp_path, sqlite_url)
    companion, _, n_runs = prepare_ablation(name, sqlite_url, 2, techniques=["l2_one"])
    assert n_runs == 6
    # What a second `hpo ablate` started at the same moment does: queue every run again.
    for trial in companion.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        companion.enqueue_trial({}, user_attrs=dict(trial.user_attrs))
    # Two machines join with a third seed, at once: 9 runs, and the queue has 6 copies first.
    procs = [
        ablate_in_subprocess(sqlite_url, name, "--seeds", "3", "--technique", "l2_one")
        for _ in range(2)
    ]
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, out
    finally:
        for proc in procs:
            proc.kill()
    trials = companion.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [(t.user_attrs["variant"], t.user_attrs["seed"]) for t in complete]
    assert len(keys) == 9 and len(set(keys)) == 9  # every run once: none lost, none twice
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["fail_reason"].startswith("surplus") for t in failed)


def test_the_margin_an_ablation_is_judged_with_decides_no_effect() -> None:
    # Dropout adds 1 point on every seed, give or take 0.1: inside a margin of 2.5 points
    # that is "no effect"; against the default margin of 0.5 points it helps.
    import numpy as np

    seeds = list(range(1, 11))
    rng = np.random.default_rng(3)
    runs: dict[tuple[str, int], dict[str, float]] = {}
    for seed in seeds:
        luck = 0.2 + rng.normal(0, 0.02)
        shifted = luck + 0.01 + rng.normal(0, 0.001)
        runs["baseline", seed] = {"test_accuracy": luck, "val_accuracy": luck}
        runs["dropout", seed] = {"test_accuracy": shifted, "val_accuracy": shifted}
    wide = analyze(a_plan(), seeds, runs, delta=0.025)
    assert wide.delta == 0.025
    assert [(r.test.label, r.test.delta) for r in wide.rows] == [(NO_EFFECT, 0.025)]
    assert [r.test.label for r in analyze(a_plan(), seeds, runs).rows] == [HELPS]


def test_a_chosen_variant_outside_every_comparison_is_judged_as_one_of_all_variants() -> None:
    """Validation picks the study's best configuration, which no add-one-in row compares with
    the baseline: its test against the baseline counts every variant validation chose from."""
    import numpy as np
    from scipy import stats

    from hpo.ablation import ADD_ONE_IN, Comparison, Plan, Variant
    from hpo.report.answer import answer

    variants = (
        Variant("baseline", {}),
        Variant("dropout", {"dropout": "on"}),
        Variant("best", {"dropout": "on", "learning_rate": 0.003}),
    )
    comparison = Comparison(ADD_ONE_IN, "dropout", "dropout", "baseline", "dropout=on")
    plan = Plan("s", variants, (comparison,), 7, "baseline", "best")
    # Differences whose one-sample t-test gives p = 0.018: below the first analysis's level
    # (0.025) alone, above it as one of the 2 variants besides the baseline (Holm: 0.036).
    z = np.array([-1.5, -1.0, -0.5, -0.2, 0.0, 0.0, 0.2, 0.5, 1.0, 1.5])
    z = (z - z.mean()) / z.std(ddof=1)
    n, sd = len(z), 0.02
    shift = stats.t.ppf(1 - 0.018 / 2, n - 1) * sd / np.sqrt(n)
    seeds = list(range(1, n + 1))
    runs: dict[tuple[str, int], dict[str, float]] = {}
    for seed, step in zip(seeds, z, strict=True):
        base = 0.2 + 0.003 * seed
        runs["baseline", seed] = {"test_accuracy": base, "val_accuracy": 0.20}
        runs["dropout", seed] = {"test_accuracy": base, "val_accuracy": 0.21}
        runs["best", seed] = {"test_accuracy": base + shift + sd * step, "val_accuracy": 0.22}
    assert stats.ttest_1samp(shift + sd * z, 0).pvalue == pytest.approx(0.018)
    text = "\n".join(answer(analyze(plan, seeds, runs), runs, "s"))
    assert (
        "**Nothing is shown to beat the baseline.** The validation choice would be `best`" in text
    ), text
    # Its interval is at 1 - 2.5%/2, stated beside it.
    assert (
        "points (a 98.75% interval), unknown (judged as one of the 2 variants validation " in text
    )


def test_the_answer_says_when_early_stopping_never_acted() -> None:
    """Patience 7 in a 20-epoch budget may stop no run: its "no effect" is then no verdict on
    early stopping, and the answer says in how many runs it acted. Restoring the best weights,
    it also acts where a run's best val_loss came before its last epoch (Keras restores them
    at the end of every fit)."""
    from hpo.ablation import ADD_ONE_IN, Comparison, Plan, Variant
    from hpo.report.answer import answer

    def plan(restore: bool) -> Plan:
        on = {"early_stopping": "on", "patience": 7, "epochs": 20, "min_delta": 0.01}
        on["restore_best_weights"] = restore
        return Plan(
            "s",
            (Variant("baseline", {"early_stopping": "off", "epochs": 20}), Variant("es", on)),
            (Comparison(ADD_ONE_IN, "early_stopping", "es", "baseline", "early_stopping=on"),),
            0,
            "baseline",
            "es",
        )

    seeds = list(range(10))
    falling = [2.0 - 0.05 * e for e in range(20)]  # improves to the last epoch
    # Best at epoch 5; later epochs improve on it by less than min_delta only.
    early_best = [2.0 - 0.1 * min(e, 5) - 0.001 * max(e - 5, 0) for e in range(20)]

    def runs(stops: int, curve: list[float]) -> dict[tuple[str, int], dict[str, Any]]:
        made: dict[tuple[str, int], dict[str, Any]] = {}
        for seed in seeds:
            score = {"test_accuracy": 0.2 + 0.001 * seed, "val_accuracy": 0.2}
            made["baseline", seed] = {**score, "stopped_by": "budget"}
            stopped = "early_stopping" if seed < stops else "budget"
            made["es", seed] = {**score, "stopped_by": stopped, "curve_val_loss": curve}
        return made

    def said(restore: bool, made: dict[tuple[str, int], dict[str, Any]]) -> str:
        return "\n".join(answer(analyze(plan(restore), seeds, made), made, "s"))

    never = runs(0, falling)
    assert "(early stopping stopped 0 of its 10 runs early: it never acted here)" in said(
        False, never
    )
    assert (
        "(early stopping stopped 0 of its 10 runs early and ended 0 on an earlier epoch's "
        "weights: it never acted here)" in said(True, never)
    )
    assert "(early stopping stopped 3 of its 10 runs early)" in said(False, runs(3, falling))
    restored = said(True, runs(0, early_best))
    assert "stopped 0 of its 10 runs early and ended 10 on an earlier epoch's weights)" in restored

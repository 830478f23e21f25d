"""The CLI through Typer's CliRunner, and Ctrl-C on a real `hpo study run` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.cli import app, main

from .conftest import REPO, TINY_SPEC, as_cifar100

runner = CliRunner()


def hpo(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_help_lists_the_study_commands() -> None:
    result = hpo("study", "--help")
    assert result.exit_code == 0
    for command in ("create", "run", "list", "show", "export", "delete"):
        assert command in result.output


def test_create_run_show_export_delete(
    tiny_spec_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    result = hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert "created study 'tiny'" in result.output

    result = hpo("study", "run", "tiny", "--n-trials", "3", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert result.output.count("COMPLETE") == 3
    assert "trial    0" in result.output and "epochs     2/2" in result.output

    result = hpo("study", "list", "--storage", sqlite_url)
    assert result.exit_code == 0 and "tiny" in result.output and " 3 " in result.output

    result = hpo("study", "show", "tiny", "--storage", sqlite_url)
    assert result.exit_code == 0
    assert "complete 3, pruned 0" in result.output and "best: trial" in result.output
    assert "learning_rate =" in result.output

    csv = tmp_path / "t.csv"
    result = hpo(
        "study", "export", "tiny", "--format", "csv", "--out", str(csv), "--storage", sqlite_url
    )
    assert result.exit_code == 0
    lines = csv.read_text().splitlines()
    assert len(lines) == 4 and "params_learning_rate" in lines[0]

    result = hpo("study", "export", "tiny", "--format", "json", "--storage", sqlite_url)
    exported = json.loads(result.output)
    assert len(exported["trials"]) == 3
    assert len(exported["trials"][0]["user_attrs"]["curve_val_accuracy"]) == 2

    result = runner.invoke(app, ["study", "delete", "tiny", "--storage", sqlite_url], input="n\n")
    assert result.exit_code == 1 and result.output.endswith("nothing deleted\n"), result.output
    result = hpo("study", "delete", "tiny", "--yes", "--storage", sqlite_url)
    assert result.exit_code == 0 and "deleted study 'tiny' (3 trials)" in result.output
    assert "no studies" in hpo("study", "list", "--storage", sqlite_url).output


def test_smoke_study_prunes_and_stores_every_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'smoke.db'}"
    assert (
        hpo("study", "create", str(REPO / "studies" / "smoke.toml"), "--storage", url).exit_code
        == 0
    )
    result = hpo("study", "run", "smoke", "--n-trials", "6", "--storage", url)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="smoke", storage=url)
    states = [t.state for t in study.trials]
    assert len(states) == 6
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states


def one_line_error(result: object, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message


def test_bad_spec_is_one_line_naming_file_key_and_rule(tmp_path: Path, sqlite_url: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_SPEC.replace("epochs = 2", "epochs = 0"))
    result = hpo("study", "create", str(bad), "--storage", sqlite_url)
    one_line_error(result, "bad.toml", "epochs", "must be in")


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["study", "run", "tiny", "--n-trials", "abc"], ["'--n-trials'", "hpo study run --help"]),
        (["study", "nope"], ["No such command 'nope'", "hpo study --help"]),
        (["--bogus"], ["No such option: --bogus"]),
        (["study", "run"], ["Missing argument 'name'"]),
    ],
)
def test_a_usage_error_is_one_line(
    argv: list[str],
    fragments: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["hpo", *argv])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    out, err = capsys.readouterr()
    message = err.strip()
    assert not out and message.startswith("error: ") and "\n" not in message, err
    for fragment in fragments:
        assert fragment in message, message


def test_main_keeps_the_exit_codes_of_help_and_of_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, code in (
        (["--help"], 0),
        (["study"], 2),  # a group alone shows its help
        (["study", "show", "nope", "--storage", f"sqlite:///{tmp_path / 's.db'}"], 2),
    ):
        monkeypatch.setattr(sys, "argv", ["hpo", *argv])
        with pytest.raises(SystemExit) as stopped:
            main()
        assert stopped.value.code == code, argv
    out, err = capsys.readouterr()
    assert "Create a study from SPEC" in out  # `hpo study`'s own help, not the top level's
    assert err.strip().splitlines()[-1].startswith("error: SQLite file "), err


def test_a_group_alone_shows_its_help_without_rich_output_too() -> None:
    env = {**os.environ, "TYPER_USE_RICH": "0"}
    shown = subprocess.run(
        [sys.executable, "-m", "hpo", "study"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 2
    assert "Create a study from SPEC" in shown.stdout + shown.stderr
    assert "error:" not in shown.stdout + shown.stderr


def test_a_commands_process_exits_with_its_objects_frozen(
    tiny_spec_file: Path, sqlite_url: str
) -> None:
    """The interpreter's collections at exit then walk none of them; what it stored is kept."""
    script = "\n".join(
        [
            "import atexit, gc, sys",
            "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))",
            "from hpo.cli import main",
            f"sys.argv = ['hpo', 'study', 'create', {str(tiny_spec_file)!r}, "
            f"'--storage', {sqlite_url!r}]",
            "main()",
        ]
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "frozen at exit: True"
    assert optuna.get_all_study_names(sqlite_url) == ["tiny"]


def test_unknown_study_lists_the_known_ones(tiny_spec_file: Path, sqlite_url: str) -> None:
    hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url)
    for command in (("run", "nope"), ("show", "nope"), ("export", "nope"), ("delete", "nope")):
        result = hpo("study", *command, "--storage", sqlite_url)
        one_line_error(result, "no study 'nope'", "known studies: tiny")


def test_missing_data_file_is_one_line(tmp_path: Path, sqlite_url: str) -> None:
    spec = tmp_path / "real.toml"
    spec.write_text(as_cifar100(TINY_SPEC))
    hpo("study", "create", str(spec), "--storage", sqlite_url)
    result = hpo(
        "study", "run", "tiny", "--data", str(tmp_path / "nope.npz"), "--storage", sqlite_url
    )
    one_line_error(result, "nope.npz does not exist", "HPO_DATA")


def test_data_for_a_synthetic_study_is_refused_in_one_line(
    tiny_spec_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url)
    data = str(tmp_path / "c.npz")
    result = hpo("study", "run", "tiny", "--data", data, "--storage", sqlite_url)
    one_line_error(result, f"--data {data} names image data", "synthetic")
    assert not optuna.load_study(study_name="tiny", storage=sqlite_url).trials


def test_export_to_a_folder_that_does_not_exist_is_one_line(
    tiny_spec_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url)
    out = tmp_path / "nowhere" / "x.csv"
    result = hpo("study", "export", "tiny", "--out", str(out), "--storage", sqlite_url)
    one_line_error(result, f"cannot write {out}", "No such file or directory")


def test_an_empty_storage_is_one_line_for_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--storage "$URL"` with URL unset: never the default file in its place.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC)
    for command in (["study", "create", str(spec)], ["study", "list"], ["report", "tiny"]):
        one_line_error(hpo(*command, "--storage", ""), "--storage is empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_unreachable_storage_is_one_line_without_the_password() -> None:
    result = hpo("study", "list", "--storage", "postgresql://u:hunter2@127.0.0.1:1/x")
    one_line_error(result, "cannot open storage postgresql://u:***@127.0.0.1:1/x")
    assert "hunter2" not in result.output


def test_a_storage_that_refuses_writes_is_one_line_and_keeps_its_trials(
    tiny_spec_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url)
    assert hpo("study", "run", "tiny", "--n-trials", "2", "--storage", sqlite_url).exit_code == 0
    db = tmp_path / "studies.db"
    # Immutable: even root cannot write it, and SQLite opens it read-only.
    try:
        immutable = subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode
    except OSError:  # no chattr at all
        immutable = 1
    if immutable != 0:
        pytest.skip("chattr +i needs root on a file system that supports it")
    try:
        results = [
            hpo("study", "create", str(tiny_spec_file), "--name", "other", "--storage", sqlite_url),
            hpo("study", "run", "tiny", "--n-trials", "3", "--storage", sqlite_url),
            hpo("study", "delete", "tiny", "--yes", "--storage", sqlite_url),
        ]
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    for result in results:
        one_line_error(result, "the storage failed", "readonly database")
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


def test_a_storage_failure_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sqlite3

    from optuna.exceptions import StorageInternalError

    def failing(*args: object, **kwargs: object) -> None:
        try:
            raise sqlite3.OperationalError("disk I/O error near hunter2\nsecond line")
        except sqlite3.OperationalError as err:
            raise StorageInternalError("An exception is raised during the commit.") from err

    monkeypatch.setattr("hpo.storage.open_storage", failing)
    result = hpo("study", "list", "--storage", "postgresql://u:hunter2@db/x")
    one_line_error(result, "the storage failed: disk I/O error near ***")
    assert "second line" not in result.output


def test_a_storage_failure_while_ctrl_c_is_handled_names_the_failure_and_exits_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sqlite3

    from optuna.exceptions import StorageInternalError

    def failing(*args: object, **kwargs: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            try:  # the write that records the interrupted trial fails
                raise sqlite3.OperationalError("attempt to write a readonly database")
            except sqlite3.OperationalError as err:
                raise StorageInternalError("An exception is raised during the commit.") from err

    monkeypatch.setattr("hpo.storage.open_storage", failing)
    result = hpo("study", "list", "--storage", "sqlite:///x.db")
    assert result.exit_code == 130, result.output
    assert result.stderr == "error: the storage failed: attempt to write a readonly database\n"


def test_a_storage_that_fails_as_a_trial_ends_is_one_line_and_keeps_the_trial(
    tmp_path: Path, tiny_spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna's tell fails, then its own fallback read fails too and masks both (an
    UnboundLocalError in its `finally`): the command still names the storage's failure."""
    import sqlite3

    from hpo import objective as objectives
    from hpo import storage

    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    assert hpo("study", "create", str(tiny_spec_file), "--storage", url).exit_code == 0
    monkeypatch.setattr(storage, "SQLITE_TIMEOUT_S", 0.2)
    made = objectives.make_objective
    holders: list[sqlite3.Connection] = []

    def locking(*args: object, **kwargs: object) -> object:
        objective = made(*args, **kwargs)  # type: ignore[arg-type]

        def trained_then_locked(trial: optuna.trial.Trial) -> float:
            value = objective(trial)
            # Another process holds the file's write lock past the timeout as the trial ends.
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            holders.append(holder)
            return value

        return trained_then_locked

    monkeypatch.setattr(objectives, "make_objective", locking)
    result = hpo("study", "run", "tiny", "--n-trials", "1", "--storage", url)
    one_line_error(result, "the storage failed: database is locked")
    holders[0].execute("ROLLBACK")
    holders[0].close()
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.RUNNING]  # its heartbeat will fail it


def test_a_create_that_loses_the_race_for_its_name_says_the_study_exists(
    tmp_path: Path, tiny_spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert hpo("study", "create", str(tiny_spec_file), "--storage", url).exit_code == 0
    # Another `create` committed the name between this one's check and its write.
    monkeypatch.setattr("hpo.study.study_names", lambda storage: [])
    result = hpo("study", "create", str(tiny_spec_file), "--storage", url)
    one_line_error(result, "study 'tiny' already exists")


def test_create_on_a_file_that_is_no_database_names_the_storage(
    tmp_path: Path, tiny_spec_file: Path
) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 100)
    result = hpo("study", "create", str(tiny_spec_file), "--storage", f"sqlite:///{text}")
    one_line_error(result, f"cannot open storage sqlite:///{text}", "file is not a database")


def test_an_empty_hpo_storage_refuses_the_default_but_not_a_given_storage(
    tmp_path: Path, tiny_spec_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_STORAGE", "")
    one_line_error(hpo("study", "list"), "HPO_STORAGE is empty")
    url = f"sqlite:///{tmp_path / 'given.db'}"
    result = hpo("study", "create", str(tiny_spec_file), "--storage", url)
    assert result.exit_code == 0, result.output
    assert (
        "created study 'tiny'" in result.output and "later commands need --storage" in result.output
    )
    assert optuna.get_all_study_names(url) == ["tiny"]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from hpo.errors import HpoError

    missing = str(tmp_path / "none.toml")
    result = runner.invoke(app, ["--debug", "study", "create", missing])
    assert isinstance(result.exception, HpoError)  # raised, not turned into SystemExit(2)
    plain = runner.invoke(app, ["study", "create", missing])
    assert isinstance(plain.exception, SystemExit) and plain.exit_code == 2


def start_slow_run(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`hpo study run` of a trial far longer than a test waits, once it has trained an epoch."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = tmp_path / "slow.toml"
    spec.write_text(TINY_SPEC.replace("epochs = 2", "epochs = 100000"))
    env = {**os.environ, "HPO_STORAGE": url}
    command = [sys.executable, "-m", "hpo", "study"]
    subprocess.run([*command, "create", str(spec)], env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [*command, "run", "tiny", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    study = optuna.load_study(study_name="tiny", storage=url)
    while time.monotonic() < deadline and not any(
        t.intermediate_values for t in study.get_trials(states=(TrialState.RUNNING,))
    ):
        time.sleep(0.2)
    return process, url


def test_ctrl_c_records_the_running_trial_as_failed_and_exits_130(tmp_path: Path) -> None:
    process, url = start_slow_run(tmp_path, "--n-trials", "2")
    try:
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    (trial,) = optuna.load_study(study_name="tiny", storage=url).trials
    assert trial.state == TrialState.FAIL


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_pressed_over_and_over_still_ends_with_one_line_and_130(
    tmp_path: Path, workers: str
) -> None:
    process, url = start_slow_run(tmp_path, "--workers", workers)
    try:
        for _ in range(300):  # 1.5 s of signals, through the stop and the exit
            if process.poll() is not None:
                break
            process.send_signal(signal.SIGINT)
            time.sleep(0.005)
        _, err = process.communicate(timeout=90)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted: the running trial was recorded as failed" in err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    states = {t.state for t in optuna.load_study(study_name="tiny", storage=url).trials}
    assert states == {TrialState.FAIL}


def test_sigterm_during_a_test_evaluation_stops_it_with_one_line(tmp_path: Path) -> None:
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = tmp_path / "slow.toml"
    spec.write_text(TINY_SPEC.replace("epochs = 2", "epochs = 100000"))
    assert hpo("study", "create", str(spec), "--storage", url).exit_code == 0
    # A finished trial to evaluate: retraining it takes far longer than the test waits.
    study = optuna.load_study(study_name="tiny", storage=url)
    lr = FloatDistribution(1e-3, 1e-2, log=True)
    study.add_trial(
        create_trial(
            value=0.5, params={"learning_rate": 0.005}, distributions={"learning_rate": lr}
        )
    )
    out = tmp_path / "r.md"
    report = ["report", "tiny", "--evaluate-test", "--seeds", "1", "--out", str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo", *report, "--storage", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        while line and "test evaluation 1/" not in line:
            line = process.stdout.readline()
        time.sleep(3)  # training
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.strip() == (
        "interrupted: the test evaluations that finished are stored; the same command goes "
        "on from them"
    )
    assert not out.exists()


def test_a_study_whose_trials_all_fail_stops_with_one_line(tmp_path: Path, sqlite_url: str) -> None:
    spec = tmp_path / "x.toml"
    spec.write_text(
        TINY_SPEC.replace(
            "learning_rate = { low = 1e-3, high = 1e-2, log = true }",
            'optimizer = "sgd"\nweight_decay = "on"\nweight_decay_l2 = 100.0\n'
            "learning_rate = { low = 1e4, high = 1e6, log = true }",
        )
    )
    assert hpo("study", "create", str(spec), "--storage", sqlite_url).exit_code == 0
    result = hpo("study", "run", "tiny", "--max-failures", "3", "--storage", sqlite_url)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: stopped after 3 failed trials in a row; the first failed")
    assert "diverged: training loss was not finite" in line  # SGD at 1e4 with L2 100
    assert "Invalid loss" not in result.output  # Keras's own console line stays out
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3


def test_n_trials_and_timeout_must_be_positive_and_a_met_target_says_so(
    tiny_spec_file: Path, sqlite_url: str
) -> None:
    assert hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url).exit_code == 0
    for args, fragment in (
        (["--n-trials", "-3"], "--n-trials must be at least 1, got -3"),
        (["--n-trials", "0"], "--n-trials must be at least 1, got 0"),
        (["--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--workers", "100000"], "--workers 100000 needs at least 72666.3 GB"),
    ):
        result = hpo("study", "run", "tiny", *args, "--storage", sqlite_url)
        assert result.exit_code == 2 and fragment in result.stderr, result.output
    assert hpo("study", "run", "tiny", "--n-trials", "1", "--storage", sqlite_url).exit_code == 0
    result = hpo("study", "run", "tiny", "--n-trials", "1", "--storage", sqlite_url)
    assert result.exit_code == 0
    assert "already holds 1 finished trials (target 1): nothing to run" in result.output


def test_options_are_checked_before_anything_is_stored(
    tiny_spec_file: Path, sqlite_url: str
) -> None:
    assert hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url).exit_code == 0
    assert hpo("study", "run", "tiny", "--n-trials", "3", "--storage", sqlite_url).exit_code == 0
    result = hpo("ablate", "tiny", "--seeds", "2", "--timeout", "-1", "--storage", sqlite_url)
    assert result.exit_code == 2 and "--timeout must be a positive" in result.stderr
    result = hpo("ablate", "tiny", "--seeds", "2", "--workers", "9999", "--storage", sqlite_url)
    assert result.exit_code == 2 and "--workers 9999 needs at least" in result.stderr
    names = [s.study_name for s in optuna.get_all_study_summaries(sqlite_url)]
    assert names == ["tiny"]  # no ablation prepared before the refusal
    for top in ("0", "-3"):
        result = hpo("study", "show", "tiny", "--top", top, "--storage", sqlite_url)
        assert result.exit_code == 2 and "--top" in result.output, result.output


def test_a_study_created_under_another_name_goes_by_that_name(
    tiny_spec_file: Path, sqlite_url: str
) -> None:
    from hpo.study import load_study

    result = hpo("study", "create", str(tiny_spec_file), "--name", "other", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert load_study("other", sqlite_url, heartbeat_interval=None)[1].name == "other"
    for bad in ("../escape", "two words", "", "nul\x00byte", "bell\x07", "x" * 129):
        result = hpo("study", "create", str(tiny_spec_file), "--name", bad, "--storage", sqlite_url)
        one_line_error(result, "--name must be 1-128 characters without spaces, control characters")
    assert [s.study_name for s in optuna.get_all_study_summaries(sqlite_url)] == ["other"]


def test_a_study_whose_stored_spec_no_longer_loads_can_be_deleted(sqlite_url: str) -> None:
    from hpo.storage import open_storage
    from hpo.study import SPEC_ATTR

    study = optuna.create_study(study_name="old", storage=open_storage(sqlite_url, create=True))
    study.set_user_attr(SPEC_ATTR, TINY_SPEC.replace('type = "none"', 'type = "percentile"'))
    one_line_error(hpo("study", "show", "old", "--storage", sqlite_url), "[pruner]")
    result = hpo("study", "delete", "old", "--yes", "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    assert "deleted study 'old' (0 trials)" in result.output


@pytest.mark.parametrize(
    ("command", "default"),
    [
        (["study", "run"], "[default: $HPO_STORAGE or sqlite:///studies/hpo.db]"),
        (["study", "run"], "[default: the spec's n_trials]"),
        (["ablate"], "[default: the ablation's own, else 10]"),
        (["report"], "[default: 3]"),
    ],
)
def test_help_shows_the_defaults_written_in_it(command: list[str], default: str) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert default in " ".join(result.output.split())


def test_data_for_a_synthetic_study_is_refused_before_an_ablation_is_planned(
    tiny_spec_file: Path, sqlite_url: str, tmp_path: Path
) -> None:
    hpo("study", "create", str(tiny_spec_file), "--storage", sqlite_url)
    data = str(tmp_path / "c.npz")
    result = hpo("ablate", "tiny", "--data", data, "--storage", sqlite_url)
    one_line_error(result, f"--data {data} names image data")
    assert optuna.get_all_study_names(sqlite_url) == ["tiny"]  # no ablation study made

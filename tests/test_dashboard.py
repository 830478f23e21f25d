"""`hpo dashboard`: the storages it serves, what it refuses, the page in real headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from typer.testing import CliRunner

from hpo.cli import app
from hpo.dashboard import start_server
from hpo.errors import HpoError
from hpo.secrets import mask
from hpo.storage import open_storage

from .conftest import REPO, TINY_SPEC

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTE = "## Technique ranking\n\n1. learning rate: the only technique this tiny study searched"
NOTE_TEXT = "learning rate: the only technique this tiny study searched"
REPORT_NOTE_TEXT = "tiny: technique ranking"  # the heading `hpo report` gives the note
PROBLEMS = ("Traceback", "database is locked", "OperationalError")
POSTGRES_URL = os.environ.get(
    "HPO_TEST_POSTGRES", "postgresql+psycopg2://postgres:unused-secret@127.0.0.1:5432/test"
)

runner = CliRunner()


def hpo(*args: str) -> Any:
    return runner.invoke(app, list(args))


def one_line_error(result: Any, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def create_tiny(url: str, tmp_path: Path, n_trials: int = 0) -> optuna.Study:
    """The tiny study made by `hpo study create`, with `n_trials` finished trials added directly."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC)
    result = hpo("study", "create", str(spec), "--storage", url)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny", storage=open_storage(url, heartbeat_interval=None))
    for number in range(n_trials):
        study.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": 0.001 * (number + 1)},
                distributions={"learning_rate": FloatDistribution(1e-3, 1e-2, log=True)},
                value=0.25 + 0.01 * number,
                intermediate_values={0: 0.2, 1: 0.25 + 0.01 * number},
                user_attrs={"n_epochs": 2, "best_epoch": 2},
            )
        )
    return study


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*"))


def get_json(url: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@contextlib.contextmanager
def serving(url: str, name: str | None = None) -> Iterator[str]:
    """`start_server` in a thread of this process; yields the printed URL's origin."""
    server, address = start_server(url, port=0, name=name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield address.split("/dashboard")[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    env.pop("HPO_STORAGE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(process: subprocess.Popen[str], timeout: float = 120) -> str:
    """The process's next stdout line; a thread reads it, since the pipe's buffer may already
    hold it (select on the file descriptor would then wait for nothing)."""
    stdout = process.stdout
    assert stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines:
        raise AssertionError(f"no output within {timeout} s")
    return lines[0]


def stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[str, str]:
    """Stop `process` as Ctrl-C would (killing it if that fails); return its stdout and stderr."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


@contextlib.contextmanager
def dashboard_process(*args: str, cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`hpo dashboard ARGS --port 0` as a process; yields it, its first line and the URL."""
    process = spawn("dashboard", *args, "--port", "0", cwd=cwd)
    try:
        line = read_line(process)
        match = re.search(r"at (http://\S+)", line)
        assert match, line + stop(process)[1]
        yield process, line, match.group(1)
    finally:
        stop(process)


def assert_stopped_cleanly(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> None:
    out, err = stop(process, sig)
    assert process.returncode == 0, err
    assert "stopped the dashboard" in out
    assert not any(problem in err for problem in PROBLEMS), err


def test_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "studies.db"
    result = hpo("dashboard", "--storage", f"sqlite:///{missing}", "--port", "0")
    one_line_error(result, f"SQLite file {missing} does not exist")
    assert not missing.parent.exists()


def test_missing_journal_file_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "studies.log"
    result = hpo("dashboard", "--storage", f"journal:{missing}", "--port", "0")
    one_line_error(result, f"journal file {missing} does not exist")
    assert not missing.parent.exists()


def test_unknown_study_is_refused_listing_the_known_ones(sqlite_url: str, tmp_path: Path) -> None:
    create_tiny(sqlite_url, tmp_path)
    result = hpo("dashboard", "nope", "--storage", sqlite_url, "--port", "0")
    one_line_error(result, "no study 'nope'", "known studies: tiny")


def test_port_in_use_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    create_tiny(sqlite_url, tmp_path)
    server, _ = start_server(sqlite_url, port=0)
    try:
        port = str(server.server_port)
        result = hpo("dashboard", "--storage", sqlite_url, "--port", port)
        one_line_error(result, f"port {port} on 127.0.0.1 is in use", "--port")
    finally:
        server.server_close()


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_refused(sqlite_url: str, tmp_path: Path, port: str) -> None:
    create_tiny(sqlite_url, tmp_path)
    result = hpo("dashboard", "--storage", sqlite_url, "--port", port)
    one_line_error(result, f"port {port} is not a port number")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_file_storage_is_served_read_only_without_new_files(kind: str, tmp_path: Path) -> None:
    storages = tmp_path / "storages"
    storages.mkdir()
    url = f"sqlite:///{storages / 's.db'}" if kind == "sqlite" else f"journal:{storages / 's.log'}"
    study = create_tiny(url, tmp_path, n_trials=3)
    before = files_under(storages)
    with serving(url, name="tiny") as origin:
        status, listed = get_json(f"{origin}/api/studies")
        assert status == 200
        assert [s["study_name"] for s in listed["study_summaries"]] == ["tiny"]
        status, detail = get_json(f"{origin}/api/studies/{study._study_id}")
        assert status == 200 and len(detail["trials"]) == 3
        assert detail["has_intermediate_values"] is True
        for method, path in (("POST", "/api/studies"), ("DELETE", f"/api/studies/{1}")):
            status, answer = get_json(origin + path, method)
            assert status == 405 and "read-only" in answer["reason"]
        status, meta = get_json(f"{origin}/api/meta")
        assert meta["artifact_is_available"] is False
    assert files_under(storages) == before
    assert len(optuna.get_all_study_summaries(open_storage(url))) == 1


def test_printed_url_opens_the_named_study(sqlite_url: str, tmp_path: Path) -> None:
    study = create_tiny(sqlite_url, tmp_path)
    server, address = start_server(sqlite_url, port=0, name="tiny")
    server.server_close()
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/dashboard/studies/{study._study_id}", address)


def test_ipv6_host_gets_brackets_in_the_url(sqlite_url: str, tmp_path: Path) -> None:
    create_tiny(sqlite_url, tmp_path)
    try:
        server, address = start_server(sqlite_url, host="::1", port=0)
    except HpoError as err:
        pytest.skip(f"no IPv6 loopback here: {err}")
    server.server_close()
    assert re.fullmatch(r"http://\[::1\]:\d+/dashboard", address)


def test_prints_the_url_and_stops_cleanly_on_ctrl_c(sqlite_url: str, tmp_path: Path) -> None:
    create_tiny(sqlite_url, tmp_path, n_trials=1)
    with dashboard_process("tiny", "--storage", sqlite_url, cwd=tmp_path) as (process, line, url):
        assert line.startswith(f"serving {sqlite_url} (read-only) at http://127.0.0.1:")
        assert read_line(process).strip() == "press Ctrl-C to stop"
        with urllib.request.urlopen(url, timeout=20) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        out, err = stop(process, signal.SIGINT)
        assert process.returncode == 0, err
        assert out.strip() == "stopped the dashboard"
        assert "Traceback" not in err, err


def test_artifacts_of_a_trial_are_served_while_their_directory_exists(
    sqlite_url: str, tmp_path: Path
) -> None:
    import keras

    from hpo.artifacts import save_trial_artifacts

    study = create_tiny(sqlite_url, tmp_path)
    store = tmp_path / "artifacts"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    trial = study.ask()
    history: dict[str, list[float | None]] = {"loss": [1.4, 1.3], "val_loss": [1.5, None]}
    figure_id, weights_id = save_trial_artifacts(trial, history, store, model=model)
    study.tell(trial, 0.3)
    with serving(sqlite_url) as origin:
        assert get_json(f"{origin}/api/meta")[1]["artifact_is_available"] is True
        trial_path = f"{origin}/artifacts/{study._study_id}/{trial._trial_id}"
        for artifact_id, signature in ((figure_id, b"\x89PNG"), (weights_id, b"\x89HDF")):
            with urllib.request.urlopen(f"{trial_path}/{artifact_id}", timeout=20) as response:
                assert response.read(4) == signature
    shutil.rmtree(store)
    with serving(sqlite_url) as origin:
        assert get_json(f"{origin}/api/meta")[1]["artifact_is_available"] is False
    assert not store.exists()


@pytest.mark.postgres
def test_postgres_storage_is_served_with_its_password_masked(tmp_path: Path) -> None:
    try:
        storage = optuna.storages.RDBStorage(POSTGRES_URL)
    except Exception as err:
        pytest.skip(f"no PostgreSQL at {mask(POSTGRES_URL)}: {str(err).splitlines()[0]}")
    name = f"hpo-dashboard-test-{os.getpid()}"
    spec = tmp_path / "pg.toml"
    spec.write_text(TINY_SPEC.replace('name = "tiny"', f'name = "{name}"'))
    assert hpo("study", "create", str(spec), "--storage", POSTGRES_URL).exit_code == 0
    try:
        with dashboard_process(name, "--storage", POSTGRES_URL, cwd=tmp_path) as (
            process,
            line,
            url,
        ):
            password = urllib.parse.urlsplit(POSTGRES_URL).password
            assert not password or (password not in line and ":***@" in line)
            origin = url.split("/dashboard")[0]
            names = [
                s["study_name"] for s in get_json(f"{origin}/api/studies")[1]["study_summaries"]
            ]
            assert name in names
            assert_stopped_cleanly(process)
    finally:
        optuna.delete_study(study_name=name, storage=storage)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM}: `apt-get install chromium` (scripts/test.sh does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def write_note(name: str, url: str) -> None:
    import optuna_dashboard

    storage = open_storage(url, heartbeat_interval=None)
    optuna_dashboard.save_note(optuna.load_study(study_name=name, storage=storage), NOTE)


@contextlib.contextmanager
def opened(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """A fresh page, and the failures it meets (HTTP errors, script errors)."""
    page = browser.new_page(viewport={"width": 1200, "height": 760})
    failures: list[str] = []

    def check(response: Any) -> None:
        if response.status >= 400:
            failures.append(f"{response.status} {response.url}")

    page.on("response", check)
    page.on("pageerror", lambda err: failures.append(f"script error: {err}"))
    try:
        yield page, failures
    finally:
        page.close()


def check_study_page(page: Any, study_url: str, n_trials: int, note: str, shot: Path) -> None:
    """The study's name, its trial count and its note render on the dashboard's pages."""
    page.goto(study_url)
    page.get_by_text(re.compile(r"^tiny \(id=\d+\)$")).first.wait_for(timeout=60_000)
    page.goto(f"{study_url}/trials")
    page.get_by_text(f"{n_trials} Trials", exact=True).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"^Trial 0 \(trial_id=\d+\)$")).wait_for(timeout=60_000)
    body = page.inner_text("body")
    assert "learning_rate" in body and "best_epoch" in body
    page.screenshot(path=shot)
    page.goto(f"{study_url}/note")
    page.get_by_text(note).wait_for(timeout=60_000)


@pytest.mark.browser
def test_study_renders_in_chromium_with_its_trials_and_note(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC)
    assert hpo("study", "create", str(spec), "--storage", sqlite_url).exit_code == 0
    result = hpo("study", "run", "tiny", "--n-trials", "3", "--storage", sqlite_url)
    assert result.exit_code == 0 and result.output.count("COMPLETE") == 3, result.output
    out = str(tmp_path / "report.md")
    result = hpo("report", "tiny", "--note", "--out", out, "--storage", sqlite_url)
    assert result.exit_code == 0, result.output
    shot = tmp_path / "dashboard.png"
    with (
        dashboard_process("tiny", "--storage", sqlite_url, cwd=tmp_path) as (process, _, url),
        opened(browser) as (page, failures),
    ):
        check_study_page(page, url, 3, REPORT_NOTE_TEXT, shot)
        assert failures == []
        assert_stopped_cleanly(process)
    assert shot.stat().st_size > 10_000
    if record := os.environ.get("HPO_DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, record)


@pytest.mark.browser
def test_dashboard_reads_while_a_study_run_writes_the_same_sqlite_file(
    browser: Any, sqlite_url: str, tmp_path: Path
) -> None:
    n_trials = 4
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.replace("n_trials = 4", f"n_trials = {n_trials}"))
    assert hpo("study", "create", str(spec), "--storage", sqlite_url).exit_code == 0
    write_note("tiny", sqlite_url)
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    run = spawn("study", "run", "tiny", "--storage", sqlite_url, cwd=tmp_path)
    try:
        with (
            dashboard_process("tiny", "--storage", sqlite_url, cwd=tmp_path) as (process, _, url),
            opened(browser) as (page, failures),
        ):
            deadline = time.monotonic() + 150
            while not study.get_trials(deepcopy=False) and time.monotonic() < deadline:
                time.sleep(0.2)
            origin = url.split("/dashboard")[0]
            page.goto(url)
            page.get_by_text(re.compile(r"^tiny \(id=\d+\)$")).first.wait_for(timeout=60_000)
            n_reads = 0
            while run.poll() is None and time.monotonic() < deadline:
                status, _ = get_json(f"{origin}/api/studies/{study._study_id}")
                assert status == 200
                n_reads += 1
                time.sleep(0.2)
            assert n_reads > 0, "the run ended before the dashboard could read during it"
            check_study_page(page, url, n_trials, NOTE_TEXT, tmp_path / "during-run.png")
            assert failures == []
            assert_stopped_cleanly(process, signal.SIGTERM)
        out, err = stop(run)
        assert run.returncode == 0, err
        assert out.count("COMPLETE") == n_trials, out
        assert not any(problem in err for problem in PROBLEMS), err
    finally:
        stop(run)

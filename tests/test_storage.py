"""Storages: URLs, files that must not be made or changed, timeouts, heartbeats, drivers."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from hpo.errors import StorageError
from hpo.secrets import mask
from hpo.spec import load_spec_text
from hpo.storage import default_heartbeat_interval, open_storage, storage_url, supports_heartbeat
from hpo.study import create_study, load_study

from .conftest import TINY_SPEC


def test_password_is_masked() -> None:
    assert mask("postgresql://hpo:s3cret@db:5432/hpo") == "postgresql://hpo:***@db:5432/hpo"
    assert mask("sqlite:///studies/hpo.db") == "sqlite:///studies/hpo.db"
    assert mask("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"


def test_storage_url_prefers_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    assert storage_url() == "sqlite:///studies/hpo.db"
    monkeypatch.setenv("HPO_STORAGE", "journal:x.log")
    assert storage_url() == "journal:x.log"
    assert storage_url("sqlite:///y.db") == "sqlite:///y.db"
    # An empty URL given (an unset shell variable) is no URL: never the default instead.
    for empty in ("", "  "):
        with pytest.raises(StorageError, match="--storage is empty"):
            storage_url(empty)
        monkeypatch.setenv("HPO_STORAGE", empty)  # `export HPO_STORAGE=$URL` with URL unset
        with pytest.raises(StorageError, match="HPO_STORAGE is empty"):
            storage_url()
        assert storage_url("sqlite:///y.db") == "sqlite:///y.db"


def test_a_redis_database_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(StorageError, match="a Redis database is a number.*'notadb'"):
        open_storage("redis://127.0.0.1:6379/notadb")


@pytest.mark.parametrize("driver", ["mysql", "mysql+pymysql", "mariadb+pymysql"])
def test_an_unknown_mysql_charset_is_named_before_connecting(driver: str) -> None:
    if driver == "mysql" and importlib.util.find_spec("MySQLdb"):
        pytest.skip("mysql:// means mysqlclient where it is installed, which hpo does not check")
    # Port 9 (discard) has no server: a refusal that names the charset never connected.
    url = f"{driver}://hpo:s3cret@127.0.0.1:9/test?charset=utf-9&ssl_ca=/x"
    with pytest.raises(StorageError) as err:
        open_storage(url)
    assert str(err.value) == (
        f"{driver}://hpo:***@127.0.0.1:9/test?charset=utf-9&ssl_ca=/x: unknown MySQL charset "
        "'utf-9' (e.g. charset=utf8mb4)"
    )
    with pytest.raises(StorageError, match="charset is given 2 times: give it once"):
        open_storage(f"{driver}://hpo@127.0.0.1:9/test?charset=utf8mb4&charset=utf8mb4")


def test_reading_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()


def test_reading_a_sqlite_file_without_studies_leaves_it_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    foreign = tmp_path / "someone's data.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    before = foreign.read_bytes()
    with pytest.raises(StorageError, match="holds no studies"):
        open_storage(f"sqlite:///{foreign}")
    assert foreign.read_bytes() == before
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("plain text, long enough to have a header " * 10)
    with pytest.raises(StorageError, match="cannot open storage"):
        open_storage(f"sqlite:///{not_sqlite}")


def test_a_study_file_a_killed_writer_left_mid_commit_still_opens(
    sqlite_url: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    create_study(load_spec_text(TINY_SPEC), sqlite_url)
    db = tmp_path / "studies.db"
    # A writer killed after its changes reached the file: a hot journal is left to roll back.
    killed = (
        "import os, signal, sqlite3\n"
        f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "db.execute('PRAGMA cache_size = 1')\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "db.execute('CREATE TABLE big (x)')\n"
        "db.executemany('INSERT INTO big VALUES (?)', ((b'x' * 1000,) for _ in range(5000)))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", killed], check=False)
    assert (tmp_path / "studies.db-journal").exists()
    study, _ = load_study("tiny", sqlite_url)
    assert len(study.get_trials()) == len(load_spec_text(TINY_SPEC).enqueue)


def test_unreachable_server_is_one_line_without_the_password() -> None:
    with pytest.raises(StorageError) as info:
        open_storage("postgresql://hpo:topsecret@127.0.0.1:1/hpo")
    message = str(info.value)
    assert "cannot open storage postgresql://hpo:***@127.0.0.1:1/hpo" in message
    assert "topsecret" not in message and "\n" not in message


@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mariadb+pymysql"])
def test_a_server_that_never_answers_is_one_line_after_the_connect_timeout(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import threading

    import hpo.storage

    monkeypatch.setattr(hpo.storage, "CONNECT_TIMEOUT_S", 2)
    # The kernel completes the TCP handshake of a listening socket; nothing ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"{scheme}://hpo:pw@127.0.0.1:{silent.getsockname()[1]}/hpo"
        found: list[BaseException] = []

        def open_it() -> None:
            try:
                open_storage(url)
            except BaseException as err:
                found.append(err)

        opener = threading.Thread(target=open_it, daemon=True)
        opener.start()
        opener.join(timeout=30)
        assert not opener.is_alive(), "opening a silent server hangs"
    assert len(found) == 1 and isinstance(found[0], StorageError), found
    assert f"cannot open storage {scheme}://hpo:***@" in str(found[0])


def test_the_connect_timeout_goes_only_where_libpq_takes_it_and_nothing_sets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hpo.storage import CONNECT_TIMEOUT_S, _connect_timeout

    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("PGSERVICE", raising=False)
    ours = {"connect_timeout": CONNECT_TIMEOUT_S}
    assert _connect_timeout("postgresql+psycopg://u@h/db") == ours
    assert _connect_timeout("postgresql+psycopg2://u@h/db") == ours
    for url in (
        "postgresql+pg8000://u@h/db",  # its option is `timeout`: ours would break every open
        "postgresql+psycopg://u@h/db?connect_timeout=3",
        "postgresql+psycopg://u@h/db?service=main",
        "mysql+pymysql://u@h/db",
    ):
        assert _connect_timeout(url) == {}, url
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "30")
    assert _connect_timeout("postgresql+psycopg://u@h/db") == {}


@pytest.mark.postgres
def test_a_transaction_a_lost_worker_left_open_stops_blocking_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker cut off between its write and its commit leaves the transaction open on the
    # server, holding a lock on its trial's row; the others' stale-trial check (SELECT ...
    # FOR UPDATE) waited on it until the server's TCP keepalive gave up, hours later.
    import threading
    import uuid

    import sqlalchemy as sa
    from optuna.trial import TrialState

    import hpo.storage

    from .test_workers import POSTGRES, server_url

    monkeypatch.setattr(hpo.storage, "IDLE_IN_TRANSACTION_S", 1)
    url = server_url(POSTGRES, "POSTGRES")
    lost = open_storage(url, heartbeat_interval=None)
    name = f"idle-{uuid.uuid4().hex[:8]}"
    trial = optuna.create_study(study_name=name, storage=lost).ask()
    cut_off = lost.engine.connect()  # type: ignore[attr-defined]
    insert = "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (:t, 'k', '1')"
    cut_off.execute(sa.text(insert), {"t": trial._trial_id})  # ... and no commit comes
    other = open_storage(url, heartbeat_interval=None)
    failing = threading.Thread(
        target=other.set_trial_state_values, args=(trial._trial_id, TrialState.FAIL)
    )
    try:
        failing.start()
        failing.join(timeout=30)
        assert not failing.is_alive(), "the open transaction still blocks the others"
        assert other.get_trial(trial._trial_id).state == TrialState.FAIL
    finally:
        with contextlib.suppress(Exception):
            cut_off.close()
        failing.join()
        optuna.delete_study(study_name=name, storage=other)


@pytest.mark.postgres
def test_a_commands_exit_ends_its_server_sessions_cleanly() -> None:
    # The command line leaves its objects uncollected at exit (`hpo.cli.main`): the storages'
    # connection pools are closed before, so the server counts no abandoned session.
    import time

    import sqlalchemy as sa

    from .test_workers import POSTGRES, server_url

    url = server_url(POSTGRES, "POSTGRES")
    stats = (
        "SELECT sessions, sessions_abandoned FROM pg_stat_database "
        "WHERE datname = current_database()"
    )
    watcher = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with watcher.connect() as db:

        def counts() -> tuple[int, int]:
            db.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            sessions, abandoned = db.exec_driver_sql(stats).one()
            return int(sessions), int(abandoned)

        before = counts()
        listed = subprocess.run(
            [sys.executable, "-m", "hpo", "study", "list", "--storage", url],
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0, listed.stderr
        deadline = time.monotonic() + 10
        while counts()[0] == before[0] and time.monotonic() < deadline:
            time.sleep(0.1)  # the server counts a session when its process has ended
        time.sleep(0.5)
        after = counts()
    watcher.dispose()
    assert after[0] > before[0], "the command's sessions were not counted"
    assert after[1] == before[1], f"{after[1] - before[1]} session(s) abandoned"


@pytest.mark.postgres
def test_an_idle_transaction_limit_set_elsewhere_is_kept() -> None:
    from .test_workers import POSTGRES, server_url

    url = server_url(POSTGRES, "POSTGRES")
    setting = "SHOW idle_in_transaction_session_timeout"
    ours = open_storage(url, heartbeat_interval=None).engine  # type: ignore[attr-defined]
    with ours.connect() as db:
        assert db.exec_driver_sql(setting).scalar() == "30s"
    sep = "&" if "?" in url else "?"
    theirs = open_storage(
        f"{url}{sep}options=-c%20idle_in_transaction_session_timeout%3D5000",
        heartbeat_interval=None,
    ).engine  # type: ignore[attr-defined]
    with theirs.connect() as db:
        assert db.exec_driver_sql(setting).scalar() == "5s"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_a_sqlite_url_without_a_file_is_refused(url: str) -> None:
    # SQLAlchemy reads these as a database in memory: a study created there is gone at once.
    with pytest.raises(StorageError, match="names no file"):
        open_storage(url, create=True)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///file::memory:?cache=shared&uri=true", "SQLite URI filenames"),
        ("sqlite:///file:memdb1?mode=memory&uri=true", "SQLite URI filenames"),
        ("sqlite:///file:{tmp}/u.db?uri=true", "SQLite URI filenames"),
        ("sqlite:///~/x.db", "'~' is not expanded"),
    ],
)
def test_sqlite_uri_filenames_and_a_tilde_are_refused_before_anything_is_made(
    url: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A study made in memory would be gone when the command ends; `file:PATH` and `~/x.db`
    # are files that later commands would not find where the user looks.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match=message):
        open_storage(url.format(tmp=tmp_path), create=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:"])
def test_a_storage_file_below_a_file_is_refused_naming_that_file(
    tmp_path: Path, scheme: str
) -> None:
    blocking = tmp_path / "notes"
    blocking.write_text("mine")
    with pytest.raises(StorageError, match=f"{blocking} is a file, not a folder"):
        open_storage(f"{scheme}{blocking / 'deeper' / 'hpo.db'}", create=True)
    assert blocking.read_text() == "mine"


def test_journal_file_storage_works(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'j.log'}"
    create_study(load_spec_text(TINY_SPEC), url)
    study, _ = load_study("tiny", url)
    assert study.study_name == "tiny"


def test_a_file_that_is_no_journal_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    # Optuna skips a last line it cannot read: it appended a study to the text and every
    # later read failed.
    text = tmp_path / "notes.log"
    text.write_text("hello, these are my notes\n")
    for create in (True, False):
        with pytest.raises(StorageError, match="notes.log is not an Optuna journal"):
            open_storage(f"journal:{text}", create=create)
    assert text.read_text() == "hello, these are my notes\n"
    empty = tmp_path / "empty.log"
    empty.touch()
    create_study(load_spec_text(TINY_SPEC), f"journal:{empty}")
    assert load_study("tiny", f"journal:{empty}")[0].study_name == "tiny"


def test_create_refuses_a_sqlite_file_of_someone_else(tmp_path: Path) -> None:
    import sqlite3

    theirs = tmp_path / "shop.db"
    with contextlib.closing(sqlite3.connect(theirs)) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(StorageError, match="shop.db holds no studies .*; give a file of its own"):
        create_study(load_spec_text(TINY_SPEC), f"sqlite:///{theirs}")
    with contextlib.closing(sqlite3.connect(theirs)) as db:
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == [("customers",)]
    new = tmp_path / "new.db"
    new.touch()  # an empty file is a new database
    create_study(load_spec_text(TINY_SPEC), f"sqlite:///{new}")
    # SQLite's own bookkeeping (left by a dropped AUTOINCREMENT table) is no one's table
    kept = tmp_path / "kept.db"
    with contextlib.closing(sqlite3.connect(kept)) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT)")
        db.execute("INSERT INTO t DEFAULT VALUES")
        db.commit()
        db.execute("DROP TABLE t")
    create_study(load_spec_text(TINY_SPEC), f"sqlite:///{kept}")


def test_heartbeat_interval_comes_from_the_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HPO_HEARTBEAT_INTERVAL", raising=False)
    assert default_heartbeat_interval() == 30
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "2")
    storage = open_storage(sqlite_url, create=True)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert (storage.heartbeat_interval, storage.grace_period) == (2, 4)
    without = open_storage(sqlite_url, heartbeat_interval=None)
    assert isinstance(without, optuna.storages.RDBStorage) and without.heartbeat_interval is None


def test_a_heartbeat_interval_below_one_second_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "0")
    with pytest.raises(StorageError, match="HPO_HEARTBEAT_INTERVAL must be .* >= 1, got '0'"):
        default_heartbeat_interval()


def test_only_rdb_storages_notice_dead_workers() -> None:
    assert supports_heartbeat("sqlite:///x.db")
    assert supports_heartbeat("postgresql://u:p@db/hpo")
    assert not supports_heartbeat("journal:x.log")
    assert not supports_heartbeat("redis://127.0.0.1:6379/0")


def test_plain_urls_name_a_driver_that_is_installed() -> None:
    from hpo.storage import _with_installed_driver

    def only(*installed: str):
        return lambda name: name in installed

    pg = "postgresql://u@db/hpo"
    assert _with_installed_driver(pg, only("psycopg", "psycopg2")) == pg
    assert _with_installed_driver(pg, only("psycopg2")) == "postgresql+psycopg2://u@db/hpo"
    my = "mysql://root@db/test"
    assert _with_installed_driver(my, only("pymysql")) == "mysql+pymysql://root@db/test"
    assert _with_installed_driver(my, only("MySQLdb", "pymysql")) == my
    explicit = "postgresql+asyncpg://u@db/x"
    assert _with_installed_driver(explicit, only("psycopg2")) == explicit


def test_a_storage_failure_is_found_under_the_error_it_caused() -> None:
    import sqlite3

    from hpo.storage import storage_failure

    def masked() -> None:
        try:
            raise sqlite3.OperationalError("database is locked near hunter2\nmore")
        except sqlite3.OperationalError:
            raise UnboundLocalError("cannot access local variable 'updated_state'") from None

    try:
        masked()
    except UnboundLocalError as err:
        assert storage_failure(err, "sqlite:///x.db") is None  # raised `from None`: cut off
    try:
        try:
            raise sqlite3.OperationalError("database is locked near hunter2\nmore")
        except sqlite3.OperationalError:
            raise UnboundLocalError("cannot access local variable 'updated_state'")  # noqa: B904
    except UnboundLocalError as err:
        url = "postgresql://u:hunter2@db/x"
        assert storage_failure(err, url) == "the storage failed: database is locked near ***"
    assert storage_failure(ValueError("not a storage's"), "sqlite:///x.db") is None


TAKE_QUEUED = """
import sys, optuna
from hpo.storage import open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
storage = open_storage(sys.argv[1], heartbeat_interval=None)
study = optuna.load_study(study_name="queue", storage=storage)
while True:
    trial = study.ask()
    if "i" not in trial.user_attrs:  # the queue is empty: a new trial was made
        break
    print(trial.user_attrs["i"], flush=True)
    try:
        study.tell(trial, 0.0)
    except Exception:  # another process took the same trial and told it first
        pass
"""


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_processes_taking_queued_trials_from_one_sqlite_file_take_each_once(
    tmp_path: Path, scheme: str
) -> None:
    # SQLite ignores SELECT ... FOR UPDATE: without a transaction that locks before it reads,
    # two processes both read a queued trial as WAITING and both run it (measured: 18-19 of
    # 200 taken twice by 4 processes on 2 cores).
    url = f"{scheme}:///{tmp_path / 'q.db'}"
    study = optuna.create_study(
        study_name="queue", storage=open_storage(url, create=True, heartbeat_interval=None)
    )
    for i in range(200):
        study.enqueue_trial({}, user_attrs={"i": i})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TAKE_QUEUED, url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    taken = [int(line) for proc in procs for line in proc.communicate(timeout=300)[0].split()]
    assert all(proc.returncode == 0 for proc in procs)
    assert sorted(taken) == list(range(200))


def test_a_read_through_a_sqlite_storage_holds_no_write_lock(tmp_path: Path) -> None:
    # Only a trial's state change locks the file before it reads; a long read of a whole
    # study (a report, the dashboard) must not hold up another process's heartbeat.
    import sqlite3

    file = tmp_path / "r.db"
    storage = open_storage(f"sqlite:///{file}", create=True, heartbeat_interval=None)
    optuna.create_study(study_name="r", storage=storage)
    engine = storage.engine  # type: ignore[attr-defined]
    with engine.connect() as reading:
        assert reading.exec_driver_sql("SELECT count(*) FROM trials").scalar() == 0
        with contextlib.closing(sqlite3.connect(file, timeout=0.2)) as other:
            other.execute("BEGIN IMMEDIATE")
            other.execute("COMMIT")


def test_a_sqlite_url_in_another_spelling_gets_the_same_checks(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite+pysqlite:///{missing}")
    assert not missing.exists()
    with pytest.raises(StorageError, match="Python's sqlite3 only"):
        open_storage(f"sqlite+aiosqlite:///{missing}")

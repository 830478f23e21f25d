"""Storages: open one from its URL (SQLite, PostgreSQL, MySQL, journal file, Redis), with the
timeouts, heartbeat and checks that keep a command from hanging or writing where it should not."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from hpo.errors import HpoError, StorageError
from hpo.secrets import mask, redact

# Heartbeats and the stale-trial retry are marked experimental; they are what fault recovery uses.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

DEFAULT_STORAGE = "sqlite:///studies/hpo.db"
HEARTBEAT_INTERVAL = 30
HEARTBEAT_ENV = "HPO_HEARTBEAT_INTERVAL"
SQLITE_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL or MySQL server has to answer a new connection."""
IDLE_IN_TRANSACTION_S = 30
"""Seconds after which a PostgreSQL server ends a session left idle inside a transaction (its
client lost mid-write), releasing the rows it locked."""
MAX_RETRIES = 3
"""Copies of a trial whose process died that are retried before it is left failed."""


def storage_url(url: str | None = None) -> str:
    """The storage URL to use: the one given, else $HPO_STORAGE, else the default SQLite file.

    An empty one given (`--storage "$URL"` with URL unset) is refused: falling back would
    write to another storage than the one meant.
    """
    if url is not None and not url.strip():
        raise StorageError("--storage is empty: give a storage URL, or leave the option out")
    if url is None and "HPO_STORAGE" in os.environ and not os.environ["HPO_STORAGE"].strip():
        raise StorageError("HPO_STORAGE is empty: give it a storage URL, or unset it")
    return url or usual_storage()


def usual_storage() -> str:
    """The storage later commands use without --storage: $HPO_STORAGE, else the default file
    (unchecked: `storage_url` refuses an empty $HPO_STORAGE where one is needed)."""
    return os.environ.get("HPO_STORAGE") or DEFAULT_STORAGE


def supports_heartbeat(url: str) -> bool:
    """Whether the storage at `url` can notice a dead worker: RDB storages can, journals cannot."""
    return not url.startswith(("journal:", "redis://", "rediss://"))


def default_heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats: $HPO_HEARTBEAT_INTERVAL, else 30.

    A trial is stale, and so failed and retried, after two intervals without one.
    """
    raw = os.environ.get(HEARTBEAT_ENV)
    if raw is None:
        return HEARTBEAT_INTERVAL
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise StorageError(f"{HEARTBEAT_ENV} must be a whole number of seconds >= 1, got {raw!r}")
    return seconds


def open_storage(
    url: str,
    *,
    create: bool = False,
    heartbeat_interval: int | Literal["default"] | None = "default",
) -> BaseStorage:
    """Open the storage at `url` (sqlite://, postgresql://, mysql://, journal:PATH, redis://).

    A SQLite or journal file that does not exist is only made when `create` is set, so that
    commands which only read never leave files behind. RDB storages get Optuna's heartbeat
    (every `heartbeat_interval` seconds, "default" for `default_heartbeat_interval()`, None for
    none): a trial whose worker died is marked failed and retried.
    """
    if heartbeat_interval == "default":
        heartbeat_interval = default_heartbeat_interval()
    try:
        if url.startswith("journal:"):
            return _journal_file(url.removeprefix("journal:"), create)
        if url.startswith(("redis://", "rediss://")):
            from urllib.parse import urlparse

            from optuna.storages.journal import JournalRedisBackend, JournalStorage

            database = urlparse(url).path.strip("/")
            if database and not database.isdigit():
                # redis-py would quietly use database 0 instead.
                raise StorageError(
                    f"{mask(url)}: a Redis database is a number (redis://HOST:PORT/0), "
                    f"got {database!r}"
                )

            storage = JournalStorage(JournalRedisBackend(url))
            storage.get_all_studies()
            return storage
        return _rdb(url, create, heartbeat_interval)
    except HpoError:
        raise
    except Exception as err:
        reason = redact(_first_line(err), url)
        raise StorageError(f"cannot open storage {mask(url)}: {reason}") from err


def _make_folder(file: Path) -> None:
    """Make the folder of a new storage file, or say which part of its path is a file."""
    blocking = next((p for p in reversed(file.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise StorageError(f"cannot make {file}: {blocking} is a file, not a folder")
    file.parent.mkdir(parents=True, exist_ok=True)


def storage_files(url: str) -> list[Path]:
    """The files that hold the storage at `url`: a SQLite database with its journal and
    write-ahead files, or a journal file with its lock; none for a server."""
    if url.startswith("journal:"):
        file = _journal_path(url.removeprefix("journal:"))
        return [file, file.with_name(file.name + ".lock")]
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return []
    database = (parsed.database or "").strip()
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return []
    return [Path(database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]


def check_not_storage(out: Path, url: str) -> None:
    """Refuse an output file that is one of the storage's own files: writing it would
    destroy every study stored there."""
    target = out.expanduser().resolve()
    for file in storage_files(url):
        if file.expanduser().resolve() == target:
            raise HpoError(
                f"{out} is a file of the storage {mask(url)}: writing there would destroy its "
                "studies; choose another --out"
            )


def _journal_path(path: str) -> Path:
    """The file of a `journal:PATH` URL (`journal://PATH` spelled alike)."""
    return Path(path.removeprefix("//"))


def _journal_file(path: str, create: bool) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    file = _journal_path(path)
    if not file.exists():
        if not create:
            raise StorageError(f"journal file {file} does not exist")
        _make_folder(file)
    elif file.is_file() and not _is_journal(file):
        # Optuna skips a last line it cannot read (a write cut short), so it would append a
        # study to someone else's file and fail on every later read.
        raise StorageError(f"{file} is not an Optuna journal (its first line is no journal entry)")
    return JournalStorage(JournalFileBackend(str(file)))


_FIRST_ENTRY_MAX = 1 << 16
"""Bytes read of a journal's first line: its first entry creates a study, a short line."""


def _is_journal(file: Path) -> bool:
    """Whether `file` is empty or starts with an entry of Optuna's journal (a JSON object with
    an operation code)."""
    with file.open("rb") as handle:
        first = handle.readline(_FIRST_ENTRY_MAX)
    if not first.strip():
        return not first  # empty file: a new journal; a blank first line: not one
    try:
        entry = json.loads(first)
    except ValueError:
        return False
    return isinstance(entry, dict) and "op_code" in entry


def _rdb(url: str, create: bool, heartbeat_interval: int | None) -> BaseStorage:
    from sqlalchemy.engine import make_url

    heartbeat: dict[str, Any] = {}
    if heartbeat_interval:
        heartbeat = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": 2 * heartbeat_interval,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRIES
            ),
        }
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.query.get("uri") or (parsed.database or "").startswith("file:"):
            # sqlite3's URI filenames: a `file::memory:` study is gone when the command ends,
            # and `file:PATH` is a file this check and later commands would not find.
            raise StorageError(
                f"{mask(url)}: SQLite URI filenames (file:..., uri=true) are not supported: "
                "give sqlite:///PATH"
            )
        if (parsed.database or "").startswith("~"):
            raise StorageError(
                f"{mask(url)}: '~' is not expanded in a storage URL (it would name a folder "
                "called ~): give the path from /, e.g. sqlite:////home/me/hpo.db"
            )
        _check_sqlite_file(url, parsed.get_driver_name(), parsed.database, create)
        # Several local workers write the same file: wait for the lock instead of failing.
        sqlite_args = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        return _closed_at_exit(_SQLiteStorage(url, engine_kwargs=sqlite_args, **heartbeat))
    given, url = url, _with_installed_driver(url)
    if backend in ("mysql", "mariadb"):
        _check_charset(make_url(url), given)
        _bound_mysql_connects()
    engine_kwargs = {"pool_pre_ping": True, "connect_args": _connect_timeout(url)}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    if backend == "postgresql":
        _end_idle_transactions(storage.engine)
    return _closed_at_exit(storage)


_ENGINES: weakref.WeakSet[Any] = weakref.WeakSet()


def _closed_at_exit(storage: optuna.storages.RDBStorage) -> optuna.storages.RDBStorage:
    """`storage`, its connections closed when the process exits.

    A process of hpo's command line leaves its objects to the exit without collecting them
    (`hpo.cli.main`), connection pools included: closed here, a server sees each session end
    rather than its socket drop.
    """
    _ENGINES.add(storage.engine)
    return storage


@atexit.register
def _close_engines() -> None:
    for engine in list(_ENGINES):
        with contextlib.suppress(Exception):  # the process is ending: a failed close is moot
            engine.dispose()


def _check_sqlite_file(url: str, driver: str, database: str | None, create: bool) -> None:
    """Refuse a SQLite URL that names no file, a file that is missing (unless `create`), or a
    file that holds someone else's tables."""
    if driver != "pysqlite":
        raise StorageError(
            f"{mask(url)}: hpo opens SQLite files through Python's sqlite3 only: give "
            "sqlite:///PATH"
        )
    if (database or "").strip() in ("", ":memory:"):
        # `sqlite://`, `sqlite:///` and `sqlite:///:memory:` are a database in memory, gone
        # when the command ends, and its study with it.
        raise StorageError(
            f"{url} names no file: give one, e.g. sqlite:///studies/hpo.db (relative) or "
            "sqlite:////abs/path/hpo.db"
        )
    file = Path(str(database))
    if not file.exists():
        if not create:
            raise StorageError(f"SQLite file {file} does not exist (no study was created there)")
        _make_folder(file)
        return
    tables = _table_names(file)
    # Opening it through Optuna would add Optuna's tables to someone else's database.
    # For `create`, a file with none of its own tables (empty, or SQLite's bookkeeping
    # only) is a new one, and one with some of Optuna's a `create` cut short.
    theirs = {t for t in tables if not t.startswith("sqlite_")}
    new = not theirs or bool(theirs & _OPTUNA_TABLES)
    if not _OPTUNA_TABLES.issubset(tables) and not (create and new):
        raise StorageError(
            f"SQLite file {file} holds no studies (it has no Optuna tables)"
            + ("; give a file of its own" if create else "")
        )


_LOCKING = threading.local()
"""Set while this thread changes a trial's state through a `_SQLiteStorage`."""


class _SQLiteStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage on a SQLite file, whose trial state changes are atomic across
    processes.

    Optuna changes a trial's state by reading it and writing it in one transaction, with
    SELECT ... FOR UPDATE so that a second process waits: that is how exactly one worker takes
    a queued (WAITING) trial, and how exactly one fails a stale one. SQLite ignores FOR
    UPDATE, and Python's driver begins a transaction only at its first write, so two processes
    could both read a queued trial as WAITING and both take it (one run trained twice, the
    second result refused). Here that one transaction begins IMMEDIATE: it takes the write
    lock before it reads, and the other process waits within the busy timeout. Every other
    transaction is left as the driver makes it, so reads (a whole study, the dashboard's) take
    no write lock and never hold up a heartbeat.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        from sqlalchemy import event

        super().__init__(url, **kwargs)
        event.listen(self.engine, "begin", _begin_immediate_when_locking)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        _LOCKING.on = True
        try:
            return super().set_trial_state_values(trial_id, state, values)
        finally:
            _LOCKING.on = False


def _begin_immediate_when_locking(connection: Any) -> None:
    if getattr(_LOCKING, "on", False):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _connect_timeout(url: str) -> dict[str, Any]:
    """libpq's `connect_timeout` for a PostgreSQL URL that sets none of its own, or nothing.

    A server that accepts the connection but never answers would hang every command. Only
    libpq's drivers (psycopg, psycopg2) take the option; the URL, `PGCONNECT_TIMEOUT` and a
    service file may set their own.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() not in (
        "psycopg",
        "psycopg2",
    ):
        return {}
    if {"connect_timeout", "service"} & set(parsed.query) or {
        "PGCONNECT_TIMEOUT",
        "PGSERVICE",
    } & set(os.environ):
        return {}
    return {"connect_timeout": CONNECT_TIMEOUT_S}


def _end_idle_transactions(engine: Any) -> None:
    """Have the PostgreSQL server end any of this engine's sessions left idle inside a
    transaction for IDLE_IN_TRANSACTION_S.

    A worker whose machine is lost (a cut link, a powered-off host) in the middle of a
    transaction leaves it open on the server, holding its row locks: every other worker's
    check for stale trials (SELECT ... FOR UPDATE) would wait on it until the server's TCP
    keepalive gives up, hours later. hpo's own transactions never wait between statements.
    The setting is made by a SET on each new connection, where the server, the role or the
    URL's options set none (a startup option would be refused by connection poolers such as
    PgBouncer); a server that refuses the SET is left as it is.
    """
    from sqlalchemy import event

    event.listen(engine, "connect", _set_idle_in_transaction_timeout)
    engine.dispose()  # the connections Optuna opened while setting up get it too


def _set_idle_in_transaction_timeout(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        if str(cursor.fetchone()[0]) == "0":
            ms = int(IDLE_IN_TRANSACTION_S * 1000)
            cursor.execute(f"SET idle_in_transaction_session_timeout = {ms}")
        dbapi_connection.commit()
    except Exception:
        with contextlib.suppress(Exception):
            dbapi_connection.rollback()
    finally:
        cursor.close()


def _check_charset(parsed: Any, given: str) -> None:
    """Refuse a `charset` in a PyMySQL URL that PyMySQL does not know, which it would
    report only as "'NoneType' object has no attribute 'encoding'"; `given` is the URL as the
    user wrote it, for the message."""
    charset = parsed.query.get("charset")
    if charset is None or parsed.get_driver_name() != "pymysql":
        return
    from pymysql.charset import charset_by_name

    if not isinstance(charset, str):
        raise StorageError(f"{mask(given)}: charset is given {len(charset)} times: give it once")
    if charset_by_name(charset) is None:
        raise StorageError(
            f"{mask(given)}: unknown MySQL charset {charset!r} (e.g. charset=utf8mb4)"
        )


def _bound_mysql_connects() -> None:
    """Give every MySQL or MariaDB connection CONNECT_TIMEOUT_S to finish its handshake.

    PyMySQL's `connect_timeout` bounds only the TCP connect: a server that accepts and never
    sends its greeting (a hung server, a port that is not MySQL's) would hang the command for
    good, and `read_timeout` would also cut every long query. So the connect runs in a thread
    of its own and is given up after the timeout (a connection that completes later is
    dropped; a thread still blocked on the socket ends with the process). The hook is on the
    dialects' common base, so every driver of both gets it.
    """
    from sqlalchemy import event
    from sqlalchemy.dialects.mysql.base import MySQLDialect

    if not event.contains(MySQLDialect, "do_connect", _connect_within_timeout):
        event.listen(MySQLDialect, "do_connect", _connect_within_timeout)


def _connect_within_timeout(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
    """SQLAlchemy's `do_connect` hook: the DBAPI connection, or an error after the timeout."""
    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            outcome["connection"] = dialect.connect(*cargs, **cparams)
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=connect, name="hpo-mysql-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise dialect.loaded_dbapi.OperationalError(
            2013, f"the server did not answer within {CONNECT_TIMEOUT_S} s"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["connection"]


_OPTUNA_TABLES = frozenset({"studies", "version_info"})
"""Tables every Optuna SQLite storage has; the check needs only these two."""


def _table_names(file: Path) -> set[str]:
    """The tables of a SQLite file, read without adding any.

    Read-write (`mode=rw` never creates a file): a read-only connection cannot roll back the
    journal a writer killed mid-commit leaves, which the next read-write open does.
    """
    import sqlite3

    uri = file.resolve().as_uri() + "?mode=rw"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S)) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def _with_installed_driver(url: str, find: Callable[[str], object] | None = None) -> str:
    """A plain URL names SQLAlchemy's default driver; name an installed one instead.

    postgresql:// means psycopg 3 to SQLAlchemy 2.1: psycopg2 is used if only it is installed.
    mysql:// means mysqlclient (a C extension): PyMySQL, which hpo installs, is used unless
    mysqlclient is there. `find` looks a module up (importlib's `find_spec`; tests replace it).
    """
    import importlib.util

    find = find or importlib.util.find_spec
    if url.startswith("postgresql://") and not find("psycopg") and find("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    if url.startswith("mysql://") and not find("MySQLdb") and find("pymysql"):
        return "mysql+pymysql://" + url.removeprefix("mysql://")
    return url


def storage_failure(err: BaseException, url: str) -> str | None:
    """One line for a storage's failure anywhere in `err`'s chain, or None if there is none.

    The chain is searched because a failed write can surface as the error it caused in
    Optuna's own clean-up (an UnboundLocalError after a `tell` that failed). The line is the
    first of what failed at the bottom of the chain from the storage's error down, with
    `url`'s password hidden.
    """
    chain = exception_chain(err)
    failed = storage_errors()
    first = next((i for i, e in enumerate(chain) if isinstance(e, failed)), None)
    if first is None:
        return None
    cause = [e for e in chain[first:] if isinstance(e, Exception)][-1]
    return f"the storage failed: {redact(_first_line(cause), url)}"


def _first_line(err: BaseException) -> str:
    """The first line of what `err` says, or its type's name if it says nothing."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def storage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a storage raises when it fails, of the libraries this process uses."""
    import sqlite3
    import sys

    from optuna.exceptions import StorageInternalError

    found: list[type[BaseException]] = [StorageInternalError, sqlite3.Error]
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import SQLAlchemyError

        found.append(SQLAlchemyError)
    if "redis" in sys.modules:
        from redis.exceptions import RedisError

        found.append(RedisError)
    return tuple(found)


def exception_chain(err: BaseException) -> list[BaseException]:
    """`err` and what it was raised from or while handling, deepest last, each once."""
    chain = [err]
    while True:
        last = chain[-1]
        below = last.__cause__ or (None if last.__suppress_context__ else last.__context__)
        if below is None or any(below is seen for seen in chain):
            return chain
        chain.append(below)

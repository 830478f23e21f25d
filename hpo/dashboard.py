"""Serving a storage's studies in optuna-dashboard: open read-only, bind, print the URL, stop."""

from __future__ import annotations

import contextlib
import errno
import json
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from optuna.storages import BaseStorage

from hpo.errors import HpoError, StudyNotFoundError
from hpo.secrets import mask
from hpo.storage import open_storage
from hpo.study import study_names

WSGIApp = Callable[..., Iterable[bytes]]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
READ_ONLY_REASON = (
    "hpo dashboard is read-only: change studies with `hpo study ...` or `hpo report`, "
    "so that running workers are never disturbed"
)


class DashboardServer(ThreadingMixIn, WSGIServer):
    """optuna-dashboard's own choice (wsgiref, one thread per request), made quiet."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that closes a connection early is not an error worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class QuietHandler(WSGIRequestHandler):
    """No access log: the terminal keeps the URL; failures still print (by Bottle)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class IPv6DashboardServer(DashboardServer):
    address_family = socket.AF_INET6


def serve(
    url: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    name: str | None = None,
    echo: Callable[[str], None] = print,
    read_only: bool = True,
) -> None:
    """Serve the studies in `url` until Ctrl-C (or SIGTERM), which stops cleanly.

    Args:
        url: The storage URL; a SQLite or journal file must already exist.
        host: The interface to bind; 127.0.0.1 keeps the dashboard on this machine.
        port: The port; 0 picks a free one (the printed URL says which).
        name: A study whose page the printed URL opens.
        echo: Where the URL and the closing line go.
        read_only: Refuse the dashboard's writes (new, renamed or deleted studies, notes, ...).
    """
    server = None
    try:
        with _sigterm_interrupts():
            server, address = start_server(url, host, port, name, read_only=read_only)
            port = server.server_port
            mode = "read-only" if read_only else "read-write"
            echo(f"serving {mask(url)} ({mode}) at {address}")
            if host in WILDCARD_HOSTS:
                echo(f"listening on all interfaces: anyone who reaches port {port} sees it")
            echo("press Ctrl-C to stop")
            server.serve_forever()
    except KeyboardInterrupt:
        echo("stopped the dashboard")
    finally:
        if server is not None:
            server.server_close()


def start_server(
    url: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    name: str | None = None,
    read_only: bool = True,
) -> tuple[DashboardServer, str]:
    """Open the storage and bind the server (not yet serving); return it and the URL to open."""
    from optuna_dashboard import wsgi

    from hpo.artifacts import open_artifact_store

    # No heartbeat: the dashboard must never mark another process's trial as failed.
    storage = open_storage(url, heartbeat_interval=None)
    path = f"/studies/{study_id(storage, name, url)}" if name else ""
    app = wsgi(storage, artifact_store=open_artifact_store(storage, name))
    server = bind(refuse_writes(app) if read_only else app, host, port)
    return server, f"http://{_url_host(host)}:{server.server_port}/dashboard{path}"


def study_id(storage: BaseStorage, name: str, url: str) -> int:
    """The storage's id of study `name`, which the dashboard's study URLs use."""
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise StudyNotFoundError(f"no study '{name}' in {mask(url)} (known studies: {known})")
    return storage.get_study_id_from_name(name)


def bind(app: WSGIApp, host: str, port: int) -> DashboardServer:
    """A server bound to `host`:`port`; a port in use or a bad host is a one-line error."""
    server_class = IPv6DashboardServer if ":" in host else DashboardServer
    if not 0 <= port <= 65535:
        raise HpoError(f"port {port} is not a port number (0-65535; 0 picks a free one)")
    try:
        server = server_class((host, port), QuietHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise HpoError(
                f"port {port} on {host} is in use: choose another with --port (0 picks a free one)"
            ) from err
        raise HpoError(f"cannot serve on {host}:{port}: {err.strerror or err}") from err
    server.set_app(app)
    return server


def refuse_writes(app: WSGIApp) -> WSGIApp:
    """`app` answering only reads; any write gets 405 with a reason the dashboard shows."""
    body = json.dumps({"reason": READ_ONLY_REASON}).encode()

    def read_only_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD", "GET") in READ_METHODS:
            return app(environ, start_response)
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Allow", ", ".join(sorted(READ_METHODS))),
            ],
        )
        return [body]

    return read_only_app


def _url_host(host: str) -> str:
    if host in WILDCARD_HOSTS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Let SIGTERM stop the server the way Ctrl-C does (only the main thread handles signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

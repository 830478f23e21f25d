"""A lost machine, not only a killed process: a worker on its own network host loses its link.

The test makes a network namespace joined to this one by a veth pair (its own test host), and a
TCP relay on the host side that carries PostgreSQL to it. A worker in the namespace starts a
trial; the test takes the link down mid-trial, so its heartbeat stops while the process lives
on. A worker here fails the trial by the heartbeat and runs its retry. When the link returns,
the stale worker's late writes are refused: the trial stays failed and nothing counts twice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import optuna
import pytest
from optuna.trial import TrialState

from hpo.storage import open_storage
from hpo.study import FINISHED

from .conftest import TINY_SPEC
from .test_workers import POSTGRES, RUN_LIMIT_S, create, server_url, start_hpo

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class NetHost:
    namespace: str
    link: str  # this side of the veth pair
    address: str  # this side's address, which the test host reaches us at

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", *command], check=True, capture_output=True, text=True)

    def link_up(self, up: bool) -> None:
        self.run("link", "set", self.link, "up" if up else "down")


@pytest.fixture
def test_host() -> Iterator[NetHost]:
    """A network namespace with a veth pair to this one; skips where none can be made."""
    if os.geteuid() != 0:
        pytest.skip("making a network namespace needs root")
    if shutil.which("ip") is None:
        pytest.skip("making a network namespace needs the `ip` command (iproute2)")
    tag = uuid.uuid4().hex[:6]
    subnet = f"10.231.{int(tag, 16) % 250}"
    host = NetHost(f"hpo-{tag}", f"hpo{tag}h", f"{subnet}.1")
    inner = f"hpo{tag}n"
    steps = [
        ("netns", "add", host.namespace),
        ("link", "add", host.link, "type", "veth", "peer", "name", inner),
        ("link", "set", inner, "netns", host.namespace),
        ("addr", "add", f"{host.address}/30", "dev", host.link),
        ("link", "set", host.link, "up"),
        ("-n", host.namespace, "addr", "add", f"{subnet}.2/30", "dev", inner),
        ("-n", host.namespace, "link", "set", inner, "up"),
        ("-n", host.namespace, "link", "set", "lo", "up"),
    ]
    try:
        for step in steps:
            host.run(*step)
    except subprocess.CalledProcessError as err:
        subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        pytest.skip(f"cannot make a network namespace here: {err.stderr.strip()}")
    try:
        yield host
    finally:
        subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", host.link], capture_output=True)


class Relay:
    """Forwards TCP connections from (address, any port) to a server, each in two threads."""

    def __init__(self, address: str, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server((address, 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop, and close every connection: the server then ends the sessions at once."""
        self.server.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_a_lost_hosts_trial_is_failed_retried_and_its_late_result_refused(
    test_host: NetHost,
) -> None:
    url = server_url(POSTGRES, "POSTGRES")
    parts = urlsplit(url)
    relay = Relay(test_host.address, (parts.hostname or "127.0.0.1", parts.port or 5432))
    remote_url = url.replace(parts.netloc.split("@")[-1], f"{test_host.address}:{relay.port}")
    name = f"lost-{uuid.uuid4().hex[:10]}"
    # Long enough trials that the link is cut while the first one trains.
    create(name, url, TINY_SPEC.replace("epochs = 2", "epochs = 60"))
    storage = open_storage(url, heartbeat_interval=None)
    processes: list[subprocess.Popen[str]] = []
    try:
        run = ("run", name, "--n-trials", "2")
        lost = start_hpo(processes, *run, "--storage", remote_url, namespace=test_host.namespace)
        deadline = time.monotonic() + RUN_LIMIT_S
        while not [
            t for t in storage.get_all_trials(storage.get_study_id_from_name(name)) if t.params
        ]:
            assert lost.poll() is None, lost.communicate()
            assert time.monotonic() < deadline, "the test host never started a trial"
            time.sleep(0.1)
        test_host.link_up(False)

        here = start_hpo(processes, *run, "--storage", url)
        out, err = here.communicate(timeout=RUN_LIMIT_S)
        assert here.returncode == 0, err
        study = optuna.load_study(study_name=name, storage=storage)
        (stale,) = [t for t in study.trials if t.number == 0]
        assert stale.state == TrialState.FAIL, out
        (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
        assert retry.state in FINISHED and retry.params == stale.params
        assert lost.poll() is None  # the lost host still lives, training its trial

        test_host.link_up(True)
        lost_out, lost_err = lost.communicate(timeout=RUN_LIMIT_S)
        trials = optuna.load_study(study_name=name, storage=storage).trials
        (after,) = [t for t in trials if t.number == 0]
        assert after.state == TrialState.FAIL and after.value is None, lost_out + lost_err
        assert sum(t.state in FINISHED for t in trials) == 2, lost_out + lost_err
        assert "Traceback" not in lost_err, lost_err[-3000:]
        assert "trial    0  FAIL" in lost_out and "lost its heartbeat" in lost_out, lost_out
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait()
        relay.close()
        optuna.delete_study(study_name=name, storage=storage)

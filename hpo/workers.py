"""Worker processes on one machine sharing one study: start them, share the cores, stop them."""

from __future__ import annotations

import faulthandler
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.progress import Progress

if TYPE_CHECKING:
    import optuna

# Variables that size the thread pools of TensorFlow and of the numerical libraries below it.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
MIB = 1 << 20
TENSORFLOW_MEMORY = 693 * MIB
"""What a worker holds at least: resident once hpo and TensorFlow are imported (measured,
docs/performance.md)."""
CIFAR100_MEMORY = 1400 * MIB
"""The same once CIFAR-100 is loaded; a trial adds about 100 MiB on the lesson's MLP."""
STOP_GRACE_S = 60.0
_CRASH_LOG: Any = None
"""The file a worker's faulthandler writes to, kept open for the process's life."""
RESEND_S = 5.0
INTERRUPTED = 130


@dataclass(frozen=True)
class Job:
    """What one worker process runs: which study, until when, with how many threads."""

    name: str
    url: str
    n_trials: int | None
    timeout: float | None
    data_path: Path | None
    worker: int
    n_threads: int
    max_failures: int = 10


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes this machine can still give processes (Linux's MemAvailable), or None where the
    system does not say. In a container this is the host's figure, not the container's limit."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def worker_memory(dataset: str | None) -> tuple[int, str]:
    """What one worker holds at least, and of what, for a spec's dataset (None: unknown)."""
    if dataset == "cifar100":
        return CIFAR100_MEMORY, "TensorFlow and CIFAR-100"
    return TENSORFLOW_MEMORY, "TensorFlow"


def check_memory(n_workers: int, available: int | None, dataset: str | None = None) -> None:
    """Refuse more workers than `available` bytes can hold at `worker_memory(dataset)` each."""
    each, what = worker_memory(dataset)
    if available is None or n_workers * each <= available:
        return
    from hpo.errors import HpoError

    fit = available // each
    advice = (
        f"give --workers {fit} or fewer, and run more on other machines against a shared storage"
        if fit > 1
        else "one process (no --workers) is all it can run"
    )
    raise HpoError(
        f"--workers {n_workers} needs at least {n_workers * each / 1e9:.1f} GB (a worker holds "
        f"{what}, {each / 1e9:.2f} GB) and this machine has {available / 1e9:.1f} GB "
        f"available: {advice}"
    )


def thread_shares(n_workers: int, n_cores: int) -> list[int]:
    """Threads per worker: the cores split as evenly as they go, at least one each."""
    return [max(1, n_cores // n_workers + (i < n_cores % n_workers)) for i in range(n_workers)]


def worker_label(pid: int) -> str:
    """How trials name the worker process that ran them: host and process id."""
    return f"{socket.gethostname()}:{pid}"


def run_workers(
    name: str,
    url: str,
    n_trials: int | None,
    timeout: float | None = None,
    data_path: Path | None = None,
    n_workers: int = 2,
    echo: Callable[[str], None] = print,
    max_failures: int = 10,
) -> optuna.Study:
    """Run study `name` in `n_workers` processes until it holds `n_trials` finished trials.

    Each worker loads the data once and runs trials with its share of the cores; one line per
    finished trial, prefixed by the worker, then a summary. KeyboardInterrupt (Ctrl-C, or SIGTERM
    turned into it by the CLI) stops every worker: their running trials are recorded as failed
    and the study resumes where it stopped.
    """
    from hpo.data import resolve_source
    from hpo.errors import HpoError
    from hpo.secrets import mask
    from hpo.storage import default_heartbeat_interval, supports_heartbeat
    from hpo.study import best_so_far, count, load_study, nothing_to_run

    default_heartbeat_interval()  # a bad $HPO_HEARTBEAT_INTERVAL: one line here, not per worker
    study, spec = load_study(name, url, heartbeat_interval=None)
    check_memory(n_workers, available_memory(), spec.data.dataset)
    target = n_trials if n_trials is not None else spec.n_trials
    if target is None and timeout is None:
        raise HpoError(f"study '{name}' has no n_trials in its spec: give --n-trials or --timeout")
    already = count(study)
    if target is not None and already >= target:
        echo(nothing_to_run(study, already, target))
        return study
    cores = available_cores()
    shares = thread_shares(n_workers, cores)
    until = f" until it holds {target} finished trials" if target is not None else ""
    echo(
        f"running study '{name}' in {mask(url)} with {n_workers} workers "
        f"({'/'.join(map(str, shares))} threads of {cores} cores){until}"
    )
    if not supports_heartbeat(url):
        echo(
            "warning: this storage has no heartbeat: the trial of a worker that dies here is "
            "retried, but one on a lost machine stays RUNNING (see docs/scale-out.md)"
        )
    ctx = multiprocessing.get_context("spawn")
    # Several workers downloading CIFAR-100 into Keras's cache at once would corrupt it.
    data_ready = ctx.Event() if resolve_source(spec.data, data_path) == "keras" else None
    jobs = [
        Job(name, url, target, timeout, data_path, worker, n_threads, max_failures)
        for worker, n_threads in enumerate(shares)
    ]
    began = time.monotonic()
    progress = Progress(
        target, count(study), best_so_far(study), spec.direction == "maximize", echo
    )
    pool = _Pool(ctx, study, data_ready, progress, retry_orphans=not supports_heartbeat(url))
    ended = False
    try:
        pool.start(jobs)
        pool.relay()
        ended = True
    except KeyboardInterrupt:
        with _signals_ignored():
            pool.stop()
            pool.fail_orphans(retry=False)
            progress.close()
            echo(_summary(study, n_workers, time.monotonic() - began))
        raise
    finally:
        with _signals_ignored():
            pool.kill()
            progress.close()
            if not ended:
                # Stopped by an error, or by a second signal before the stop above recorded
                # anything: the workers are gone, and their trials must not stay RUNNING (on
                # a storage without a heartbeat nothing else would fail them). A storage that
                # is the error itself may refuse this too; the error that stopped the run is
                # the one to show.
                with suppress(Exception):
                    pool.fail_orphans(retry=False)
    pool.fail_orphans(retry=False)
    echo(_summary(study, n_workers, time.monotonic() - began))
    if pool.errors and (target is None or count(study) < target):
        worker, error = next(iter(pool.errors.items()))
        raise HpoError(f"worker w{worker} failed: {error}")
    finished = count(study)
    if target is not None and finished < target and timeout is None:
        raise HpoError(
            f"study '{name}' holds {finished} of its {target} finished trials: "
            f"{target - finished} missing (a worker's trial was left running or failed); "
            f"`hpo study run {name}` runs them"
        )
    return study


class _Pool:
    """The worker processes, one pipe each back to this process for their messages."""

    def __init__(
        self,
        ctx: Any,
        study: optuna.Study,
        data_ready: Event | None,
        progress: Progress,
        retry_orphans: bool,
    ) -> None:
        self.ctx = ctx
        self.study = study
        self.data_ready = data_ready
        self.progress = progress
        self.echo = progress.write
        self.retry_orphans = retry_orphans
        self.errors: dict[int, str] = {}
        self.processes: list[BaseProcess] = []
        self.readers: dict[Connection, int] = {}
        self.sentinels: dict[int, int] = {}
        self.stopping = False

    def start(self, jobs: list[Job]) -> None:
        # Workers ignore SIGINT (inherited through exec): Ctrl-C reaches them as SIGTERM from
        # here, so a second Ctrl-C cannot cut short the recording of their failed trials.
        with _signals_ignored(signal.SIGINT):
            for job in jobs:
                reader, writer = self.ctx.Pipe(duplex=False)
                process = self.ctx.Process(
                    target=work, args=(job, writer, self.data_ready), name=f"hpo-w{job.worker}"
                )
                process.start()
                writer.close()
                self.processes.append(process)
                self.readers[reader] = job.worker
                self.sentinels[process.sentinel] = job.worker

    def relay(self, until: float = math.inf) -> None:
        """Echo the workers' messages until every worker has exited (or `until` passes)."""
        while self.sentinels and time.monotonic() < until:
            left = None if until == math.inf else max(0.0, until - time.monotonic())
            for ready in wait([*self.readers, *self.sentinels], timeout=left):
                if isinstance(ready, int):
                    self._ended(self.sentinels.pop(ready))
                else:
                    self._receive(ready)  # type: ignore[arg-type]
        for reader in list(self.readers):
            while reader in self.readers and reader.poll(0):
                self._receive(reader)

    def _receive(self, reader: Connection) -> None:
        worker = self.readers[reader]
        try:
            kind, text = reader.recv()
        except (EOFError, OSError):
            del self.readers[reader]
            return
        if kind == "epoch":
            self.progress.epoch(worker, *text)
            return
        if kind == "trial":
            line, finished, value, number = text
            self.progress.trial(worker, f"[w{worker}] {line}", finished, value, number)
            return
        if kind == "error":
            self.errors[worker] = text
        self.echo(f"[w{worker}] {'error: ' if kind == 'error' else ''}{text}")

    def _ended(self, worker: int) -> None:
        process = self.processes[worker]
        process.join()
        if worker == 0 and self.data_ready is not None:
            self.data_ready.set()
        code = process.exitcode
        # A worker asked to stop before it could handle SIGTERM (still starting) dies of it.
        if code == INTERRUPTED or (self.stopping and code == -signal.SIGTERM):
            self.echo(f"[w{worker}] stopped")
        elif code is not None and code < 0:
            killed = f"[w{worker}] killed by {signal.Signals(-code).name}"
            if not self.retry_orphans:
                self.echo(f"{killed}: its trial fails and is retried when its heartbeat is stale")
                return
            self.echo(killed)
            # No heartbeat will notice; this process saw the worker die, so it retries the trial.
            for number in fail_orphans(self.study, {worker_label(process.pid or 0)}, True):
                self.echo(f"[w{worker}] trial {number} failed with its worker; retrying it")

    def stop(self) -> None:
        """Ask each worker to stop (SIGTERM, repeated), relay what they say, kill stragglers."""
        self.stopping = True
        deadline = time.monotonic() + STOP_GRACE_S
        while self.sentinels and time.monotonic() < deadline:
            for process in self.processes:
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signal.SIGTERM)
            self.relay(until=min(deadline, time.monotonic() + RESEND_S))
        if self.sentinels:
            self.echo(f"workers still running after {STOP_GRACE_S:.0f} s were killed")
        self.kill()

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join()

    def fail_orphans(self, retry: bool) -> None:
        labels = {worker_label(p.pid) for p in self.processes if p.pid is not None}
        for number in fail_orphans(self.study, labels, retry):
            self.echo(f"trial {number} was left RUNNING by a stopped worker: recorded as failed")


def fail_orphans(study: optuna.Study, labels: set[str], retry: bool) -> list[int]:
    """Fail the RUNNING trials of the workers named by `labels`, which are known to be gone.

    With `retry`, each gets a WAITING copy with the same params, as Optuna's heartbeat retry
    does, so a surviving worker runs it. Returns the numbers of the failed trials.
    """
    from optuna.trial import TrialState

    from hpo.optimize import fail_trial

    return [
        trial.number
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.user_attrs.get("worker") in labels
        and fail_trial(study, trial, "its worker died", retry)
    ]


@contextmanager
def _signals_ignored(*signums: int) -> Iterator[None]:
    """Ignore SIGINT and SIGTERM (or `signums`) in this block, where signals can be set."""
    signums = signums or (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in signums}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _summary(study: optuna.Study, n_workers: int, seconds: float) -> str:
    from optuna.trial import TrialState

    from hpo.study import best_so_far, tally

    states = tally(study)
    counts = {state.name: states[state] for state in TrialState}
    finished = counts["COMPLETE"] + counts["PRUNED"]
    line = (
        f"study '{study.study_name}' holds {finished} finished trials ({counts['COMPLETE']} "
        f"complete, {counts['PRUNED']} pruned), {counts['FAIL']} failed, {counts['RUNNING']} "
        f"running, {counts['WAITING']} waiting; {n_workers} workers ran {seconds:.1f} s"
    )
    best = best_so_far(study) if counts["COMPLETE"] else None
    if best is not None:
        line += f"; best trial {best[1]} value {best[0]:.4f}"
    return line


def work(job: Job, conn: Connection, data_ready: Event | None) -> None:
    """The body of one worker process: exit 0 when done, 130 when stopped, 1 on an error."""
    signal.signal(signal.SIGTERM, _interrupt)
    sys.unraisablehook = _unraisable
    # A worker that crashes in native code (a signal such as SIGSEGV) leaves its Python stack
    # on stderr, beside the parent's "killed by" line; on a copy of the descriptor, because
    # importing TensorFlow points descriptor 2 at /dev/null for a while.
    global _CRASH_LOG
    _CRASH_LOG = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=_CRASH_LOG)
    # Before numpy and TensorFlow are imported: their thread pools are sized once, at start.
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(job.n_threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        _optimize(job, conn, data_ready)
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(INTERRUPTED)
    except Exception as err:
        from hpo.errors import HpoError
        from hpo.secrets import redact
        from hpo.storage import storage_failure

        if isinstance(err, HpoError):
            text = str(err)
        else:
            text = storage_failure(err, job.url) or f"{type(err).__name__}: {err}"
        conn.send(("error", redact(text.strip().splitlines()[0] if text.strip() else "", job.url)))
        sys.exit(1)
    finally:
        conn.close()


def _interrupt(signum: int, frame: Any) -> None:
    # Raised where the main thread is; if that is inside a finalizer, Python swallows it, so
    # the parent repeats SIGTERM until the worker exits.
    raise KeyboardInterrupt


def _unraisable(unraisable: Any) -> None:
    # A stop request that landed in a finalizer is lost, not an error: the parent repeats it.
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def _optimize(job: Job, conn: Connection, data_ready: Event | None) -> None:
    import optuna

    from hpo.data import load_dataset
    from hpo.optimize import optimize
    from hpo.study import FINISHED, load_study
    from hpo.summary import trial_line

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    label = worker_label(os.getpid())
    study, spec = load_study(job.name, job.url)
    if data_ready is not None and job.worker > 0:
        data_ready.wait()
    data = load_dataset(spec.data, job.data_path)
    if data_ready is not None:
        data_ready.set()
    set_tensorflow_threads(job.n_threads)
    from hpo.objective import make_objective

    def on_epoch(number: int, epoch: int, budget: int) -> None:
        conn.send(("epoch", (number, epoch, budget)))

    objective = make_objective(spec, data, on_epoch)

    def tagged(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", label)
        return objective(trial)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retried = trial.system_attrs.get("failed_trial")
        note = "" if retried is None else f"  (retry of trial {retried})"
        value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
        finished = trial.state in FINISHED
        conn.send(("trial", (trial_line(trial) + note, finished, value, trial.number)))

    optimize(
        study, tagged, job.n_trials, job.timeout, callbacks=[report], max_failures=job.max_failures
    )


def set_tensorflow_threads(n_threads: int) -> None:
    """Size TensorFlow's intra- and inter-op thread pools; must run before its first op."""
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n_threads)
    tf.config.threading.set_inter_op_parallelism_threads(n_threads)

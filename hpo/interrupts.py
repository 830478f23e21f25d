"""Ctrl-C and SIGTERM held back while Optuna writes to a storage, raised where that is safe."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class HeldInterrupts:
    """Ctrl-C and SIGTERM held back while Optuna records trials, raised where that is safe.

    A KeyboardInterrupt inside `study.ask`, `study.tell`, the stale-trial retry or any storage
    write (a trial's `report`) would leave a trial RUNNING for good or a storage session broken.
    So a signal is only noted while that bookkeeping runs, and raised by the handler it replaced
    once the objective or a wait is running outside storage code (retried every RETRY_S while a
    write is under way, or after a finalizer swallowed it), or at the next trial boundary.
    Only Python handlers are held (SIGINT's default one, the CLI's SIGTERM); ignored signals
    stay ignored.
    """

    RETRY_S = 0.05

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}
        self.pending: int | None = None
        self.raised: int | None = None
        self.open = False
        self.retries: list[threading.Timer] = []
        self.saved_hook: Any = None

    def __enter__(self) -> HeldInterrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if callable(signal.getsignal(signum)):
                    self.saved[signum] = signal.signal(signum, self._note)
            self.saved_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        return self

    def __exit__(self, *exc_info: object) -> None:
        for retry in self.retries:
            retry.cancel()
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        if self.saved_hook is not None:
            sys.unraisablehook = self.saved_hook
        if exc_info[0] is None:
            self.raise_pending()

    def _unraisable(self, unraisable: Any) -> None:
        """An interrupt raised inside a finalizer (a weakref callback, `__del__`), where Python
        ignores exceptions: deliver it again, where it will most likely land in plain code."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.raised is not None:
            self._retry(self.raised)
        elif self.saved_hook is not None:
            self.saved_hook(unraisable)

    def _retry(self, signum: int) -> None:
        retry = threading.Timer(self.RETRY_S, os.kill, (os.getpid(), signum))
        retry.daemon = True
        retry.start()
        self.retries = [r for r in self.retries if r.is_alive()] + [retry]

    def _note(self, signum: int, frame: Any) -> None:
        self.pending = signum
        if not self.open:
            return
        if _in_storage_code(frame):
            self._retry(signum)
            return
        self.raised = signum
        self.raise_pending()

    def raise_pending(self) -> None:
        """Raise a signal that was held back, through the handler it was meant for."""
        signum, self.pending = self.pending, None
        if signum is not None:
            self.saved[signum](signum, None)

    @contextlib.contextmanager
    def delivered(self) -> Iterator[None]:
        """A block where a signal interrupts at once, except inside storage code."""
        self.raise_pending()
        self.open = True
        try:
            yield
        except KeyboardInterrupt:
            self.raised = None
            raise
        finally:
            self.open = False
            if self.raised is not None:
                # Raised in the block but swallowed there (a finalizer, a catch-all): still owed.
                self.pending, self.raised = self.raised, None


_STORAGE_CODE = ("optuna.storages", "sqlalchemy", "redis", "psycopg2", "psycopg")


def _in_storage_code(frame: Any) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_STORAGE_CODE):
            return True
        frame = frame.f_back
    return False


class BetweenSteps:
    """Ctrl-C and SIGTERM during training noted, and raised only where training is between
    steps (`raise_pending`, from a Keras callback) or once it is over.

    Raised wherever the signal lands, a KeyboardInterrupt can cut TensorFlow's own Python code
    halfway (a graph being traced, a resource being freed, an iterator being made), and a
    process interrupted that way was seen aborting on a corrupted heap before it could record
    its trial. Between steps, the interrupt leaves a fit the way an exception of a callback
    does (pruning's), which TensorFlow handles. A second Ctrl-C while one waits is raised at
    once: a step that never ends still stops. Only Python handlers are wrapped; each signal
    is raised through the handler it was meant for. A block inside another (an evaluation in
    a trial) leaves the signals to the outer one and raises what it noted.
    """

    _active = threading.local()

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}
        self.pending: int | None = None
        self.outer: BetweenSteps | None = None

    def __enter__(self) -> BetweenSteps:
        self.outer = getattr(BetweenSteps._active, "block", None)
        if self.outer is None and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if callable(signal.getsignal(signum)):
                    self.saved[signum] = signal.signal(signum, self._note)
            BetweenSteps._active.block = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.outer is not None:
            return
        if getattr(BetweenSteps._active, "block", None) is self:
            BetweenSteps._active.block = None
        for signum, handler in self.saved.items():
            if signal.getsignal(signum) == self._note:  # not one installed meanwhile
                signal.signal(signum, handler)
        pending, self.pending = self.pending, None
        if pending is not None:
            # Through the restored handler, as if the signal came now.
            signal.raise_signal(pending)

    def _note(self, signum: int, frame: Any) -> None:
        if self.pending is not None and signum == signal.SIGINT:
            # Ctrl-C twice: now, where it landed (`HeldInterrupts` still holds it back inside
            # storage code). A repeated SIGTERM is not a person insisting: a worker's parent
            # resends it while the worker stops, and kills what does not stop in time.
            self.pending = None
            self.saved[signum](signum, frame)
            return
        self.pending = signum

    def raise_pending(self) -> None:
        """Raise a signal noted so far through the handler it was meant for."""
        if self.outer is not None:
            self.outer.raise_pending()
            return
        signum, self.pending = self.pending, None
        if signum is not None:
            self.saved[signum](signum, None)

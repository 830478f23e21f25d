"""Ctrl-C and SIGTERM are held while storage code runs and raised where it is safe."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from hpo.interrupts import HeldInterrupts


def interrupt() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs at the next bytecode of the main thread


def in_storage_code(seconds: float, done: list[str]) -> None:
    """Run a wait in a function whose module looks like Optuna's storage code."""
    source = "def write(seconds, done):\n    time.sleep(seconds)\n    done.append('written')\n"
    scope = {"__name__": "optuna.storages._fake", "time": time}
    exec(source, scope)
    scope["write"](seconds, done)


@pytest.fixture
def sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(143)

    saved = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, saved)


def test_a_signal_outside_the_objective_waits_for_the_next_boundary() -> None:
    with pytest.raises(KeyboardInterrupt), HeldInterrupts() as held:
        interrupt()
        assert held.pending == signal.SIGINT  # noted, not raised: bookkeeping goes on
        reached = True
    assert reached


def test_raise_pending_delivers_the_held_signal() -> None:
    with HeldInterrupts() as held:
        interrupt()
        with pytest.raises(KeyboardInterrupt):
            held.raise_pending()
        assert held.pending is None


def test_a_signal_inside_the_objective_interrupts_at_once() -> None:
    with HeldInterrupts() as held, pytest.raises(KeyboardInterrupt), held.delivered():
        interrupt()
        pytest.fail("the objective went on after Ctrl-C")


def test_storage_code_inside_the_objective_finishes_before_the_interrupt() -> None:
    done: list[str] = []
    with HeldInterrupts() as held, pytest.raises(KeyboardInterrupt), held.delivered():
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        in_storage_code(0.4, done)  # the signal lands here and is retried afterwards
        done.append("after")
        time.sleep(2)
        pytest.fail("the retried signal never came")
    assert done == ["written", "after"]


def test_an_interrupt_swallowed_in_the_objective_is_still_owed() -> None:
    with pytest.raises(KeyboardInterrupt), HeldInterrupts() as held:
        with held.delivered(), contextlib.suppress(KeyboardInterrupt):  # a catch-all
            interrupt()
        assert held.pending == signal.SIGINT


def test_an_interrupt_a_finalizer_swallowed_is_delivered_again_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Python ignores an exception raised in a finalizer (a weakref callback, `__del__`); a
    Ctrl-C that lands in one must still stop the objective, not wait for its end."""

    class Finalized:
        def __del__(self) -> None:
            interrupt()  # the handler runs in here, and Python swallows what it raises

    began = time.monotonic()
    with HeldInterrupts() as held, pytest.raises(KeyboardInterrupt), held.delivered():
        Finalized()
        time.sleep(3)
        pytest.fail("the objective went on after Ctrl-C")
    assert time.monotonic() - began < 2
    assert "Exception ignored" not in capsys.readouterr().err


def test_sigterm_goes_to_the_handler_it_was_meant_for(sigterm_raises: None) -> None:
    with pytest.raises(SystemExit), HeldInterrupts() as held:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert held.pending == signal.SIGTERM


def test_ignored_signals_stay_ignored_and_handlers_are_restored() -> None:
    saved = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        before = signal.getsignal(signal.SIGINT)
        with HeldInterrupts() as held:
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) != before
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert held.pending is None
        assert signal.getsignal(signal.SIGINT) == before
    finally:
        signal.signal(signal.SIGTERM, saved)

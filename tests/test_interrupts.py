"""Ctrl-C and SIGTERM are held while storage code runs and raised where it is safe."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from hpo.interrupts import BetweenSteps, HeldInterrupts


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


def test_a_signal_during_training_waits_for_a_step_to_end() -> None:
    with BetweenSteps() as signals:
        interrupt()
        assert signals.pending == signal.SIGINT  # noted, not raised inside TensorFlow's code
        with pytest.raises(KeyboardInterrupt):
            signals.raise_pending()  # what a callback does after a step
        assert signals.pending is None


def test_a_signal_still_noted_when_training_ends_is_raised_then() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), BetweenSteps():
        interrupt()
        reached = True
    assert reached
    assert signal.getsignal(signal.SIGINT) == before


def test_inside_held_interrupts_a_step_raises_through_the_held_handler() -> None:
    """In `study run`, training runs in the objective: the interrupt goes to `HeldInterrupts`,
    which raises it there, outside storage code."""
    with (
        HeldInterrupts() as held,
        pytest.raises(KeyboardInterrupt),
        held.delivered(),
        BetweenSteps() as signals,
    ):
        interrupt()
        assert held.pending is None
        signals.raise_pending()
        pytest.fail("the step went on after Ctrl-C")


def test_training_leaves_ignored_signals_ignored(sigterm_raises: None) -> None:
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with BetweenSteps() as signals:
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            interrupt()
            assert signals.pending is None
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert signals.pending == signal.SIGTERM
            with pytest.raises(SystemExit):
                signals.raise_pending()  # SIGTERM's own handler
    finally:
        signal.signal(signal.SIGINT, saved)


def test_a_second_signal_during_training_is_raised_at_once() -> None:
    with pytest.raises(KeyboardInterrupt), BetweenSteps() as signals:
        interrupt()
        assert signals.pending == signal.SIGINT
        interrupt()  # a step that never ends still stops
        pytest.fail("the second Ctrl-C was only noted")


def test_a_block_inside_another_raises_through_the_outer_one() -> None:
    before = signal.getsignal(signal.SIGINT)
    with BetweenSteps() as outer:
        handler = signal.getsignal(signal.SIGINT)
        with BetweenSteps() as inner:
            assert signal.getsignal(signal.SIGINT) == handler  # the outer block's
            interrupt()
            assert outer.pending == signal.SIGINT
            with pytest.raises(KeyboardInterrupt):
                inner.raise_pending()  # an evaluation's step, inside a trial
        assert signal.getsignal(signal.SIGINT) == handler
    assert signal.getsignal(signal.SIGINT) == before


def test_a_handler_installed_during_training_is_left_in_place() -> None:
    def mine(signum: int, frame: object) -> None:
        pass

    with BetweenSteps():
        signal.signal(signal.SIGINT, mine)
    assert signal.getsignal(signal.SIGINT) == mine


def test_a_block_that_wrapped_nothing_leaves_the_next_one_whole() -> None:
    """Entered with both signals ignored or at their defaults (a background library caller),
    a block wraps nothing; the next block, with handlers back, still holds the signal."""
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    saved_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with BetweenSteps() as idle:
            assert not idle.saved
    finally:
        signal.signal(signal.SIGINT, saved)
        signal.signal(signal.SIGTERM, saved_term)
    with BetweenSteps() as signals:
        interrupt()
        assert signals.pending == signal.SIGINT
        signals.pending = None  # delivered nowhere: the test only looks


def test_a_repeated_sigterm_waits_for_the_step(sigterm_raises: None) -> None:
    """A worker's parent resends SIGTERM while the worker stops: that is no reason to raise
    inside TensorFlow's code."""
    with BetweenSteps() as signals:
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert signals.pending == signal.SIGTERM
        with pytest.raises(SystemExit):
            signals.raise_pending()

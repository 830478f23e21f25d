"""What `hpo study run` shows while it runs: a live status line on a terminal, plain lines piped.

On a terminal the status line stays at the bottom (tqdm): finished / target trials, elapsed and
estimated time left, the best value so far and its trial, and each running trial with its epoch;
trial lines scroll above it. Piped or in CI there is no status line, only the trial lines, as a
log reads best. One `Progress` serves a whole run, however many workers feed it.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from tqdm import tqdm


class Progress:
    """Status of a run: trials finished, the best so far, who is training which epoch."""

    def __init__(
        self,
        target: int | None,
        finished: int,
        best: tuple[float, int] | None,
        maximize: bool,
        echo: Callable[[str], None] = print,
        stream: IO[str] | None = None,
        live: bool | None = None,
    ) -> None:
        stream = stream if stream is not None else sys.stderr
        if live is None:
            live = _is_terminal(stream)
        self.echo = echo
        self.maximize = maximize
        self.best = best
        self.running: dict[Any, tuple[int, int, int]] = {}
        sized = _width(stream) > 0
        self.bar = tqdm(
            total=target,
            initial=min(finished, target) if target is not None else finished,
            unit="trial",
            file=stream,
            disable=not live,
            leave=False,
            # A terminal that reports no size (a bare pty) would show nothing.
            dynamic_ncols=sized,
            ncols=None if sized else 120,
            nrows=None if sized else 20,
            bar_format="{n_fmt}/{total_fmt} trials |{bar:12}| {elapsed}<{remaining}  {desc}",
        )
        self._show()

    @property
    def live(self) -> bool:
        return not self.bar.disable

    def write(self, line: str) -> None:
        """A line of the run's log, above the status line on a terminal."""
        if self.live:
            self.bar.write(line, file=self.bar.fp)
        else:
            self.echo(line)

    def epoch(self, who: Any, trial: int, epoch: int, budget: int) -> None:
        """`who` (a worker, or this process) finished `epoch` of `budget` in `trial`."""
        self.running[who] = (trial, epoch, budget)
        self._show()

    def trial(self, who: Any, line: str, finished: bool, value: float | None, number: int) -> None:
        """A trial ended: its line goes to the log; a finished one counts and may be the best."""
        self.running.pop(who, None)
        if value is not None and math.isfinite(value) and self._better(value):
            self.best = (value, number)
        if self.live:
            self.bar.set_description_str(self.status(), refresh=False)
        if finished:
            self.bar.update(1)
        self.write(line)
        self._show()

    def close(self) -> None:
        self.bar.close()

    def status(self) -> str:
        """The status line's own words: best so far and the running trials."""
        best = "best -" if self.best is None else f"best {self.best[0]:.4f} (#{self.best[1]})"
        running = ", ".join(
            f"#{trial} epoch {epoch}/{budget}"
            for trial, epoch, budget in sorted(self.running.values())
        )
        return f"{best} | running {running or '-'}"

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.maximize else value < self.best[0]

    def _show(self) -> None:
        if self.live:
            self.bar.set_description_str(self.status(), refresh=True)


def _width(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return 0


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

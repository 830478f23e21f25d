"""The run's display: a live status line on a terminal, plain trial lines when piped."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from hpo.progress import Progress

from .conftest import REPO, TINY_SPEC


def test_piped_progress_is_the_trial_lines_alone() -> None:
    lines: list[str] = []
    stream = io.StringIO()
    progress = Progress(4, 1, None, True, lines.append, stream=stream)
    assert not progress.live  # a StringIO is no terminal
    progress.epoch(0, 1, 2, 20)
    progress.trial(0, "trial 1 COMPLETE", True, 0.4, 1)
    progress.close()
    assert lines == ["trial 1 COMPLETE"] and stream.getvalue() == ""


def test_live_progress_shows_count_best_and_running_trials() -> None:
    stream = io.StringIO()
    progress = Progress(6, 2, (0.3, 0), True, stream=stream, live=True)
    progress.epoch("w0", 2, 4, 20)
    progress.epoch("w1", 3, 1, 20)
    assert progress.status() == "best 0.3000 (#0) | running #2 epoch 4/20, #3 epoch 1/20"
    progress.trial("w0", "trial 2 COMPLETE", True, 0.5, 2)
    progress.trial("w1", "trial 3 PRUNED", True, None, 3)
    assert progress.status() == "best 0.5000 (#2) | running -"
    progress.close()
    shown = stream.getvalue()
    assert "2/6 trials" in shown and "3/6 trials" in shown and "4/6 trials" in shown
    assert "running #2 epoch 4/20, #3 epoch 1/20" in shown
    assert "trial 2 COMPLETE" in shown and "trial 3 PRUNED" in shown


def test_a_minimized_study_keeps_the_lowest_value() -> None:
    progress = Progress(None, 0, None, False, lambda line: None, live=False)
    for number, value in enumerate([0.5, 0.2, 0.9]):
        progress.trial(0, "", True, value, number)
    assert progress.best == (0.2, 1)


def run_tiny(tmp_path: Path, terminal: bool) -> str:
    """`hpo study run` in a fresh process, its output on a terminal (a pty) or a pipe."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.replace("epochs = 2", "epochs = 6"))
    hpo = [sys.executable, "-m", "hpo", "study"]
    subprocess.run([*hpo, "create", str(spec), "--storage", url], check=True, capture_output=True)
    command = [*hpo, "run", "tiny", "--n-trials", "3", "--storage", url]
    if not terminal:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, cwd=REPO, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=300) == 0
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_run_shows_the_live_status(tmp_path: Path) -> None:
    shown = run_tiny(tmp_path, terminal=True)
    assert "0/3 trials |" in shown and "2/3 trials |" in shown
    assert "best - | running #0 epoch 1/6" in shown
    assert "| running #1 epoch 6/6" in shown and "best 0." in shown
    assert shown.count("COMPLETE") == 3


def test_a_piped_run_prints_plain_trial_lines(tmp_path: Path) -> None:
    shown = run_tiny(tmp_path, terminal=False)
    lines = [line for line in shown.splitlines() if line.strip()]
    assert [line.split()[:3] for line in lines] == [
        ["trial", str(n), "COMPLETE"] for n in range(3)
    ], shown
    assert "\r" not in shown and "trials |" not in shown

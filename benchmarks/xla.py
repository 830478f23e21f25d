"""XLA on a CPU, with and without dropout: where it pays, and what today's choice gives.

    .venv/bin/python -m benchmarks.xla [--epochs 4] [--rounds 3] [--dropout-rate 0.3]

Four contestants, the lesson's MLP on real CIFAR-100 (45,000 training images, batch 100, a
20-epoch budget stopped after `--epochs` epochs, as a pruned trial is): XLA on and off
(`Loop(jit_compile=True/False)`), each with dropout off and on. They run interleaved (the order
flips every round) and ratios are taken within a round, so load from other processes hits all
of them. Printed per contestant: the steady epoch (median of epochs after the first) in wall and
CPU seconds, the first epoch's extra over a steady one (build, trace, compile), and the whole
run; then the ratios that decide `hpo.train.use_xla`, and what its "auto" choice is on a CPU.
Label the figures with the load printed at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA, Timing, hpo_trial, load_cifar, spread


def contestants(dropout_rate: float) -> dict[str, tuple[Any, dict[str, Any]]]:
    from hpo.train import Loop

    off = {"dropout": "off"}
    on = {"dropout": "on", "dropout_rate": dropout_rate}
    return {
        "XLA on, no dropout": (Loop(jit_compile=True), off),
        "XLA off, no dropout": (Loop(jit_compile=False), off),
        "XLA on, dropout": (Loop(jit_compile=True), on),
        "XLA off, dropout": (Loop(jit_compile=False), on),
    }


def steady_cpu(timing: Timing) -> float:
    return statistics.median(timing.epoch_cpu_s[1:] or timing.epoch_cpu_s)


def first_extra(timing: Timing) -> float:
    """The first epoch's wall seconds beyond a steady epoch: the run's fixed cost."""
    return timing.epoch_wall_s[0] - timing.epoch_s


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dropout-rate", type=float, default=0.3)
    args = parser.parse_args(argv)

    print(f"load average at start: {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    data = load_cifar(args.data)
    runs = contestants(args.dropout_rate)
    results: dict[str, list[Timing]] = {name: [] for name in runs}
    for loop, overrides in runs.values():  # first-use costs of the process, untimed
        hpo_trial(data, 1, 0, loop, overrides=overrides)
    for round_ in range(args.rounds):
        names = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in names:
            loop, overrides = runs[name]
            timing = hpo_trial(data, args.epochs, round_ + 1, loop, name, overrides)
            results[name].append(timing)
            print(f"  round {round_ + 1}: {timing.epoch_s:5.2f} s/epoch  {name}", flush=True)

    print()
    print("| contestant | steady epoch s | steady epoch CPU-s | first-epoch extra s | run s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, timings in results.items():
        print(
            f"| {name} | {spread([t.epoch_s for t in timings])} "
            f"| {spread([steady_cpu(t) for t in timings])} "
            f"| {spread([first_extra(t) for t in timings])} "
            f"| {spread([t.wall_s for t in timings], 1)} |"
        )

    def ratio(a: str, b: str, key: Any) -> str:
        return spread([key(x) / key(y) for x, y in zip(results[a], results[b], strict=True)])

    def epoch(t: Timing) -> float:
        return t.epoch_s

    def run(t: Timing) -> float:
        return t.wall_s

    print()
    print("| ratio (within a round) | steady epoch | CPU per steady epoch | whole run |")
    print("| --- | ---: | ---: | ---: |")
    for a, b in (
        ("XLA on, no dropout", "XLA off, no dropout"),
        ("XLA on, dropout", "XLA off, dropout"),
        ("XLA off, dropout", "XLA off, no dropout"),
        ("XLA off, dropout", "XLA on, no dropout"),
    ):
        print(
            f"| {a} / {b} | {ratio(a, b, epoch)} | {ratio(a, b, steady_cpu)} | {ratio(a, b, run)} |"
        )
    from hpo.train import FAST, use_xla

    print(
        f"today's choice (`use_xla`, auto) on a CPU: XLA {'on' if use_xla(FAST, False) else 'off'}"
    )
    print(f"load average at the end: {[round(x, 2) for x in os.getloadavg()]}")


if __name__ == "__main__":
    main()

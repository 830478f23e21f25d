"""What each change to the trial loop buys: the loop step by step, against the loop before.

    .venv/bin/python -m benchmarks.bench_changes [--epochs 3] [--rounds 2] [--n-train N]

Each variant is one `hpo.train.Loop`; all train the lesson's MLP on real CIFAR-100 with the same
seed, interleaved, and every ratio is taken within a round. The tensor-pipeline variants see the
same batches in the same order, so their validation accuracies must agree; a change that moves
them changed what the trial computes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_DATA,
    Timing,
    hpo_trial,
    load_cifar,
    plain_script,
    spread,
    start_tensorflow,
)


def variants() -> dict[str, Any]:
    """The loop before, then one change at a time, then today's loop without one of them."""
    from hpo.train import Loop

    return {
        "before: Keras on numpy arrays, 16 steps per call, eval batch 2000": Loop(
            "numpy", 16, False, 2000
        ),
        "tensors held once, shuffled indices + gather (15 steps per call)": Loop(
            "tensor", 16, False, 2000
        ),
        "+ one call per epoch": Loop("tensor", 0, False, 2000),
        "+ eval batch 5000": Loop("tensor", 0, False, 5000),
        "+ XLA (dropped on CPUs, see benchmarks.xla)": Loop("tensor", 0, True, 5000),
        "today's loop (no XLA on a CPU)": Loop(),
        "today's loop at 1 step per call": Loop("tensor", 1, "auto", 5000),
    }


def measure(data: Any, epochs: int, rounds: int) -> dict[str, list[Timing]]:
    """Interleaved rounds of the plain script and every variant; the order flips each round."""
    loops = variants()
    names = ["plain", *loops]
    results: dict[str, list[Timing]] = {name: [] for name in names}
    hpo_trial(data, 1, 0)  # converts the data once and warms the process up, untimed
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            if name == "plain":
                timing = plain_script(data, epochs, round_ + 1)
            else:
                timing = hpo_trial(data, epochs, round_ + 1, loops[name], name)
            results[name].append(timing)
            print(f"  round {round_ + 1}: {timing.epoch_s:5.2f} s/epoch  {name}", flush=True)
    return results


def changes_table(results: dict[str, list[Timing]]) -> str:
    plain = results["plain"]
    before = next(v for k, v in results.items() if k.startswith("before"))
    lines = [
        "| loop | samples/s (steady) | vs before | vs plain | whole run vs before "
        "| CPU s/epoch | first epoch CPU s | whole run CPU s | val_accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for timings in results.values():
        pairs = list(zip(timings, before, plain, strict=True))
        cpu = [statistics.median(t.epoch_cpu_s[1:] or t.epoch_cpu_s) for t in timings]
        accuracy = sorted({round(t.val_accuracy, 4) for t in timings})
        lines.append(
            f"| {timings[0].label} | {spread([t.samples_per_s for t in timings], 0)} "
            f"| {spread([t.samples_per_s / b.samples_per_s for t, b, _ in pairs])} "
            f"| {spread([t.samples_per_s / p.samples_per_s for t, _, p in pairs])} "
            f"| {spread([t.run_samples_per_s / b.run_samples_per_s for t, b, _ in pairs])} "
            f"| {spread(cpu)} | {spread([t.epoch_cpu_s[0] for t in timings], 1)} "
            f"| {spread([t.cpu_s for t in timings], 1)} "
            f"| {', '.join(f'{a:.4f}' for a in accuracy)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n-train", type=int, help="train on the first N images only")
    args = parser.parse_args(argv)
    start_tensorflow()
    data = load_cifar(args.data, args.n_train)
    start = time.perf_counter()
    print(f"load average at start: {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    table = changes_table(measure(data, args.epochs, args.rounds))
    print(
        f"\n{len(data.x_train)} training images, batch 100, {args.epochs} epochs per run, "
        f"{args.rounds} rounds, {time.perf_counter() - start:.0f} s; load average at the end: "
        f"{[round(x, 2) for x in os.getloadavg()]}\n\n{table}"
    )


if __name__ == "__main__":
    main()

"""How fast an hpo trial trains: against the plain Keras script, the FLOP floor, pruning, memory.

Run on real CIFAR-100 (HPO_DATA, default ../shared/data/cifar100.npz), 6-8 minutes on 2 CPUs:

    .venv/bin/python -m benchmarks.trial_speed

Contestants run interleaved (the order flips every round) and each ratio is taken within a
round, so load from other processes hits both sides; every table gives the median and the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BATCH_SIZE,
    DEFAULT_DATA,
    REPO,
    Timing,
    describe_machine,
    hpo_trial,
    load_cifar,
    plain_script,
    spread,
)


def compare_trial_and_plain(data: Any, epochs: int, rounds: int) -> dict[str, Any]:
    """Interleaved rounds of the plain script, the previous hpo loop and today's hpo trial."""
    from benchmarks.bench_floor import matmul_gflops, square_size
    from hpo.train import Loop, hold

    before = Loop("numpy", steps_per_execution=16, jit_compile=False, eval_batch_size=2000)
    contestants: dict[str, Callable[[int], Timing]] = {
        "plain": lambda seed: plain_script(data, epochs, seed),
        "before": lambda seed: hpo_trial(data, epochs, seed, before, "hpo trial, earlier loop"),
        "hpo": lambda seed: hpo_trial(data, epochs, seed),
    }
    start = time.perf_counter()
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        hold(array)
    hold_s = time.perf_counter() - start
    for run in contestants.values():  # warm up: first-use costs of the process, untimed
        run(0)
    results: dict[str, list[Timing]] = {name: [] for name in contestants}
    gflops, loads = [], []
    for round_ in range(rounds):
        order = list(contestants) if round_ % 2 == 0 else list(reversed(contestants))
        for name in order:
            results[name].append(contestants[name](round_ + 1))
            print(
                f"  round {round_ + 1} {name}: {results[name][-1].epoch_s:.2f} s/epoch", flush=True
            )
        gflops.append(matmul_gflops(square_size()))
        loads.append(os.getloadavg()[0])
    return {"runs": results, "gflops": gflops, "loads": loads, "hold_s": hold_s}


def throughput_table(result: dict[str, Any]) -> str:
    runs = result["runs"]
    plain = runs["plain"]
    lines = [
        "| contestant | samples/s (steady epoch) | ratio to plain | samples/s (whole run) "
        "| ratio to plain | CPU s per epoch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for timings in runs.values():
        ratio = [t.samples_per_s / p.samples_per_s for t, p in zip(timings, plain, strict=True)]
        whole = [
            t.run_samples_per_s / p.run_samples_per_s for t, p in zip(timings, plain, strict=True)
        ]
        cpu = [statistics.median(t.epoch_cpu_s[1:] or t.epoch_cpu_s) for t in timings]
        lines.append(
            f"| {timings[0].label} | {spread([t.samples_per_s for t in timings], 0)} "
            f"| {spread(ratio)} | {spread([t.run_samples_per_s for t in timings], 0)} "
            f"| {spread(whole)} | {spread(cpu)} |"
        )
    return "\n".join(lines)


def memory_in_worker(n_trials: int) -> dict[str, Any]:
    """Run the memory benchmark in a fresh process, so its peak is one worker's own."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", "--n-trials", str(n_trials), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--epochs", type=int, default=4, help="epochs per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--study-trials", type=int, default=30)
    parser.add_argument("--memory-trials", type=int, default=30)
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "study", "memory"])
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)

    machine = describe_machine()
    print(
        f"device: {machine['device']}; TensorFlow {machine['tensorflow']}, Keras "
        f"{machine['keras']}; load average {machine['load_at_start']}",
        flush=True,
    )
    record: dict[str, Any] = {"machine": machine}
    report: list[str] = []
    if "speed" not in args.skip:
        data = load_cifar(args.data)
        result = compare_trial_and_plain(data, args.epochs, args.rounds)
        from benchmarks.bench_floor import floor_table

        floor, gaps = floor_table(result, data)
        report += [
            f"## Training throughput: {len(data.x_train)} images, batch {BATCH_SIZE}, "
            f"{args.epochs} epochs, {args.rounds} interleaved rounds",
            "",
            throughput_table(result),
            "",
            f"Data held once per process as tensors: {result['hold_s']:.1f} s. "
            f"Load average during rounds: {spread(result['loads'], 1)}.",
            "",
            "## The FLOP floor",
            "",
            floor,
        ]
        record["speed"] = {
            "runs": {k: [asdict(t) for t in v] for k, v in result["runs"].items()},
            "gflops": result["gflops"],
            "loads": result["loads"],
            "trial_over_floor": gaps,
        }
    if "study" not in args.skip:
        from benchmarks.bench_study import compare_pruning, pruning_table

        rows = compare_pruning(args.data, args.study_trials)
        report += [
            "",
            "## Pruning: the same seeded study with and without",
            "",
            pruning_table(rows),
        ]
        record["study"] = rows
    if "memory" not in args.skip:
        from benchmarks.bench_memory import memory_table

        memory = memory_in_worker(args.memory_trials)
        report += ["", f"## Memory of one worker over {args.memory_trials} trials", ""]
        report.append(memory_table(memory))
        record["memory"] = memory
    report.append(f"\nLoad average at the end: {[round(x, 2) for x in os.getloadavg()]}")
    print("\n" + "\n".join(report))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

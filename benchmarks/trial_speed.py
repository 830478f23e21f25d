"""How fast an hpo trial trains: against the plain Keras script, the floor, with dropout, many
seeds of one configuration, pruning, memory.

Run on real CIFAR-100 (HPO_DATA, default ../shared/data/cifar100.npz), 8-12 minutes on 2 CPUs
with the defaults (4 epochs a run; `--epochs 20` times whole 20-epoch trials):

    .venv/bin/python -m benchmarks.trial_speed [--epochs 4] [--rounds 3] [--dropout-pairs 10]
        [--seeds 10] [--skip speed plain dropout seeds study memory]

Contestants run interleaved (the order flips every round) and each ratio is taken within a
round, so load from other processes hits both sides; every table gives the median and the spread.
Dropout is also compared over many close pairs of short warm runs, with an interval.
"""

from __future__ import annotations

import argparse
import json
import math
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
    mean_interval,
    plain_script,
    spread,
    t_mean,
)

DROPOUT = {"dropout": "on", "dropout_rate": 0.3}


def compare_trial_and_plain(
    data: Any, epochs: int, rounds: int, plain: bool = True
) -> dict[str, Any]:
    """Interleaved rounds of the plain script (unless not `plain`) and hpo's trial without and
    with dropout, each built afresh, with the machine's matmul and memory rates measured in
    every round."""
    from benchmarks.bench_floor import (
        matmul_gflops,
        model_matmuls,
        read_rate,
        shape_seconds,
        square_size,
        update_rate,
    )
    from hpo.model import build_model
    from hpo.pipeline import hold
    from hpo.testing import full_params

    contestants: dict[str, Callable[[int], Timing]] = {
        "plain": lambda seed: plain_script(data, epochs, seed),
        "hpo": lambda seed: hpo_trial(data, epochs, seed),
        "hpo, dropout": lambda seed: hpo_trial(
            data, epochs, seed, label="hpo trial, dropout 0.3", overrides=DROPOUT
        ),
    }
    if not plain:
        del contestants["plain"]
    start = time.perf_counter()
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        hold(array)
    hold_s = time.perf_counter() - start
    model = build_model(full_params(), data.input_shape, data.n_classes)
    n_params = model.count_params()
    matmuls = model_matmuls(model, data)
    for run in contestants.values():  # warm up: first-use costs of the process, untimed
        run(0)
    results: dict[str, list[Timing]] = {name: [] for name in contestants}
    gflops, update_rates, read_rates, loads = [], [], [], []
    shape_s: list[list[float]] = []
    for round_ in range(rounds):
        order = list(contestants) if round_ % 2 == 0 else list(reversed(contestants))
        for name in order:
            results[name].append(contestants[name](round_ + 1))
            print(
                f"  round {round_ + 1} {name}: {results[name][-1].epoch_s:.2f} s/epoch", flush=True
            )
        gflops.append(matmul_gflops(square_size()))
        update_rates.append(update_rate(n_params))
        read_rates.append(read_rate(hold(data.x_train)))
        shape_s.append([shape_seconds(call) for call in matmuls])
        loads.append(os.getloadavg()[0])
    return {
        "runs": results,
        "gflops": gflops,
        "update_rates": update_rates,
        "read_rates": read_rates,
        "shape_seconds": shape_s,
        "loads": loads,
        "hold_s": hold_s,
    }


def throughput_table(result: dict[str, Any]) -> str:
    runs = result["runs"]
    plain = runs.get("plain")
    lines = [
        "| contestant | samples/s (steady epoch) | ratio to plain | samples/s (whole run) "
        "| ratio to plain | CPU s per epoch | fixed cost per run, s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for timings in runs.values():
        ratio, whole = "-", "-"
        if plain:
            ratio = spread(
                [t.samples_per_s / p.samples_per_s for t, p in zip(timings, plain, strict=True)]
            )
            whole = spread(
                [
                    t.run_samples_per_s / p.run_samples_per_s
                    for t, p in zip(timings, plain, strict=True)
                ]
            )
        cpu = [statistics.median(t.epoch_cpu_s[1:] or t.epoch_cpu_s) for t in timings]
        lines.append(
            f"| {timings[0].label} | {spread([t.samples_per_s for t in timings], 0)} "
            f"| {ratio} | {spread([t.run_samples_per_s for t in timings], 0)} "
            f"| {whole} | {spread(cpu)} | {spread([t.fixed_s for t in timings])} |"
        )
    return "\n".join(lines)


def dropout_table(result: dict[str, Any]) -> str:
    """The trial with dropout against the same trial without, round by round."""
    runs = result["runs"]
    pairs = list(zip(runs["hpo, dropout"], runs["hpo"], strict=True))
    rows = [
        ("steady epoch, wall", [d.epoch_s / n.epoch_s for d, n in pairs]),
        ("whole run, wall", [d.wall_s / n.wall_s for d, n in pairs]),
        ("whole run, CPU-s", [d.cpu_s / n.cpu_s for d, n in pairs]),
    ]
    lines = ["| dropout 0.3 / no dropout | median [min-max] over rounds |", "| --- | --- |"]
    lines += [f"| {name} | {spread(values)} |" for name, values in rows]
    return "\n".join(lines)


DROPOUT_PAIR_EPOCHS = 4


def dropout_pairs(data: Any, k: int) -> list[tuple[Timing, Timing]]:
    """K pairs of runs of the lesson's trial with and without dropout (DROPOUT_PAIR_EPOCHS
    epochs each, seeds 1..K), the two built first, then restarted for each seed
    (`fit(..., reuse=True)`), which goes first alternating: many close pairs, where the rounds
    give three far apart. Each pair is (with dropout, without)."""
    from hpo.train import forget_warm_models

    def run(seed: int, dropout: bool) -> Timing:
        overrides = DROPOUT if dropout else None
        label = "dropout" if dropout else "no dropout"
        return hpo_trial(
            data, DROPOUT_PAIR_EPOCHS, seed, label=label, overrides=overrides, reuse=True
        )

    forget_warm_models()
    run(0, dropout=False)  # builds and traces both, untimed
    run(0, dropout=True)
    pairs = []
    for seed in range(1, k + 1):
        order = (True, False) if seed % 2 == 0 else (False, True)
        runs = {dropout: run(seed, dropout) for dropout in order}
        pair = (runs[True], runs[False])
        pairs.append(pair)
        print(
            f"  dropout pair {seed}: {pair[0].epoch_s:.3f} / {pair[1].epoch_s:.3f} s/epoch",
            flush=True,
        )
    forget_warm_models()
    return pairs


def ratio_interval(ratios: Sequence[float]) -> str:
    """The geometric mean of `ratios` with its 95% t interval (taken on their logarithms)."""
    mean, interval = t_mean([math.log(r) for r in ratios])
    if interval is None:
        return f"{math.exp(mean):.3f}"
    low, high = interval
    return f"{math.exp(mean):.3f} [{math.exp(low):.3f}, {math.exp(high):.3f}]"


def dropout_pairs_table(pairs: list[tuple[Timing, Timing]]) -> str:
    def cpu(t: Timing) -> float:
        return statistics.median(t.epoch_cpu_s[1:] or t.epoch_cpu_s)

    rows = [
        ("steady epoch, wall", [d.epoch_s / n.epoch_s for d, n in pairs]),
        ("steady epoch, CPU-s", [cpu(d) / cpu(n) for d, n in pairs]),
    ]
    lines = [
        "| dropout 0.3 / no dropout | geometric mean [95% t interval] | median [min-max] |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {ratio_interval(v)} | {spread(v, 3)} |" for name, v in rows]
    lines.append(
        f"| steady epoch s, no dropout / dropout (medians) "
        f"| {statistics.median(n.epoch_s for _, n in pairs):.3f} / "
        f"{statistics.median(d.epoch_s for d, _ in pairs):.3f} | |"
    )
    return "\n".join(lines)


def k_seed_run(data: Any, epochs: int, k: int) -> list[Timing]:
    """K runs of one configuration, seeds 1..K, as an ablation or a test evaluation runs them:
    the first builds the model, the others restart it (`fit(..., reuse=True)`)."""
    from hpo.train import forget_warm_models

    forget_warm_models()
    runs = []
    for seed in range(1, k + 1):
        runs.append(hpo_trial(data, epochs, seed, label=f"seed {seed}", reuse=True))
        print(f"  {k}-seed run, seed {seed}: {runs[-1].wall_s:.2f} s", flush=True)
    forget_warm_models()
    return runs


def k_seed_table(runs: list[Timing], epochs: int) -> str:
    steady = statistics.median(t.epoch_s for t in runs)
    total = sum(t.wall_s for t in runs)
    ideal = len(runs) * epochs * steady
    rows = [
        ("runs x epochs", f"{len(runs)} x {epochs}"),
        ("steady epoch, s (median over the runs)", f"{steady:.3f}"),
        ("K x epochs x steady epoch, s", f"{ideal:.1f}"),
        ("total wall, s", f"{total:.1f}"),
        ("**total / (K x epochs x steady)**", f"{total / ideal:.3f}"),
        ("fixed cost of the first run (cold: build, compile, trace), s", f"{runs[0].fixed_s:.3f}"),
        ("**fixed cost of the warm runs, s**", spread([t.fixed_s for t in runs[1:]], 3)),
        ("the same, mean [95% t interval]", mean_interval([t.fixed_s for t in runs[1:]])),
        (
            "of which outside the epochs (restart, iterators, callbacks), mean [95% t interval]",
            mean_interval([t.outside_s for t in runs[1:]]),
        ),
        (
            "of which the first epoch beyond a steady one, mean [95% t interval]",
            mean_interval([t.first_extra_s for t in runs[1:]]),
        ),
        (
            "CPU-s of the first run / of a warm run",
            f"{runs[0].cpu_s:.2f} / {statistics.median(t.cpu_s for t in runs[1:]):.2f}",
        ),
    ]
    lines = ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
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
    parser.add_argument("--seeds", type=int, default=10, help="runs of the K-seed run")
    parser.add_argument(
        "--seed-images",
        type=int,
        help="training images of the K-seed run (default all): fewer make short epochs, whose "
        "noise hides less of a run's fixed cost",
    )
    parser.add_argument(
        "--dropout-pairs", type=int, default=10, help="pairs of runs with and without dropout"
    )
    parser.add_argument("--study-trials", type=int, default=30)
    parser.add_argument("--memory-trials", type=int, default=30)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["speed", "plain", "dropout", "seeds", "study", "memory"],
        help="parts to leave out; plain: the plain script's runs in the speed rounds",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)

    machine = describe_machine()
    print(
        f"device: {machine['device']}; TensorFlow {machine['tensorflow']}, Keras "
        f"{machine['keras']}; intra-op / inter-op threads {machine['intra_op_threads']} / "
        f"{machine['inter_op_threads']} (0: one per core); load average {machine['load_at_start']}",
        flush=True,
    )
    record: dict[str, Any] = {"machine": machine}
    report: list[str] = []
    seeds_on_all = "seeds" not in args.skip and args.seed_images is None
    if not {"speed", "dropout"} <= set(args.skip) or seeds_on_all:
        data = load_cifar(args.data)
    if "speed" not in args.skip:
        result = compare_trial_and_plain(
            data, args.epochs, args.rounds, plain="plain" not in args.skip
        )
        from benchmarks.bench_floor import floor_table

        floor, gaps, shape_gaps = floor_table(result, data)
        report += [
            f"## Training throughput: {len(data.x_train)} images, batch {BATCH_SIZE}, "
            f"{args.epochs} epochs, {args.rounds} interleaved rounds",
            "",
            throughput_table(result),
            "",
            f"Data held once per process as tensors: {result['hold_s']:.1f} s. "
            f"Load average during rounds: {spread(result['loads'], 1)}.",
            "",
            "## Dropout",
            "",
            dropout_table(result),
            "",
            "## The floor: FLOPs and memory traffic",
            "",
            floor,
        ]
        record["speed"] = {
            "runs": {k: [asdict(t) for t in v] for k, v in result["runs"].items()},
            "gflops": result["gflops"],
            "update_rates": result["update_rates"],
            "read_rates": result["read_rates"],
            "shape_seconds": result["shape_seconds"],
            "loads": result["loads"],
            "trial_over_floor": gaps,
            "trial_over_shape_floor": shape_gaps,
        }
    if "dropout" not in args.skip:
        pairs = dropout_pairs(data, args.dropout_pairs)
        report += [
            "",
            f"## Dropout: {args.dropout_pairs} interleaved pairs of runs "
            f"({DROPOUT_PAIR_EPOCHS} epochs each)",
            "",
            dropout_pairs_table(pairs),
        ]
        record["dropout_pairs"] = [[asdict(t) for t in pair] for pair in pairs]
    if "seeds" not in args.skip:
        seed_data = data if seeds_on_all else load_cifar(args.data, n_train=args.seed_images)
        seeds = k_seed_run(seed_data, args.epochs, args.seeds)
        images = len(seed_data.x_train)
        report += [
            "",
            f"## A {args.seeds}-seed run of one configuration ({args.epochs} epochs each, "
            f"{images} training images)",
            "",
            k_seed_table(seeds, args.epochs),
        ]
        record["seeds"] = [asdict(t) for t in seeds]
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

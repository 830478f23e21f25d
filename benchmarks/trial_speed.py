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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar100.npz"
BATCH_SIZE = 100


@dataclass
class Timing:
    """One training run: whole-run and per-epoch wall and CPU seconds."""

    label: str
    n_train: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    epoch_wall_s: list[float] = field(default_factory=list)
    epoch_cpu_s: list[float] = field(default_factory=list)
    val_accuracy: float = float("nan")

    @property
    def epoch_s(self) -> float:
        """Median wall seconds of an epoch after the first (which also traces the step)."""
        return statistics.median(self.epoch_wall_s[1:] or self.epoch_wall_s)

    @property
    def samples_per_s(self) -> float:
        return self.n_train / self.epoch_s

    @property
    def run_samples_per_s(self) -> float:
        """Training samples per second over the whole run: build, compile, trace, every epoch."""
        return self.n_train * len(self.epoch_wall_s) / self.wall_s


def cpu_seconds() -> float:
    """CPU seconds this process has used, all its threads together."""
    return time.process_time()


def start_tensorflow() -> Any:
    """Import TensorFlow quietly; returns the module."""
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    return tf


def clock(timing: Timing) -> Any:
    """A Keras callback that appends each epoch's wall and CPU seconds to `timing`."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = (time.perf_counter(), cpu_seconds())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            timing.epoch_wall_s.append(time.perf_counter() - self.start[0])
            timing.epoch_cpu_s.append(cpu_seconds() - self.start[1])

    return EpochClock()


def timed(label: str, n_train: int, train: Callable[[Any], float]) -> Timing:
    """Run `train(callback)`, which returns the last validation accuracy, and time it."""
    timing = Timing(label, n_train)
    wall, cpu = time.perf_counter(), cpu_seconds()
    timing.val_accuracy = train(clock(timing))
    timing.wall_s, timing.cpu_s = time.perf_counter() - wall, cpu_seconds() - cpu
    return timing


def plain_script(data: Any, epochs: int, seed: int) -> Timing:
    """The script a Keras user writes for the lesson's MLP: model.fit on the arrays, batch 100."""
    import keras

    keras.backend.clear_session()  # not timed: a script runs once per process

    def train(callback: Any) -> float:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input(shape=(32, 32, 3)),
                keras.layers.Flatten(),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(100, activation="softmax"),
            ]
        )
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        history = model.fit(
            data.x_train,
            data.y_train,
            batch_size=BATCH_SIZE,
            epochs=epochs,
            validation_data=(data.x_val, data.y_val),
            callbacks=[callback],
            verbose=0,
        )
        return float(history.history["val_accuracy"][-1])

    return timed("plain Keras script", len(data.x_train), train)


def hpo_trial(data: Any, epochs: int, seed: int, loop: Any = None, label: str = "") -> Timing:
    """The first `epochs` epochs of an hpo trial of the lesson's MLP (`full_params()`, 20 epochs).

    The trial keeps its 20-epoch budget, which decides what a real one compiles for, and is
    stopped after `epochs` epochs, as a pruner would stop it.
    """
    import keras

    from hpo.model import full_params
    from hpo.train import FAST, fit

    params = full_params({"batch_size": BATCH_SIZE})

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch + 1 >= epochs:
                self.model.stop_training = True

    def train(callback: Any) -> float:
        run = fit(params, data, seed, callbacks=[callback, StopAfter()], loop=loop or FAST)
        return run.history["val_accuracy"][-1]

    return timed(label or "hpo trial", len(data.x_train), train)


def describe_machine() -> dict[str, Any]:
    """The device TensorFlow computes on, the versions, and the load when the run began."""
    tf = start_tensorflow()
    import keras

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU: {details.get('device_name', gpus[0].name)} (x{len(gpus)})"
    else:
        device = f"CPU: {_cpu_model()} ({os.cpu_count()} logical cores)"
    return {
        "device": device,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def load_cifar(path: Path, n_train: int | None = None, n_validation: int | None = None) -> Any:
    """The real CIFAR-100 as hpo loads it: 45,000 training and 5,000 validation images."""
    from hpo.data import load_dataset
    from hpo.spec import DataSpec

    if not path.exists():
        sys.exit(f"real CIFAR-100 not found at {path}: set HPO_DATA to a cifar100.npz")
    spec = DataSpec(dataset="cifar100", n_train=n_train, n_validation=n_validation)
    return load_dataset(spec, path)


def spread(values: Sequence[float], digits: int = 2) -> str:
    """'median [min-max]' of `values`."""
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{med:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


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

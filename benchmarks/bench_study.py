"""Pruning at study level: one seeded study of the lesson's knobs, run with and without pruning.

    .venv/bin/python -m benchmarks.bench_study [--n-trials 30]

A random sampler with a fixed seed draws the same configurations, in the same order, whatever
the pruner does, and each trial's seed depends only on its number. So the studies differ only in
where trials stop: a pruned study can lose its best value only by pruning the trial that would
have won.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# A small real-data subset keeps each study to a minute or two.
SPEC = """
name = "pruning-benchmark"
seed = 11

[data]
dataset = "cifar100"
validation_fraction = 0.1
n_train = 5000
n_validation = 1000

[sampler]
type = "random"

[pruner]
type = "none"

[params]
epochs = 10
batch_size = 100
optimizer = { choices = ["adam", "sgd"] }
learning_rate = { low = 1e-4, high = 3e-2, log = true }
momentum = { low = 0.0, high = 0.95 }
schedule = { choices = ["constant", "cosine"] }
initializer = { choices = ["glorot_uniform", "he_normal", "random_normal"] }
init_stddev = { choices = [0.01, 0.05] }
dropout = { choices = ["off", "on"] }
dropout_rate = { low = 0.05, high = 0.5 }
weight_decay = { choices = ["off", "on"] }
weight_decay_l2 = { low = 1e-6, high = 1e-2, log = true }
"""

# The regularization study's median rule, and successive halving (rungs at epochs 2, 4, 10).
PRUNERS: dict[str, tuple[str, dict[str, Any]]] = {
    "none": ("none", {}),
    "median": ("median", {"n_startup_trials": 5, "n_warmup_steps": 2}),
    "successive_halving": ("successive_halving", {"min_resource": 1, "reduction_factor": 3}),
}
TOLERANCE_PP = 0.5
MIN_SAVED = 0.5


def run_study(spec: Any, data: Any, pruner: str, n_trials: int) -> dict[str, Any]:
    """Run `spec`'s study in memory with the named pruner; what it cost and what it found."""
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()  # first, so that its quieting applies
    import optuna

    from hpo.objective import make_objective
    from hpo.registry import make_pruner, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, args = PRUNERS[pruner]
    study = optuna.create_study(
        direction="maximize" if spec.direction == "maximize" else "minimize",
        sampler=make_sampler("random", {}, spec.seed, spec.searched()),
        pruner=make_pruner(name, args),
    )
    start, cpu = time.perf_counter(), time.process_time()
    study.optimize(make_objective(spec, data), n_trials=n_trials)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    trials = study.trials
    epoch_s = sum(sum(t.user_attrs.get("seconds_per_epoch", [])) for t in trials)
    return {
        "pruner": pruner,
        "n_complete": sum(t.state.name == "COMPLETE" for t in trials),
        "n_pruned": sum(t.state.name == "PRUNED" for t in trials),
        "n_epochs": sum(int(t.user_attrs.get("n_epochs", 0)) for t in trials),
        "wall_s": wall,
        "cpu_s": cpu,
        "outside_epochs_s": wall - epoch_s,
        "best_value": study.best_value,
        "best_trial": study.best_trial.number,
    }


def compare_pruning(data_path: Path, n_trials: int) -> list[dict[str, Any]]:
    """Every pruner of PRUNERS on the same study; rows carry the savings against "none"."""
    from benchmarks.common import load_cifar, start_tensorflow
    from hpo.spec import load_spec_text

    start_tensorflow()

    spec = load_spec_text(SPEC, "benchmarks/bench_study.py")
    data = load_cifar(data_path, spec.data.n_train, spec.data.n_validation)
    rows = []
    for pruner in PRUNERS:
        rows.append(run_study(spec, data, pruner, n_trials))
        print(f"  study with pruner {pruner}: {rows[-1]['n_epochs']} epochs", flush=True)
    full = rows[0]
    for row in rows:
        row["epochs_saved"] = 1 - row["n_epochs"] / full["n_epochs"]
        row["wall_saved"] = 1 - row["wall_s"] / full["wall_s"]
        row["cpu_saved"] = 1 - row["cpu_s"] / full["cpu_s"]
        row["best_loss_pp"] = 100 * (full["best_value"] - row["best_value"])
        row["meets_target"] = (
            row["epochs_saved"] >= MIN_SAVED and row["best_loss_pp"] <= TOLERANCE_PP
        )
    return rows


def pruning_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| pruner | complete / pruned | epochs | epochs saved | CPU s | CPU saved | wall s "
        "| wall saved | s outside epochs | best val_accuracy (trial) | lost vs none, pp "
        f"| saves >= {MIN_SAVED:.0%} within {TOLERANCE_PP} pp |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        verdict = "n/a" if r["pruner"] == "none" else ("yes" if r["meets_target"] else "no")
        lines.append(
            f"| {r['pruner']} | {r['n_complete']} / {r['n_pruned']} | {r['n_epochs']} "
            f"| {r['epochs_saved']:.0%} | {r['cpu_s']:.0f} | {r['cpu_saved']:.0%} "
            f"| {r['wall_s']:.0f} | {r['wall_saved']:.0%} "
            f"| {r['outside_epochs_s']:.0f} | {r['best_value']:.4f} ({r['best_trial']}) "
            f"| {r['best_loss_pp']:.2f} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    from benchmarks.common import DEFAULT_DATA

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--n-trials", type=int, default=30)
    args = parser.parse_args(argv)
    print(pruning_table(compare_pruning(args.data, args.n_trials)))


if __name__ == "__main__":
    main()

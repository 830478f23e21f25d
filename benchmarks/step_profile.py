"""Where a training step's time goes: TensorFlow's profiler over one steady epoch, part by part.

    .venv/bin/python -m benchmarks.step_profile [--rounds 2] [--dropout]

The lesson's MLP on real CIFAR-100 (HPO_DATA, default ../shared/data/cifar100.npz), 45,000
images, batch 100. Each contestant trains two epochs; the profiler records the second (the
first traces the step). The kernels TensorFlow ran are summed by the part of the step they
belong to (the forward pass, the gradients, the optimizer's update, the loss, the rest of the
step's bookkeeping, the input pipeline), and the executor's own time is what its threads spent
beyond the kernels they ran. Two contestants: Keras's Adam, whose update is a dozen kernels per
variable, and hpo's fused update (`hpo.optimizers`); rounds alternate their order.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import BATCH_SIZE, DEFAULT_DATA, keras_adam, load_cifar, spread

PARTS = ("forward", "gradients", "optimizer", "loss", "bookkeeping", "input pipeline")


def part_of(op_name: str, model_name: str) -> str:
    """The part of a training step a kernel's name (its scope, ':' and its type) belongs to."""
    scope = op_name.rsplit(":", 1)[0].split("StatefulPartitionedCall/")[-1]
    head = scope.split("/")[0]
    if head == "gradient_tape":
        return "gradients"
    if head.startswith(model_name):
        return "forward"
    if head in ("adam", "adamw", "sgd", "fused_adam", "fused_adam_w"):
        return "optimizer"
    if head == "compile_loss":
        return "loss"
    return "bookkeeping"


def read_profile(logdir: Path, model_name: str) -> dict[str, Any]:
    """Kernel seconds by part and the executor's own seconds, from the trace the profiler wrote
    under `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = logdir.glob("plugins/profile/*/*.xplane.pb")
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    (host,) = [p for p in space.planes if p.name == "/host:CPU"]
    seconds: collections.Counter[str] = collections.Counter()
    executor = 0.0
    for line in host.lines:
        compute = line.name.startswith("tf_Compute")
        pipeline = line.name.startswith("tf_data_private_threadpool")
        if not (compute or pipeline):
            continue
        for event in line.events:
            name = host.event_metadata[event.metadata_id].name
            duration = event.duration_ps / 1e12
            if name.startswith("ExecutorState::Process"):
                executor += duration if compute else 0.0
                continue
            if "::" in name or ":" not in name:  # not a kernel: the executor's own events
                continue
            where = "input pipeline" if pipeline else part_of(name, model_name)
            seconds[where] += duration
    in_kernels = sum(v for k, v in seconds.items() if k != "input pipeline")
    return {
        "seconds": dict(seconds),
        "executor_s": max(executor - in_kernels, 0.0),
    }


def profile_epoch(epoch: int, logdir: Path, stop: bool = False) -> Any:
    """A Keras callback that records epoch `epoch` with TensorFlow's profiler into `logdir`
    (and with `stop`, ends the fit there)."""
    import keras
    import tensorflow as tf

    class Profile(keras.callbacks.Callback):
        def on_epoch_begin(self, number: int, logs: Any = None) -> None:
            if number == epoch:
                tf.profiler.experimental.start(str(logdir))

        def on_epoch_end(self, number: int, logs: Any = None) -> None:
            if number == epoch:
                tf.profiler.experimental.stop()
                self.model.stop_training = stop

    return Profile()


def profiled_epoch(data: Any, fused: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train two epochs of the lesson's trial; profile the second."""
    from hpo.testing import full_params
    from hpo.train import fit

    params = full_params({"batch_size": BATCH_SIZE, **overrides})
    with contextlib.nullcontext() if fused else keras_adam(), tempfile.TemporaryDirectory() as tmp:
        run = fit(params, data, 0, callbacks=[profile_epoch(1, Path(tmp), stop=True)])
        profile = read_profile(Path(tmp), run.model.name)
    return {**profile, "epoch_s": run.seconds_per_epoch[1]}


def profile_table(results: dict[str, list[dict[str, Any]]]) -> str:
    names = list(results)
    lines = [
        "| part of the step | " + " | ".join(f"{n}: kernel s per epoch" for n in names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for part in (*PARTS, "executor's own time", "epoch, wall (profiled)"):
        cells = []
        for runs in results.values():
            if part == "executor's own time":
                values = [r["executor_s"] for r in runs]
            elif part == "epoch, wall (profiled)":
                values = [r["epoch_s"] for r in runs]
            else:
                values = [r["seconds"].get(part, 0.0) for r in runs]
            cells.append(spread(values))
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dropout", action="store_true", help="the trial with dropout 0.3")
    args = parser.parse_args(argv)

    print(f"load average at start: {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    data = load_cifar(args.data)
    overrides = {"dropout": "on", "dropout_rate": 0.3} if args.dropout else {}
    contestants = {"Keras's Adam": False, "fused Adam": True}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in contestants}
    for round_ in range(args.rounds):
        order = list(contestants) if round_ % 2 == 0 else list(reversed(contestants))
        for name in order:
            results[name].append(profiled_epoch(data, contestants[name], overrides))
            print(f"  round {round_ + 1} {name}: {results[name][-1]['epoch_s']:.2f} s", flush=True)
    print(
        f"\n{len(data.x_train)} images, batch {BATCH_SIZE}, {args.rounds} rounds"
        f"{', dropout 0.3' if args.dropout else ''}; load average at the end "
        f"{[round(x, 2) for x in os.getloadavg()]}\n"
    )
    print(profile_table(results))


if __name__ == "__main__":
    main()

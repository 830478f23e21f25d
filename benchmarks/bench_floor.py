"""The machine's floor: the model's FLOPs per epoch over TensorFlow's measured matmul throughput.

Used by benchmarks.trial_speed, which measures the matmul in every round, beside the trials.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.common import BATCH_SIZE, cpu_seconds, spread, start_tensorflow


def matmul_gflops(
    n: int, m: int | None = None, k: int | None = None, repeats: int = 5
) -> tuple[float, float]:
    """TensorFlow's float32 (n x k) @ (k x m) on the default device, best of `repeats`.

    Returns:
        GFLOP per wall second, and GFLOP per CPU second of this process in that same timing
        (on a shared CPU the second depends less on what other processes do).
    """
    tf = start_tensorflow()
    m, k = m or n, k or n
    a = tf.random.uniform((n, k))
    b = tf.random.uniform((k, m))
    flops = 2 * n * m * k
    n_calls = max(3, int(2e10 // flops))  # at least 20 GFLOP per timing
    float(tf.reduce_sum(tf.matmul(a, b)))
    best = (0.0, 0.0)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(n_calls):
            c = tf.matmul(a, b)
        float(tf.reduce_sum(c))  # waits for an asynchronous device
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        best = max(best, (flops * n_calls / wall / 1e9, flops * n_calls / max(cpu, 1e-9) / 1e9))
    return best


@dataclass(frozen=True)
class Matmul:
    """One matmul of a training step or a validation pass: (n x k) @ (k x m), an operand stored
    transposed where TensorFlow's gradient of a Dense layer stores it, `per_epoch` calls."""

    what: str
    n: int
    k: int
    m: int
    per_epoch: float
    transpose_a: bool = False
    transpose_b: bool = False

    @property
    def flops(self) -> float:
        return 2.0 * self.n * self.k * self.m * self.per_epoch


def epoch_matmuls(
    shapes: list[tuple[int, int]], n_train: int, n_validation: int, batch: int, eval_batch: int
) -> list[Matmul]:
    """The matmuls of an epoch of an MLP whose first layer reads the images, at their shapes.

    Each Dense layer (inputs x units) computes, per training step of `batch` images, its
    output x @ W, its weights' gradient x^T @ dy and, except the first, its input's gradient
    dy @ W^T; per validation batch of `eval_batch` images, its output. A partial last batch is
    counted as its share of a call, so the FLOPs add up to `epoch_flops`'s exact count.
    """
    steps, val_batches = n_train / batch, n_validation / eval_batch
    calls = []
    for i, (n_in, n_out) in enumerate(shapes):
        calls += [
            Matmul(f"layer {i + 1} output", batch, n_in, n_out, steps),
            Matmul(f"layer {i + 1} weights' gradient", n_in, batch, n_out, steps, True, False),
        ]
        if i > 0:
            calls.append(
                Matmul(f"layer {i + 1} input's gradient", batch, n_out, n_in, steps, False, True)
            )
        calls.append(Matmul(f"layer {i + 1} validation", eval_batch, n_in, n_out, val_batches))
    return calls


def model_matmuls(model: Any, data: Any) -> list[Matmul]:
    """`epoch_matmuls` of `model` on `data`, at the benchmark's batch and hpo's eval batch."""
    from hpo.train import EVAL_BATCH_SIZE

    return epoch_matmuls(
        dense_shapes(model), len(data.x_train), len(data.x_val), BATCH_SIZE, EVAL_BATCH_SIZE
    )


def shape_seconds(call: Matmul, repeats: int = 3) -> float:
    """Seconds of one call at its own shape, best of `repeats`: the matmul repeated inside one
    graph (a loop whose every turn computes it again), so no Python runs between calls."""
    tf = start_tensorflow()
    a = tf.random.uniform((call.k, call.n) if call.transpose_a else (call.n, call.k))
    b = tf.random.uniform((call.m, call.k) if call.transpose_b else (call.k, call.m))
    n_calls = max(10, int(2e9 // (2 * call.n * call.k * call.m)))  # about 2 GFLOP per timing

    @tf.function
    def calls() -> Any:
        c = tf.zeros((call.n, call.m))
        for _ in tf.range(n_calls):
            c = tf.matmul(a, b, transpose_a=call.transpose_a, transpose_b=call.transpose_b)
        return c[0, 0]

    float(calls())
    best = math.inf
    for _ in range(repeats):
        wall = time.perf_counter()
        float(calls())
        best = min(best, (time.perf_counter() - wall) / n_calls)
    return best


def update_rate(n_values: int, repeats: int = 5) -> float:
    """Bytes per second of an in-place update `x += y` over `n_values` float32 values (read x,
    read y, write x: three passes), as one kernel after another on data that stays in cache,
    the way an optimizer updates the weights each step. Best of `repeats`."""
    tf = start_tensorflow()
    x = tf.Variable(tf.zeros(n_values))
    y = tf.ones(n_values)
    n_calls = 200

    @tf.function
    def updates() -> Any:
        for _ in tf.range(n_calls):
            x.assign_add(y)
        return x[0]

    float(updates())
    best = 0.0
    for _ in range(repeats):
        wall = time.perf_counter()
        float(updates())
        best = max(best, 3 * 4 * n_values * n_calls / (time.perf_counter() - wall))
    return best


def read_rate(array: Any, repeats: int = 3) -> float:
    """Bytes per second of reading a held tensor once (a sum over it), best of `repeats`."""
    tf = start_tensorflow()
    best = 0.0
    float(tf.reduce_sum(array))
    for _ in range(repeats):
        wall = time.perf_counter()
        float(tf.reduce_sum(array))
        best = max(
            best, array.shape.num_elements() * array.dtype.size / (time.perf_counter() - wall)
        )
    return best


# Passes over the weights a step of Adam makes at the least: read the weights, the gradients
# and both moments, write the weights and both moments.
ADAM_PASSES = 7


def square_size() -> int:
    """A matmul side large enough to reach the device's peak: 2048 on CPUs, 8192 on GPUs."""
    tf = start_tensorflow()
    return 8192 if tf.config.list_physical_devices("GPU") else 2048


def dense_shapes(model: Any) -> list[tuple[int, int]]:
    """(inputs, units) of each Dense layer, in order."""
    import keras

    return [
        (int(layer.kernel.shape[0]), int(layer.kernel.shape[1]))
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    ]


def epoch_flops(model: Any, n_train: int, n_validation: int) -> tuple[float, float]:
    """FLOPs of one epoch: training (forward and backward) and a validation pass.

    Returns:
        By the usual rule (backward = 2x forward) and exactly for an MLP whose first layer
        reads the images: that layer needs no gradient for its input, only for its weights.
    """
    layers = [2 * n_in * n_out for n_in, n_out in dense_shapes(model)]
    forward = sum(layers)
    rule = 3 * forward * n_train + forward * n_validation
    return rule, rule - layers[0] * n_train


def floor_table(result: dict[str, Any], data: Any) -> tuple[str, list[float], list[float]]:
    """The floor against the trials of `result` (from compare_trial_and_plain), round by round.

    The exact floor of an epoch: its FLOPs at the large-square matmul rate, Adam's memory
    traffic (ADAM_PASSES passes over the parameters per step) at the in-cache update rate, and
    one read of the epoch's images at the streaming read rate, each measured in the round.
    Beside it, the same floor with each matmul timed at its own shape instead: the arithmetic
    the step cannot avoid at the rate this machine's matmul reaches for those shapes.

    Returns:
        The table, and per round the trial over the exact floor and over the shapes' floor.
    """
    from hpo.model import build_model
    from hpo.testing import full_params

    tf = start_tensorflow()
    on_cpu = not tf.config.list_physical_devices("GPU")
    model = build_model(full_params(), data.input_shape, data.n_classes)
    n_params = model.count_params()
    rule, exact = epoch_flops(model, len(data.x_train), len(data.x_val))
    n_steps = -(-len(data.x_train) // BATCH_SIZE)
    optimizer_bytes = ADAM_PASSES * 4 * n_params * n_steps
    image_bytes = data.x_train.size * 4
    wall = [g[0] for g in result["gflops"]]
    floors = [
        exact / g[0] / 1e9 + optimizer_bytes / update + image_bytes / read
        for g, update, read in zip(
            result["gflops"], result["update_rates"], result["read_rates"], strict=True
        )
    ]
    matmuls = model_matmuls(model, data)
    per_round = [
        [seconds * call.per_epoch for seconds, call in zip(timed, matmuls, strict=True)]
        for timed in result["shape_seconds"]
    ]
    shape_floors = [
        sum(parts) + optimizer_bytes / update + image_bytes / read
        for parts, update, read in zip(
            per_round, result["update_rates"], result["read_rates"], strict=True
        )
    ]
    hpo, plain = result["runs"]["hpo"], result["runs"].get("plain", [])
    gaps = [t.epoch_s / f for t, f in zip(hpo, floors, strict=True)]
    shape_gaps = [t.epoch_s / f for t, f in zip(hpo, shape_floors, strict=True)]
    n_in, n_out = dense_shapes(model)[0]
    first = matmul_gflops(BATCH_SIZE, n_out, n_in)[0]
    rows = [
        (
            "model GFLOP per epoch: 3x forward (training) + forward (validation)",
            f"{rule / 1e9:.1f}",
        ),
        ("the same, exact (the first layer computes no input gradient)", f"{exact / 1e9:.1f}"),
        ("matmul GFLOP/s, large square, best of 5 per round", spread(wall, 1)),
        ("matmul GFLOP/s at the first layer's shape (100x3072 @ 3072x128)", f"{first:.1f}"),
        ("exact FLOPs at the large-square rate, s/epoch", spread([exact / g / 1e9 for g in wall])),
        (
            f"Adam's traffic: {ADAM_PASSES} passes over {n_params:,} parameters x {n_steps} steps "
            f"= {optimizer_bytes / 1e9:.2f} GB, at the in-cache update rate (GB/s)",
            spread([r / 1e9 for r in result["update_rates"]], 1),
        ),
        ("the same, s/epoch", spread([optimizer_bytes / r for r in result["update_rates"]])),
        (
            f"reading the epoch's images once ({image_bytes / 1e9:.2f} GB) at the streaming "
            "read rate (GB/s)",
            spread([r / 1e9 for r in result["read_rates"]], 1),
        ),
        ("the same, s/epoch", spread([image_bytes / r for r in result["read_rates"]])),
        ("**exact floor, s/epoch** (the three above)", spread(floors)),
        ("hpo trial s/epoch", spread([t.epoch_s for t in hpo])),
        ("**hpo trial / exact floor**", spread(gaps)),
        (
            "hpo trial / floor (3x rule, FLOPs only)",
            spread([t.epoch_s / (rule / g / 1e9) for t, g in zip(hpo, wall, strict=True)]),
        ),
    ]
    for i, call in enumerate(matmuls):
        shape = f"{call.n}x{call.k} @ {call.k}x{call.m}"
        rates = [2e-9 * call.n * call.k * call.m / timed[i] for timed in result["shape_seconds"]]
        rows.append(
            (
                f"{call.what} ({shape}): GFLOP/s at its shape; share of the exact FLOPs",
                f"{spread(rates, 1)}; {call.flops / exact:.1%}",
            )
        )
    rows += [
        (
            "the matmuls at their own shapes, s/epoch",
            spread([sum(parts) for parts in per_round]),
        ),
        (
            "**floor at the step's own shapes, s/epoch** (with Adam's traffic and the images)",
            spread(shape_floors),
        ),
        ("**hpo trial / floor at the step's own shapes**", spread(shape_gaps)),
    ]
    if plain:
        rows.append(
            (
                "plain script / exact floor",
                spread([t.epoch_s / f for t, f in zip(plain, floors, strict=True)]),
            )
        )
    if on_cpu:
        per_cpu = [g[1] for g in result["gflops"]]
        cpu = [statistics.median(t.epoch_cpu_s[1:] or t.epoch_cpu_s) for t in hpo]
        rows += [
            ("matmul GFLOP per CPU-second of the process", spread(per_cpu, 1)),
            (
                "hpo trial CPU-s per epoch / exact FLOPs in CPU-s",
                spread([c / (exact / g / 1e9) for c, g in zip(cpu, per_cpu, strict=True)]),
            ),
        ]
    lines = ["| quantity | median [min-max] over rounds |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines), gaps, shape_gaps

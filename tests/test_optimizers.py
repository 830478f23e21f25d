"""The fused updates compute Keras's Adam and AdamW (up to float32 rounding of constants) and
Keras's SGD (exactly)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hpo.optimizers import FusedAdam, FusedAdamW, FusedSGD

PAIRS = {
    "adam": (keras.optimizers.Adam, FusedAdam, {"beta_1": 0.85}),
    "adamw": (keras.optimizers.AdamW, FusedAdamW, {"weight_decay": 0.05}),
}


def train(optimizer: keras.optimizers.Optimizer, start: np.ndarray, grads: list) -> list:
    """The variable after each step of `optimizer` on the given gradients."""
    variables = [keras.Variable(w) for w in start]
    optimizer.build(variables)

    @tf.function
    def step(gradients: list) -> None:
        optimizer.apply(gradients, variables)

    after = []
    for gradients in grads:
        step([tf.constant(g) for g in gradients])
        after.append([np.array(v.numpy()) for v in variables])
    return after


@pytest.mark.parametrize("name", PAIRS)
def test_fused_steps_match_keras(name: str) -> None:
    keras_class, fused_class, options = PAIRS[name]
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(300, 40)).astype("float32"), np.zeros(40, "float32")]
    grads = [
        [rng.normal(scale=0.01, size=w.shape).astype("float32") for w in start] for _ in range(30)
    ]
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 10, 0.5)
    reference = train(keras_class(learning_rate=schedule, **options), start, grads)
    fused = train(fused_class(learning_rate=schedule, **options), start, grads)
    for step, (want, got) in enumerate(zip(reference, fused, strict=True)):
        for w0, a, b in zip(start, want, got, strict=True):
            moved = np.abs(a - w0).max()
            assert moved > 0
            # Rounding of 1 - beta to float32 moves an update by about 1.5e-5 of itself.
            assert np.abs(a - b).max() <= 1e-4 * moved, f"step {step + 1}"


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fused_sgd_is_keras_sgd_bit_for_bit(momentum: float) -> None:
    rng = np.random.default_rng(1)
    start = [rng.normal(size=(300, 40)).astype("float32"), np.zeros(40, "float32")]
    grads = [
        [rng.normal(scale=0.01, size=w.shape).astype("float32") for w in start] for _ in range(30)
    ]
    schedule = keras.optimizers.schedules.CosineDecay(0.05, 30)
    reference = train(keras.optimizers.SGD(schedule, momentum=momentum), start, grads)
    fused = train(FusedSGD(schedule, momentum=momentum), start, grads)
    for want, got in zip(reference, fused, strict=True):
        for a, b in zip(want, got, strict=True):
            np.testing.assert_array_equal(a, b)


def test_the_slots_are_the_optimizers_variables() -> None:
    variables = [keras.Variable(np.ones((3, 2), "float32")), keras.Variable(np.ones(2, "float32"))]
    optimizer = FusedAdam(learning_rate=0.1)
    optimizer.build(variables)
    # iterations, the learning rate, then a momentum and a velocity per variable: what a warm
    # restart resets and a checkpoint saves.
    assert len(optimizer.variables) == 2 + 2 * len(variables)


def test_variants_without_a_fused_kernel_are_refused() -> None:
    with pytest.raises(ValueError, match="AMSGrad"):
        FusedAdam(amsgrad=True)
    with pytest.raises(ValueError, match="Nesterov"):
        FusedSGD(momentum=0.9, nesterov=True)

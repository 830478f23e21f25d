"""Keras's Adam, AdamW and SGD with each variable's update in one TensorFlow kernel.

Keras's Adam updates a variable with about a dozen separate kernels (subtract, multiply, square,
square root, divide, three assignments), each a pass over the weights or a slot. On the lesson's
MLP they took about 40% of the kernel time of a training step (`python -m benchmarks.step_profile`).
TensorFlow's `ResourceApplyAdam` computes the same formula in one pass:

    m += (g - m) * (1 - beta_1)
    v += (g * g - v) * (1 - beta_2)
    w -= (m * lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)) / (sqrt(v) + epsilon)

Keras rounds the constants 1 - beta to float32 from double precision, the kernel subtracts in
float32, so the two differ in the last bits (a step's update by at most about 1.5e-5 of itself;
`tests/test_optimizers.py`). A fit stays a deterministic function of its seed. SGD's fused
kernels (`ResourceApplyKerasMomentum`, `ResourceApplyGradientDescent`) compute exactly what
Keras's SGD does, bit for bit.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops


class _FusedAdamUpdate:
    """The fused update, for a subclass of Keras's Adam (AdamW adds its decoupled weight decay
    before `update_step`, as Keras does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.amsgrad:  # type: ignore[attr-defined]
            raise ValueError("the fused Adam update has no AMSGrad variant")
        self._slots: dict[Any, tuple[keras.Variable, keras.Variable]] = {}

    def build(self, var_list: list[keras.Variable]) -> None:
        if self.built:  # type: ignore[attr-defined]
            return
        # The base optimizer's state (iterations, learning rate), then the two slots the fused
        # kernel updates, made here instead of by Adam's own `build`.
        keras.optimizers.Optimizer.build(self, var_list)
        for variable in var_list:
            self._slots[_key(variable)] = (
                self.add_variable_from_reference(variable, "momentum"),  # type: ignore[attr-defined]
                self.add_variable_from_reference(variable, "velocity"),  # type: ignore[attr-defined]
            )

    def update_step(
        self, gradient: tf.Tensor, variable: tf.Variable, learning_rate: tf.Tensor
    ) -> None:
        dtype = variable.dtype
        m, v = self._slots[_key(variable)]
        step = ops.cast(self.iterations + 1, dtype)  # type: ignore[attr-defined]
        beta_1 = ops.cast(self.beta_1, dtype)  # type: ignore[attr-defined]
        beta_2 = ops.cast(self.beta_2, dtype)  # type: ignore[attr-defined]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=ops.power(beta_1, step),
            beta2_power=ops.power(beta_2, step),
            lr=ops.cast(learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=ops.cast(self.epsilon, dtype),  # type: ignore[attr-defined]
            grad=ops.cast(gradient, dtype),
        )


def _key(variable: keras.Variable | tf.Variable) -> Any:
    """One key for a Keras variable and the TensorFlow variable it holds (which is what the
    optimizer hands `update_step`)."""
    held = variable.value if isinstance(variable, keras.Variable) else variable
    return held.ref()


class FusedAdam(_FusedAdamUpdate, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with the fused update."""


class FusedAdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with the fused update."""


class FusedSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (with or without momentum, not Nesterov's) with fused updates."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.nesterov:
            raise ValueError("the fused SGD update has no Nesterov variant")
        self._slots: dict[Any, keras.Variable] = {}

    def build(self, var_list: list[keras.Variable]) -> None:
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)
        if self.momentum != 0:
            for variable in var_list:
                self._slots[_key(variable)] = self.add_variable_from_reference(variable, "momentum")

    def update_step(
        self, gradient: tf.Tensor, variable: tf.Variable, learning_rate: tf.Tensor
    ) -> None:
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=lr, delta=gradient)
            return
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle,
            accum=self._slots[_key(variable)].handle,
            lr=lr,
            grad=gradient,
            momentum=ops.cast(self.momentum, dtype),
        )

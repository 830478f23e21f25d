"""Probes for the report: learning rate over training steps, activations at initialization."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpo.spec import DataSpec

N_CIFAR_TRAIN = 50_000
N_POINTS = 200


def n_train_images(data: DataSpec) -> int:
    """How many images the training split of `data` holds, without loading it."""
    total = N_CIFAR_TRAIN if data.dataset == "cifar100" else data.n_samples
    # As sklearn's train_test_split sizes a fractional test split.
    n_train = total - math.ceil(data.validation_fraction * total)
    return min(n_train, data.n_train) if data.n_train is not None else n_train


def learning_rates(
    params: Mapping[str, Any], steps_per_epoch: int, n_points: int = N_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """The learning rate `hpo.model.build_schedule` gives at `n_points` steps of the budget."""
    from hpo.schedules import learning_rate_at

    total = max(1, int(params["epochs"]) * steps_per_epoch)
    steps = np.unique(np.linspace(0, total, n_points).astype(int))
    return steps, learning_rate_at(params, steps_per_epoch, steps)


@dataclass(frozen=True)
class LayerActivations:
    """Outputs of one hidden layer for a batch, right after initialization."""

    layer: str
    values: np.ndarray

    @property
    def std(self) -> float:
        return float(self.values.std())

    def saturated(self, activation: str) -> float:
        """Share of outputs where the activation is flat: ReLU-like at or below 0, tanh and
        sigmoid within 1% of their bounds."""
        v = self.values
        if activation == "tanh":
            return float(np.mean(np.abs(v) > 0.99))
        if activation == "sigmoid":
            return float(np.mean((v < 0.01) | (v > 0.99)))
        return float(np.mean(v <= 0))


def initial_activations(
    params: Mapping[str, Any], x: np.ndarray, n_classes: int, seed: int = 0
) -> list[LayerActivations]:
    """Each hidden Dense layer's outputs on the batch `x` for a freshly initialized model."""
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()
    import keras

    from hpo.model import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(params, tuple(x.shape[1:]), n_classes)
    hidden = [f"dense_{i + 1}" for i in range(int(params["n_layers"]))]
    probe = keras.Model(model.input, [model.get_layer(name).output for name in hidden])
    outputs = probe(x, training=False)
    if not isinstance(outputs, list | tuple):
        outputs = [outputs]
    return [
        LayerActivations(name, keras.ops.convert_to_numpy(out).astype(np.float32).ravel())
        for name, out in zip(hidden, outputs, strict=True)
    ]

"""The learning rate of each schedule `hpo.model.build_schedule` makes, as numpy formulas.

A report draws the schedules its best trials used. Building them in Keras would import
TensorFlow (seconds) into a command that only reads; these are the same formulas as Keras's
`ExponentialDecay`, `CosineDecay` (with and without warm-up) and `CosineDecayRestarts`, in
float64. `tests/test_schedules.py` compares them with Keras at every step of several budgets,
so a change in Keras shows up as a failing test rather than a wrong figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def learning_rate_at(
    params: Mapping[str, Any], steps_per_epoch: int, steps: np.ndarray
) -> np.ndarray:
    """The learning rate at each optimizer step in `steps` for the schedule of `params`."""
    step = np.asarray(steps, dtype=float)
    lr = float(params["learning_rate"])
    total = max(1, int(params["epochs"]) * steps_per_epoch)
    match params["schedule"]:
        case "constant":
            return np.full(step.shape, lr)
        case "exponential":
            return lr * float(params["decay_rate"]) ** (step / float(params["decay_steps"]))
        case "cosine":
            return lr * _cosine(np.minimum(step, total) / total, float(params["alpha"]))
        case "cosine_restarts":
            return lr * _restarts(step / float(params["first_decay_steps"]), params)
        case "warmup_cosine":
            warmup = min(int(params["warmup_steps"]), total - 1)
            decay = max(1, total - warmup)
            step = np.minimum(step, decay + warmup)
            warm = lr * step / warmup if warmup else np.zeros(step.shape)
            cool = lr * _cosine((step - warmup) / decay, float(params["alpha"]))
            return np.where(step < warmup, warm, cool)
    raise ValueError(f"unknown schedule {params['schedule']!r}")


def _cosine(fraction: np.ndarray, alpha: float) -> np.ndarray:
    return (1 - alpha) * 0.5 * (1.0 + np.cos(math.pi * fraction)) + alpha


def _restarts(fraction: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    t_mul, m_mul = float(params["t_mul"]), float(params["m_mul"])
    if t_mul == 1.0:
        restart = np.floor(fraction)
        fraction = fraction - restart
    else:
        restart = np.floor(np.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
        done = (1.0 - t_mul**restart) / (1.0 - t_mul)
        fraction = (fraction - done) / t_mul**restart
    decayed = 0.5 * m_mul**restart * (1.0 + np.cos(math.pi * fraction))
    return (1 - float(params["alpha"])) * decayed + float(params["alpha"])

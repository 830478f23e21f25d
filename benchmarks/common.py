"""Helpers the trial-speed benchmarks share: data, timing, the two contestants, spreads."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
    def fixed_s(self) -> float:
        """Wall seconds of the run beyond its epochs at the steady pace: building, compiling and
        tracing, the first epoch's extra, and what `fit` does around the epochs."""
        return self.outside_s + self.first_extra_s

    @property
    def outside_s(self) -> float:
        """The part of `fixed_s` outside the epochs, timed directly: building or restarting the
        model, making the iterators and callbacks, and what follows the last epoch."""
        return self.wall_s - sum(self.epoch_wall_s)

    @property
    def first_extra_s(self) -> float:
        """The rest of `fixed_s`: the first epoch's wall time beyond a steady one's (a
        difference of two epochs, so it carries their noise)."""
        return self.epoch_wall_s[0] - self.epoch_s

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


@contextlib.contextmanager
def keras_adam() -> Iterator[None]:
    """Within it, hpo builds Keras's own Adam instead of its fused update (`hpo.optimizers`)."""
    import keras

    import hpo.model

    fused = hpo.model.FusedAdam
    hpo.model.FusedAdam = keras.optimizers.Adam  # type: ignore[misc]
    try:
        yield
    finally:
        hpo.model.FusedAdam = fused  # type: ignore[misc]


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


def hpo_trial(
    data: Any,
    epochs: int,
    seed: int,
    loop: Any = None,
    label: str = "",
    overrides: dict[str, Any] | None = None,
    reuse: bool = False,
) -> Timing:
    """The first `epochs` epochs of an hpo trial of the lesson's MLP (`full_params()`, 20 epochs,
    with `overrides`).

    The trial keeps its 20-epoch budget, which decides what a real one compiles for, and is
    stopped after `epochs` epochs, as a pruner would stop it. With `reuse`, a model this process
    already built for the same configuration is restarted from `seed` (`hpo.train.fit`).
    """
    import keras

    from hpo.testing import full_params
    from hpo.train import FAST, fit

    params = full_params({"batch_size": BATCH_SIZE, **(overrides or {})})

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch + 1 >= epochs:
                self.model.stop_training = True

    def train(callback: Any) -> float:
        run = fit(
            params, data, seed, callbacks=[callback, StopAfter()], loop=loop or FAST, reuse=reuse
        )
        return run.history["val_accuracy"][-1]

    return timed(label or "hpo trial", len(data.x_train), train)


def describe_machine() -> dict[str, Any]:
    """The device TensorFlow computes on, the versions, its thread pools (0: TensorFlow's
    default, one thread per core; `TF_NUM_INTRAOP_THREADS` and `TF_NUM_INTEROP_THREADS` set
    them) and the load when the run began."""
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
        "intra_op_threads": _threads(
            tf.config.threading.get_intra_op_parallelism_threads(), "TF_NUM_INTRAOP_THREADS"
        ),
        "inter_op_threads": _threads(
            tf.config.threading.get_inter_op_parallelism_threads(), "TF_NUM_INTEROP_THREADS"
        ),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _threads(configured: int, variable: str) -> int:
    """A pool's size as set in this process, else by its environment variable, else 0."""
    return configured or int(os.environ.get(variable, "0") or 0)


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


def t_mean(values: Sequence[float]) -> tuple[float, tuple[float, float] | None]:
    """The mean of `values` and its 95% t interval (None for fewer than two values)."""
    import numpy as np

    from hpo.stats import t_interval

    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return float(array.mean()), None
    low, high, _ = t_interval(array, 0.95)
    return float(array.mean()), (low, high)


def mean_interval(values: Sequence[float], digits: int = 3, unit: str = "") -> str:
    """'mean [low, high]' of `values`: their mean and its 95% t interval."""
    mean, interval = t_mean(values)
    text = f"{mean:.{digits}f}{unit}"
    if interval is None:
        return text
    low, high = interval
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"

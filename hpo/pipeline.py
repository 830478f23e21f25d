"""The input pipeline of a fit: tensors held once per process, shuffled batches gathered from
them epoch after epoch, validation batches in order."""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from hpo.data import ALIGNMENT

_HELD: dict[int, tuple[weakref.ref[np.ndarray], tf.Tensor]] = {}


def hold(array: np.ndarray) -> tf.Tensor:
    """`array` as a host tensor in the dtype the model reads, converted once per process.

    The tensor lives as long as the array does: a dataset loaded once serves every trial. An
    array `hpo.data` scaled (`aligned_empty`) is lent to TensorFlow without a copy; any other
    is copied (a copy of the training images costs twice their size).
    """
    key = id(array)
    held = _HELD.get(key)
    if held is not None and held[0]() is array:
        return held[1]
    dtype = keras.backend.floatx() if np.issubdtype(array.dtype, np.floating) else "int32"
    with tf.device("/CPU:0"):
        tensor = _lent(array, dtype)
        if tensor is None:
            tensor = tf.constant(array, dtype=dtype)
    _HELD[key] = (weakref.ref(array, lambda _: _HELD.pop(key, None)), tensor)
    return tensor


def _lent(array: np.ndarray, dtype: str) -> tf.Tensor | None:
    """A tensor over `array`'s own memory (DLPack), or None where TensorFlow cannot take it.

    TensorFlow aborts the process on a buffer that is not aligned, so that is checked first.
    The tensor keeps alive what it was made from; it is made from a second view of `array`'s
    buffer, never from `array` itself, which would then outlive every use and never be freed.
    Only arrays that do not own their memory qualify (a second view of an owner would keep
    the owner alive); `hpo.data.aligned_empty` makes such arrays.
    """
    if (
        array.dtype != np.dtype(dtype)
        or array.base is None
        or not array.flags.c_contiguous
        or not array.flags.writeable
        or array.ctypes.data % ALIGNMENT
        or array.size == 0
    ):
        return None
    return tf.experimental.dlpack.from_dlpack(array.view().__dlpack__())


def training_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | tf.Variable
) -> tf.data.Dataset:
    """Endless shuffled batches of (x, y), epoch after epoch, cut as `model.fit` cuts them.

    Each epoch is a fresh permutation, a function of `seed` and the epoch's number only; its
    last batch is partial when `batch_size` does not divide the data. Batches are gathered from
    the held tensors, so nothing is converted per fit and only a batch is copied per step.
    `seed` may be an int64 variable: each epoch reads it as it starts, so a new iterator after
    the variable is set gives that seed's batches without building the dataset again.
    """
    x_held, y_held = hold(x), hold(y)
    n = len(x)
    n_full = n // batch_size

    def epoch(number: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64),
            seed=tf.stack([tf.convert_to_tensor(seed, tf.int64), number]),
        )
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[: n_full * batch_size], (n_full, batch_size))
        )
        if n_full * batch_size < n:
            batches = batches.concatenate(
                tf.data.Dataset.from_tensors(order[n_full * batch_size :])
            )
        return batches

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.gather(x_held, indices), tf.gather(y_held, indices)

    dataset = (
        tf.data.Dataset.range(np.iinfo(np.int64).max)  # counter() leaks a traced graph per fit
        .flat_map(epoch)
        .map(gather, num_parallel_calls=PARALLEL_GATHERS)
        .prefetch(PREFETCH_BATCHES)
    )
    return dataset.with_options(_options())


def eval_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """(x, y) in order, in batches of `batch_size`, from the held tensors."""
    x_held, y_held = hold(x), hold(y)
    if batch_size >= len(x):
        dataset = tf.data.Dataset.from_tensors((x_held, y_held))
    else:
        dataset = tf.data.Dataset.from_tensor_slices((x_held, y_held)).batch(batch_size)
    return dataset.with_options(_options())


# The training pipeline's parallelism, fixed: a batch's gather is one copy of 1.2 MB, and two
# in flight with four batches ready keep a step waiting for none (the steady epoch measured the
# same as with tf.data's autotuning).
PARALLEL_GATHERS = 2
PREFETCH_BATCHES = 4


def _options() -> tf.data.Options:
    options = tf.data.Options()
    # tf.data's graph rewrites would serialize the pipeline, held tensors included, per iterator.
    options.experimental_optimization.apply_default_optimizations = False
    # Autotuning's background thread made the end of a fit wait for it: 0.2-2.5 s in 8 of 18
    # warm runs (3 epochs each), up to 19 s in 20-epoch trials; none in 18 runs without it.
    options.autotune.enabled = False
    return options

"""The input pipeline: batches reshuffled every epoch as a function of the seed, held tensors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from hpo.pipeline import eval_batches, hold, training_batches

N = 10
Pair = tuple[np.ndarray, np.ndarray]


def epochs_of(dataset, n_epochs: int, batch_size: int) -> list[list[list[int]]]:
    """The sample numbers of each batch, epoch by epoch, from a dataset of numbered samples."""
    per_epoch = -(-N // batch_size)
    batches = [y.numpy().tolist() for _, y in dataset.take(n_epochs * per_epoch)]
    return [batches[i * per_epoch : (i + 1) * per_epoch] for i in range(n_epochs)]


@pytest.fixture
def numbered() -> Pair:
    """Samples whose features and label are their own number."""
    x = np.arange(N, dtype=np.float32).reshape(N, 1)
    return x, np.arange(N, dtype=np.int32)


def test_every_epoch_is_a_new_permutation_cut_into_batches(numbered: Pair) -> None:
    epochs = epochs_of(training_batches(*numbered, batch_size=4, seed=1), 3, 4)
    for batches in epochs:
        assert [len(b) for b in batches] == [4, 4, 2]
        assert sorted(i for batch in batches for i in batch) == list(range(N))
    orders = [[i for batch in batches for i in batch] for batches in epochs]
    assert orders[0] != orders[1] and orders[1] != orders[2]


def test_batches_pair_each_image_with_its_label(numbered: Pair) -> None:
    for x, y in training_batches(*numbered, batch_size=4, seed=1).take(3):
        assert x.numpy()[:, 0].tolist() == y.numpy().tolist()


def test_shuffles_depend_on_the_seed_only(numbered: Pair) -> None:
    one = epochs_of(training_batches(*numbered, batch_size=5, seed=7), 2, 5)
    again = epochs_of(training_batches(*numbered, batch_size=5, seed=7), 2, 5)
    other = epochs_of(training_batches(*numbered, batch_size=5, seed=8), 2, 5)
    assert one == again
    assert one != other


def test_eval_batches_keep_the_order(numbered: Pair) -> None:
    assert [y.numpy().tolist() for _, y in eval_batches(*numbered, 4)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    ((_, whole),) = list(eval_batches(*numbered, 100))
    assert whole.numpy().tolist() == list(range(N))


def test_arrays_are_converted_once(numbered: Pair) -> None:
    x, y = numbered
    assert hold(x) is hold(x)
    assert hold(x).dtype.name == "float32" and hold(y).dtype.name == "int32"
    assert hold(x.copy()) is not hold(x)


def test_a_seed_variable_gives_the_batches_of_the_seed_it_holds(numbered: Pair) -> None:
    seed = tf.Variable(7, dtype=tf.int64)
    dataset = training_batches(*numbered, batch_size=5, seed=seed)
    for value in (7, 8, 7):
        seed.assign(value)
        expected = epochs_of(training_batches(*numbered, batch_size=5, seed=value), 2, 5)
        assert epochs_of(dataset, 2, 5) == expected


def test_scaled_images_are_lent_to_tensorflow_without_a_copy_and_freed_with_the_array() -> None:
    import gc
    import weakref

    from hpo.data import ALIGNMENT, aligned_empty
    from hpo.pipeline import _HELD

    x = aligned_empty((50, 4, 4, 3), np.float32)
    assert x.ctypes.data % ALIGNMENT == 0 and x.base is not None
    x[...] = 0.25
    held = hold(x)
    x[0, 0, 0, 0] = 7.0  # the tensor reads the array's own memory
    assert float(held[0, 0, 0, 0]) == 7.0
    gone = weakref.ref(x)
    n_held = len(_HELD)
    del x, held
    gc.collect()
    assert gone() is None and len(_HELD) == n_held - 1  # the tensor did not keep it alive


def test_other_arrays_are_copied() -> None:
    from hpo.data import aligned_empty

    owner = np.full((50, 4, 4, 3), 0.25, np.float32)  # owns its memory
    # A view 4 bytes past an aligned start: TensorFlow would abort the process if lent it.
    unaligned = aligned_empty((50 * 48 + 1,), np.float32)[1:].reshape(50, 4, 4, 3)
    unaligned[...] = 0.25
    for x in (owner, unaligned):
        held = hold(x)
        x[0, 0, 0, 0] = 7.0
        assert float(held[0, 0, 0, 0]) == 0.25

"""Data loaders: npz, the pickle folder and its .tar.gz, synthetic data, splits, bad files."""

from __future__ import annotations

import dataclasses
import io
import pickle
import struct
import sys
import tarfile
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hpo.data import Arrays, load_dataset, make_synthetic, prepare, read_cifar100, resolve_source
from hpo.errors import DataError
from hpo.spec import DataSpec


def small_cifar(n_train: int = 200, n_test: int = 50) -> Arrays:
    rng = np.random.default_rng(0)
    return Arrays(
        rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        np.arange(n_train) % 100,
        rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        np.arange(n_test) % 100,
        100,
    )


def pickled(x: np.ndarray, y: np.ndarray) -> bytes:
    flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    return pickle.dumps(
        {b"data": flat, b"fine_labels": list(map(int, y)), b"coarse_labels": [0] * len(y)}
    )


def write_pickle_folder(arrays: Arrays, folder: Path) -> Path:
    folder.mkdir()
    (folder / "train").write_bytes(pickled(arrays.x_train, arrays.y_train))
    (folder / "test").write_bytes(pickled(arrays.x_test, arrays.y_test))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": []}))
    return folder


def assert_same(a: Arrays, b: Arrays) -> None:
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_npz_is_read(tmp_path: Path) -> None:
    arrays = small_cifar()
    path = tmp_path / "c.npz"
    np.savez(
        path,
        x_train=arrays.x_train,
        y_train=arrays.y_train,
        x_test=arrays.x_test,
        y_test=arrays.y_test.reshape(-1, 1),
    )
    assert_same(read_cifar100(path), arrays)


def test_pickle_folder_is_read_in_hwc_order(tmp_path: Path) -> None:
    arrays = small_cifar()
    folder = write_pickle_folder(arrays, tmp_path / "cifar-100-python")
    assert_same(read_cifar100(folder), arrays)


def test_tar_gz_is_read(tmp_path: Path) -> None:
    arrays = small_cifar()
    folder = write_pickle_folder(arrays, tmp_path / "cifar-100-python")
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-100-python")
    assert_same(read_cifar100(archive), arrays)


def test_missing_file_says_how_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*Keras download.*HPO_DATA"):
        read_cifar100(tmp_path / "nope.npz")


def test_garbage_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable CIFAR-100"):
        read_cifar100(path)


def test_npz_with_missing_keys_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    np.savez(path, x_train=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="not a readable CIFAR-100"):
        read_cifar100(path)


def test_wrong_image_shape_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=np.zeros((4, 28, 28), np.uint8),
        y_train=np.zeros(4),
        x_test=np.zeros((4, 28, 28), np.uint8),
        y_test=np.zeros(4),
    )
    with pytest.raises(DataError, match="expected N x 32 x 32 x 3"):
        read_cifar100(path)


def test_truncated_tar_is_a_data_error(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-100-python.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="not a readable CIFAR-100"):
        read_cifar100(archive)


def test_failed_download_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.datasets import cifar100

    from hpo.data import download_cifar100

    def offline(**_: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(cifar100, "load_data", offline)
    with pytest.raises(DataError, match="could not download CIFAR-100.*--data PATH"):
        download_cifar100()


def test_source_prefers_the_given_path_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HPO_DATA", raising=False)
    assert resolve_source(DataSpec()) == "keras"
    monkeypatch.setenv("HPO_DATA", "/data/c.npz")
    assert resolve_source(DataSpec()) == "/data/c.npz"
    assert resolve_source(DataSpec(), "/other.npz") == "/other.npz"
    # $HPO_DATA is every command's default; a path given for synthetic data would go unused.
    assert resolve_source(DataSpec(dataset="synthetic")) == "synthetic"
    with pytest.raises(DataError, match="this study's data are synthetic"):
        resolve_source(DataSpec(dataset="synthetic"), "/other.npz")
    # A home folder that does not exist is a data error (one line), not a traceback.
    with pytest.raises(DataError, match="cannot find the data file ~no_such_user_hpo/c.npz"):
        resolve_source(DataSpec(), "~no_such_user_hpo/c.npz")


def test_synthetic_data_is_deterministic_and_balanced() -> None:
    a, b = make_synthetic(300, 3, 4, seed=1), make_synthetic(300, 3, 4, seed=1)
    assert_same(a, b)
    assert a.x_train.shape == (300, 4, 4, 3) and a.x_train.dtype == np.uint8
    assert np.bincount(a.y_train).tolist() == [100, 100, 100]


def test_split_is_stratified_seeded_and_disjoint() -> None:
    arrays = make_synthetic(1000, 5, 4, seed=0)
    spec = DataSpec(dataset="synthetic", validation_fraction=0.2, seed=3)
    one, two = prepare(arrays, spec, "synthetic"), prepare(arrays, spec, "synthetic")
    np.testing.assert_array_equal(one.x_val, two.x_val)
    assert len(one.x_train) == 800 and len(one.x_val) == 200
    assert np.bincount(one.y_val).tolist() == [40] * 5
    train_rows = {row.tobytes() for row in one.x_train}
    assert not any(row.tobytes() in train_rows for row in one.x_val)


def test_rescale_gives_float32_in_unit_range() -> None:
    data = prepare(make_synthetic(200, 2, 4, seed=0), DataSpec(dataset="synthetic"), "synthetic")
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0


def test_standardize_uses_training_statistics_per_channel() -> None:
    spec = DataSpec(dataset="synthetic", scaling="standardize")
    data = prepare(make_synthetic(500, 2, 4, seed=0), spec, "synthetic")
    means = data.x_train.reshape(-1, 3).mean(axis=0)
    stds = data.x_train.reshape(-1, 3).std(axis=0)
    np.testing.assert_allclose(means, 0.0, atol=1e-4)
    np.testing.assert_allclose(stds, 1.0, atol=1e-3)


def test_subsets_are_applied() -> None:
    spec = DataSpec(dataset="synthetic", n_train=100, n_validation=30)
    data = load_dataset(spec)
    assert len(data.x_train) == 100 and len(data.x_val) == 30


def test_dataset_is_loaded_once_per_process() -> None:
    spec = DataSpec(dataset="synthetic", n_samples=300)
    assert load_dataset(spec) is load_dataset(spec)


def test_a_single_array_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x_train.npy"
    np.save(path, np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="not a readable CIFAR-100.*single array"):
        read_cifar100(path)


def npz_bytes(arrays: Arrays, *, compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(
        buffer,
        x_train=arrays.x_train,
        y_train=arrays.y_train,
        x_test=arrays.x_test,
        y_test=arrays.y_test,
    )
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def with_a_flipped_image_byte(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[data.index(b"x_train.npy") + 1000] ^= 0xFF
    return bytes(damaged)


def with_a_broken_deflate_stream(data: bytes) -> bytes:
    # The first member's compressed data starts after its 30-byte header, name and extra field.
    damaged = bytearray(data)
    name_length, extra_length = struct.unpack("<HH", damaged[26:30])
    damaged[30 + name_length + extra_length] = 0xFF  # deflate block type 3 does not exist
    return bytes(damaged)


def with_an_unknown_compression_method(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[data.index(b"PK\x01\x02") + 10] = 99
    return bytes(damaged)


def with_a_cut_npy_header(data: bytes) -> bytes:
    return data.replace(b"'shape': (", b"'shape': [", 1).replace(b"), }", b"   }", 1)


@pytest.mark.parametrize(
    ("damage", "compressed"),
    [
        (truncated, False),
        (with_a_flipped_image_byte, False),
        (with_a_broken_deflate_stream, True),
        (with_an_unknown_compression_method, False),
        (with_a_cut_npy_header, False),
    ],
)
def test_a_damaged_npz_is_a_data_error(
    tmp_path: Path, damage: Callable[[bytes], bytes], compressed: bool
) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(damage(npz_bytes(small_cifar(), compressed=compressed)))
    with pytest.raises(DataError, match=r"c\.npz is not a readable CIFAR-100"):
        read_cifar100(path)


def test_a_pickle_that_is_not_a_cifar_batch_is_a_data_error(tmp_path: Path) -> None:
    folder = write_pickle_folder(small_cifar(), tmp_path / "cifar-100-python")
    (folder / "train").write_bytes(pickle.dumps(["not", "a", "batch"]))
    with pytest.raises(DataError, match="not a readable CIFAR-100"):
        read_cifar100(folder)


@pytest.mark.parametrize(
    "labels",
    [np.array(["apple", "bed"] * 100), np.arange(200) % 100 + 0.5, np.full(200, np.nan)],
    ids=["strings", "fractions", "nan"],
)
def test_labels_that_are_not_class_indices_are_a_data_error(
    tmp_path: Path, labels: np.ndarray
) -> None:
    arrays = small_cifar()
    path = tmp_path / "c.npz"
    path.write_bytes(npz_bytes(dataclasses.replace(arrays, y_train=labels)))
    with pytest.raises(DataError, match=r"c\.npz has train labels of dtype .*integer"):
        read_cifar100(path)


def test_whole_number_float_labels_are_read(tmp_path: Path) -> None:
    arrays = small_cifar()
    path = tmp_path / "c.npz"
    path.write_bytes(npz_bytes(dataclasses.replace(arrays, y_train=arrays.y_train * 1.0)))
    np.testing.assert_array_equal(read_cifar100(path).y_train, arrays.y_train)


def test_images_that_are_not_numbers_are_a_data_error(tmp_path: Path) -> None:
    arrays = small_cifar()
    path = tmp_path / "c.npz"
    path.write_bytes(npz_bytes(dataclasses.replace(arrays, x_test=arrays.x_test.astype(str))))
    with pytest.raises(DataError, match=r"c\.npz has test images of dtype .*numbers"):
        read_cifar100(path)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            DataSpec(dataset="synthetic", n_samples=5),
            r"5 training images in 10 classes from synthetic data.*n_samples to at least 20",
        ),
        (
            DataSpec(dataset="synthetic", n_samples=50, n_classes=100),
            r"50 training images in 100 classes from synthetic data.*lower \[data\] n_classes",
        ),
        (
            DataSpec(dataset="synthetic", n_samples=200, validation_fraction=0.001),
            r"=0\.001 off 200 training images.*"
            r"set \[data\] validation_fraction between 0\.05 and 0\.95",
        ),
        (
            DataSpec(dataset="synthetic", n_samples=200, seed=2**32),
            r"seed=4294967296.*set \[data\] seed to an integer in 0\.\.4294967295",
        ),
    ],
    ids=["too-few-samples", "too-many-classes", "tiny-fraction", "huge-seed"],
)
def test_a_split_the_synthetic_data_cannot_hold_is_a_data_error(spec: DataSpec, match: str) -> None:
    with pytest.raises(DataError, match=f"cannot split .*{match}"):
        load_dataset(spec)


def test_data_too_large_for_memory_is_a_data_error() -> None:
    # 2**50 labels need 8 PiB, more than a process can address: numpy's allocation fails
    # whatever the host's overcommit policy.
    spec = DataSpec(dataset="synthetic", n_samples=2**50, n_classes=4, image_size=4)
    with pytest.raises(DataError, match=r"not enough memory to hold 1125899906842624 synthetic"):
        load_dataset(spec)


def test_a_file_too_small_for_a_stratified_split_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(npz_bytes(small_cifar(n_train=150)))
    with pytest.raises(
        DataError,
        match=r"split validation_fraction=0\.1 off 150 training images in 100 classes from "
        r"data file .*c\.npz.*at least 2 training images per class",
    ):
        load_dataset(DataSpec(), path)


def test_empty_arrays_are_a_data_error() -> None:
    empty = small_cifar(n_train=0)
    with pytest.raises(DataError, match="off 0 training images"):
        prepare(empty, DataSpec(), "keras")


def test_download_imports_tensorflow_quietly_before_keras(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hpo.tfquiet
    from hpo.data import download_cifar100

    calls: list[str] = []

    def offline(**_: object) -> None:
        raise OSError("network is unreachable")

    def keras_attribute(name: str) -> object:
        if name != "cifar100":
            raise AttributeError(name)
        calls.append("keras.datasets.cifar100")
        return types.SimpleNamespace(load_data=offline)

    datasets = types.ModuleType("keras.datasets")
    datasets.__getattr__ = keras_attribute  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "keras", types.ModuleType("keras"))
    monkeypatch.setitem(sys.modules, "keras.datasets", datasets)
    monkeypatch.setattr(hpo.tfquiet, "import_tensorflow", lambda: calls.append("quiet"))
    with pytest.raises(DataError, match="could not download CIFAR-100"):
        download_cifar100()
    assert calls == ["quiet", "keras.datasets.cifar100"]

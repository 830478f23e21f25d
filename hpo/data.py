"""CIFAR-100 and synthetic images: load once per process, split, scale, hold as float32."""

from __future__ import annotations

import functools
import math
import os
import pickle
import tarfile
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from hpo.errors import DataError
from hpo.spec import MAX_SEED, DataSpec

HOW_TO_GET = (
    "get CIFAR-100 online with the Keras download (no --data), or pass --data PATH / set HPO_DATA "
    "to a local cifar100.npz, a cifar-100-python folder or cifar-100-python.tar.gz"
)
N_CIFAR_CLASSES = 100
# What decoding a damaged or foreign file raises: zipfile, zlib and tokenize (a mangled .npy
# header) for an .npz; tarfile, gzip and pickle for the other two; the rest for pickled objects
# that are not CIFAR batches.
UNREADABLE = (
    OSError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    OverflowError,
    NotImplementedError,
    pickle.UnpicklingError,
    tarfile.TarError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


@dataclass(frozen=True)
class Arrays:
    """Raw images (uint8 or float, N x H x W x C) and integer labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


@dataclass(frozen=True)
class Dataset:
    """Training, validation and test splits, scaled, float32 images and int32 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def resolve_source(spec: DataSpec, path: str | Path | None = None) -> str:
    """Name the source a study reads: 'synthetic', a local path, or 'keras' for the download.

    A `path` given for synthetic data is refused: it would be silently unused ($HPO_DATA, a
    default for every command, is not).
    """
    if spec.dataset == "synthetic":
        if path is not None:
            raise DataError(
                f"--data {path} names image data, and this study's data are synthetic "
                '([data] dataset = "synthetic"): leave it out'
            )
        return "synthetic"
    chosen = path or os.environ.get("HPO_DATA")
    if not chosen:
        return "keras"
    try:
        return str(Path(chosen).expanduser())
    except RuntimeError as err:  # "~someone" with no such user
        raise DataError(f"cannot find the data file {chosen}: {err}") from None


def load_dataset(spec: DataSpec, path: str | Path | None = None) -> Dataset:
    """Load, split and scale the data a spec asks for; cached, so each process loads it once."""
    return _load_dataset(spec, resolve_source(spec, path))


@functools.lru_cache(maxsize=2)
def _load_dataset(spec: DataSpec, source: str) -> Dataset:
    try:
        if source == "synthetic":
            arrays = make_synthetic(spec.n_samples, spec.n_classes, spec.image_size, spec.seed)
        elif source == "keras":
            arrays = download_cifar100()
        else:
            arrays = read_cifar100(Path(source))
        return prepare(arrays, spec, source)
    except MemoryError as err:
        size = (
            f"{spec.n_samples} synthetic images of {spec.image_size}x{spec.image_size}"
            if source == "synthetic"
            else f"the images of {source}"
        )
        raise DataError(f"not enough memory to hold {size} ({err})") from err


def prepare(arrays: Arrays, spec: DataSpec, source: str) -> Dataset:
    """Split validation off the training set (stratified, seeded), subset, and scale."""
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            arrays.x_train,
            arrays.y_train,
            test_size=spec.validation_fraction,
            random_state=spec.seed,
            stratify=arrays.y_train,
        )
    except ValueError as err:
        raise DataError(_split_problem(arrays, spec, source, err)) from err
    if spec.n_train is not None:
        x_train, y_train = x_train[: spec.n_train], y_train[: spec.n_train]
    if spec.n_validation is not None:
        x_val, y_val = x_val[: spec.n_validation], y_val[: spec.n_validation]
    scale = _scaler(x_train, spec.scaling)
    return Dataset(
        x_train=scale(x_train),
        y_train=y_train.astype(np.int32),
        x_val=scale(x_val),
        y_val=y_val.astype(np.int32),
        x_test=scale(arrays.x_test),
        y_test=arrays.y_test.astype(np.int32),
        n_classes=arrays.n_classes,
        source=source,
    )


def _split_problem(arrays: Arrays, spec: DataSpec, source: str, err: ValueError) -> str:
    n_images, n_classes = len(arrays.y_train), arrays.n_classes
    where = {"synthetic": "synthetic data", "keras": "the Keras download"}.get(
        source, f"data file {source}"
    )
    problem = (
        f"cannot split validation_fraction={spec.validation_fraction} off {n_images} training "
        f"images in {n_classes} classes from {where} with seed={spec.seed} ({_reason(err)})"
    )
    counts = np.unique(arrays.y_train, return_counts=True)[1].tolist()
    if not 0 <= spec.seed <= MAX_SEED:
        remedy = f"set [data] seed to an integer in 0..{MAX_SEED}"
    elif n_images < 2 * n_classes or min(counts, default=0) < 2:
        # A stratified split puts at least one image of every class on each side.
        remedy = (
            f"raise [data] n_samples to at least {2 * n_classes} or lower [data] n_classes"
            if source == "synthetic"
            else "use a data file with at least 2 training images per class"
        )
    else:
        low = math.ceil(1000 * n_classes / n_images) / 1000
        high = math.floor(1000 * (1 - n_classes / n_images)) / 1000
        remedy = f"set [data] validation_fraction between {low} and {high}"
    return f"{problem}; {remedy}"


def _reason(err: Exception) -> str:
    """The error's own words on one short line (some quote whole headers or class lists)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


SCALING_SLICE = 1000
ALIGNMENT = 64
"""Bytes: what TensorFlow's CPU kernels require of a buffer it takes without copying (Eigen's
largest alignment)."""


def _scaler(x_train: np.ndarray, scaling: str) -> Any:
    """A function from raw images to scaled float32 ones, in `aligned_empty` arrays, computed
    in slices so that no full-size temporary is made (the same numbers as whole-array math)."""
    if scaling == "rescale":

        def rescale(x: np.ndarray) -> np.ndarray:
            out = aligned_empty(x.shape, np.float32)
            np.divide(np.asarray(x), np.float32(255.0), out=out, dtype=np.float32)
            return out

        return rescale
    # Per-channel statistics of the training split only, so validation and test stay unseen.
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0) + 1e-7

    def standardize(x: np.ndarray) -> np.ndarray:
        out = aligned_empty(x.shape, np.float32)
        for start in range(0, len(x), SCALING_SLICE):
            part = np.asarray(x[start : start + SCALING_SLICE], dtype=np.float32)
            out[start : start + SCALING_SLICE] = (part - mean) / std
        return out

    return standardize


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialized array whose data starts on an `ALIGNMENT`-byte boundary.

    It is a view of a byte buffer it does not own, so `hpo.pipeline.hold` can lend TensorFlow
    a second view of the same buffer, without a copy, and still let the array be freed.
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = np.empty(size + ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start : start + size].view(dtype).reshape(shape)


def make_synthetic(n_samples: int, n_classes: int, image_size: int, seed: int) -> Arrays:
    """Learnable images: each class has its own mean pattern under heavy noise."""
    rng = np.random.default_rng(seed)
    shape = (image_size, image_size, 3)
    centres = rng.uniform(96, 160, size=(n_classes, *shape))
    n_test = max(n_classes, n_samples // 5)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % n_classes
        rng.shuffle(y)
        x = centres[y] + rng.normal(0, 70, size=(n, *shape))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = draw(n_samples)
    x_test, y_test = draw(n_test)
    return Arrays(x_train, y_train, x_test, y_test, n_classes)


def download_cifar100() -> Arrays:
    """CIFAR-100 the way a Keras user gets it: downloaded once, then cached by Keras."""
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()
    from keras.datasets import cifar100

    try:
        (x_train, y_train), (x_test, y_test) = cifar100.load_data(label_mode="fine")
    except Exception as err:
        raise DataError(
            f"could not download CIFAR-100 ({type(err).__name__}); {HOW_TO_GET}"
        ) from err
    return Arrays(x_train, y_train.reshape(-1), x_test, y_test.reshape(-1), N_CIFAR_CLASSES)


def read_cifar100(path: Path) -> Arrays:
    """Read a local CIFAR-100: an .npz, the `cifar-100-python` folder, or its .tar.gz."""
    if not path.exists():
        raise DataError(f"data file {path} does not exist; {HOW_TO_GET}")
    try:
        if path.is_dir():
            arrays = _read_pickles(lambda name: (path / name).read_bytes())
        elif path.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path, "r:gz") as tar:
                arrays = _read_pickles(lambda name: _tar_member(tar, name))
        else:
            loaded = np.load(path, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive of named arrays")
            with loaded as npz:
                arrays = Arrays(
                    npz["x_train"],
                    npz["y_train"].reshape(-1),
                    npz["x_test"],
                    npz["y_test"].reshape(-1),
                    N_CIFAR_CLASSES,
                )
    except UNREADABLE as err:
        raise DataError(
            f"data file {path} is not a readable CIFAR-100 ({_reason(err)}); {HOW_TO_GET}"
        ) from err
    _check_arrays(arrays, path)
    return arrays


def _tar_member(tar: tarfile.TarFile, name: str) -> bytes:
    for member in tar.getmembers():
        if member.isfile() and Path(member.name).name == name:
            handle = tar.extractfile(member)
            if handle is not None:
                return handle.read()
    raise KeyError(f"no member '{name}'")


def _read_pickles(read: Any) -> Arrays:
    def split(name: str) -> tuple[np.ndarray, np.ndarray]:
        batch = pickle.loads(read(name), encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(batch[b"fine_labels"], dtype=np.int64)

    x_train, y_train = split("train")
    x_test, y_test = split("test")
    return Arrays(x_train, y_train, x_test, y_test, N_CIFAR_CLASSES)


def _check_arrays(arrays: Arrays, path: Path) -> None:
    for name, x, y in (
        ("train", arrays.x_train, arrays.y_train),
        ("test", arrays.x_test, arrays.y_test),
    ):
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or len(x) != len(y):
            raise DataError(
                f"data file {path} has {name} images of shape {x.shape} and {len(y)} labels, "
                f"expected N x 32 x 32 x 3 and N labels; {HOW_TO_GET}"
            )
        if x.dtype.kind not in "uif":
            raise DataError(
                f"data file {path} has {name} images of dtype {x.dtype}, expected numbers "
                f"(uint8 pixels 0..255); {HOW_TO_GET}"
            )
        if not _are_class_indices(y):
            raise DataError(
                f"data file {path} has {name} labels of dtype {y.dtype}, expected integer "
                f"class indices 0..99; {HOW_TO_GET}"
            )
        if y.size and (y.min() < 0 or y.max() >= N_CIFAR_CLASSES):
            raise DataError(f"data file {path} has {name} labels outside 0..99; {HOW_TO_GET}")


def _are_class_indices(y: np.ndarray) -> bool:
    # Whole-number floats (a label column saved as float) are still class indices.
    if y.dtype.kind in "iu":
        return True
    return y.dtype.kind == "f" and bool(np.all(np.isfinite(y) & (y == np.round(y))))

"""Shared fixtures: tiny synthetic specs, temporary storages, and the real CIFAR-100 file."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "cifar100.npz"

TINY_SPEC = """
name = "tiny"
seed = 3
n_trials = 4

[data]
dataset = "synthetic"
n_samples = 400
n_classes = 4
image_size = 4
validation_fraction = 0.25

[sampler]
type = "random"

[pruner]
type = "none"

[params]
first_units = 8
units = 8
epochs = 2
batch_size = 50
learning_rate = { low = 1e-3, high = 1e-2, log = true }
"""


def as_cifar100(text: str) -> str:
    """`text` with its synthetic [data] made CIFAR-100 (whose images need no shape keys)."""
    text = text.replace('dataset = "synthetic"', 'dataset = "cifar100"')
    return re.sub(r"(?m)^(n_samples|n_classes|image_size) = \d+\n", "", text)


@pytest.fixture(autouse=True)
def sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """Tests send Ctrl-C to themselves; a runner started in the background ignores SIGINT.
    The CLI's commands set both signals' handlers in this process: each test starts afresh."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    saved_term = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, saved)
    signal.signal(signal.SIGTERM, saved_term)


@pytest.fixture
def tiny_spec_text() -> str:
    return TINY_SPEC


@pytest.fixture
def tiny_spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


def real_data_path() -> Path:
    """The real CIFAR-100 file: $HPO_DATA, else the shared copy beside the repository."""
    return Path(os.environ.get("HPO_DATA", SHARED_DATA))


@pytest.fixture
def cifar100_path() -> Path:
    path = real_data_path()
    if not path.exists():
        pytest.skip(f"real CIFAR-100 not found at {path} (set HPO_DATA)")
    return path

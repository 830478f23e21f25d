"""Per-trial artifacts in Optuna's artifact store, written only on request, found by the dashboard.

A trial asked to keep artifacts stores its learning-curve figure (and, if asked, its model's
weights) in a `FileSystemArtifactStore` directory, and records that directory's absolute path as
the study's user attribute `artifact_dir`. `hpo dashboard` reads the attribute and serves the
directory when it exists; it never creates one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.storages import BaseStorage

if TYPE_CHECKING:
    import keras

ARTIFACT_DIR_ATTR = "artifact_dir"


def save_trial_artifacts(
    trial: optuna.Trial,
    history: Mapping[str, Sequence[float | None]],
    directory: str | Path,
    model: keras.Model | None = None,
) -> list[str]:
    """Store the learning curves of `history` (PNG), and `model`'s weights if given, with `trial`.

    Args:
        trial: The running trial the artifacts belong to.
        history: Metric name to one value per epoch, as Keras's `History.history`.
        directory: The artifact store's directory; made if missing (the user asked for it).
        model: If given, its weights are stored too, as `.weights.h5` (4 bytes per parameter).

    Returns:
        The artifact ids, in the order stored.
    """
    base = Path(directory).resolve()
    base.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(base)
    if trial.study.user_attrs.get(ARTIFACT_DIR_ATTR) != str(base):
        trial.study.set_user_attr(ARTIFACT_DIR_ATTR, str(base))
    ids = []
    with tempfile.TemporaryDirectory() as tmp:
        figure = plot_curves(history, Path(tmp) / f"trial-{trial.number}-curves.png")
        ids.append(_upload(trial, figure, store, "image/png"))
        if model is not None:
            path = Path(tmp) / f"trial-{trial.number}.weights.h5"
            model.save_weights(path)
            ids.append(_upload(trial, path, store, "application/x-hdf5"))
    return ids


def _upload(trial: optuna.Trial, path: Path, store: FileSystemArtifactStore, mime: str) -> str:
    return upload_artifact(
        study_or_trial=trial, file_path=str(path), artifact_store=store, mimetype=mime
    )


def plot_curves(history: Mapping[str, Sequence[float | None]], path: Path) -> Path:
    """One panel per metric (loss, accuracy, ...), training and validation per epoch."""
    from hpo.plots import pyplot, save_png

    plt = pyplot()
    metrics = sorted({key.removeprefix("val_") for key in history})
    n_panels = max(len(metrics), 1)
    fig, axes = plt.subplots(1, n_panels, figsize=(3.2 * n_panels, 2.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for key, label in ((metric, "training"), (f"val_{metric}", "validation")):
            values = history.get(key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, [float("nan") if v is None else v for v in values], label=label)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    return save_png(fig, path, dpi=80)


def open_artifact_store(
    storage: BaseStorage, name: str | None = None
) -> FileSystemArtifactStore | None:
    """The artifact store the studies' trials wrote to, if one still exists; never makes one.

    With `name`, that study's directory wins; otherwise the first existing one (in study-name
    order), since a dashboard serves a single store.
    """
    directories = {
        study.study_name: study.user_attrs.get(ARTIFACT_DIR_ATTR)
        for study in storage.get_all_studies()
    }
    order = [name] if name else []
    order += sorted(directories)
    for study_name in order:
        directory = directories.get(study_name)
        if directory and Path(directory).is_dir():
            return FileSystemArtifactStore(directory)
    return None

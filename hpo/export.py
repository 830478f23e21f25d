"""One trial as a standalone Keras script: the winner, taken out of hpo to train, share or cite.

The script needs only numpy and TensorFlow (Keras 3). It builds the trial's model, optimizer,
schedule, penalties, dropout and early stopping as plain Keras code, seeds Keras with the
trial's seed, and trains on CIFAR-100 (the Keras download, or a local .npz) with the same split:
the training images the study held out for validation travel in the script as a bitmask,
so the split is exactly the trial's without scikit-learn. Scaling is recomputed the same way.
"""

from __future__ import annotations

import base64
import textwrap
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from sklearn.model_selection import train_test_split

from hpo.errors import DataError, HpoError
from hpo.spec import DataSpec, Spec
from hpo.study import FIXED_ONLY, best_complete


def split_masks(y_train: np.ndarray, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Which of the training images a study trains on and validates on (boolean masks).

    The same call `hpo.data.prepare` makes, applied to the images' positions.
    """
    positions = np.arange(len(y_train))
    try:
        train, val = train_test_split(
            positions,
            test_size=spec.validation_fraction,
            random_state=spec.seed,
            stratify=y_train,
        )
    except ValueError as err:  # too few images of a class for the split the study made
        raise DataError(f"cannot split these training labels as the study did: {err}") from None
    if spec.n_train is not None:
        train = train[: spec.n_train]
    if spec.n_validation is not None:
        val = val[: spec.n_validation]
    masks = np.zeros((2, len(y_train)), dtype=bool)
    masks[0, train] = True
    masks[1, val] = True
    return masks[0], masks[1]


def pack(mask: np.ndarray) -> str:
    """A boolean mask as wrapped base64 text of its zlib-compressed bits."""
    raw = base64.b64encode(zlib.compress(np.packbits(mask).tobytes(), 9)).decode()
    return "\n".join(textwrap.wrap(raw, 76))


def keras_script(
    params: Mapping[str, Any],
    seed: int,
    data: DataSpec,
    masks: tuple[np.ndarray, np.ndarray],
    title: str,
    metric: str,
) -> str:
    """The text of a standalone script that trains `params` with plain Keras."""
    train_mask, val_mask = masks
    return _TEMPLATE.format(
        # The study's name may hold a backslash or quotes: the docstring must still parse.
        title=title.replace("\\", "\\\\").replace('"', '\\"'),
        params="\n".join(f"    {k} = {params[k]!r}" for k in sorted(params)),
        seed=seed,
        epochs=int(params["epochs"]),
        batch_size=int(params["batch_size"]),
        n_images=len(train_mask),
        train_bits=pack(train_mask),
        val_bits=pack(val_mask),
        scale=_SCALE[data.scaling],
        model=textwrap.indent(model_code(params), "    "),
        optimizer=textwrap.indent(optimizer_code(params), "    "),
        callbacks=callbacks_code(params),
        metric=metric,
    )


def model_code(params: Mapping[str, Any]) -> str:
    """Keras layers for the trial's architecture, initializer, penalties and dropout."""
    init = _initializer(params)
    act = repr(params["activation"])
    lines = ["inputs = keras.Input(shape=input_shape)", "x = inputs"]
    if params["architecture"] == "cnn":
        for filters in (params["filters"], 2 * params["filters"]):
            lines += [
                f'x = keras.layers.Conv2D({filters}, 3, padding="same", activation={act}, '
                f"kernel_initializer={init})(x)",
                "x = keras.layers.MaxPooling2D()(x)",
            ]
    lines.append("x = keras.layers.Flatten()(x)")
    for i in range(params["n_layers"]):
        regularized = i == 0 or params["regularized_layers"] == "all"
        units = params["first_units"] if i == 0 else params["units"]
        args = [str(units), f"activation={act}", f"kernel_initializer={init}"]
        for keyword, switch, strength in _PENALTIES:
            if regularized and params[switch] == "on":
                kind = "L1" if strength.endswith("l1") else "L2"
                args.append(f"{keyword}=keras.regularizers.{kind}({params[strength]!r})")
        lines.append(f"x = keras.layers.Dense({', '.join(args)})(x)")
        if regularized and params["dropout"] == "on":
            lines.append(f"x = keras.layers.Dropout({params['dropout_rate']!r})(x)")
    lines += [
        'outputs = keras.layers.Dense(n_classes, activation="softmax", '
        f"kernel_initializer={init})(x)",
        "return keras.Model(inputs, outputs)",
    ]
    return "\n".join(lines)


def optimizer_code(params: Mapping[str, Any]) -> str:
    """The learning rate or its schedule, then the optimizer, as Keras code."""
    lr = params["learning_rate"]
    total = "epochs * steps_per_epoch"
    schedules = "keras.optimizers.schedules"
    match params["schedule"]:
        case "constant":
            rate = f"learning_rate = {lr!r}"
        case "exponential":
            rate = (
                f"learning_rate = {schedules}.ExponentialDecay({lr!r}, "
                f"{params['decay_steps']!r}, {params['decay_rate']!r})"
            )
        case "cosine":
            rate = (
                f"learning_rate = {schedules}.CosineDecay({lr!r}, {total}, "
                f"alpha={params['alpha']!r})"
            )
        case "cosine_restarts":
            rate = (
                f"learning_rate = {schedules}.CosineDecayRestarts({lr!r}, "
                f"{params['first_decay_steps']!r}, t_mul={params['t_mul']!r}, "
                f"m_mul={params['m_mul']!r}, alpha={params['alpha']!r})"
            )
        case "warmup_cosine":
            rate = (
                f"warmup = min({params['warmup_steps']!r}, {total} - 1)\n"
                f"learning_rate = {schedules}.CosineDecay(0.0, max(1, {total} - warmup), "
                f"alpha={params['alpha']!r}, warmup_target={lr!r}, warmup_steps=warmup)"
            )
        case other:
            raise ValueError(f"unknown schedule {other!r}")
    match params["optimizer"]:
        case "adam":
            opt = f"keras.optimizers.Adam(learning_rate=learning_rate, beta_1={params['beta_1']!r})"
        case "adamw":
            opt = (
                "keras.optimizers.AdamW(learning_rate=learning_rate, "
                f"beta_1={params['beta_1']!r}, weight_decay={params['decoupled_weight_decay']!r})"
            )
        case "sgd":
            opt = (
                "keras.optimizers.SGD(learning_rate=learning_rate, "
                f"momentum={params['momentum']!r})"
            )
        case other:
            raise ValueError(f"unknown optimizer {other!r}")
    return f"{rate}\nreturn {opt}"


def callbacks_code(params: Mapping[str, Any]) -> str:
    stops = "keras.callbacks.TerminateOnNaN()"
    if params.get("early_stopping") != "on":
        return f"[{stops}]"
    return (
        f"[\n        {stops},\n        keras.callbacks.EarlyStopping(\n"
        f'            monitor="val_loss",\n            patience={params["patience"]!r},\n'
        f"            min_delta={params['min_delta']!r},\n"
        f"            restore_best_weights={params['restore_best_weights']!r},\n        ),\n    ]"
    )


def _initializer(params: Mapping[str, Any]) -> str:
    if params["initializer"] == "random_normal":
        return f"keras.initializers.RandomNormal(mean=0.0, stddev={params['init_stddev']!r})"
    return repr(params["initializer"])


_PENALTIES = (
    ("kernel_regularizer", "weight_decay", "weight_decay_l2"),
    ("activity_regularizer", "activity_penalty", "activity_l1"),
    ("bias_regularizer", "bias_penalty", "bias_l2"),
)

_SCALE = {
    "rescale": '''def scale(x_train, *xs):
    """Pixels to [0, 1], as the study scaled them."""
    return [np.asarray(x, np.float32) / np.float32(255.0) for x in (x_train, *xs)]''',
    "standardize": '''def scale(x_train, *xs):
    """Per-channel standardization with the training split's statistics, as the study did."""
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0) + 1e-7
    return [
        ((np.asarray(x, np.float32) - mean) / std).astype(np.float32) for x in (x_train, *xs)
    ]''',
}

_TEMPLATE = '''"""{title}, as plain Keras.

    python this_file.py [--data cifar100.npz] [--test]

Needs only numpy and TensorFlow (Keras 3). Without --data it downloads CIFAR-100 with
keras.datasets; --data reads a local .npz with x_train, y_train, x_test, y_test. It trains
on the training images the study trained on, validates on the ones it held out, and prints
the final model's validation loss and accuracy (the study's value is its {metric}); --test
also scores the final model once on the test set.
Expect the trial's value up to seed noise, not to the digit: the batches come in another
order than in the study's training loop, whose Adam update also rounds differently.

The configuration:
{params}
"""

import argparse
import base64
import zlib

import numpy as np
import keras
import tensorflow as tf

SEED = {seed}
EPOCHS = {epochs}
BATCH_SIZE = {batch_size}
N_TRAINING_IMAGES = {n_images}

# Which of the N_TRAINING_IMAGES training images the study trained on (TRAIN) and held out
# for validation (VALIDATION): bitmasks, zlib-compressed, in base64.
TRAIN = """
{train_bits}
"""
VALIDATION = """
{val_bits}
"""


def mask(text):
    bits = np.frombuffer(zlib.decompress(base64.b64decode("".join(text.split()))), np.uint8)
    return np.unpackbits(bits)[:N_TRAINING_IMAGES].astype(bool)


def load(path):
    if path is None:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar100.load_data(label_mode="fine")
    else:
        with np.load(path) as npz:
            x_train, y_train = npz["x_train"], npz["y_train"]
            x_test, y_test = npz["x_test"], npz["y_test"]
    y_train, y_test = y_train.reshape(-1).astype(np.int32), y_test.reshape(-1).astype(np.int32)
    if len(x_train) != N_TRAINING_IMAGES:
        raise SystemExit(f"expected {{N_TRAINING_IMAGES}} training images, got {{len(x_train)}}")
    return x_train, y_train, x_test, y_test


{scale}


def batches(x, y, batch_size, seed):
    """Training batches in a fresh order every epoch, from images held once as tensors.

    (`model.fit(x, y, shuffle=True)` on numpy arrays repeats one order in every epoch once
    keras.utils.set_random_seed has run, with TensorFlow 2.21 and Keras 3.15.)
    """
    x, y = tf.constant(x), tf.constant(y)
    order = tf.data.Dataset.range(len(y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return order.batch(batch_size).map(lambda i: (tf.gather(x, i), tf.gather(y, i))).prefetch(2)


def build_model(input_shape, n_classes):
{model}


def build_optimizer(epochs, steps_per_epoch):
{optimizer}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a local CIFAR-100 .npz (default: the Keras download)")
    parser.add_argument("--test", action="store_true", help="also score the final model on test")
    args = parser.parse_args()

    x_all, y_all, x_test, y_test = load(args.data)
    train, val = mask(TRAIN), mask(VALIDATION)
    x_train, x_val, x_test = scale(x_all[train], x_all[val], x_test)
    y_train, y_val = y_all[train], y_all[val]
    print(f"{{len(y_train)}} training and {{len(y_val)}} validation images")

    keras.utils.set_random_seed(SEED)
    model = build_model(x_train.shape[1:], 100)
    steps_per_epoch = -(-len(x_train) // BATCH_SIZE)
    model.compile(
        optimizer=build_optimizer(EPOCHS, steps_per_epoch),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        batches(x_train, y_train, BATCH_SIZE, SEED),
        epochs=EPOCHS,
        validation_data=(x_val, y_val),
        validation_batch_size=1000,
        callbacks={callbacks},
        verbose=2,
    )
    loss, accuracy = model.evaluate(x_val, y_val, batch_size=1000, verbose=0)
    print(f"validation loss: {{loss:.4f}}")
    print(f"validation accuracy: {{accuracy:.4f}}")
    if args.test:
        loss, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
        print(f"test loss: {{loss:.4f}}")
        print(f"test accuracy: {{accuracy:.4f}}")


if __name__ == "__main__":
    main()
'''


def export_trial(
    study: optuna.Study, spec: Spec, number: int | None, data_path: Path | None
) -> str:
    """The Keras script of trial `number` (default: the best), with the study's exact split.

    Reads the training labels of the study's data (the Keras download or a local file) to
    write the split; a study of synthetic images has no CIFAR-100 split to export.
    """
    from hpo.data import download_cifar100, read_cifar100, resolve_source
    from hpo.evaluate import resolved_params

    trial = _chosen(study, number)
    params = resolved_params(trial, spec)
    # Checked before `--data`, which a synthetic study refuses: one line names the real problem.
    if spec.data.dataset == "synthetic":
        raise HpoError(
            f"study '{study.study_name}' trains on synthetic images; a Keras export trains on "
            "CIFAR-100 and needs a study of it"
        )
    source = resolve_source(spec.data, data_path)
    arrays = download_cifar100() if source == "keras" else read_cifar100(Path(source))
    # An ablation's runs are scored by validation accuracy, whatever the study's metric.
    metric = "val_accuracy" if study.user_attrs.get(FIXED_ONLY) else spec.metric
    state = f"{trial.state.name}, " + (
        "no value" if trial.value is None else f"{metric} {trial.value:.4f}"
    )
    ran, budget = trial.user_attrs.get("n_epochs"), int(params["epochs"])
    if trial.state != TrialState.COMPLETE and isinstance(ran, int) and ran < budget:
        # No pruner here: the script trains the whole budget the trial was cut short of.
        state += f", after {ran} of {budget} epochs; this script trains all {budget}"
    title = f"Trial {trial.number} of study '{study.study_name}' ({state})"
    return keras_script(
        params,
        int(trial.user_attrs["seed"]),
        spec.data,
        split_masks(arrays.y_train, spec.data),
        title,
        metric,
    )


def _chosen(study: optuna.Study, number: int | None) -> FrozenTrial:
    if number is None:
        chosen = best_complete(study.get_trials(deepcopy=False), study.direction)
        if chosen is None:
            raise HpoError(f"study '{study.study_name}' has no complete trial to export")
    else:
        found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not found:
            raise HpoError(f"study '{study.study_name}' has no trial {number}")
        chosen = found[0]
    # A trial of a spec that searches nothing, or an ablation's run, has no Optuna params:
    # what it trained is its recorded params or the spec's fixed values, from its seed.
    if chosen.state == TrialState.WAITING or "seed" not in chosen.user_attrs:
        raise HpoError(
            f"trial {chosen.number} of study '{study.study_name}' holds no training seed: it "
            "never started training, or another program wrote it"
        )
    return chosen

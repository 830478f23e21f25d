"""Does the fused Adam update train as well as Keras's? Paired seeds, whole lesson trials.

    .venv/bin/python -m benchmarks.fused_adam [--seeds 6] [--epochs 20]

The fused kernel rounds two constants differently (`hpo/optimizers.py`), so from one seed the
two optimizers follow different paths. This trains the lesson's trial (45,000 images, batch
100) from each seed with both, in alternating order, and judges the paired difference of the
final validation accuracy as `hpo ablate` judges a technique (a 95% t interval; "no effect"
when it lies within +-0.5 points), and the steady epoch time of each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import DEFAULT_DATA, Timing, hpo_trial, keras_adam, load_cifar, spread


def run(data: object, epochs: int, seed: int, fused: bool) -> Timing:
    with contextlib.nullcontext() if fused else keras_adam():
        return hpo_trial(data, epochs, seed, label="fused" if fused else "keras")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)

    from hpo.stats import judge, paired_effect

    print(f"load average at start: {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    data = load_cifar(args.data)
    runs: dict[bool, list[Timing]] = {True: [], False: []}
    for seed in range(1, args.seeds + 1):
        for fused in (True, False) if seed % 2 else (False, True):
            runs[fused].append(run(data, args.epochs, seed, fused))
            t = runs[fused][-1]
            print(
                f"  seed {seed} {'fused' if fused else 'keras'}: val_accuracy "
                f"{t.val_accuracy:.4f}, steady epoch {t.epoch_s:.2f} s",
                flush=True,
            )
    fused_acc = [100 * t.val_accuracy for t in runs[True]]
    keras_acc = [100 * t.val_accuracy for t in runs[False]]
    effect = paired_effect(fused_acc, keras_acc)
    (verdict,) = judge([effect])
    speed = [f.epoch_s / k.epoch_s for f, k in zip(runs[True], runs[False], strict=True)]
    print(
        f"\n{args.seeds} seeds, {args.epochs} epochs; load average at the end "
        f"{[round(x, 2) for x in os.getloadavg()]}\n\n"
        "| quantity | value |\n| --- | --- |\n"
        f"| validation accuracy, Keras's Adam (%) | {spread(keras_acc)} |\n"
        f"| validation accuracy, fused Adam (%) | {spread(fused_acc)} |\n"
        f"| fused minus Keras, points: mean [95% t interval] | {effect.mean:+.2f} "
        f"[{effect.low:+.2f}, {effect.high:+.2f}], sd {effect.sd:.2f} |\n"
        f"| verdict (as `hpo ablate` judges, +-0.5 points) | {verdict.label}"
        + (f", {verdict.n_seeds_needed} seeds would settle it" if verdict.n_seeds_needed else "")
        + " |\n"
        f"| steady epoch, fused / Keras (within a seed) | {spread(speed)} |\n"
        f"| steady epoch s, Keras / fused | "
        f"{statistics.median(k.epoch_s for k in runs[False]):.2f} / "
        f"{statistics.median(f.epoch_s for f in runs[True]):.2f} |"
    )


if __name__ == "__main__":
    main()

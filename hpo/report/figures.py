"""The report's figures: small PNGs drawn with matplotlib's Agg backend from plain numbers."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpo.plots import pyplot, save_png
from hpo.report.probes import LayerActivations

DPI = 180
"""7-inch figures come out 1,260 px wide."""
TOP_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def _save(fig: Any, path: Path, dpi: int = DPI) -> Path:
    return save_png(fig, path, dpi)


def plot_history(
    complete: Sequence[tuple[int, float]],
    pruned: Sequence[tuple[int, float]],
    direction: str,
    metric: str,
    path: Path,
) -> Path:
    """Each complete trial's value, pruned trials at their last report, and the best so far."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if pruned:
        x, y = zip(*pruned, strict=True)
        ax.scatter(x, y, s=10, marker="x", color="0.6", label="pruned (last report)")
    x, y = zip(*complete, strict=True)
    ax.scatter(x, y, s=12, color="tab:blue", label="complete")
    best = (np.maximum if direction == "maximize" else np.minimum).accumulate(np.asarray(y))
    ax.step(x, best, where="post", color="tab:red", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title="Optimization history")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_curves(
    top: Sequence[tuple[str, Sequence[float]]],
    pruned: Sequence[Sequence[float]],
    metric: str,
    path: Path,
) -> Path:
    """Per-epoch validation curves of the top trials over those of pruned trials."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, curve in enumerate(pruned):
        ax.plot(
            range(1, len(curve) + 1),
            curve,
            color="0.7",
            lw=0.8,
            label="pruned" if i == 0 else None,
        )
    for (label, curve), color in zip(top, TOP_COLORS, strict=False):
        ax.plot(range(1, len(curve) + 1), curve, color=color, lw=1.6, label=label)
    title = "Validation curves: top trials" + (" and pruned ones" if pruned else "")
    ax.set(xlabel="epoch", ylabel=metric, title=title)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_importances(importances: Mapping[str, float], evaluator: str, path: Path) -> Path:
    """Horizontal bars, most important at the top."""
    plt = pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance", title=f"Parameter importances ({evaluator})")
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def plot_learning_rates(
    series: Sequence[tuple[str, np.ndarray, np.ndarray, int]], path: Path
) -> Path:
    """Learning rate over optimizer steps; solid up to where the trial stopped, faint after."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (label, steps, rates, stopped), color in zip(series, TOP_COLORS, strict=False):
        ran = steps <= stopped
        ax.plot(steps[ran], rates[ran], color=color, lw=1.6, label=label)
        ax.plot(steps[~ran], rates[~ran], color=color, lw=1.0, alpha=0.35)
    ax.set(xlabel="training step", ylabel="learning rate", title="Learning-rate schedules")
    ax.set_yscale("log")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_activations(
    grid: Mapping[tuple[str, str], Sequence[LayerActivations]],
    initializers: Sequence[str],
    activations: Sequence[str],
    path: Path,
    own_activations: Sequence[str] = (),
) -> Path:
    """Histograms of hidden-layer outputs at initialization: one row per initializer, one
    column per (activation, layer), each column on one x scale; activations the model does
    not use are labelled "what-if"."""
    plt = pyplot()
    columns = [(a, i) for a in activations for i in range(len(grid[initializers[0], a]))]
    own = set(own_activations or activations)
    fig, axes = plt.subplots(
        len(initializers),
        len(columns),
        figsize=(2.1 * len(columns), 1.5 * len(initializers) + 0.4),
        squeeze=False,
        sharex="col",
    )
    for row, initializer in enumerate(initializers):
        for col, (activation, layer) in enumerate(columns):
            probe = grid[initializer, activation][layer]
            ax = axes[row][col]
            # ReLU-like outputs pile up at 0; the title gives that share, the bars the rest.
            bounded = activation in ("tanh", "sigmoid")
            shown = probe.values if bounded else probe.values[probe.values > 0]
            counts, edges = np.histogram(shown, bins=40)
            ax.stairs(counts, edges, fill=True, color="tab:blue")
            ax.set_yticks([])
            ax.tick_params(axis="x", labelsize=6)
            ax.set_title(f"sd {probe.std:.2g}, flat {probe.saturated(activation):.0%}", fontsize=7)
            if row == 0:
                ax.annotate(
                    f"{activation}{'' if activation in own else ' (what-if)'}, {probe.layer}"
                    + ("" if bounded else " (outputs > 0)"),
                    (0.5, 1.35),
                    xycoords="axes fraction",
                    ha="center",
                    fontsize=8,
                    weight="bold",
                )
            if col == 0:
                ax.set_ylabel(initializer, fontsize=7)
    return _save(fig, path)


WIDE = (12, 5)
WIDE_DPI = 100
"""Figures a reader compares across: 1,200 px wide at least."""
VERDICT_COLORS = {
    "helps": "tab:green",
    "hurts": "tab:red",
    "no effect": "tab:gray",
    "inconclusive": "tab:orange",
    "pending": "tab:blue",
}


def plot_effects(
    groups: Sequence[tuple[str, Sequence[tuple[str, float, float, float, str]]]],
    delta: float,
    path: Path,
    confidence: str = "95%",
) -> Path:
    """Paired differences in points with their family-wise `confidence` intervals, one panel
    per design, colored by verdict; the band is the margin of "no effect"."""
    return _save(effects_figure(groups, delta, confidence), path, WIDE_DPI)


def effects_figure(
    groups: Sequence[tuple[str, Sequence[tuple[str, float, float, float, str]]]],
    delta: float,
    confidence: str = "95%",
) -> Any:
    plt = pyplot()
    heights = [max(2, len(rows)) for _, rows in groups]
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(WIDE[0], 0.45 * sum(heights) + 1.6 * len(groups)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (design, rows) in zip(axes[:, 0], groups, strict=True):
        y = np.arange(len(rows))
        for i, (_, mean, low, high, label) in enumerate(rows):
            color = VERDICT_COLORS.get(label, "black")
            if not (np.isfinite(low) and np.isfinite(high)):
                ax.plot(mean, i, "x", color=color, markersize=9, mew=2)  # no interval yet
                continue
            ax.errorbar(
                mean,
                i,
                xerr=[[max(0.0, mean - low)], [max(0.0, high - mean)]],
                fmt="o",
                color=color,
                capsize=4,
                lw=2,
            )
        ax.axvline(0, color="black", lw=1)
        ax.axvspan(-delta, delta, color="0.85", zorder=0)
        ax.set_yticks(y, [name for name, *_ in rows], fontsize=11)
        ax.set_xlabel("test accuracy, with minus without (percentage points; higher is better)")
        ax.set_title(
            f"{design}: mean paired difference over seeds, family-wise {confidence} interval",
            fontsize=12,
        )
    shown = {label for _, rows in groups for *_, label in rows}
    handles = [
        plt.Line2D([], [], color=c, marker="o", ls="", label=v)
        for v, c in VERDICT_COLORS.items()
        if v != "pending" or v in shown  # pending: only while an ablation's runs are missing
    ]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.85", label=f"±{delta:.1f} pp"))
    axes[0, 0].legend(handles=handles, loc="best", fontsize=10)
    return fig


def plot_expected_best(
    n: Sequence[int], mean: Sequence[float], sd: Sequence[float], metric: str, path: Path
) -> Path:
    """Expected best validation score of a study of n trials, with +-1 sd."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=WIDE)
    m, s = np.asarray(mean), np.asarray(sd)
    ax.plot(n, m, color="tab:blue", lw=2, label="expected best of n trials")
    ax.fill_between(n, m - s, m + s, color="tab:blue", alpha=0.2, label="± 1 sd")
    ax.set_xlabel("trials in the study (n)", fontsize=12)
    ax.set_ylabel(f"best {metric}", fontsize=12)
    ax.set_title("Expected best validation score against the number of trials", fontsize=13)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="lower right", fontsize=11)
    return _save(fig, path, WIDE_DPI)


def plot_gaps(
    panels: Sequence[tuple[str, Mapping[str, Mapping[str, np.ndarray]]]], path: Path
) -> Path:
    """Training and validation accuracy over epochs, with and without each technique.

    Each panel maps "with"/"without" to {"accuracy": runs x epochs, "val_accuracy": ...}
    (NaN past a run's last epoch); lines are means over seeds, bands their min-max.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    n_cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(max(WIDE[0], 5 * n_cols), 3.6 * n_rows + 0.6),
        squeeze=False,
        sharey=True,
    )
    styles = {"with": "tab:blue", "without": "0.45"}
    for ax, (title, sides) in zip(axes.flat, panels, strict=False):
        for side, curves in sides.items():
            for metric, dash, what in (("accuracy", "-", "train"), ("val_accuracy", "--", "val")):
                runs = curves[metric]
                epochs = np.arange(1, runs.shape[1] + 1)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = np.nanmean(runs, axis=0)
                    low, high = np.nanmin(runs, axis=0), np.nanmax(runs, axis=0)
                ax.plot(epochs, mean, dash, color=styles[side], lw=2, label=f"{what}, {side}")
                ax.fill_between(epochs, low, high, color=styles[side], alpha=0.12)
        ax.set_title(title, fontsize=12)
        ax.set_xlabel("epoch", fontsize=11)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (higher is better)", fontsize=11)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="upper left", fontsize=9)
    fig.suptitle(
        # Two lines: one is wider than a figure of two panels.
        "The overfitting gap: training (solid) and validation (dashed) accuracy,\n"
        "with the technique (blue) and without (grey); mean over seeds, band min-max",
        fontsize=12,
    )
    return _save(fig, path, WIDE_DPI)


def plot_anytime(
    epochs: Sequence[float],
    seconds: Sequence[float],
    best: Sequence[float],
    metric: str,
    path: Path,
) -> Path:
    """Best value so far against epochs trained by all trials (left) and wall time (right)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=WIDE, sharey=True)
    for ax, xs, label in (
        (axes[0], epochs, "epochs trained by all trials together"),
        (axes[1], [s / 60 for s in seconds], "wall minutes since the first trial started"),
    ):
        ax.step(xs, best, where="post", color="tab:blue", lw=2)
        ax.plot(xs, best, "o", color="tab:blue", ms=3)
        ax.set_xlabel(label, fontsize=12)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"best {metric} so far", fontsize=12)
    fig.suptitle("What the search found for what it spent", fontsize=13)
    return _save(fig, path, WIDE_DPI)

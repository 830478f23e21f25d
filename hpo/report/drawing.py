"""Which figures a report gets, the numbers behind each, and their section of the report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from hpo.evaluate import resolved_params
from hpo.report import figures
from hpo.report.markdown import table
from hpo.space import INITIALIZERS, KNOBS

if TYPE_CHECKING:
    from hpo.report.facts import Facts

N_TOP_CURVES = 5
MAX_PRUNED_CURVES = 100
N_PROBE_IMAGES = 512
COMPARED_ACTIVATIONS = ("relu", "tanh")
"""Shown beside the study's own activation: the classic contrast of He and Glorot."""


def draw_figures(
    facts: Facts, figures_dir: Path, data_path: Path | None, activations: bool = False
) -> None:
    """Draw every figure that applies to the study; record its path or why it is missing."""
    from hpo.report.facts import curve

    spec, folder = facts.spec, figures_dir.name

    def saved(key: str, path: Path) -> None:
        facts.figures[key] = f"{folder}/{path.name}"

    complete = sorted(facts.complete, key=lambda t: t.number)
    pruned = [t for t in facts.trials if t.state == TrialState.PRUNED]
    last_reports = [(t.number, _last(curve(t, spec.metric))) for t in pruned]
    saved(
        "history",
        figures.plot_history(
            [(t.number, float(t.value)) for t in complete],  # type: ignore[arg-type]
            [(n, v) for n, v in last_reports if math.isfinite(v)],
            spec.direction,
            spec.metric,
            figures_dir / "history.png",
        ),
    )
    top = [(_label(t), curve(t, spec.metric)) for t in facts.complete[:N_TOP_CURVES]]
    stride = max(1, math.ceil(len(pruned) / MAX_PRUNED_CURVES))
    saved(
        "curves",
        figures.plot_curves(
            top,
            [curve(t, spec.metric) for t in pruned[::stride]],
            spec.metric,
            figures_dir / "curves.png",
        ),
    )
    if facts.ablation is not None and facts.ablation.rows:
        from hpo.report.ablation_section import draw_effects

        saved("effects", draw_effects(facts.ablation, figures_dir / "effects.png"))
        from hpo.ablation import DESIGNS
        from hpo.report.ablation_section import draw_gaps

        for design in DESIGNS:
            drawn = draw_gaps(
                facts.ablation, facts.ablation_runs, design, figures_dir / f"gap_{design}.png"
            )
            if drawn is not None:
                saved(f"gap_{design}", drawn)
    from hpo.report.facts import anytime

    spent = anytime(facts.trials, spec.direction == "maximize")
    if not facts.only_experiments and sum(v == v for v in spent.best) >= 2:
        saved(
            "anytime",
            figures.plot_anytime(
                spent.epochs, spent.seconds, spent.best, spec.metric, figures_dir / "anytime.png"
            ),
        )
    values = [float(t.value) for t in facts.complete]  # type: ignore[arg-type]
    values += [v for _, v in last_reports if math.isfinite(v)]
    if len(values) >= 2 and not facts.only_experiments:
        from hpo.stats import expected_best

        n, mean, sd = expected_best(values, len(values), spec.direction == "maximize")
        facts.expected_best_n = len(values)
        saved(
            "expected_best",
            figures.plot_expected_best(n, mean, sd, spec.metric, figures_dir / "expected_best.png"),
        )
    if facts.importances and not facts.only_experiments:
        saved(
            "importances",
            figures.plot_importances(
                facts.importances, facts.evaluator, figures_dir / "importances.png"
            ),
        )
    saved("learning_rates", _draw_learning_rates(facts, figures_dir / "learning_rates.png"))
    if "initializer" in spec.searched() and not activations:
        facts.figure_notes["activations"] = (
            "not drawn: `hpo report --activations` draws them (it loads the image data and "
            "builds untrained models)"
        )
    elif "initializer" in spec.searched():
        # Asked for: data that cannot be loaded fails the report, in one line.
        saved("activations", _draw_activations(facts, figures_dir / "activations.png", data_path))


def _last(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return finite[-1] if finite else math.nan


def _label(trial: Any) -> str:
    name = trial.user_attrs.get("experiment")
    return f"#{trial.number}{f' {name}' if name else ''} (val {trial.value:.3f})"


def _draw_learning_rates(facts: Facts, path: Path) -> Path:
    """The best trial of each schedule type, best first."""
    from hpo.report.probes import learning_rates, n_train_images

    n_train = n_train_images(facts.spec.data)
    series, seen = [], set()
    for trial in facts.complete:
        params = resolved_params(trial, facts.spec)
        if params["schedule"] in seen:
            continue
        seen.add(params["schedule"])
        steps_per_epoch = math.ceil(n_train / int(params["batch_size"]))
        steps, rates = learning_rates(params, steps_per_epoch)
        stopped = int(trial.user_attrs.get("n_epochs", params["epochs"])) * steps_per_epoch
        series.append((f"{_label(trial)} {params['schedule']}", steps, rates, stopped))
        if len(series) == N_TOP_CURVES:
            break
    return figures.plot_learning_rates(series, path)


def probe_initializers(facts: Facts) -> list[tuple[str, dict[str, Any]]]:
    """(label, overrides) for each initializer the spec searches, random_normal per stddev."""
    spec = facts.spec
    dist = spec.searched()["initializer"]
    choices = dist.choices if isinstance(dist, CategoricalDistribution) else ()
    stddev = spec.space.get("init_stddev", KNOBS["init_stddev"].default)
    if isinstance(stddev, CategoricalDistribution):
        stddevs = sorted(float(s) for s in stddev.choices)  # type: ignore[arg-type]
    elif isinstance(stddev, FloatDistribution):
        stddevs = [stddev.low, stddev.high]
    else:
        stddevs = [float(stddev)]  # type: ignore[arg-type]
    found = []
    for name in sorted(choices, key=lambda c: INITIALIZERS.index(str(c))):
        if name == "random_normal":
            found += [
                (f"random_normal sd {s:g}", {"initializer": name, "init_stddev": s})
                for s in stddevs
            ]
        else:
            found.append((str(name), {"initializer": name}))
    return found


def _draw_activations(facts: Facts, path: Path, data_path: Path | None) -> Path:
    """Hidden-layer outputs at initialization on real training images, per initializer."""
    from hpo.data import load_dataset
    from hpo.report.probes import initial_activations

    spec = facts.spec
    data = load_dataset(spec.data, data_path)
    x = data.x_train[:N_PROBE_IMAGES]
    facts.probe_images = len(x)
    base = resolved_params(facts.complete[0], spec)
    activation = spec.space.get("activation", KNOBS["activation"].default)
    own = (
        list(activation.choices)
        if isinstance(activation, CategoricalDistribution)
        else [activation]
    )
    activations = [str(a) for a in dict.fromkeys([*own, *COMPARED_ACTIVATIONS])][:3]
    rows = probe_initializers(facts)
    grid = {}
    for label, overrides in rows:
        for act in activations:
            params = {**base, **overrides, "activation": act}
            layers = initial_activations(params, x, data.n_classes, seed=spec.seed)
            grid[label, act] = layers
            facts.activation_rows.append(
                [label, act] + [f"{p.std:.3g} ({p.saturated(act):.0%})" for p in layers]
            )
    return figures.plot_activations(
        grid, [label for label, _ in rows], activations, path, own_activations=[str(a) for a in own]
    )


def figure_section(facts: Facts) -> list[str]:
    """The report's Figures section, for figures `draw_figures` made."""
    figs, notes = facts.figures, facts.figure_notes
    n_pruned = sum(t.state.name == "PRUNED" for t in facts.trials)
    lines = [
        "## Figures",
        "### Optimization history",
        f"![Optimization history]({figs['history']})",
        "### Validation curves",
        f"The {min(5, len(facts.complete))} best complete trials in colour; "
        + (
            f"{n_pruned} pruned trials in grey (at most 100 drawn), each ending where the "
            "pruner stopped it."
            if n_pruned
            else "no trial was pruned."
        ),
        f"![Validation curves]({figs['curves']})",
        "### Learning-rate schedules",
        "The best trial of each schedule type over its epoch budget in training steps, as "
        "`hpo.model.build_schedule` builds it; faint where the trial had already stopped.",
        f"![Learning-rate schedules]({figs['learning_rates']})",
    ]
    if "activations" in figs or "activations" in notes:
        lines.append("### Activations at initialization")
    if "activations" in figs:
        n_layers = max(len(r) for r in facts.activation_rows) - 2
        lines += [
            "Outputs of each hidden layer of the best trial's architecture, freshly "
            f"initialized, on a batch of {facts.probe_images} training images: standard "
            "deviation and, in "
            "brackets, the share of flat outputs (ReLU-like: at or below 0, left out of the "
            "histograms; tanh: |a| > 0.99). The classic expectation, which these numbers "
            "check: a stddev-1 normal initializer saturates tanh and blows up ReLU outputs, "
            "Glorot keeps tanh in range, He keeps ReLU outputs from shrinking layer by layer.",
            table(
                ["initializer", "activation", *[f"dense_{i + 1}" for i in range(n_layers)]],
                facts.activation_rows,
            ),
            f"![Activations at initialization]({figs['activations']})",
        ]
    elif "activations" in notes:
        lines.append(f"Activation histograms {notes['activations']}.")
    return lines

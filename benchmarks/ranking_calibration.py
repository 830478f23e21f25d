"""How often the ranking's intervals lie, on studies whose true effects are known.

    .venv/bin/python -m benchmarks.ranking_calibration [--n-studies 40] [--n-trials 100 300]

Each study draws the regularization spec's params at random and gives three techniques a set
effect (dropout +0.05, cosine schedule +0.02, random_normal initializer -0.10, noise sd 0.01);
every other technique has none. For the difference of means (what `hpo.ranking` uses) and of
medians, it counts intervals that exclude zero: for no-effect techniques that is the false
alarm rate (95% intervals should give about 5%), for the three real effects it is the power.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

EFFECTS = {"dropout": 0.05, "schedule=cosine": 0.02, "initializer=random_normal": -0.1}
STATISTICS: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "median": np.median}


def interval(a: np.ndarray, b: np.ndarray, stat: Callable[..., np.ndarray], seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    sa = stat(a[rng.integers(0, len(a), (2000, len(a)))], axis=1)
    sb = stat(b[rng.integers(0, len(b), (2000, len(b)))], axis=1)
    return tuple(np.percentile(sa - sb, [2.5, 97.5]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-studies", type=int, default=40)
    parser.add_argument("--n-trials", type=int, nargs="+", default=[100, 300])
    args = parser.parse_args(argv)
    import optuna

    from hpo.fake_study import add_fake_trials
    from hpo.ranking import MIN_TRIALS, find_techniques, trial_params
    from hpo.spec import load_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(Path(__file__).resolve().parents[1] / "studies" / "regularization.toml")
    techniques = find_techniques(spec)
    print(f"{'trials':>6} {'statistic':<9} {'false alarms':>16} {'power':>12}")
    for n_trials in args.n_trials:
        counts = {name: [0, 0, 0, 0] for name in STATISTICS}
        for s in range(args.n_studies):
            study = optuna.create_study(direction="maximize")
            add_fake_trials(study, spec, n_trials, EFFECTS, noise=0.01, seed=1000 + s)
            trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            for k, t in enumerate(techniques):
                a = np.array([x.value for x in trials if t.uses(trial_params(x))])
                b = np.array([x.value for x in trials if t.is_baseline(trial_params(x))])
                if min(len(a), len(b)) < MIN_TRIALS:
                    continue
                real = t.name in EFFECTS
                for name, stat in STATISTICS.items():
                    low, high = interval(a, b, stat, seed=s * 100 + k)
                    counts[name][2 * real] += bool(low > 0 or high < 0)
                    counts[name][2 * real + 1] += 1
        for name, (fa, n_null, hits, n_real) in counts.items():
            print(
                f"{n_trials:>6} {name:<9} {fa:>4}/{n_null:<4} {fa / n_null:5.1%} "
                f"{hits:>4}/{n_real:<4} {hits / n_real:4.0%}"
            )


if __name__ == "__main__":
    main()

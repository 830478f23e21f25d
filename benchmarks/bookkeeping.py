"""What hpo's study loop adds per trial on a large study, against Optuna's own loop.

    .venv/bin/python -m benchmarks.bookkeeping [--n-trials 10000] [--runs 30] [--storage URL]

Builds a study of N made-up finished trials (`hpo.testing.fake_trials`, curves included, as
real trials carry them, written at once by `benchmarks.bulk`) in a SQLite file (or the given
storage), loads it once, and runs `--runs` more trials whose objective returns at once, in
`--rounds` rounds: through Optuna's own `study.optimize`, then through `hpo.optimize.optimize` (the
target check before each trial, the surplus check inside it, the failure streak) on the same
study. Both use the random sampler, so the sampler's cost is the same; the difference per trial
is hpo's bookkeeping. Also timed: `load_study`, one `count` at N trials, and the first trial in
a fresh process (where Optuna reads the whole study into its cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import mean_interval
from benchmarks.report_scale import spec_text


def build(url: str, n_trials: int) -> float:
    import optuna

    from benchmarks.bulk import write_trials
    from hpo.spec import load_spec_text
    from hpo.study import create_study
    from hpo.testing import fake_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec_text(spec_text().replace("report-scale", "bookkeeping"))
    start = time.perf_counter()
    create_study(spec, url)
    trials = fake_trials(spec, n_trials, {"dropout": 0.03}, pruned_share=0.3, seed=1)
    write_trials(url, spec.name, trials)
    return time.perf_counter() - start


def timings(url: str, runs: int, rounds: int) -> tuple[float, list[tuple[float, float]]]:
    """The first trial of a freshly loaded study (Optuna's first read of it included), then
    `rounds` pairs of seconds per trial of `runs` instant trials on that same study: Optuna's
    own loop, then hpo's."""
    import optuna

    from hpo.optimize import optimize
    from hpo.study import count, load_study

    study, _ = load_study("bookkeeping", url, heartbeat_interval=None)
    study.sampler = optuna.samplers.RandomSampler(seed=runs)

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True)

    def loop(n: int, hpo_loop: bool) -> float:
        start = time.perf_counter()
        if hpo_loop:
            optimize(study, objective, count(study) + n)
        else:
            study.optimize(objective, n_trials=n)
        return time.perf_counter() - start

    first = loop(1, hpo_loop=True)
    pairs = [(loop(runs, False) / runs, loop(runs, True) / runs) for _ in range(rounds)]
    return first, pairs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storage", help="default: a SQLite file in a temporary folder")
    args = parser.parse_args(argv)
    import optuna

    from hpo.storage import open_storage
    from hpo.study import count, load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.storage or f"sqlite:///{Path(tmp) / 'bookkeeping.db'}"
        print(f"load average at start: {[round(x, 2) for x in os.getloadavg()]}", flush=True)
        print(f"built {args.n_trials} trials in {build(url, args.n_trials):.0f} s", flush=True)
        start = time.perf_counter()
        study, _ = load_study("bookkeeping", url, heartbeat_interval=None)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        n = count(study)
        counted = time.perf_counter() - start
        print(f"load_study {loaded:.2f} s; count() of {n} finished trials {counted * 1000:.0f} ms")
        first, pairs = timings(url, args.runs, args.rounds)
        extra = [h - o for o, h in pairs]
        print(f"first trial in a fresh process (Optuna reads the whole study): {first:.1f} s")
        print(
            f"per trial at {args.n_trials}+ trials: Optuna's loop "
            f"{statistics.median(o for o, _ in pairs) * 1000:.0f} ms, hpo's loop "
            f"{statistics.median(h for _, h in pairs) * 1000:.0f} ms; hpo's bookkeeping "
            f"{statistics.median(extra) * 1000:.0f} ms per trial (median of the rounds), "
            f"{mean_interval([e * 1000 for e in extra], 0, ' ms')} "
            "(mean, 95% t interval over the rounds); "
            f"rounds: {', '.join(f'{e * 1000:.0f}' for e in extra)} ms; "
            f"load average at the end: {[round(x, 2) for x in os.getloadavg()]}"
        )
        if args.storage:
            optuna.delete_study(study_name="bookkeeping", storage=open_storage(args.storage))


if __name__ == "__main__":
    main()

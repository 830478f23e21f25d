"""Anytime search: the best validation score each sampler/pruner strategy holds per epoch trained.

    .venv/bin/python -m benchmarks.search run [--strategies a,b] [--seeds 1,2,3] [--budget 400]
        [--threads N] [--workers N] [--out docs/search-runs.jsonl] [--data PATH] [--tiny]
    .venv/bin/python -m benchmarks.search summary docs/search-runs.jsonl [--figure docs/search.png]

What a user pays for a search is training epochs; what they get is the best validation score so
far. `run` runs `studies/regularization.toml` (its search space, data and budget per trial) with
each strategy's sampler, pruner and start-up queue, once per study seed, through the shipped
path (`hpo.study.create_study`, `hpo.optimize.optimize` on a SQLite file), until the trials
together have trained `--budget` epochs. Each finished study appends one JSON line (every trial:
epochs it trained, state, value, wall time), so a long run keeps what it has done and several
processes can share the work. With `--workers N` each study runs in N worker processes on
one SQLite file (as `hpo study run --workers N` does), each with `--threads` threads, and its
trials are counted in the order they ended, so the curve shows what N workers buy per epoch.
`summary` prints the best-so-far table (median and range over
seeds at fixed epoch counts, and wall time) and draws the curves.

A trial's score is the validation accuracy of the model it ends with; only complete trials
count towards the best (as `study.best_value`), pruned ones cost their epochs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA, REPO

SPEC_FILE = REPO / "studies" / "regularization.toml"
CHECKPOINTS = (100, 200, 300, 400, 600)

# Sound starting points a practitioner would try first: the spec's own start-up queue (the
# lesson's baseline and three textbook set-ups, not taken from any study's results).
DEFAULTS_FIRST = "\n[[enqueue]]" + SPEC_FILE.read_text().split("\n[[enqueue]]", 1)[1]

_TPE_GROUPED = 'type = "tpe"\nmultivariate = true\ngroup = true\nconstant_liar = true\n'
_MEDIAN = 'type = "median"\nn_startup_trials = 5\nn_warmup_steps = 2\n'
# Median rule that waits out warm-up schedules (up to 2,000 steps: 4.4 epochs) before it judges.
_PATIENT_MEDIAN = 'type = "median"\nn_startup_trials = 5\nn_warmup_steps = 5\n'
_HALVING = 'type = "successive_halving"\nmin_resource = 1\nreduction_factor = 3\n'
_HYPERBAND = 'type = "hyperband"\nmin_resource = 1\nmax_resource = 20\nreduction_factor = 3\n'

# The spec before this benchmark chose its strategy: TPE after 10 random trials, median rule.
_EARLIER = ('type = "tpe"\nn_startup_trials = 10\n', _MEDIAN)

# name -> (sampler table, pruner table, start-up queue).
STRATEGIES: dict[str, tuple[str, str, str]] = {
    "tpe-median": (*_EARLIER, ""),
    "random": ('type = "random"\n', _MEDIAN, ""),
    "tpe-halving": (_TPE_GROUPED + "n_startup_trials = 5\n", _HALVING, ""),
    "tpe-hyperband": (_TPE_GROUPED + "n_startup_trials = 5\n", _HYPERBAND, ""),
    "defaults-tpe-halving": (
        _TPE_GROUPED + "n_startup_trials = 5\n",
        _HALVING,
        DEFAULTS_FIRST,
    ),
    "defaults-tpe-median": (
        _TPE_GROUPED + "n_startup_trials = 5\n",
        _PATIENT_MEDIAN,
        DEFAULTS_FIRST,
    ),
}

# A tiny form for CI: the same strategies on synthetic images, a few epochs per trial.
TINY_DATA = """[data]
dataset = "synthetic"
n_samples = 1000
n_classes = 5
image_size = 8
validation_fraction = 0.2
"""


def strategy_spec(base: str, strategy: str, seed: int, tiny: bool = False) -> str:
    """The spec text of `strategy`: `base` with its sampler, pruner and queue swapped in."""
    sampler, pruner, queue = STRATEGIES[strategy]
    base = base.split("\n[[enqueue]]")[0]  # the spec's own start-up queue is a strategy too
    text = _replace_table(base, "sampler", sampler)
    text = _replace_table(text, "pruner", pruner)
    text = re.sub(r"(?m)^seed = \d+$", f"seed = {seed}", text, count=1)
    text = re.sub(r"(?m)^name = .*$", f'name = "search-{seed}"', text, count=1)
    if tiny:
        text = _replace_table(text, "data", TINY_DATA.split("\n", 1)[1])
        text = re.sub(r"(?m)^epochs = \d+$", "epochs = 4", text)
        # A warm-up past 4 epochs could prune nothing, and such a spec is refused.
        text = re.sub(r"(?m)^n_warmup_steps = \d+$", "n_warmup_steps = 2", text)
    # The queue must follow [params] (an array of tables ends the table before it).
    return text.rstrip() + "\n" + queue


def _replace_table(text: str, table: str, body: str) -> str:
    """`text` with the body of `[table]` replaced by `body`."""
    pattern = re.compile(rf"(?ms)^\[{table}\]\n.*?(?=^\[|\Z)")
    if not pattern.search(text):
        raise ValueError(f"the spec has no [{table}] table")
    return pattern.sub(lambda _: f"[{table}]\n{body}\n", text, count=1)


class BudgetSpent(Exception):
    """Raised by the budget callback to end a study once its trials trained enough epochs."""


def run_one(
    strategy: str,
    seed: int,
    budget: int,
    data_path: Path | None,
    tiny: bool = False,
    workers: int = 1,
    threads: int = 0,
) -> dict[str, Any]:
    """Run one study of `strategy` with study seed `seed` until `budget` epochs are trained."""
    if workers > 1:
        return _run_workers(strategy, seed, budget, data_path, tiny, workers, threads)
    import optuna

    from hpo.data import load_dataset
    from hpo.objective import make_objective
    from hpo.optimize import optimize
    from hpo.spec import load_spec_text
    from hpo.study import create_study, load_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = load_spec_text(strategy_spec(SPEC_FILE.read_text(), strategy, seed, tiny), strategy)
    data = load_dataset(spec.data, None if tiny else data_path)
    trials: list[dict[str, Any]] = []
    start = time.perf_counter()
    cpu = time.process_time()

    def account(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trials.append(_record(trial, time.perf_counter() - start))
        if sum(t["epochs"] for t in trials) >= budget:
            raise BudgetSpent

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/search.db"
        create_study(spec, url)
        study, spec = load_study(spec.name, url)
        with contextlib.suppress(BudgetSpent):
            optimize(study, make_objective(spec, data), None, callbacks=[account])
    return {
        "strategy": strategy,
        "seed": seed,
        "budget": budget,
        "tiny": tiny,
        "workers": 1,
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "load_start": os.getloadavg()[0],
        "trials": trials,
    }


def _run_workers(
    strategy: str,
    seed: int,
    budget: int,
    data_path: Path | None,
    tiny: bool,
    workers: int,
    threads: int,
) -> dict[str, Any]:
    """`run_one` in `workers` processes sharing one SQLite study until all their trials
    together trained `budget` epochs; trials listed in the order they ended."""
    import multiprocessing
    import resource

    from hpo.spec import load_spec_text
    from hpo.study import create_study, load_study

    text = strategy_spec(SPEC_FILE.read_text(), strategy, seed, tiny)
    spec = load_spec_text(text, strategy)
    load = os.getloadavg()[0]
    began, start = datetime.now(), time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/search.db"
        create_study(spec, url)
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=_search_worker,
                args=(spec.name, url, None if tiny else data_path, budget, threads),
            )
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"search workers exited with {failed}")
        study, _ = load_study(spec.name, url)
        ended = sorted(
            (t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None),
            key=lambda t: t.datetime_complete,
        )
        trials = [_record(t, (t.datetime_complete - began).total_seconds()) for t in ended]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "strategy": strategy,
        "seed": seed,
        "budget": budget,
        "tiny": tiny,
        "workers": workers,
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(used.ru_utime + used.ru_stime - children.ru_utime - children.ru_stime, 1),
        "load_start": load,
        "trials": trials,
    }


def _search_worker(name: str, url: str, data_path: Path | None, budget: int, threads: int) -> None:
    """One worker process: trials of the study until all workers' trials trained `budget`."""
    if threads:
        from hpo.workers import THREAD_VARIABLES

        for variable in THREAD_VARIABLES:  # before numpy and TensorFlow size their pools
            os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import optuna

    from benchmarks.common import start_tensorflow
    from hpo.data import load_dataset
    from hpo.objective import make_objective
    from hpo.optimize import optimize
    from hpo.study import load_study

    start_tensorflow()
    if threads:
        from hpo.workers import set_tensorflow_threads

        set_tensorflow_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, spec = load_study(name, url)
    data = load_dataset(spec.data, data_path)

    def spent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = study.get_trials(deepcopy=False)
        if sum(len(t.intermediate_values) for t in done if t.state.is_finished()) >= budget:
            raise BudgetSpent

    with contextlib.suppress(BudgetSpent):
        optimize(study, make_objective(spec, data), None, callbacks=[spent])


def _record(trial: Any, wall_s: float) -> dict[str, Any]:
    """One trial of a run as the JSON lines hold it."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "epochs": len(trial.intermediate_values),
        "value": trial.value if trial.state.name == "COMPLETE" else None,
        "wall_s": round(wall_s, 2),
        "experiment": trial.user_attrs.get("experiment"),
    }


def label(run: Mapping[str, Any]) -> str:
    """A run's strategy as tables and figures name it: with its worker count when above one."""
    workers = run.get("workers", 1)
    return run["strategy"] if workers == 1 else f"{run['strategy']}, {workers} workers"


def best_by(trials: Sequence[Mapping[str, Any]], limit: float, key: str = "epochs") -> float:
    """The best complete value among the trials finished within `limit` epochs (or seconds)."""
    best, used = float("nan"), 0.0
    for t in trials:
        used = used + t["epochs"] if key == "epochs" else t["wall_s"]
        if used > limit:
            break
        if t["value"] is not None and not (best >= t["value"]):
            best = t["value"]
    return best


def curve(
    trials: Sequence[Mapping[str, Any]], key: str = "epochs"
) -> tuple[list[float], list[float]]:
    """Best-so-far as a step curve: (epochs or seconds used, best complete value) per trial."""
    xs, ys, used, best = [], [], 0.0, float("nan")
    for t in trials:
        used = used + t["epochs"] if key == "epochs" else t["wall_s"]
        if t["value"] is not None and not (best >= t["value"]):
            best = t["value"]
        xs.append(used)
        ys.append(best)
    return xs, ys


def read_runs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    runs = []
    for path in paths:
        runs += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return runs


def first_reaching(
    trials: Sequence[Mapping[str, Any]], target: float, limit: float = float("inf")
) -> float:
    """Epochs trained when the best complete value first reached `target` within `limit`
    epochs (inf if it did not)."""
    for used, best in zip(*curve(trials), strict=True):
        if used > limit:
            break
        if best >= target:
            return used
    return float("inf")


def summary_table(
    runs: Sequence[Mapping[str, Any]], checkpoints: Sequence[int] = CHECKPOINTS
) -> str:
    """Median [min-max] over seeds of the best validation score at each epoch checkpoint.

    Each strategy counts up to the smallest budget its runs had; beyond it a cell is "-".
    """
    points = [c for c in checkpoints if c <= max(r["budget"] for r in runs)]
    head = "".join(f" {c} epochs |" for c in points)
    lines = [
        f"| strategy | seeds |{head} epochs to 0.230 | epochs to 0.245 | wall s per seed |",
        "| --- | ---: |" + " ---: |" * (len(points) + 3),
    ]
    for strategy in dict.fromkeys(label(r) for r in runs):
        mine = [r for r in runs if label(r) == strategy]
        budget = min(r["budget"] for r in mine)
        cells = [
            _spread([best_by(r["trials"], c) for r in mine]) if c <= budget else "-" for c in points
        ]
        reach = [
            _median_epochs([first_reaching(r["trials"], t, budget) for r in mine])
            for t in (0.230, 0.245)
        ]
        wall = statistics.median(r["wall_s"] for r in mine)
        lines.append(
            f"| {strategy} | {len(mine)} |{''.join(f' {c} |' for c in cells)} "
            f"{reach[0]} | {reach[1]} | {wall:.0f} |"
        )
    lines.append("")
    lines.append("Epochs to a target count within each strategy's budget (`never`: not within it).")
    return "\n".join(lines)


def per_seed_table(
    runs: Sequence[Mapping[str, Any]], checkpoints: Sequence[int] = (50, 100, 150, 200, 250, 300)
) -> str:
    """Each study's best so far at each checkpoint within its budget, seeds in order."""
    head = "".join(f" {c} |" for c in checkpoints)
    lines = [f"| strategy | seed |{head}", "| --- | ---: |" + " ---: |" * len(checkpoints)]
    for strategy in dict.fromkeys(label(r) for r in runs):
        for run in sorted((r for r in runs if label(r) == strategy), key=lambda r: r["seed"]):
            cells = [
                f"{best_by(run['trials'], c):.3f}" if c <= run["budget"] else "-"
                for c in checkpoints
            ]
            lines.append(f"| {strategy} | {run['seed']} |{''.join(f' {c} |' for c in cells)}")
    return "\n".join(lines)


def _spread(values: Sequence[float]) -> str:
    known = [v for v in values if v == v]
    if not known:
        return "-"
    if len(known) < len(values):
        return f"{statistics.median(known):.3f} ({len(known)}/{len(values)} seeds)"
    return f"{statistics.median(known):.3f} [{min(known):.3f}-{max(known):.3f}]"


def _median_epochs(values: Sequence[float]) -> str:
    """Median over seeds and each seed's count; a seed that never got there counts as never."""
    median = statistics.median(values)
    each = ", ".join("never" if v == float("inf") else f"{v:.0f}" for v in sorted(values))
    return f"{'never' if median == float('inf') else f'{median:.0f}'} ({each})"


def draw(runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Best-so-far against epochs (left) and wall time (right), one colour per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = list(dict.fromkeys(label(r) for r in runs))
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), dpi=100)
    for colour, strategy in zip(plt.cm.tab10.colors, strategies, strict=False):
        for i, run in enumerate(r for r in runs if label(r) == strategy):
            for ax, key in zip(axes, ("epochs", "wall_s"), strict=True):
                xs, ys = curve(run["trials"], key)
                legend = strategy if i == 0 and key == "epochs" else None
                ax.step(xs, ys, where="post", color=colour, alpha=0.8, label=legend)
    axes[0].set_xlabel("epochs trained by all trials together")
    axes[1].set_xlabel("wall seconds (the study's, all its workers together)")
    for ax in axes:
        ax.set_ylabel("best validation accuracy so far")
        ax.grid(alpha=0.3)
        # Where the strategies differ; what lies below (a first trial near chance) is cut off.
        ax.set_ylim(bottom=0.15)
    axes[0].legend(loc="lower right", fontsize=9)
    fig.suptitle("Anytime search on the regularization study: one line per study seed")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("--strategies", default=",".join(STRATEGIES))
    run.add_argument("--seeds", default="1,2,3")
    run.add_argument("--budget", type=int, default=400)
    run.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: its default)")
    run.add_argument("--out", type=Path, default=REPO / "docs" / "search-runs.jsonl")
    run.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    run.add_argument("--tiny", action="store_true", help="synthetic data, 4-epoch trials")
    run.add_argument("--workers", type=int, default=1, help="worker processes per study")
    summary = commands.add_parser("summary")
    summary.add_argument("runs", type=Path, nargs="+")
    summary.add_argument("--figure", type=Path)
    args = parser.parse_args(argv)

    if args.command == "summary":
        runs = read_runs(args.runs)
        print(summary_table(runs))
        print()
        print(per_seed_table(runs))
        if args.figure:
            draw(runs, args.figure)
        return
    from benchmarks.common import start_tensorflow

    start_tensorflow()
    if args.threads and args.workers == 1:  # workers size their own
        from hpo.workers import set_tensorflow_threads

        set_tensorflow_threads(args.threads)
    strategies = [s.strip() for s in args.strategies.split(",")]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {list(STRATEGIES)}")
    for seed in (int(s) for s in args.seeds.split(",")):
        for strategy in strategies:
            result = run_one(
                strategy, seed, args.budget, args.data, args.tiny, args.workers, args.threads
            )
            with args.out.open("a") as out:
                out.write(json.dumps(result) + "\n")
            best = best_by(result["trials"], float("inf"))
            print(
                f"{label(result)} seed {seed}: {len(result['trials'])} trials, best {best:.4f}, "
                f"{result['wall_s']:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()

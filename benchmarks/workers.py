"""Trials per minute with 1, 2 and 4 workers on each storage, side by side in one run.

    .venv/bin/python -m benchmarks.workers [--n-trials 12] [--n-workers 1 2 4]
        [--storages sqlite journal postgresql redis] [--storage-only-trials 100]

Two measurements, each interleaved over storages within one worker count so that whatever else
runs on the machine weighs on every storage alike:

- keras: `hpo.workers.run_workers` on a small synthetic study, the real path (processes,
  TensorFlow, one trial per fit). Throughput is finished trials over the span from the first
  trial's start to the last one's end, so start-up (importing TensorFlow) is reported apart.
- storage: the same worker loop (`hpo.optimize.optimize`) with an objective that writes what a
  trial writes (params, one intermediate value per epoch, user attributes with curves) and
  trains nothing, so the storage is the only thing the workers wait on.

Servers: PostgreSQL at $HPO_TEST_POSTGRES (postgresql://postgres@127.0.0.1:5432/test) and Redis at
$HPO_TEST_REDIS (redis://127.0.0.1:6379/15); a storage whose server is not reachable is skipped.
Every study made here has a unique name and is deleted afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SPEC = """
name = "{name}"
seed = 11
n_trials = 12

[data]
dataset = "synthetic"
n_samples = 2000
n_classes = 10
image_size = 8
validation_fraction = 0.2

[sampler]
type = "random"

[pruner]
type = "none"

[params]
first_units = 64
units = 64
epochs = 3
batch_size = 100
learning_rate = {{ low = 1e-4, high = 1e-2, log = true }}
"""
N_EPOCHS = 3
SERVERS = {
    "postgresql": os.environ.get("HPO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
    "redis": os.environ.get("HPO_TEST_REDIS", "redis://127.0.0.1:6379/15"),
}


@dataclass(frozen=True)
class Result:
    storage: str
    n_workers: int
    n_finished: int
    n_failed: int
    seconds: float
    span_s: float
    errors: str

    @property
    def per_minute(self) -> float:
        return 60 * self.n_finished / self.span_s if self.span_s > 0 else float("nan")


def storage_urls(names: Sequence[str], folder: Path) -> dict[str, str]:
    """The URL of each storage to measure; unreachable servers are left out, with a note."""
    urls = {}
    for name in names:
        if name == "sqlite":
            urls[name] = f"sqlite:///{folder / 'studies.db'}"
        elif name == "journal":
            urls[name] = f"journal:{folder / 'studies.log'}"
        else:
            parts = urlsplit(SERVERS[name])
            try:
                socket.create_connection((parts.hostname, parts.port), timeout=2).close()
            except OSError:
                print(f"skipping {name}: no server at {parts.hostname}:{parts.port}")
                continue
            urls[name] = SERVERS[name]
    return urls


def new_study(url: str) -> str:
    from hpo.spec import load_spec_text
    from hpo.study import create_study

    name = f"bench-{uuid.uuid4().hex[:10]}"
    create_study(load_spec_text(SPEC.format(name=name)), url)
    return name


def measure(storage: str, url: str, n_workers: int, n_trials: int, keras: bool) -> Result:
    """Run one fresh study to `n_trials` finished trials with `n_workers` workers."""
    import optuna
    from optuna.trial import TrialState

    from hpo.storage import open_storage
    from hpo.study import FINISHED
    from hpo.workers import run_workers

    name = new_study(url)
    lines: list[str] = []
    began = time.monotonic()
    try:
        if keras:
            run_workers(name, url, n_trials, n_workers=n_workers, echo=lines.append)
        else:
            run_storage_workers(name, url, n_trials, n_workers)
    except Exception as err:
        lines.append(f"{type(err).__name__}: {err}")
    seconds = time.monotonic() - began
    store = open_storage(url, heartbeat_interval=None)
    trials = optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    span = 0.0
    if finished:
        first = min(t.datetime_start for t in finished if t.datetime_start)
        last = max(t.datetime_complete for t in finished if t.datetime_complete)
        span = (last - first).total_seconds()
    reasons = {
        str(t.user_attrs.get("fail_reason", "?")).split(":")[0]
        for t in failed
        if not str(t.user_attrs.get("fail_reason", "")).startswith("surplus")
    }
    errors = [line for line in lines if "error" in line.lower() or "locked" in line.lower()]
    optuna.delete_study(study_name=name, storage=store)
    return Result(
        storage,
        n_workers,
        len(finished),
        len(failed),
        seconds,
        span,
        "; ".join(sorted(reasons) + errors)[:80],
    )


def run_storage_workers(name: str, url: str, n_trials: int, n_workers: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    processes = [
        ctx.Process(target=storage_worker, args=(name, url, n_trials, worker))
        for worker in range(n_workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    codes = [p.exitcode for p in processes]
    if any(codes):
        raise RuntimeError(f"storage workers exited with {codes}")


def storage_worker(name: str, url: str, n_trials: int, worker: int) -> None:
    """One worker of the storage-only measurement: the real loop, a trial that only writes."""
    import optuna

    from hpo.optimize import optimize
    from hpo.study import load_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study, _ = load_study(name, url)

    def objective(trial: optuna.Trial) -> float:
        rate = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        curve = [rate * (epoch + 1) for epoch in range(N_EPOCHS)]
        for epoch, value in enumerate(curve):
            trial.report(value, step=epoch)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("seed", trial.number)
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            trial.set_user_attr(f"curve_{key}", curve)
        for key in ("n_epochs", "epoch_budget", "best_epoch", "n_params", "stopped_by"):
            trial.set_user_attr(key, N_EPOCHS)
        trial.set_user_attr("seconds_per_epoch", curve)
        return curve[-1]

    optimize(study, objective, n_trials)


def table(results: Sequence[Result], unit: str) -> list[str]:
    rows = [
        f"| storage | workers | finished | failed | wall s | {unit} per minute | errors |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (r.storage, r.n_workers)):
        rows.append(
            f"| {r.storage} | {r.n_workers} | {r.n_finished} | {r.n_failed} | {r.seconds:.0f} | "
            f"{r.per_minute:.1f} | {r.errors or '-'} |"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=12, help="0 skips the keras runs")
    parser.add_argument("--storage-only-trials", type=int, default=100)
    parser.add_argument("--n-workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--storages", nargs="+", default=["sqlite", "journal", "postgresql", "redis"]
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        urls = storage_urls(args.storages, Path(tmp))
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        storage_only, keras = [], []
        for n_workers in args.n_workers:
            for storage, url in urls.items():
                result = measure(storage, url, n_workers, args.storage_only_trials, keras=False)
                storage_only.append(result)
                print(f"storage {storage} x{n_workers}: {result.per_minute:.0f}/min", flush=True)
        for n_workers in args.n_workers if args.n_trials else []:
            for storage, url in urls.items():
                result = measure(storage, url, n_workers, args.n_trials, keras=True)
                keras.append(result)
                print(f"keras {storage} x{n_workers}: {result.per_minute:.1f}/min", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at end\n")
        print("\n".join(table(keras, "trials")))
        print()
        print("\n".join(table(storage_only, "write-only trials")))


if __name__ == "__main__":
    main()

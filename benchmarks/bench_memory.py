"""Memory of one worker over consecutive trials: resident memory after each trial, and its peak.

    .venv/bin/python -m benchmarks.bench_memory [--n-trials 30]

Run it as its own process (benchmarks.trial_speed does), so the peak is the worker's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

N_WARM = 5  # trials after which a worker has paid its one-time costs (data, TensorFlow)
MAX_GROWTH = 0.10


def rss_mib() -> float:
    """Resident memory of this process now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """The most resident memory this process has held since `reset_peak` (or its start)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Start the peak afresh from the memory held now, so loading the data does not mask it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(data_path: Path, n_trials: int) -> dict[str, Any]:
    """Run `n_trials` trials of the pruning benchmark's space, 2 epochs each, in this process."""
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()  # first, so that its quieting applies
    import optuna

    from benchmarks.bench_study import SPEC
    from benchmarks.common import load_cifar
    from hpo.objective import make_objective
    from hpo.registry import make_sampler
    from hpo.spec import load_spec_text

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    text = SPEC.replace("epochs = 10", "epochs = 2").replace("n_train = 5000", "n_train = 2000")
    spec = load_spec_text(text, "benchmarks/bench_memory.py")
    data = load_cifar(data_path, spec.data.n_train, spec.data.n_validation)
    study = optuna.create_study(
        direction="maximize" if spec.direction == "maximize" else "minimize",
        sampler=make_sampler("random", {}, spec.seed, spec.searched()),
    )
    rss: list[float] = []
    peak: list[float] = []
    peak_reset = reset_peak()
    before = rss_mib()

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        rss.append(rss_mib())
        peak.append(peak_mib())

    study.optimize(make_objective(spec, data), n_trials=n_trials, callbacks=[record])
    warm = min(N_WARM, n_trials) - 1
    slope = statistics.linear_regression(range(warm, n_trials), rss[warm:]).slope
    return {
        "rss_before_mib": before,
        "peak_reset": peak_reset,
        "rss_mib": rss,
        "peak_mib": peak,
        "warm_trial": warm + 1,
        "peak_growth": peak[-1] / peak[warm] - 1,
        "rss_growth": rss[-1] / rss[warm] - 1,
        "rss_slope_mib_per_trial": slope,
    }


def memory_table(m: dict[str, Any]) -> str:
    warm, last = m["warm_trial"], len(m["rss_mib"])
    flat = max(m["peak_growth"], m["rss_growth"]) < MAX_GROWTH
    since = "since the data was loaded" if m["peak_reset"] else "since the process began"
    return "\n".join(
        [
            f"| RSS before trial 1 | after trial {warm} | after trial {last} | RSS growth "
            f"| RSS slope after trial {warm} | peak after trial {warm} | after trial {last} "
            f"| peak growth | flat (both growths < {MAX_GROWTH:.0%}) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {m['rss_before_mib']:.0f} MiB | {m['rss_mib'][warm - 1]:.0f} MiB "
            f"| {m['rss_mib'][-1]:.0f} MiB | {m['rss_growth']:+.1%} "
            f"| {m['rss_slope_mib_per_trial']:+.2f} MiB/trial "
            f"| {m['peak_mib'][warm - 1]:.0f} MiB | {m['peak_mib'][-1]:.0f} MiB "
            f"| {m['peak_growth']:+.1%} | {'yes' if flat else 'no'} |",
            "",
            f"Peak: the most resident memory {since}. RSS: after each trial.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    from benchmarks.common import DEFAULT_DATA

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print one JSON line, no table")
    args = parser.parse_args(argv)
    result = measure(args.data, args.n_trials)
    print(json.dumps(result) if args.json else memory_table(result))


if __name__ == "__main__":
    main()

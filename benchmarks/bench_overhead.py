"""The fixed cost of a trial: short trials with and without freezing the long-lived objects.

    .venv/bin/python -m benchmarks.bench_overhead [--rounds 2] [--n-trials 12]

`gc.freeze` is process-wide, so each variant runs in its own process; processes alternate,
and each reports the median CPU-seconds of its trials after the first two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VARIANTS = ("freeze", "no freeze")


def measure(variant: str, data_path: Path, n_trials: int) -> dict[str, Any]:
    """CPU and wall seconds of `n_trials` 2-epoch trials on 2,000 images, in this process."""
    from benchmarks.common import load_cifar, start_tensorflow

    start_tensorflow()
    import hpo.train
    from hpo.testing import full_params

    if variant == "no freeze":
        hpo.train._frozen = True  # as if done already: never freeze
    data = load_cifar(data_path, 2000, 500)
    params = full_params({"epochs": 2})
    cpu, wall = [], []
    for seed in range(n_trials):
        start, used = time.perf_counter(), time.process_time()
        hpo.train.fit(params, data, seed)
        cpu.append(time.process_time() - used)
        wall.append(time.perf_counter() - start)
    return {
        "variant": variant,
        "cpu_s": statistics.median(cpu[2:]),
        "wall_s": statistics.median(wall[2:]),
    }


def main(argv: Sequence[str] | None = None) -> None:
    from benchmarks.common import DEFAULT_DATA, REPO, spread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("HPO_DATA", DEFAULT_DATA)))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--variant", choices=VARIANTS, help="measure one variant here, as JSON")
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant, args.data, args.n_trials)))
        return
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for round_ in range(args.rounds):
        for variant in VARIANTS if round_ % 2 == 0 else reversed(VARIANTS):
            command = [sys.executable, "-m", "benchmarks.bench_overhead", "--variant", variant]
            command += ["--n-trials", str(args.n_trials), "--data", str(args.data)]
            out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"load average at the end: {[round(x, 2) for x in os.getloadavg()]}\n")
    print("| variant | CPU s per 2-epoch trial (2,000 images) | wall s | CPU vs no freeze |")
    print("| --- | --- | --- | --- |")
    base = [r["cpu_s"] for r in results["no freeze"]]
    for variant, rows in results.items():
        cpu = [r["cpu_s"] for r in rows]
        ratio = [c / b for c, b in zip(cpu, base, strict=True)]
        print(
            f"| {variant} | {spread(cpu)} | {spread([r['wall_s'] for r in rows])} "
            f"| {spread(ratio)} |"
        )


if __name__ == "__main__":
    main()

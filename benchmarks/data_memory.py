"""A worker's memory for the data: loading CIFAR-100, holding it for the trial loop, one trial.

    .venv/bin/python -m benchmarks.data_memory [--data PATH] [--epochs 4]

Prints resident memory (MB) after the imports, after loading, after the pipeline holds the
training and validation images, and after one fit of the lesson's MLP from seed 0, with the
process's peak and the fit's CPU-seconds and final scores (which a change to how the data is
held must leave equal). Run it once per tree to compare two versions, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.bench_memory import peak_mib, rss_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("HPO_DATA"))
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    from hpo.tfquiet import import_tensorflow

    import_tensorflow()
    from hpo.data import load_dataset
    from hpo.pipeline import hold
    from hpo.spec import DataSpec
    from hpo.testing import full_params
    from hpo.train import fit

    record = {"imports": rss_mib()}
    data = load_dataset(DataSpec(), args.data)
    record["loaded"] = rss_mib()
    hold(data.x_train), hold(data.x_val)
    record["held"] = rss_mib()
    cpu = time.process_time()
    run = fit(full_params({"epochs": args.epochs}), data, 0)
    record |= {
        "trained": rss_mib(),
        "peak": peak_mib(),
        "fit_cpu_s": time.process_time() - cpu,
        "seconds_per_epoch": run.seconds_per_epoch,
        "loss": run.history["loss"][-1],
        "val_accuracy": run.history["val_accuracy"][-1],
    }
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in record.items()}))


if __name__ == "__main__":
    main()

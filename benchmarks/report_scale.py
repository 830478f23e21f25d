"""How long `hpo report` takes on a study of 10,000 made-up trials (no training).

    .venv/bin/python -m benchmarks.report_scale [--n-trials 10000] [--db PATH]

The study has the regularization spec's search space, with synthetic images for the activation
figure, and trials written straight into a SQLite storage by `hpo.testing.fake_trials` and
`benchmarks.bulk.write_trials` (a third pruned, some failed). The storage is built once and
reused while PATH exists. Printed: the build time, the wall time of a fresh `hpo report`
process (imports included), and, in this process, the time of each stage of the report.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpo.study import all_trials, load_study

NAME = "report-scale"
EFFECTS = {"dropout": 0.03, "schedule=cosine": 0.02, "initializer=random_normal": -0.1}


def spec_text() -> str:
    text = (Path(__file__).resolve().parents[1] / "studies" / "regularization.toml").read_text()
    text = text.replace('name = "regularization"', f'name = "{NAME}"')
    return text.replace('dataset = "cifar100"', 'dataset = "synthetic"')


def build(url: str, n_trials: int) -> float:
    """Write the study; returns the seconds it took."""
    import optuna

    from benchmarks.bulk import write_trials
    from hpo.spec import load_spec_text
    from hpo.storage import open_storage
    from hpo.study import SPEC_ATTR
    from hpo.testing import fake_trials

    start = time.perf_counter()
    text = spec_text()
    spec = load_spec_text(text)
    study = optuna.create_study(
        study_name=NAME,
        storage=open_storage(url, create=True),
        direction=spec.direction,  # type: ignore[arg-type]
    )
    study.set_user_attr(SPEC_ATTR, text)
    study.set_user_attr("metric", spec.metric)
    n_failed = n_trials // 100
    trials = fake_trials(
        spec, n_trials - n_failed, EFFECTS, pruned_share=0.3, n_failed=n_failed, seed=0
    )
    write_trials(url, NAME, trials)
    return time.perf_counter() - start


Stages = list[tuple[str, float, float]]


def timed(label: str, stages: Stages, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `fn`, appending its wall and CPU seconds to `stages`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    stages.append((label, time.perf_counter() - wall, time.process_time() - cpu))
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=10_000)
    parser.add_argument("--db", type=Path, help="default: report_scale_N.db in the temp folder")
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.db = args.db or Path(tempfile.gettempdir()) / f"report_scale_{args.n_trials}.db"
    url = f"sqlite:///{args.db}"
    if not args.db.exists():
        print(f"building {args.n_trials} trials in {args.db}: {build(url, args.n_trials):.1f} s")
    out = Path(tempfile.mkdtemp()) / f"{NAME}.md"

    start, children = time.perf_counter(), _children_cpu()
    command = [sys.executable, "-m", "hpo", "report", NAME, "--storage", url, "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, env=os.environ.copy())
    print(
        f"`hpo report` process, cold: {time.perf_counter() - start:.1f} s wall, "
        f"{_children_cpu() - children:.1f} s CPU"
    )

    from hpo.report.ranking import find_techniques, rank
    from hpo.report.writer import importances, ranked, write_report
    from hpo.tfquiet import import_tensorflow

    stages: Stages = []
    timed("import tensorflow", stages, import_tensorflow)
    study, spec = timed("load study", stages, load_study, NAME, url, heartbeat_interval=None)
    timed("read trials (Optuna)", stages, study.get_trials, deepcopy=False)
    trials = timed("read trials (hpo)", stages, all_trials, study)
    techniques = find_techniques(spec)
    timed("rank techniques", stages, rank, trials, techniques, spec.direction)
    timed("importances", stages, importances, ranked(trials, spec.direction), spec.direction)
    timed("whole report, warm", stages, write_report, NAME, url, out, echo=lambda _: None)
    print(f"{len(trials)} trials, {len(techniques)} techniques")
    print(f"  {'stage':<22} {'wall s':>7} {'CPU s':>7}")
    for label, wall, cpu in stages:
        print(f"  {label:<22} {wall:7.2f} {cpu:7.2f}")
    size = sum(p.stat().st_size for p in out.with_suffix("").iterdir())
    print(f"figures: {size / 1024:.0f} KB; report: {out.stat().st_size / 1024:.0f} KB at {out}")


if __name__ == "__main__":
    main()

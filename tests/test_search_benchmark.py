"""The anytime search benchmark, tiny: the strategies run, the table and figure come out."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from benchmarks.search import (
    SPEC_FILE,
    STRATEGIES,
    best_by,
    curve,
    first_reaching,
    main,
    per_seed_table,
    read_runs,
    strategy_spec,
    summary_table,
)
from hpo.spec import load_spec_text


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_is_a_valid_spec(strategy: str) -> None:
    spec = load_spec_text(strategy_spec(SPEC_FILE.read_text(), strategy, 5), strategy)
    assert spec.seed == 5 and spec.name == "search-5"
    if strategy.startswith("defaults"):
        assert spec.enqueue[0].name == "lesson baseline"
    if not strategy.startswith("defaults"):
        assert spec.enqueue == ()


def test_best_so_far_counts_complete_trials_within_the_budget() -> None:
    trials = [
        {"epochs": 3, "value": None, "wall_s": 1.0},  # pruned
        {"epochs": 20, "value": 0.2, "wall_s": 5.0},
        {"epochs": 20, "value": 0.1, "wall_s": 9.0},
        {"epochs": 20, "value": 0.3, "wall_s": 14.0},
    ]
    assert best_by(trials, 10) != best_by(trials, 10)  # nothing complete yet: NaN
    assert best_by(trials, 43) == 0.2 and best_by(trials, 63) == 0.3
    assert best_by(trials, 10.0, key="wall_s") == 0.2
    assert curve(trials)[0] == [3, 23, 43, 63]
    assert first_reaching(trials, 0.25) == 63 and first_reaching(trials, 0.5) == float("inf")


def test_the_tiny_benchmark_runs_and_summarizes(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    main(["run", "--tiny", "--seeds", "1", "--budget", "10", "--out", str(out),
          "--strategies", "tpe-median,defaults-tpe-halving"])  # fmt: skip
    runs = read_runs([out])
    assert [r["strategy"] for r in runs] == ["tpe-median", "defaults-tpe-halving"]
    for run in runs:
        assert sum(t["epochs"] for t in run["trials"]) >= 10
        assert json.dumps(run)  # one JSON line each
    assert runs[1]["trials"][0]["experiment"] == "lesson baseline"
    table = summary_table(runs, checkpoints=(5, 10))
    assert table.splitlines()[0].startswith("| strategy | seeds | 5 epochs | 10 epochs |")
    figure = tmp_path / "search.png"
    main(["summary", str(out), "--figure", str(figure)])
    assert struct.unpack(">II", figure.read_bytes()[16:24])[0] >= 1200


def test_two_workers_share_one_budget_and_list_trials_in_the_order_they_ended(
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs.jsonl"
    main(["run", "--tiny", "--seeds", "1", "--budget", "12", "--out", str(out),
          "--strategies", "defaults-tpe-median", "--workers", "2", "--threads", "1"])  # fmt: skip
    (run,) = read_runs([out])
    assert run["workers"] == 2
    trials = run["trials"]
    epochs = sum(t["epochs"] for t in trials)
    # Each worker stops at the first trial it ends after the budget: at most one more each.
    assert 12 <= epochs <= 12 + 2 * 4
    assert [t["wall_s"] for t in trials] == sorted(t["wall_s"] for t in trials)
    assert len({t["number"] for t in trials}) == len(trials)
    by_number = {t["number"]: t["experiment"] for t in trials}
    assert by_number[0] == "lesson baseline" and by_number[1] == "adam, cosine decay"
    assert "defaults-tpe-median, 2 workers" in summary_table([run], checkpoints=(5, 10))


def test_the_per_seed_table_gives_each_studys_best_within_its_budget() -> None:
    trials = [
        {"epochs": 20, "value": 0.2, "wall_s": 1.0},
        {"epochs": 20, "value": 0.3, "wall_s": 2.0},
    ]
    runs = [
        {"strategy": "a", "seed": 2, "budget": 40, "trials": trials},
        {"strategy": "a", "seed": 1, "budget": 20, "trials": trials[:1]},
        {"strategy": "a", "seed": 1, "budget": 40, "trials": trials, "workers": 2},
    ]
    lines = per_seed_table(runs, checkpoints=(20, 40)).splitlines()
    assert lines[2:] == [
        "| a | 1 | 0.200 | - |",
        "| a | 2 | 0.200 | 0.300 |",
        "| a, 2 workers | 1 | 0.200 | 0.300 |",
    ]

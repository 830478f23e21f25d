#!/usr/bin/env bash
# The main job: run the lesson study on real CIFAR-100 in the default SQLite file, ablate it
# with paired seeds, then report.
# Offline, point HPO_DATA at a local copy: HPO_DATA=/path/to/cifar100.npz scripts/main.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
STUDY=${STUDY:-lesson}
if ! .venv/bin/hpo study show "$STUDY" >/dev/null 2>&1; then
  .venv/bin/hpo study create "studies/$STUDY.toml"
fi
.venv/bin/hpo study run "$STUDY"
.venv/bin/hpo ablate "$STUDY" --seeds "${SEEDS:-10}"
.venv/bin/hpo report "$STUDY" --activations --note

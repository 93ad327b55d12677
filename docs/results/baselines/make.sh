#!/usr/bin/env bash
# Writes docs/results/baselines.md from its template (page.md here) and the runs kept
# beside it: LSTM, GRU and FastGRNN in full precision and the LRU's diagonal recurrence at
# 4 bits, at about the 4-bit STE-Björck QORNN's size, with the same optimiser, batch and
# budget, and that QORNN.
#   docs/results/baselines/make.sh                   the page, from the kept artefacts
#   docs/results/baselines/make.sh --rerun DATA_DIR  first trains every config below into
#                                                    RUNS (default runs/; a finished run is
#                                                    not run again), MNIST in DATA_DIR
# About 55 minutes of one core in all.
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/baselines
source docs/results/pages.sh
if [[ ${1:-} == --rerun ]]; then
    data=${2:?usage: docs/results/baselines/make.sh --rerun DATA_DIR (MNIST)}
    for task in copy-t100 copy-t1000; do
        for config in qornn-bjorck-4b lstm-fp-matched gru-fp-matched fastgrnn-fp-matched \
            lru-4b-matched; do
            keep_config "$here/$task" "$task-$config"
        done
    done
    # pMNIST at the same budget for all: 2 epochs (the configs hold the literature's 100).
    for config in qornn-bjorck-4b-literature lstm-fp-matched gru-fp-matched fastgrnn-fp-matched \
        lru-4b-matched; do
        keep_config "$here/pmnist" "pmnist-$config" --epochs 2 --data-dir "$data"
    done
fi
python3 bench/fill_page.py "$here/page.md" > docs/results/baselines.md
echo "wrote docs/results/baselines.md"

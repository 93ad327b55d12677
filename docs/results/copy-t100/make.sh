#!/usr/bin/env bash
# Writes docs/results/copy-t100.md from its template (page.md here) and the runs kept
# beside it: each table is `qornn report` of one folder of runs here.
#   docs/results/copy-t100/make.sh           the page, from the kept artefacts
#   docs/results/copy-t100/make.sh --rerun   first runs the three sweeps below into RUNS
#                                            (default runs/; a finished run is not run
#                                            again) and keeps every run's config.toml,
#                                            metrics.jsonl and summary.json here
# The sweeps take about 40 minutes on 2 cores (JOBS=2, one thread per run).
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/copy-t100
source docs/results/pages.sh
if [[ ${1:-} == --rerun ]]; then
    keep_sweep "$here/paper-grid" "$runs/copy-t100-paper-grid" sweeps/paper-copy.toml \
        delay=100 steps=500 eval_every=50 act=modrelu optimizer=adam init=orthogonal \
        lr=0.001 orthogonal_lr=0.001 model=qornn-bjorck,qornn-projunn-d bits=2,4,8 seed=1,2
    keep_sweep "$here/low-bit" "$runs/copy-t100-low-bit" sweeps/copy-t100-low-bit.toml
    keep_sweep "$here/literature" "$runs/copy-t100-literature" sweeps/copy-t100-literature.toml
fi
python3 bench/fill_page.py "$here/page.md" > docs/results/copy-t100.md
echo "wrote docs/results/copy-t100.md"

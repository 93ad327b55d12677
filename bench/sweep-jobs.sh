#!/usr/bin/env bash
# docs/results/copy-t100.md's measured sweep: 12 runs of the paper's copy grid at a short budget (T0 = 100,
# 500 steps, the best-known optimiser), once with --jobs 1 and once with --jobs 2, on an
# otherwise idle machine; prints both wall times. Run folders: runs/sweep-jobs1, -jobs2.
set -euo pipefail
cd "$(dirname "$0")/.."
qornn=${QORNN:-target/release/qornn}
args=(sweeps/paper-copy.toml delay=100 steps=500 eval_every=50 act=modrelu optimizer=adam
      init=orthogonal lr=0.001 orthogonal_lr=0.001 model=qornn-bjorck,qornn-projunn-d
      bits=2,4,8 seed=1,2)
for jobs in 1 2; do
    start=$(date +%s.%N)
    "$qornn" sweep "${args[@]}" --out "runs/sweep-jobs$jobs" --jobs "$jobs"
    end=$(date +%s.%N)
    echo "jobs $jobs: $(echo "$end - $start" | bc) s"
done

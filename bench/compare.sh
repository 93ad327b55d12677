#!/usr/bin/env bash
# Times one STE-Björck training step in qornn and in PyTorch (CPU) on this machine, in one
# command, and prints the ratios. Usage: bench/compare.sh [HIDDEN ...]   (default: 170 512)
# Needs: a release build (cargo build --release) and `pip install torch numpy`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
sizes=("${@:-170 512}")
[ $# -eq 0 ] && sizes=(170 512)
printf '%-6s %-12s %-12s %-10s %-14s %-14s %-10s\n' hidden qornn_s torch_s speedup qornn_rss_MiB torch_rss_MiB mem_ratio
for n in "${sizes[@]}"; do
  repeats=5; [ "$n" -ge 400 ] && repeats=3
  ours=$(./target/release/qornn bench --model qornn-bjorck --hidden "$n" --batch 128 --seq 784 --bits 4 --repeats $repeats --json)
  theirs=$(python3 bench/pytorch_step.py --hidden "$n" --batch 128 --seq 784 --bits 4 --repeats $repeats)
  python3 - "$ours" "$theirs" <<'PY'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{o['hidden']:<6} {o['seconds_per_step']:<12.4f} {t['seconds_per_step']:<12.4f} "
      f"{t['seconds_per_step'] / o['seconds_per_step']:<10.2f} {o['peak_rss_bytes'] / 2**20:<14.1f} "
      f"{t['peak_rss_bytes'] / 2**20:<14.1f} {o['peak_rss_bytes'] / t['peak_rss_bytes']:<10.2f}")
PY
done

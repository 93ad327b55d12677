#!/usr/bin/env bash
# Times one training step in qornn and in PyTorch (CPU) on this machine, in one command,
# and prints the ratios. Usage: bench/compare.sh [MODEL:HIDDEN:BITS[:ACT] ...]
# Default: the QORNN step at n = 170 and 512 (4 bits), and LSTM, GRU, FastGRNN at n = 170
# in full precision. T = 784, batch 128, input 1, 10 classes (the sMNIST shape).
# Needs: `pip install torch numpy`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
# The machine's floors, in the same command: numpy's fp32 GEMM rate (OpenBLAS, with its
# CPU detection left alone) and a plain copy's bandwidth.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 - <<'PY'
import time, numpy as np
def best(f, k=5):
    t = []
    for _ in range(k):
        s = time.perf_counter(); f(); t.append(time.perf_counter() - s)
    return min(t)
a, b = np.random.rand(2048, 2048).astype(np.float32), np.random.rand(2048, 2048).astype(np.float32)
gemm = 2 * 2048 ** 3 / best(lambda: a @ b) / 1e9
src = np.ones(64 * 2 ** 20, dtype=np.float32); dst = np.empty_like(src)
copy = 2 * src.nbytes / best(lambda: np.copyto(dst, src)) / 1e9
print(f"floors: fp32 GEMM {gemm:.0f} GFLOP/s (numpy {np.__version__}), copy {copy:.1f} GB/s (read + write)")
PY
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(qornn-bjorck:170:4 qornn-bjorck:512:4 lstm:170:32 gru:170:32 fastgrnn:170:32)
printf '%-14s %-6s %-5s %-10s %-10s %-9s %-13s %-13s %-9s\n' model hidden bits qornn_s torch_s speedup qornn_MiB torch_MiB mem_ratio
for case in "${cases[@]}"; do
  IFS=: read -r model n bits act <<<"$case"
  act=${act:-relu}
  repeats=5; [ "$n" -ge 400 ] && repeats=3
  ours=$(./target/release/qornn bench --model "$model" --hidden "$n" --batch 128 --seq 784 --bits "$bits" --act "$act" --repeats $repeats --json)
  theirs=$(python3 bench/pytorch_step.py --model "$model" --hidden "$n" --batch 128 --seq 784 --bits "$bits" --act "$act" --repeats $repeats)
  python3 - "$ours" "$theirs" <<'PY'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{o['model']:<14} {o['hidden']:<6} {o['bits']:<5} {o['seconds_per_step']:<10.4f} {t['seconds_per_step']:<10.4f} "
      f"{t['seconds_per_step'] / o['seconds_per_step']:<9.2f} {o['peak_rss_bytes'] / 2**20:<13.1f} "
      f"{t['peak_rss_bytes'] / 2**20:<13.1f} {o['peak_rss_bytes'] / t['peak_rss_bytes']:<9.2f}")
PY
done

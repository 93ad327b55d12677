#!/usr/bin/env bash
# Times one training step in qornn and in PyTorch (CPU) on this machine, in one command,
# and prints the machine's floors and a Markdown table of the ratios (the memory floor is
# the one `qornn bench` prints for an Elman step: h, and z under a dense W, written and read once).
# Usage: bench/compare.sh [MODEL:HIDDEN:BITS[:ACT] ...] (QORNN: the binary, else a build)
# Default: the QORNN step at n = 170 and 512 (4 bits), and LSTM, GRU, FastGRNN at n = 170
# in full precision. T = 784, batch 128, input 1, 10 classes (the sMNIST shape).
# Needs: `pip install torch numpy`.
set -euo pipefail
cd "$(dirname "$0")/.."
qornn=${QORNN:-target/release/qornn}
[[ -n ${QORNN:-} ]] || cargo build --release -q
# The machine's floors, in the same command: numpy's fp32 GEMM rate (OpenBLAS, with its
# CPU detection left alone) and a plain copy's bandwidth.
read -r gemm_gflops floors < <(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 - <<'PY'
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
print(gemm, f"Floors: fp32 GEMM {gemm:.0f} GFLOP/s (numpy {np.__version__}), a plain copy {copy:.1f} GB/s (read + write).")
PY
)
echo "$floors"
echo
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(qornn-bjorck:170:4 qornn-bjorck:512:4 lstm:170:32 gru:170:32 fastgrnn:170:32)
echo "| model | n | bits | act | qornn s/step | PyTorch s/step | speed-up | floor s/step | qornn / floor | qornn MiB | PyTorch MiB | memory ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for case in "${cases[@]}"; do
  IFS=: read -r model n bits act <<<"$case"
  # The gated cells (LSTM, GRU, FastGRNN) have their own nonlinearities: no --act for them.
  act=${act:-relu}
  act_flag=(--act "$act") shown_act=$act
  case $model in lstm | gru | fastgrnn) act_flag=() shown_act=- ;; esac
  repeats=5; [ "$n" -ge 400 ] && repeats=3
  ours=$("$qornn" bench --model "$model" --hidden "$n" --batch 128 --seq 784 --bits "$bits" "${act_flag[@]}" --repeats $repeats --json)
  theirs=$(python3 bench/pytorch_step.py --model "$model" --hidden "$n" --batch 128 --seq 784 --bits "$bits" --act "$act" --repeats $repeats)
  python3 - "$ours" "$theirs" "$shown_act" "$gemm_gflops" <<'PY'
import json, sys
o, t, act, gemm = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4])
# A structured recurrence is bound by memory (the floor `qornn bench` prints); a dense
# Elman step by its three products per time step, 6 T B n^2 flops, at the GEMM rate.
floor, kind = o.get("floor_seconds"), "memory"
if floor and not any(s in o["model"] for s in ("hadamrnn", "rotations")):
    floor, kind = 6 * o["seq"] * o["batch"] * o["hidden"] ** 2 / (gemm * 1e9), "GEMM"
floor_cells = f"{floor:.3f} ({kind}) | {o['seconds_per_step'] / floor:.1f}x" if floor else "- | -"
print(f"| {o['model']} | {o['hidden']} | {o['bits']} | {act} | {o['seconds_per_step']:.3f} | {t['seconds_per_step']:.3f} | "
      f"{t['seconds_per_step'] / o['seconds_per_step']:.1f}x | {floor_cells} | {o['peak_rss_bytes'] / 2**20:,.0f} | "
      f"{t['peak_rss_bytes'] / 2**20:,.0f} | {o['peak_rss_bytes'] / t['peak_rss_bytes']:.2f} |")
PY
done

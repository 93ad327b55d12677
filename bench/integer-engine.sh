#!/usr/bin/env bash
# The integer engines against qornn's and PyTorch's float forward, one core, in one command.
# Usage: bench/integer-engine.sh MODEL.qornn:T [...]   (T: sequence length of its task)
# Each case: RUNS (default 3) runs of `qornn bench --integer` (batched and scalar engine, qornn's float
# forward, batch 128 and 1) and of bench/pytorch_step.py --inference at batch 128 and 1,
# all under `taskset -c ${CORE:-1}`; prints the medians and the ratios as one JSON line each.
# Needs `pip install torch` for the PyTorch columns.
set -euo pipefail
cd "$(dirname "$0")/.."
core=${CORE:-1}
runs=${RUNS:-3}
for case in "$@"; do
  model=${case%:*}; seq=${case##*:}
  ours=(); b128=(); b1=()
  for _ in $(seq "$runs"); do
    ours+=("$(RAYON_NUM_THREADS=1 taskset -c "$core" ./target/release/qornn bench --integer "$model" --batch 128 --seq "$seq" --repeats 5 --json)")
  done
  hidden=$(echo "${ours[0]}" | python3 -c "import json,sys; print(json.load(sys.stdin)['hidden'])")
  for _ in $(seq "$runs"); do
    b128+=("$(taskset -c "$core" python3 bench/pytorch_step.py --model qornn-bjorck --hidden "$hidden" --batch 128 --seq "$seq" --threads 1 --inference --repeats 5)")
    b1+=("$(taskset -c "$core" python3 bench/pytorch_step.py --model qornn-bjorck --hidden "$hidden" --batch 1 --seq "$seq" --threads 1 --inference --repeats 5)")
  done
  python3 - "$model" "${ours[@]}" "${b128[@]}" "${b1[@]}" <<'PY'
import json, statistics, sys
model, runs = sys.argv[1], [json.loads(a) for a in sys.argv[2:]]
k = len(runs) // 3
ours, b128, b1 = runs[0:k], runs[k:2 * k], runs[2 * k:3 * k]
med = lambda rows, key: statistics.median(r[key] for r in rows)
r = {k: med(ours, k) for k in ["sequences_per_second", "sequences_per_second_batch_1",
                               "scalar_sequences_per_second", "float_forward_sequences_per_second",
                               "float_forward_sequences_per_second_batch_1"]}
r["pytorch_float_forward_sequences_per_second"] = med(b128, "sequences_per_second")
r["pytorch_float_forward_sequences_per_second_batch_1"] = med(b1, "sequences_per_second")
batched = r["sequences_per_second"]
r["ratio_to_scalar"] = batched / r["scalar_sequences_per_second"]
r["ratio_to_qornn_float"] = batched / r["float_forward_sequences_per_second"]
r["ratio_to_pytorch_float"] = batched / r["pytorch_float_forward_sequences_per_second"]
r["ratio_to_pytorch_float_batch_1"] = r["sequences_per_second_batch_1"] / r["pytorch_float_forward_sequences_per_second_batch_1"]
print(json.dumps({"model": model, "kernel": ours[0]["kernel"], "hidden": ours[0]["hidden"], "seq": ours[0]["seq"],
                  **{k: round(v, 2) for k, v in r.items()}}))
PY
done

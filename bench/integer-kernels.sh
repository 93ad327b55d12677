#!/usr/bin/env bash
# Two integer models of the same shape timed in alternation on one core, so that the noise of
# a shared machine falls on both alike: ROUNDS (default 8) rounds of
# `qornn bench --integer M --batch 128 --seq T --repeats 3 --json` for each model in turn,
# under `taskset -c ${CORE:-1}`. Prints, per model, the kernel and the median and best
# sequences/s of the batched engine, the scalar engine and qornn's float forward.
#   bench/integer-kernels.sh T A.qornn B.qornn
set -euo pipefail
cd "$(dirname "$0")/.."
seq=$1; shift
core=${CORE:-1}
rounds=${ROUNDS:-8}
runs=()
for _ in $(seq "$rounds"); do
  for model in "$@"; do
    runs+=("$(RAYON_NUM_THREADS=1 taskset -c "$core" ./target/release/qornn bench --integer "$model" --batch 128 --seq "$seq" --repeats 3 --json)")
  done
done
python3 - "${runs[@]}" <<'PY'
import json, statistics, sys
runs = [json.loads(a) for a in sys.argv[1:]]
for model in dict.fromkeys(r["model"] for r in runs):
    mine = [r for r in runs if r["model"] == model]
    out = {"model": model, "kernel": mine[0]["kernel"], "hidden": mine[0]["hidden"], "seq": mine[0]["seq"], "rounds": len(mine)}
    for key in ["sequences_per_second", "scalar_sequences_per_second", "float_forward_sequences_per_second"]:
        values = [r[key] for r in mine]
        out[key + "_median"] = round(statistics.median(values), 1)
        out[key + "_best"] = round(max(values), 1)
    print(json.dumps(out))
PY

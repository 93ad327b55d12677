#!/usr/bin/env bash
# The pMNIST/sMNIST comparison at equal budget (10 epochs, batch 128): full precision, the
# paper's 4-bit quantizer, 4-bit learned steps (LSQ) and HadamRNN, each from its config in
# configs/, all at once with THREADS threads each (2 by default: 8 runs fill 16 cores).
# A run folder that holds a checkpoint is resumed (bit-exact on the same thread count);
# LIMIT > 0 stops every run after LIMIT seconds (each keeps its last epoch's checkpoint).
#   BIN=target/release/qornn DATA=runs/mnist OUT=runs LIMIT=0 bench/mnist-grid.sh [CONFIG...]
set -u
BIN=${BIN:-target/release/qornn}
DATA=${DATA:-runs/mnist}
OUT=${OUT:-runs}
LIMIT=${LIMIT:-0}
THREADS=${THREADS:-2}
CONFIGS=${*:-pmnist-ornn-bjorck-fp pmnist-qornn-bjorck-4b pmnist-qornn-bjorck-4b-lsq pmnist-hadamrnn-4b smnist-ornn-bjorck-fp smnist-qornn-bjorck-4b smnist-qornn-bjorck-4b-lsq smnist-hadamrnn-4b}
mkdir -p "$OUT"
pids=()
for c in $CONFIGS; do
  if [ -f "$OUT/$c/checkpoint.safetensors" ]; then
    args=(--resume "$OUT/$c")
  else
    args=(--config "configs/$c.toml" --out "$OUT/$c" --data-dir "$DATA" --threads "$THREADS")
  fi
  "$BIN" train "${args[@]}" >> "$OUT/$c.log" 2>&1 &
  pids+=($!)
done
if [ "$LIMIT" -gt 0 ]; then
  sleep "$LIMIT"
  kill "${pids[@]}" 2>/dev/null
fi
wait
for c in $CONFIGS; do echo "$c: $(tail -n 1 "$OUT/$c/metrics.jsonl" 2>/dev/null | cut -c1-160)"; done

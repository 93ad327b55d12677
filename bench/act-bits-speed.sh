#!/usr/bin/env bash
# The pMNIST Block-HadamRNN's training step (n = 512, batch 128, 784 steps, two threads)
# with float activations and with its activations quantized for integers (A = 8, rounded to
# nearest or stochastically in training), one `qornn bench` each: a Markdown table.
#   bench/act-bits-speed.sh            (QORNN names the binary, default target/release/qornn)
set -euo pipefail
qornn=${QORNN:-target/release/qornn}
echo "| activations | rounding in training | s/step | forward | backward |"
echo "|---|---|---|---|---|"
for case in "float||" "A = 8|nearest|--act-bits 8" \
    "A = 8|stochastic|--act-bits 8 --act-train-rounding stochastic"; do
    IFS='|' read -r label rounding flags <<< "$case"
    # shellcheck disable=SC2086 # the flags split into words
    "$qornn" bench --model block-hadamrnn --hidden 512 --act modrelu --seq 784 --input 1 \
        --batch 128 --threads 2 --repeats 5 --json $flags |
        python3 -c 'import json, sys
r = json.load(sys.stdin)
p = r["phases"]
cells = [r["seconds_per_step"], p["forward"], p["backward"]]
print("| " + " | ".join(sys.argv[1:3] + [f"{c:.4f}" for c in cells]) + " |")' \
            "$label" "$rounding"
done

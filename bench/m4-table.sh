#!/usr/bin/env bash
# The README's Cortex-M4 table: for the copy and pMNIST models at 4, 6 and 8 weight bits,
# quantize (weight PTQ of a full-precision run, activations at A = 12), export for C, check
# the trace on QEMU's mps2-an386, and print flash, RAM (arm-none-eabi-size of the trace
# check) and Cortex-M4 instructions per recurrence step (QEMU, one instruction per
# translation block, executions counted). Needs the run folders named below and MNIST.
#   bench/m4-table.sh COPY_RUN PMNIST_RUN DATA_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
qornn=${QORNN:-target/release/qornn}
copy_run=$1 pmnist_run=$2 data=$3
out=${OUT:-runs/m4}
mkdir -p "$out"
echo "| model | W, U bits | n | flash (bytes) | RAM (bytes) | instructions per step | trace on the M4 |"
echo "|---|---|---|---|---|---|---|"
for spec in "copy:$copy_run" "pmnist:$pmnist_run"; do
    name=${spec%%:*} run=${spec#*:}
    for bits in 4 6 8; do
        dir="$out/$name-${bits}b"
        "$qornn" quantize --run "$run" --bits "$bits" --act-bits 12 --calib 256 \
            --output "$dir.qornn" > "$dir.quantize.json" 2>/dev/null
        "$qornn" export --model "$dir.qornn" --c "$dir" --data-dir "$data" 2>/dev/null
        verdict=$(make -s -C c check-m4 MODEL="$PWD/$dir" 2>&1 | grep '^qornn check' || true)
        read -r text data_bytes bss _ < <(arm-none-eabi-size "$dir/build/check-m4.elf" | tail -1)
        steps=$(make -s -C c steps-m4 MODEL="$PWD/$dir" | sed -n 's/instructions per step: \([0-9]*\).*/\1/p')
        hidden=$(sed -n 's/#define QORNN_HIDDEN //p' "$dir/qornn_model.h")
        echo "| $name | $bits | $hidden | $((text + data_bytes)) | $((data_bytes + bss)) | $steps | ${verdict#qornn check: } |"
    done
done

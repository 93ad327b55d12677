#!/usr/bin/env bash
# docs/results/microcontroller.md's Cortex-M4 table: for the copy and pMNIST models at 4, 6 and 8 weight bits,
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
echo "| model | W, U bits | n | library code (bytes) | model arrays, flash (bytes) | state, RAM (bytes) | program flash / RAM (bytes) | instructions per step | trace on the M4 |"
echo "|---|---|---|---|---|---|---|---|---|"
for spec in "copy:$copy_run" "pmnist:$pmnist_run"; do
    name=${spec%%:*} run=${spec#*:}
    for bits in 4 6 8; do
        dir="$out/$name-${bits}b"
        "$qornn" quantize --run "$run" --bits "$bits" --act-bits 12 --calib 256 \
            --output "$dir.qornn" > "$dir.quantize.json" 2>/dev/null
        "$qornn" export --model "$dir.qornn" --c "$dir" --data-dir "$data" 2>/dev/null
        verdict=$(make -s -C c check-m4 MODEL="$PWD/$dir" 2>&1 | grep '^qornn check' || true)
        sizes=$(make -s -C c size-m4 MODEL="$PWD/$dir")
        # The library object's text; the model's arrays and the state in the 1-step program.
        library=$(echo "$sizes" | awk '/qornn-m4.o/ {print $1}')
        read -r text data_bytes bss _ < <(echo "$sizes" | awk '/steps-1.elf/ {print $1, $2, $3}')
        model_bytes=0 state_bytes=0
        while read -r _ size _ symbol; do
            case $symbol in
                qornn_w_packed|qornn_u_packed|qornn_w_row_mantissas|qornn_u_row_mantissas|\
                qornn_bias|qornn_bias_mod|qornn_readout_weight|\
                qornn_readout_codes|qornn_readout_bias|qornn_exported_model)
                    model_bytes=$((model_bytes + 16#$size)) ;;
                state_buffer) state_bytes=$((16#$size)) ;;
            esac
        done < <(echo "$sizes" | grep -E '^[0-9a-f]{8} [0-9a-f]{8} ')
        steps=$(make -s -C c steps-m4 MODEL="$PWD/$dir" | sed -n 's/instructions per step: \([0-9]*\).*/\1/p')
        hidden=$(sed -n 's/#define QORNN_HIDDEN //p' "$dir/qornn_model.h")
        echo "| $name | $bits | $hidden | $library | $model_bytes | $state_bytes | $((text + data_bytes)) / $((data_bytes + bss)) | $steps | ${verdict#qornn check: } |"
    done
done

#!/usr/bin/env bash
# The Cortex-M4 table of docs/results/microcontroller.md: for each shape below, a model of
# that shape trained 10 steps (the sizes depend on the shape and the widths only, the
# instruction counts on them and, by a few per cent, on the values: modReLU's zeros, the
# rescaling's 32-bit path where a sum fits), quantized with its activations at A = 12,
# exported for C, its trace checked on QEMU's mps2-an386, its flash and RAM from
# arm-none-eabi-size and its Cortex-M4 instructions per step and per multiply-add from
# QEMU (`check_on_m4` of docs/results/integer/m4.sh, then `make -C c size-m4`). Stops at a
# trace that fails. Prints the table (markdown) on stdout.
#   bench/m4-table.sh DATA_DIR      (MNIST, for the pMNIST shapes)
set -euo pipefail
cd "$(dirname "$0")/.."
qornn=${QORNN:-target/release/qornn}
source docs/results/integer/m4.sh
data=$1
out=${OUT:-runs/m4-table}
rm -rf "$out"
mkdir -p "$out"

echo "| task shape | recurrence | n | W, U bits | A | V bits | library code (bytes) | model arrays, flash (bytes) | state, RAM (bytes) | program flash / RAM (bytes) | instructions per step | per unit | per multiply-add | trace on the M4 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
rows=0
# row NAME RECURRENCE V_BITS TRAIN_FLAGS...: one row of the table.
row() {
    local name=$1 recurrence=$2 readout_bits=$3
    shift 3
    rows=$((rows + 1))
    local run=$out/$rows-$name
    "$qornn" train "$@" --steps 10 --eval-every 10 --eval-sequences 32 --batch 16 \
        --threads 1 --out "$run" > /dev/null
    "$qornn" quantize --run "$run" --act-bits 12 --readout-bits "$readout_bits" --calib 32 \
        > "$run/quantize.json"
    check_on_m4 "$run" "$run/model.qornn" --data-dir "$data" > /dev/null
    local c_model verdict sizes library text data_bytes bss steps per_mac
    verdict=$(sed -n 's/^qornn check: //p' "$run/check-m4.txt")
    steps=$(sed -n 's/^instructions per step: \([0-9]*\).*/\1/p' "$run/check-m4.txt")
    per_mac=$(sed -n 's/^instructions per multiply-add: \([0-9.]*\).*/\1/p' "$run/check-m4.txt")
    c_model=$(cd "$run/c" && pwd)
    sizes=$(make -s -C c size-m4 MODEL="$c_model")
    # The library object's text; the model's arrays and the state in the 1-step program.
    library=$(echo "$sizes" | awk '/qornn-m4.o/ {print $1}')
    read -r text data_bytes bss < <(echo "$sizes" | awk '/steps-1.elf/ {print $1, $2, $3}')
    # The model's arrays: those `qornn export --c` writes into qornn_model.h.
    local model_bytes=0 state_bytes=0 symbol size
    while read -r _ size _ symbol; do
        case $symbol in
            qornn_w_packed | qornn_u_packed | qornn_w_row_mantissas | qornn_u_row_mantissas | \
                qornn_bias | qornn_bias_mod | qornn_readout_weight | qornn_readout_packed | \
                qornn_readout_bias | qornn_exported_model)
                model_bytes=$((model_bytes + 16#$size)) ;;
            state_buffer) state_bytes=$((16#$size)) ;;
        esac
    done < <(echo "$sizes" | grep -E '^[0-9a-f]{8} [0-9a-f]{8} ')
    # A Hadamard W multiplies nothing: per multiply-add would count U's alone.
    [[ $recurrence == hadamard* ]] && per_mac=-
    local hidden w_bits u_bits
    define() { sed -n "s/#define QORNN_$1 //p" "$run/c/qornn_model.h"; }
    hidden=$(define HIDDEN) w_bits=$(define W_BITS) u_bits=$(define U_BITS)
    echo "| $name | $recurrence | $hidden | $w_bits, $u_bits | 12 | $readout_bits | $library | $model_bytes | $state_bytes | $((text + data_bytes)) / $((data_bytes + bss)) | $steps | $((steps / hidden)) | ${per_mac:--} | $verdict |"
}

for bits in 4 6 8; do
    row copy dense 8 --hidden 128 --bits "$bits" --act modrelu
done
row copy hadamard 8 --model hadamrnn --hidden 128 --bits 4 --act modrelu
row copy rotations 8 --model qornn-rotations --hidden 128 --bits 4 --act modrelu
for bits in 4 8; do
    # ReLU: the 4-bit dense modReLU model explodes over 784 steps within its first steps.
    row pmnist dense 8 --task pmnist --data-dir "$data" --hidden 170 --bits "$bits" --act relu
done
row pmnist "hadamard, blocks of 16" 4 --task pmnist --data-dir "$data" --model block-hadamrnn \
    --block 16 --hidden 512 --bits 4 --act modrelu --optimizer adam

#!/usr/bin/env bash
# The integer engine against qornn's float forward, one core, in one command: for each shape
# below, a model of that shape trained 10 steps (speed depends on the shape and the widths,
# not on the values), quantized at each A with `qornn quantize` (its wall time is the
# quantize column: float test set, calibration, twin and integer engine), then ROUNDS
# (default 5) rounds of `qornn bench --integer M --batch 128 --seq T --repeats 3 --json` for
# every model in turn under `taskset -c ${CORE:-1}`, so that a shared machine's noise falls
# on all alike. Prints the machine and the table (markdown, medians over the rounds) on stdout.
#   bench/integer-speed.sh DATA_DIR      (MNIST, for the pMNIST shapes)
set -euo pipefail
cd "$(dirname "$0")/.."
qornn=${QORNN:-target/release/qornn}
data=${1:?usage: bench/integer-speed.sh DATA_DIR (MNIST)}
out=${OUT:-runs/integer-speed}
core=${CORE:-1}
rounds=${ROUNDS:-5}
rm -rf "$out"
mkdir -p "$out"

# model NAME SEQ "A..." TRAIN_FLAGS...: train NAME, write $out/NAME-aA.qornn for each A.
models=()
model() {
    local name=$1 seq=$2 widths=$3
    shift 3
    "$qornn" train "$@" --steps 10 --eval-every 10 --eval-sequences 32 --batch 16 \
        --threads 1 --out "$out/$name" > /dev/null
    local a start
    for a in $widths; do
        start=$(date +%s%N)
        RAYON_NUM_THREADS=2 "$qornn" quantize --run "$out/$name" --act-bits "$a" --calib 128 \
            --output "$out/$name-a$a.qornn" > "$out/$name-a$a.json"
        echo $((($(date +%s%N) - start) / 1000000)) > "$out/$name-a$a.ms"
        models+=("$name-a$a:$seq")
    done
}
model pmnist-dense-4b 784 "8 12" --task pmnist --data-dir "$data" --hidden 170 --bits 4 --act relu
model pmnist-dense-8b 784 "8" --task pmnist --data-dir "$data" --hidden 170 --bits 8 --act relu
model pmnist-block-hadamrnn-4b 784 "8 12" --task pmnist --data-dir "$data" \
    --model block-hadamrnn --block 16 --hidden 512 --bits 4 --act modrelu
model copy-rotations-4b 120 "8" --model qornn-rotations --hidden 128 --bits 4 --act modrelu

for _ in $(seq "$rounds"); do
    for case in "${models[@]}"; do
        RAYON_NUM_THREADS=1 taskset -c "$core" "$qornn" bench --integer "$out/${case%:*}.qornn" \
            --batch 128 --seq "${case##*:}" --repeats 3 --json >> "$out/bench.jsonl"
    done
done

echo "Measured on $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1) ($(grep -o -w 'avx2\|avx512_vnni' /proc/cpuinfo | sort -u | paste -sd+)), one core, with \`bench/integer-speed.sh DATA_DIR\` ($rounds rounds, medians)."
echo
python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
print("| model | n | A | kernel (finishing) | integer, batch 128 | float, batch 128 | ratio | integer, batch 1 | float, batch 1 | ratio | scalar engine | `qornn quantize` (s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for path in dict.fromkeys(r["model"] for r in runs):
    mine = [r for r in runs if r["model"] == path]
    med = lambda key: statistics.median(r[key] for r in mine)
    stem = Path(path).stem
    name, a = stem.rsplit("-a", 1)
    seconds = int((out / f"{stem}.ms").read_text()) / 1000
    b128, f128 = med("sequences_per_second"), med("float_forward_sequences_per_second")
    b1, f1 = med("sequences_per_second_batch_1"), med("float_forward_sequences_per_second_batch_1")
    finishing = "int32" if mine[0]["finish_int32"] else "int64"
    print(f"| {name} | {mine[0]['hidden']} | {a} | {mine[0]['kernel']} ({finishing}) | {b128:,.0f} | {f128:,.0f} | "
          f"{b128 / f128:.2f}x | {b1:,.0f} | {f1:,.0f} | {b1 / f1:.2f}x | "
          f"{med('scalar_sequences_per_second'):,.0f} | {seconds:.1f} |")
PY

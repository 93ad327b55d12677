#!/usr/bin/env bash
# Writes docs/results/integer.md from the runs of sweeps/integer-copy-t100.toml,
# sweeps/integer-copy-t100-low-a.toml and configs/copy-t100-qornn-bjorck-4b-modrelu-a8.toml.
#   docs/results/integer/make.sh           the page, from the artefacts committed beside it
#   docs/results/integer/make.sh --rerun   first runs the sweeps (into RUNS, default runs/;
#                                          a finished run is not run again), quantizes
#                                          every run with its own A and step (V float, and
#                                          V at 8 bits), checks the 8-bit-V file on the
#                                          emulated Cortex-M4 and copies the artefacts
#                                          into docs/results/integer/<name>/
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/integer
source docs/results/pages.sh
source "$here/m4.sh"

# sweep_rows SWEEP_FILE: runs the sweep and keeps each run as
# copy-t100-<model>-<bits>b-a<A>, with -search when its hidden step came from the loss
# search.
sweep_rows() {
    local file=$1 name line fields header i
    name=$(basename "$file" .toml)
    local out=$runs/$name
    "$qornn" sweep "$file" --out "$out" --jobs "${JOBS:-2}" --threads 1
    while IFS= read -r line; do
        IFS=, read -r -a fields <<< "$line"
        if [[ ${fields[0]} == index ]]; then
            header=("${fields[@]}")
            continue
        fi
        local run=$out/${fields[1]}
        local model act_bits bits
        model=$(sed -n 's/^model = "\(.*\)"/\1/p' "$run/config.toml")
        act_bits=$(sed -n 's/^act_bits = //p' "$run/config.toml")
        bits=$(sed -n 's/^bits = //p' "$run/config.toml")
        local row=copy-t100-$model-${bits}b-a$act_bits
        grep -q '^act_hidden_search = true' "$run/config.toml" && row+=-search
        local point=""
        for ((i = 2; i < ${#fields[@]}; i++)); do
            point+=" ${header[i]}=${fields[i]}"
        done
        keep_row "$run" "$row" "qornn sweep $file$point"
    done < "$out/runs.csv"
}

# keep_row RUN ROW COMMAND: quantizes RUN with its own A and step (V float, and V at 8
# bits), checks the 8-bit-V file on the emulated Cortex-M4 and keeps the artefacts as ROW.
keep_row() {
    local run=$1 row=$2 command=$3
    [[ -f $run/quantize.json ]] || "$qornn" quantize --run "$run" > "$run/quantize.json"
    [[ -f $run/quantize-readout-8.json ]] ||
        "$qornn" quantize --run "$run" --readout-bits 8 --output "$run/model-readout-8.qornn" \
            > "$run/quantize-readout-8.json"
    [[ -f $run/check-m4.txt ]] || check_on_m4 "$run" "$run/model-readout-8.qornn"
    mkdir -p "$here/$row"
    cp "$run"/{config.toml,metrics.jsonl,summary.json,quantize.json,quantize-readout-8.json,check-m4.txt} "$here/$row/"
    echo "$command" > "$here/$row/command.txt"
}

# config_row NAME: trains configs/NAME.toml into RUNS/NAME (unless finished) and keeps it.
config_row() {
    local name=$1 run=$runs/$1
    [[ -f $run/summary.json ]] ||
        "$qornn" train --config "configs/$name.toml" --threads 1 --out "$run"
    keep_row "$run" "$name" "qornn train --config configs/$name.toml"
}

if [[ ${1:-} == --rerun ]]; then
    sweep_rows sweeps/integer-copy-t100.toml
    sweep_rows sweeps/integer-copy-t100-low-a.toml
    config_row copy-t100-qornn-bjorck-4b-modrelu-a8
fi
python3 bench/integer_page.py "$here" > docs/results/integer.md
echo "wrote docs/results/integer.md"

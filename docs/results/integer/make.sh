#!/usr/bin/env bash
# Writes docs/results/integer.md from the runs of sweeps/integer-copy-t100.toml.
#   docs/results/integer/make.sh           the page, from the artefacts committed beside it
#   docs/results/integer/make.sh --rerun   first runs the sweep (SWEEP, default
#                                          runs/integer-copy-t100), quantizes every run with
#                                          its own A and step (V float, and V at 8 bits),
#                                          checks the 8-bit-V file on the emulated
#                                          Cortex-M4 and copies the
#                                          artefacts into docs/results/integer/<name>/
set -euo pipefail
cd "$(dirname "$0")/../../.."
qornn=${QORNN:-target/release/qornn}
here=docs/results/integer
source "$here/m4.sh"
sweep=${SWEEP:-runs/integer-copy-t100}
if [[ ${1:-} == --rerun ]]; then
    "$qornn" sweep sweeps/integer-copy-t100.toml --out "$sweep" --jobs "${JOBS:-2}" --threads 1
    while IFS=, read -r index folder bits model; do
        [[ $index == index ]] && continue
        run="$sweep/$folder"
        name="copy-t100-$model-${bits}b-a8"
        "$qornn" quantize --run "$run" > "$run/quantize.json"
        "$qornn" quantize --run "$run" --readout-bits 8 --output "$run/model-readout-8.qornn" \
            > "$run/quantize-readout-8.json"
        check_on_m4 "$run" "$run/model-readout-8.qornn"
        mkdir -p "$here/$name"
        cp "$run"/{config.toml,metrics.jsonl,summary.json,quantize.json,quantize-readout-8.json,check-m4.txt} "$here/$name/"
        echo "qornn sweep sweeps/integer-copy-t100.toml model=$model bits=$bits" > "$here/$name/command.txt"
    done < "$sweep/runs.csv"
fi
python3 bench/integer_page.py "$here" > docs/results/integer.md
echo "wrote docs/results/integer.md"

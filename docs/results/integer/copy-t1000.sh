#!/usr/bin/env bash
# The copy task at T0 = 1000 in integers: block rotations with W and U at 4 bits
# (configs/copy-t1000-qornn-rotations-4b.toml, 10,000 steps with the angles learned), then
# the angles frozen (a recurrent learning rate of 1e-12) and U, V and the biases trained on
# with the activations as the integer engine computes them at A = 12 and the read-out at 8
# bits; quantized with the run's own A, step and read-out width, exported to C and checked
# on the emulated Cortex-M4; the artefacts copied into docs/results/integer/<name>/ and the
# page regenerated.
# The second row starts the same stage from the config trained for the authors' budget,
# 40,000 steps. The same recipe as one config from a random initialisation
# (configs/copy-t1000-qornn-rotations-4b-a12.toml: the angles frozen and the activations at
# A = 12 from step 10,000 on, V at 8 bits throughout) is the third.
#   docs/results/integer/copy-t1000.sh
# Runs go to RUNS (default runs/); a step whose output exists is not run again, so the
# script resumes where it stopped. ONLY=REGEX runs only the rows whose names match it. One
# core.
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/integer
source docs/results/pages.sh
source "$here/m4.sh"
config=configs/copy-t1000-qornn-rotations-4b.toml
# frozen_a12 FLOAT NAME [FLAGS...]: the config with FLAGS into RUNS/FLOAT, then the
# frozen-angle stage at A = 12 from it into RUNS/NAME, quantized, checked and kept.
frozen_a12() {
    local float=$1 name=$2
    shift 2
    local run=$runs/$name flags="$*"
    [[ -z ${ONLY:-} || $name =~ $ONLY ]] || return 0
    local tune=(--init-from "$runs/$float" --orthogonal-lr 1e-12 --steps 12000 --act-bits 12
        --readout-bits 8)
    [[ -f $runs/$float/summary.json ]] ||
        "$qornn" train --config "$config" "$@" --threads 1 --out "$runs/$float"
    [[ -f $run/summary.json ]] ||
        "$qornn" train --config "$config" "${tune[@]}" --threads 1 --out "$run"
    quantize_and_check "$run" "$here/$name"
    cp "$run"/{metrics.jsonl,summary.json} "$here/$name/"
    portable_config "$run/config.toml" "$float" > "$here/$name/config.toml"
    echo "qornn train --config $config${flags:+ $flags} --threads 1 --out runs/$float; qornn train --config $config ${tune[*]/$runs\//runs/} --threads 1 --out runs/$name; qornn quantize --run runs/$name" \
        > "$here/$name/command.txt"
}
frozen_a12 copy-t1000-qornn-rotations-4b copy-t1000-qornn-rotations-4b-frozen-a12
# The same from the float model trained for the authors' budget, 40,000 steps (10 epochs of
# 512,000 sequences), the angles learned throughout.
frozen_a12 copy-t1000-qornn-rotations-4b-40k copy-t1000-qornn-rotations-4b-40k-frozen-a12 \
    --steps 40000
# That float model is a row of the copy page too.
if [[ -z ${ONLY:-} || copy-t1000-qornn-rotations-4b-40k =~ $ONLY ]]; then
    keep_run "$runs/copy-t1000-qornn-rotations-4b-40k" \
        docs/results/copy-t1000/authors-budget/copy-t1000-qornn-rotations-4b-40k \
        "qornn train --config $config --steps 40000 --threads 1 --out runs/copy-t1000-qornn-rotations-4b-40k"
fi
one=copy-t1000-qornn-rotations-4b-a12
if [[ -z ${ONLY:-} || $one =~ $ONLY ]]; then
    [[ -f $runs/$one/summary.json ]] ||
        "$qornn" train --config "configs/$one.toml" --threads 1 --out "$runs/$one"
    quantize_and_check "$runs/$one" "$here/$one"
    cp "$runs/$one"/{metrics.jsonl,summary.json} "$here/$one/"
    portable_config "$runs/$one/config.toml" > "$here/$one/config.toml"
    echo "qornn train --config configs/$one.toml --threads 1 --out runs/$one; qornn quantize --run runs/$one" \
        > "$here/$one/command.txt"
fi
python3 bench/integer_page.py "$here" > docs/results/integer.md
echo "wrote docs/results/integer.md"

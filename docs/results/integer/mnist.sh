#!/usr/bin/env bash
# The pMNIST and sMNIST rows of docs/results/integer.md: the shipped 4-bit Block-HadamRNN
# config trained one (or ten) epochs in float, then fine-tuned with its activations at A bits
# and its read-out at 4 bits (`--act-bits A --readout-bits 4`; one row trained so from the
# start), quantized with the run's own
# A, step and read-out width, exported to C and checked on the emulated Cortex-M4; the
# artefacts copied into docs/results/integer/<name>/ and the page regenerated.
#   docs/results/integer/mnist.sh DATA_DIR
# Runs go to RUNS (default runs/); a step whose output exists is not run again, so the
# script resumes where it stopped. ONLY=REGEX runs only the rows whose names match it (the
# others' kept artefacts stay as they are; the page is written from all of them). One core
# per run; on one core of an AMD EPYC (AVX-512), with another run on the other core, 10
# float pMNIST epochs took 1,503 s and one fine-tuning epoch at A = 8 189 s.
set -euo pipefail
cd "$(dirname "$0")/../../.."
data=${1:?usage: docs/results/integer/mnist.sh DATA_DIR (MNIST)}
here=docs/results/integer
source docs/results/pages.sh
source "$here/m4.sh"

# selected NAME: whether the row NAME is to run (ONLY unset, or NAME matches it).
selected() {
    [[ -z ${ONLY:-} || $1 =~ $ONLY ]]
}

train() { # out, then qornn train's flags; THREADS threads (default 1)
    local out=$1
    shift
    [[ -f $runs/$out/summary.json ]] ||
        "$qornn" train "$@" --data-dir "$data" --threads "${THREADS:-1}" --out "$runs/$out"
}

# The float model every row starts from: the shipped config trained float_epochs epochs
# (runs/<task>-block-hadamrnn-4b-1ep, or -10ep); each fine-tuning runs qat_epochs epochs.
float_epochs=1
qat_epochs=1

# name, task, A, the run it starts from ("-": none, the config's own schedule), extra flags
fine_tune() {
    local name=$1 task=$2 a=$3 from=$4
    shift 4
    selected "$name" || return 0
    local config=configs/$task-block-hadamrnn-4b.toml run=$runs/$name
    local float=$task-block-hadamrnn-4b-${float_epochs}ep
    # The float model, where the row starts from it (directly or through the row it starts
    # from), and its own artefacts: the accuracy the page compares with.
    local from_float=false
    if [[ $from == "$float" ]] || { [[ $from != - ]] && grep -qF "runs/$float;" "$here/$from/command.txt"; }; then
        from_float=true
        train "$float" --config "$config" --epochs "$float_epochs"
        mkdir -p "$here/$float"
        cp "$runs/$float"/{metrics.jsonl,summary.json} "$here/$float/"
        portable_config "$runs/$float/config.toml" > "$here/$float/config.toml"
        echo "qornn train --config $config --epochs $float_epochs --data-dir DIR --threads 1 --out runs/$float" \
            > "$here/$float/command.txt"
    fi
    local start=(--epochs "$qat_epochs" --init-from "$runs/$from" --lr 1e-4 --orthogonal-lr 1e-4)
    [[ $from == - ]] && start=()
    train "$name" --config "$config" "${start[@]}" --act-bits "$a" --readout-bits 4 "$@"
    quantize_and_check "$run" "$here/$name" --data-dir "$data"
    cp "$run"/{metrics.jsonl,summary.json} "$here/$name/"
    portable_config "$run/config.toml" "$from" > "$here/$name/config.toml"
    local first="qornn train --config $config --epochs $float_epochs --data-dir DIR --threads 1 --out runs/$float"
    local tune="qornn train --config $config --epochs $qat_epochs --data-dir DIR --threads 1 --init-from runs/$from --lr 1e-4 --orthogonal-lr 1e-4 --act-bits $a --readout-bits 4${*:+ $*} --out runs/$name"
    if [[ $from == - ]]; then
        echo "qornn train --config $config --data-dir DIR --threads 1 --act-bits $a --readout-bits 4 $* --out runs/$name; qornn quantize --run runs/$name" \
            > "$here/$name/command.txt"
    elif [[ $from == "$float" ]]; then
        echo "$first; $tune; qornn quantize --run runs/$name" > "$here/$name/command.txt"
    elif ! $from_float; then
        # A chain that starts from a row trained from the start: no float model in it.
        echo "(runs/$from as its row); $tune; qornn quantize --run runs/$name" \
            > "$here/$name/command.txt"
    else
        echo "$first; (runs/$from as its row); $tune; qornn quantize --run runs/$name" \
            > "$here/$name/command.txt"
    fi
}

fine_tune pmnist-block-hadamrnn-4b-a12-v4 pmnist 12 pmnist-block-hadamrnn-4b-1ep
fine_tune pmnist-block-hadamrnn-4b-a10-v4 pmnist 10 pmnist-block-hadamrnn-4b-1ep
fine_tune pmnist-block-hadamrnn-4b-a8-v4 pmnist 8 pmnist-block-hadamrnn-4b-a12-v4 --act-range learned
fine_tune pmnist-block-hadamrnn-4b-a8-3ep pmnist 8 - --epochs 3 --act-range learned
for f in 3 4 5; do
    fine_tune pmnist-block-hadamrnn-4b-a8-f$f-v4 pmnist 8 pmnist-block-hadamrnn-4b-a12-v4 \
        --act-hidden-frac $f
done
# The step from a quantile of the state's magnitudes instead.
for c in 0.99 0.999; do
    fine_tune pmnist-block-hadamrnn-4b-a8-cover$c-v4 pmnist 8 pmnist-block-hadamrnn-4b-a12-v4 \
        --act-hidden-cover $c
done
# A = 6 and 4 with the state saturating at +-8 and +-4.
fine_tune pmnist-block-hadamrnn-4b-a6-f2-v4 pmnist 6 pmnist-block-hadamrnn-4b-a12-v4 \
    --act-hidden-frac 2
fine_tune pmnist-block-hadamrnn-4b-a4-f1-v4 pmnist 4 pmnist-block-hadamrnn-4b-a12-v4 \
    --act-hidden-frac 1
fine_tune smnist-block-hadamrnn-4b-a12-v4 smnist 12 smnist-block-hadamrnn-4b-1ep
fine_tune smnist-block-hadamrnn-4b-a8-v4 smnist 8 smnist-block-hadamrnn-4b-1ep
fine_tune smnist-block-hadamrnn-4b-a8-f4-v4 smnist 8 smnist-block-hadamrnn-4b-a12-v4 \
    --act-hidden-frac 4
# The 10-epoch model (the config's own budget), fine-tuned one epoch at A = 12, then one at
# A = 8 with the step held at 2^-4, then three more at A = 8.
float_epochs=10
for task in pmnist smnist; do
    qat_epochs=1
    fine_tune $task-block-hadamrnn-4b-10ep-a12 $task 12 $task-block-hadamrnn-4b-10ep
    fine_tune $task-block-hadamrnn-4b-10ep-a8-f4 $task 8 $task-block-hadamrnn-4b-10ep-a12 \
        --act-hidden-frac 4
    qat_epochs=3
    fine_tune $task-block-hadamrnn-4b-10ep-a8-f4-3ep $task 8 \
        $task-block-hadamrnn-4b-10ep-a8-f4 --act-hidden-frac 4
done
# A finer step: 2^-6 at A = 12 (+-32); for sMNIST then 2^-5 at A = 8 (+-4).
qat_epochs=1
for task in pmnist smnist; do
    fine_tune $task-block-hadamrnn-4b-10ep-a12-f6 $task 12 $task-block-hadamrnn-4b-10ep \
        --act-hidden-frac 6
done
fine_tune smnist-block-hadamrnn-4b-10ep-a8-f5 smnist 8 smnist-block-hadamrnn-4b-10ep-a12-f6 \
    --act-hidden-frac 5
# The hidden step found by the loss search (--act-hidden-search: the power of two whose
# quantized forward has the lowest loss on the first batch) instead of held by hand.
float_epochs=1
fine_tune pmnist-block-hadamrnn-4b-a8-search-v4 pmnist 8 pmnist-block-hadamrnn-4b-a12-v4 \
    --act-hidden-search true
float_epochs=10
for task in pmnist smnist; do
    fine_tune $task-block-hadamrnn-4b-10ep-a8-search $task 8 $task-block-hadamrnn-4b-10ep-a12 \
        --act-hidden-search true
done
# The config's 10 epochs at A = 8 from the start (step 2^-4) instead of a fine-tuning.
fine_tune pmnist-block-hadamrnn-4b-a8-f4-scratch pmnist 8 - --act-hidden-frac 4
# The state saturating at +-8 from the start but with a fine step (A = 12, 2^-8: the range
# of A = 8 at 2^-4), the config's 10 epochs, then three at A = 8 with the step 2^-4.
fine_tune pmnist-block-hadamrnn-4b-a12-f8-scratch pmnist 12 - --act-hidden-frac 8
qat_epochs=3
fine_tune pmnist-block-hadamrnn-4b-a12-f8-scratch-a8-f4 pmnist 8 \
    pmnist-block-hadamrnn-4b-a12-f8-scratch --act-hidden-frac 4
# The same with the state saturating at +-4 (2^-9 at A = 12), then one epoch at A = 8 with
# the step 2^-5.
qat_epochs=1
fine_tune pmnist-block-hadamrnn-4b-a12-f9-scratch pmnist 12 - --act-hidden-frac 9
fine_tune pmnist-block-hadamrnn-4b-a12-f9-scratch-a8-f5 pmnist 8 \
    pmnist-block-hadamrnn-4b-a12-f9-scratch --act-hidden-frac 5
# And at +-2 (2^-10 at A = 12), then 2^-6 at A = 8.
fine_tune pmnist-block-hadamrnn-4b-a12-f10-scratch pmnist 12 - --act-hidden-frac 10
fine_tune pmnist-block-hadamrnn-4b-a12-f10-scratch-a8-f6 pmnist 8 \
    pmnist-block-hadamrnn-4b-a12-f10-scratch --act-hidden-frac 6
# sMNIST the same way, saturating at +-8 and at +-4.
for f in 8 9; do
    fine_tune smnist-block-hadamrnn-4b-a12-f$f-scratch smnist 12 - --act-hidden-frac $f
    fine_tune smnist-block-hadamrnn-4b-a12-f$f-scratch-a8-f$((f - 4)) smnist 8 \
        smnist-block-hadamrnn-4b-a12-f$f-scratch --act-hidden-frac $((f - 4))
done
# Seeds 2 and 3 of the +-4 recipe (10 epochs at A = 12 with 2^-9, then one at A = 8 with
# 2^-5): the best pMNIST row at A = 8 over three seeds.
qat_epochs=1
for seed in 2 3; do
    fine_tune pmnist-block-hadamrnn-4b-a12-f9-scratch-s$seed pmnist 12 - --act-hidden-frac 9 \
        --seed $seed
    fine_tune pmnist-block-hadamrnn-4b-a12-f9-scratch-s$seed-a8-f5 pmnist 8 \
        pmnist-block-hadamrnn-4b-a12-f9-scratch-s$seed --act-hidden-frac 5 --seed $seed
    # One epoch at A = 10 (2^-7, still +-4) between the two.
    fine_tune pmnist-block-hadamrnn-4b-a12-f9-scratch-s$seed-a10-f7 pmnist 10 \
        pmnist-block-hadamrnn-4b-a12-f9-scratch-s$seed --act-hidden-frac 7 --seed $seed
    fine_tune pmnist-block-hadamrnn-4b-a12-f9-scratch-s$seed-a10-f7-a8-f5 pmnist 8 \
        pmnist-block-hadamrnn-4b-a12-f9-scratch-s$seed-a10-f7 --act-hidden-frac 5 --seed $seed
done
# The +-4 recipe's A = 8 epoch with W held (its sign bits frozen: --freeze-recurrent-at 0),
# for the three seeds and the 30-epoch model: only U, the biases and V adapt to A = 8.
for base in pmnist-block-hadamrnn-4b-a12-f9-scratch{,-s2,-s3} pmnist-block-hadamrnn-4b-a12-f9-30ep; do
    seed=1
    [[ $base =~ -s([0-9]+)$ ]] && seed=${BASH_REMATCH[1]}
    qat_epochs=1
    fine_tune $base-a8-f5-frozen pmnist 8 $base --act-hidden-frac 5 --freeze-recurrent-at 0 \
        --seed $seed
    # Three epochs, lr x 0.5 per epoch (the 10-epoch models only).
    [[ $base == *-30ep ]] && continue
    qat_epochs=3
    fine_tune $base-a8-f5-frozen-3ep pmnist 8 $base --act-hidden-frac 5 \
        --freeze-recurrent-at 0 --lr-gamma 0.5 --seed $seed
    # Six epochs, lr x 0.7 per epoch, as on sMNIST.
    qat_epochs=6
    fine_tune $base-a8-f5-frozen-6ep pmnist 8 $base --act-hidden-frac 5 \
        --freeze-recurrent-at 0 --lr-gamma 0.7 --seed $seed
done
qat_epochs=1
# A config that holds its whole recipe (activations at A = 8 from a given step on): trained,
# quantized, checked and kept.
config_row() { # name [threads: a run is bit for bit reproducible with the same --threads]
    local name=$1 threads=${2:-1} run=$runs/$1
    selected "$name" || return 0
    THREADS=$threads train "$name" --config "configs/$name.toml"
    quantize_and_check "$run" "$here/$name" --data-dir "$data"
    keep_run "$run" "$here/$name" \
        "qornn train --config configs/$name.toml --data-dir DIR --threads $threads --out runs/$name; qornn quantize --run runs/$name"
}
# The LRU's diagonal recurrence (rotation blocks with a learned radius), A = 8 from epoch 2,
# and the same config with float activations and V float, the accuracy it is held against.
config_row pmnist-lru-4b-a8
if selected pmnist-lru-4b; then
    train pmnist-lru-4b --config configs/pmnist-lru-4b.toml
    keep_run "$runs/pmnist-lru-4b" "$here/pmnist-lru-4b" \
        "qornn train --config configs/pmnist-lru-4b.toml --data-dir DIR --threads 1 --out runs/pmnist-lru-4b"
fi
# The +-4 (pMNIST) and +-8 (sMNIST) recipes at three times the config's budget: 30 epochs
# at A = 12, lr x 0.92 per epoch, then one (and three) epochs at A = 8 with the step 16
# times coarser.
for task_frac in pmnist:9 smnist:8; do
    task=${task_frac%:*} f=${task_frac#*:}
    qat_epochs=1
    fine_tune $task-block-hadamrnn-4b-a12-f$f-30ep $task 12 - --act-hidden-frac $f \
        --epochs 30 --lr-gamma 0.92
    fine_tune $task-block-hadamrnn-4b-a12-f$f-30ep-a8-f$((f - 4)) $task 8 \
        $task-block-hadamrnn-4b-a12-f$f-30ep --act-hidden-frac $((f - 4))
    qat_epochs=3
    fine_tune $task-block-hadamrnn-4b-a12-f$f-30ep-a8-f$((f - 4))-3ep $task 8 \
        $task-block-hadamrnn-4b-a12-f$f-30ep --act-hidden-frac $((f - 4))
done
# sMNIST's 30-epoch model at A = 8 with W held, as the pMNIST rows above.
qat_epochs=1
fine_tune smnist-block-hadamrnn-4b-a12-f8-30ep-a8-f4-frozen smnist 8 \
    smnist-block-hadamrnn-4b-a12-f8-30ep --act-hidden-frac 4 --freeze-recurrent-at 0
# And its 10-epoch +-8 model with pMNIST's best A = 8 recipe: three epochs with W held,
# lr x 0.5 per epoch.
qat_epochs=3
fine_tune smnist-block-hadamrnn-4b-a12-f8-scratch-a8-f4-frozen-3ep smnist 8 \
    smnist-block-hadamrnn-4b-a12-f8-scratch --act-hidden-frac 4 --freeze-recurrent-at 0 \
    --lr-gamma 0.5
# Still rising after three: six epochs, lr x 0.7 per epoch.
qat_epochs=6
fine_tune smnist-block-hadamrnn-4b-a12-f8-scratch-a8-f4-frozen-6ep smnist 8 \
    smnist-block-hadamrnn-4b-a12-f8-scratch --act-hidden-frac 4 --freeze-recurrent-at 0 \
    --lr-gamma 0.7
qat_epochs=1
# The literature's budget, 100 epochs (lr x 0.98 per epoch), trained at A = 12 with the
# +-4 recipe's step and V at 4 bits from the start; two threads.
config_row pmnist-block-hadamrnn-4b-a12-100ep 2
# Its A = 8 version: three epochs with W held (lr x 0.5 per epoch), as the 10-epoch rows.
qat_epochs=3
fine_tune pmnist-block-hadamrnn-4b-a12-100ep-a8-f5-frozen-3ep pmnist 8 \
    pmnist-block-hadamrnn-4b-a12-100ep --act-hidden-frac 5 --freeze-recurrent-at 0 --lr-gamma 0.5
# Stochastic rounding in training (--act-train-rounding stochastic): the +-4 recipe's three
# A = 8 epochs with W held (seed 1), and the config's 10 epochs at A = 8 from the start with
# the step 2^-5, against the same rounded to nearest.
qat_epochs=3
fine_tune pmnist-block-hadamrnn-4b-a12-f9-scratch-a8-f5-frozen-3ep-stochastic pmnist 8 \
    pmnist-block-hadamrnn-4b-a12-f9-scratch --act-hidden-frac 5 --freeze-recurrent-at 0 \
    --lr-gamma 0.5 --act-train-rounding stochastic
qat_epochs=1
fine_tune pmnist-block-hadamrnn-4b-a8-f5-scratch pmnist 8 - --act-hidden-frac 5
fine_tune pmnist-block-hadamrnn-4b-a8-f5-scratch-stochastic pmnist 8 - --act-hidden-frac 5 \
    --act-train-rounding stochastic
# Both over seeds 2 and 3.
for seed in 2 3; do
    fine_tune pmnist-block-hadamrnn-4b-a8-f5-scratch-s$seed pmnist 8 - --act-hidden-frac 5 \
        --seed $seed
    fine_tune pmnist-block-hadamrnn-4b-a8-f5-scratch-stochastic-s$seed pmnist 8 - \
        --act-hidden-frac 5 --act-train-rounding stochastic --seed $seed
done
# The 10 epochs at A = 8 (to nearest) then three with W held (lr x 0.5 per epoch), as the
# +-4 recipe's last stage, over the three seeds.
qat_epochs=3
for suffix in "" -s2 -s3; do
    seed=${suffix#-s}
    fine_tune pmnist-block-hadamrnn-4b-a8-f5-scratch$suffix-frozen-3ep pmnist 8 \
        pmnist-block-hadamrnn-4b-a8-f5-scratch$suffix --act-hidden-frac 5 \
        --freeze-recurrent-at 0 --lr-gamma 0.5 --seed "${seed:-1}"
done
qat_epochs=1
# Three times the config's budget at A = 8 from the start: 30 epochs at lr x 0.92 per epoch,
# as the A = 12 model trained so.
fine_tune pmnist-block-hadamrnn-4b-a8-f5-scratch-30ep pmnist 8 - --act-hidden-frac 5 \
    --epochs 30 --lr-gamma 0.92
# The float model over three seeds (seed 1 is pmnist-block-hadamrnn-4b-10ep above): the
# accuracy the A = 8 rows are held against; kept beside the rows, not rows themselves.
for seed in 2 3; do
    name=pmnist-block-hadamrnn-4b-10ep-s$seed
    selected "$name" || continue
    train "$name" --config configs/pmnist-block-hadamrnn-4b.toml --epochs 10 --seed $seed
    keep_run "$runs/$name" "$here/$name" \
        "qornn train --config configs/pmnist-block-hadamrnn-4b.toml --epochs 10 --seed $seed --data-dir DIR --threads 1 --out runs/$name"
done
python3 bench/integer_page.py "$here" > docs/results/integer.md
echo "wrote docs/results/integer.md"

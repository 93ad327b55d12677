#!/bin/bash
# Bit-identity check for a refactor (issue 9): short runs over every cell, parametrisation,
# quantizer and task kind, one thread each, then `qornn quantize` on the models it covers.
# Run it with the binary before and after the change, then compare the two folders:
#   bench/bit-identity.sh OLD_BINARY /tmp/before; bench/bit-identity.sh NEW_BINARY /tmp/after
#   python3 bench/compare_runs.py /tmp/before /tmp/after
# MNIST: $MNIST (default runs/mnist); PTB: $PTB (default ../shared/data/ptb).
BIN=$1; O=$2; mkdir -p $O; D=${MNIST:-runs/mnist}
run() { name=$1; shift; $BIN train --threads 1 --out $O/$name "$@" > $O/$name.log 2>&1 || echo "FAIL $name"; }
run default --steps 60
run pmnist4b --config configs/pmnist-qornn-bjorck-4b.toml --steps 8 --data-dir $D --hidden 64 --batch 32
run projunn-d --model qornn-projunn-d --bits 4 --steps 40 --hidden 32 --delay 20
run projunn-t --model ornn-projunn-t --steps 40 --hidden 32 --delay 20
run lsq --range lsq --bits 4 --steps 40 --hidden 32 --delay 20 --granularity per-row
run orth --rounding orthogonal --bits 4 --steps 30 --hidden 32 --delay 20
run hadam --model hadamrnn --steps 40 --hidden 32 --delay 20
run bhadam --model block-hadamrnn --block 8 --steps 40 --hidden 32 --delay 20 --act modrelu
run lstm --model lstm --steps 40 --hidden 32 --delay 20
run gru --model gru --steps 40 --hidden 32 --delay 20
run fastrnn --model fastrnn --steps 40 --hidden 32 --delay 20 --rank-w 8
run fastgrnn --model fastgrnn --steps 40 --hidden 32 --delay 20 --rank-u 4 --bits 4
run rnn --model rnn --steps 40 --hidden 32 --delay 20 --act tanh
run adding --task adding --model qornn-bjorck --bits 6 --steps 40 --hidden 32 --length 50 --optimizer adam --schedule step --lr-every 10
run ptbc --task ptb-char --bits 4 --steps 6 --hidden 32 --batch 16 --seq 30 --eval-every 3 --eval-sequences 32 --data-dir ${PTB:-../shared/data/ptb}
run ptbw --task ptb-word --bits 4 --steps 6 --hidden 32 --batch 16 --seq 30 --embedding 16 --eval-every 3 --eval-sequences 32 --data-dir ${PTB:-../shared/data/ptb}
run sched --bits-schedule 0:8,20:6,30:4 --bits 4 --steps 40 --hidden 32 --delay 20 --warmup-steps 10
# rnn (tanh) is refused by `qornn quantize` by design: "quant fail" for it is expected.
for n in default pmnist4b projunn-d lsq orth hadam bhadam rnn adding sched; do $BIN quantize --run $O/$n --calib 64 --act-bits 12 --output $O/$n.qornn > $O/$n.quant.log 2>&1 || echo "quant fail $n"; done

#!/usr/bin/env bash
# Writes docs/results/speed.md from its template (page.md here) and the measurements kept
# beside it (compare.md: `bench/compare.sh`'s output with the machine named; integer.md:
# `bench/integer-speed.sh`'s; act-bits.md: `bench/act-bits-speed.sh`'s).
#   docs/results/speed/make.sh           the page, from the kept measurement
#   docs/results/speed/make.sh --rerun MNIST_DIR   first measures again on this machine: the
#                                        training step (PyTorch and numpy needed) and the
#                                        integer engine (integer.md: bench/integer-speed.sh,
#                                        MNIST for the pMNIST shapes); nothing else should run
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/speed
if [[ ${1:-} == --rerun ]]; then
    data=${2:?usage: docs/results/speed/make.sh --rerun MNIST_DIR}
    {
        echo "Measured on $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) cores, with \`bench/compare.sh hadamrnn:512:4:modrelu block-hadamrnn:512:4:modrelu qornn-rotations:512:4:modrelu qornn-bjorck:170:4 qornn-bjorck:512:4 lstm:170:32 gru:170:32 fastgrnn:170:32\` (PyTorch $(python3 -c 'import torch; print(torch.__version__)') on CPU; both on every core)."
        echo
        bench/compare.sh hadamrnn:512:4:modrelu block-hadamrnn:512:4:modrelu qornn-rotations:512:4:modrelu \
            qornn-bjorck:170:4 qornn-bjorck:512:4 lstm:170:32 gru:170:32 fastgrnn:170:32
    } > "$here/compare.md"
    bench/integer-speed.sh "$data" > "$here/integer.md.new"
    mv "$here/integer.md.new" "$here/integer.md"
    bench/act-bits-speed.sh > "$here/act-bits.md"
fi
python3 bench/fill_page.py "$here/page.md" > docs/results/speed.md
echo "wrote docs/results/speed.md"

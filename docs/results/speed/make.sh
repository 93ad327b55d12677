#!/usr/bin/env bash
# Writes docs/results/speed.md from its template (page.md here) and the measurement kept
# beside it (compare.md: `bench/compare.sh`'s output with the machine named).
#   docs/results/speed/make.sh           the page, from the kept measurement
#   docs/results/speed/make.sh --rerun   first measures again on this machine (PyTorch and
#                                        numpy needed; nothing else should be running)
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/speed
if [[ ${1:-} == --rerun ]]; then
    {
        echo "Measured on $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) cores, with \`bench/compare.sh hadamrnn:512:4:modrelu block-hadamrnn:512:4:modrelu qornn-bjorck:170:4 qornn-bjorck:512:4\` (PyTorch $(python3 -c 'import torch; print(torch.__version__)') on CPU; both on every core)."
        echo
        bench/compare.sh hadamrnn:512:4:modrelu block-hadamrnn:512:4:modrelu \
            qornn-bjorck:170:4 qornn-bjorck:512:4
    } > "$here/compare.md"
fi
python3 bench/fill_page.py "$here/page.md" > docs/results/speed.md
echo "wrote docs/results/speed.md"

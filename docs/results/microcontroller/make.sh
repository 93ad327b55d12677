#!/usr/bin/env bash
# Writes docs/results/microcontroller.md from its template (page.md here) and the table kept
# beside it (m4-table.md: bench/m4-table.sh's output).
#   docs/results/microcontroller/make.sh                 the page, from the kept table
#   docs/results/microcontroller/make.sh --rerun DATA    first measures again (MNIST in
#                                                        DATA; arm-none-eabi-gcc, newlib
#                                                        and qemu-system-arm needed)
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/microcontroller
if [[ ${1:-} == --rerun ]]; then
    bench/m4-table.sh "${2:?--rerun needs the MNIST folder}" > "$here/m4-table.md.new"
    mv "$here/m4-table.md.new" "$here/m4-table.md"
fi
python3 bench/fill_page.py "$here/page.md" > docs/results/microcontroller.md
echo "wrote docs/results/microcontroller.md"

#!/usr/bin/env bash
# Writes docs/results/copy-t1000.md from its template (page.md here) and the runs it reports:
# the block rotations at 4 bits that reach 90 % (trained by docs/results/integer/copy-t1000.sh
# and kept there; their float model at the authors' budget is kept in authors-budget/ here)
# and every model at 4 bits or at the same bytes after 1,500 steps (the baselines page's
# runs, docs/results/baselines/copy-t1000/).
#   docs/results/copy-t1000/make.sh          the page, from the kept artefacts
# To train the runs again: docs/results/integer/copy-t1000.sh (about 3 hours of one core for
# the rotation runs) and docs/results/baselines/make.sh --rerun DATA_DIR, then this script.
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/results/copy-t1000
python3 bench/fill_page.py "$here/page.md" > docs/results/copy-t1000.md
echo "wrote docs/results/copy-t1000.md"

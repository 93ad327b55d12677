#!/usr/bin/env bash
# The README's test command: sets up what the tests need on a fresh Debian machine, then
# runs every test. As root with apt-get it installs and starts:
#   - a one-node Slurm cluster (slurm-wlm, munge; scripts/slurm-up.sh) for the sweep test;
# Without root or apt-get it installs nothing, and the tests that need these fail with a
# message saying what to install (they never pass silently).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo --version

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    scripts/slurm-up.sh
else
    echo "test.sh: not root or no apt-get; not installing Slurm (the Slurm test will say" \
         "what is missing)"
fi

cargo test --workspace --locked "$@"

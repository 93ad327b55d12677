#!/usr/bin/env bash
# The README's test command: sets up what the tests need on a fresh Debian machine, then
# runs every test. As root with apt-get it installs and starts:
#   - a one-node Slurm cluster (slurm-wlm, munge; scripts/slurm-up.sh) for the sweep test;
#   - the Cortex-M4 cross-compiler and emulator (gcc-arm-none-eabi, libnewlib-arm-none-eabi,
#     qemu-system-arm) and make, for the C library's tests on an emulated microcontroller.
# Without root or apt-get it installs nothing, and the tests that need these fail with a
# message saying what to install (they never pass silently).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo --version

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
        || ! command -v make >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make gcc-arm-none-eabi \
            libnewlib-arm-none-eabi qemu-system-arm >/dev/null
    fi
    scripts/slurm-up.sh
else
    echo "test.sh: not root or no apt-get; installing nothing (the Slurm and Cortex-M4" \
         "tests will say what is missing)"
fi

cargo test --workspace --locked "$@"

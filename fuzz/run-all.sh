#!/usr/bin/env bash
# Runs every fuzz target for 10^6 executions (the README's numbers), two at a time, with
# a 512 MiB RSS limit and a 64 MiB limit on any single allocation; the corpus grows in
# fuzz/corpus/<target>, starting from fuzz/seeds/<target>; crashes land in
# fuzz/artifacts/<target>. Needs a nightly toolchain and cargo-fuzz.
set -uo pipefail
cd "$(dirname "$0")"
runs=${RUNS:-1000000}
run() {
    mkdir -p "corpus/$1"
    cargo +nightly fuzz run "$1" "corpus/$1" "seeds/$1" -- -runs="$runs" \
        -rss_limit_mb=512 -malloc_limit_mb=64 -max_len="$2" -print_final_stats=1 \
        > "logs/$1.log" 2>&1
    echo "$1: exit $? $(grep -E 'stat::number_of_executed_units' "logs/$1.log")"
}
mkdir -p logs
cargo +nightly fuzz build
run model_file 65536 & run mnist_idx 8192 & wait
run ptb_text 4096 & run config_toml 4096 & wait
run checkpoint 8192 & run task_record 64 & wait

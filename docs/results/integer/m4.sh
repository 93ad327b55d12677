# Sourced by the integer page's scripts (make.sh, copy-t1000.sh, mnist.sh) and
# bench/m4-table.sh, from the repository's root with $qornn set.

# check_on_m4 RUN MODEL [export flags]: exports MODEL (a .qornn file) to C in RUN/c, checks
# its trace on the emulated Cortex-M4 and counts its instructions per step and per
# multiply-add, all into RUN/check-m4.txt.
check_on_m4() {
    local run=$1 model=$2
    shift 2
    "$qornn" export --model "$model" --c "$run/c" "$@"
    local c_model
    c_model=$(cd "$run/c" && pwd)
    make -s -C c check-m4 MODEL="$c_model" | grep '^qornn check' > "$run/check-m4.txt"
    make -s -C c steps-m4 MODEL="$c_model" | grep '^instructions per' >> "$run/check-m4.txt"
}

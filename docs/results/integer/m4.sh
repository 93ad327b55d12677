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

# quantize_and_check RUN DEST [export flags]: quantizes RUN with its own A, step and
# read-out width, checks the file on the emulated Cortex-M4 (check_on_m4) and keeps both
# reports in DEST.
quantize_and_check() {
    local run=$1 dest=$2
    shift 2
    [[ -f $run/quantize.json ]] || "$qornn" quantize --run "$run" > "$run/quantize.json"
    [[ -f $run/check-m4.txt ]] || check_on_m4 "$run" "$run/model.qornn" "$@"
    mkdir -p "$dest"
    cp "$run"/{quantize.json,check-m4.txt} "$dest/"
}

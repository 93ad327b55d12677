# Sourced by the results pages' make.sh scripts (from the repository root): keeping a
# run's small artefacts beside its page, and running sweeps and configs into RUNS.
qornn=${QORNN:-target/release/qornn}
runs=${RUNS:-runs}

# portable_config CONFIG [FROM]: CONFIG (a run's config.toml) without this machine's
# paths: the data folder written DATA_DIR, a teacher run written runs/<its folder> and,
# given FROM, the run it started from written runs/FROM, as the kept commands write them.
portable_config() {
    local rules=(-e 's|^data_dir = .*|data_dir = "DATA_DIR"|'
        -e 's|^teacher = ".*/\([^/]*\)"$|teacher = "runs/\1"|')
    [[ -n ${2:-} ]] && rules+=(-e "s|^init_from = .*|init_from = \"runs/$2\"|")
    sed "${rules[@]}" "$1"
}

# keep_run RUN DEST COMMAND: RUN's config.toml (portable), metrics.jsonl and summary.json
# into DEST, with the command that trained it.
keep_run() {
    mkdir -p "$2"
    portable_config "$1/config.toml" > "$2/config.toml"
    cp "$1"/{metrics.jsonl,summary.json} "$2/"
    echo "$3" > "$2/command.txt"
}

# keep_sweep DEST OUT SWEEP_ARGS...: `qornn sweep SWEEP_ARGS` into OUT (resumed if it is
# there), then every run kept in DEST/<its grid values joined by ->/, its command training
# it alone from its kept config.
keep_sweep() {
    local dest=$1 out=$2
    shift 2
    "$qornn" sweep "$@" --out "$out" --jobs "${JOBS:-2}" --threads 1
    rm -rf "${dest:?}"
    local line fields label i
    while IFS= read -r line; do
        IFS=, read -r -a fields <<< "$line"
        [[ ${fields[0]} == index ]] && continue
        label=""
        for ((i = 2; i < ${#fields[@]}; i++)); do
            label+="${label:+-}${fields[i]}"
        done
        keep_run "$out/${fields[1]}" "$dest/$label" \
            "qornn train --config $dest/$label/config.toml --out runs/$(basename "$out")-$label"
    done < "$out/runs.csv"
}

# keep_config DEST CONFIG [FLAGS...]: `qornn train --config configs/CONFIG.toml FLAGS`
# into RUNS/CONFIG (skipped when it has finished), kept in DEST/CONFIG; the caller's
# data folder `$data`, if set, is written DATA_DIR in the kept command.
keep_config() {
    local dest=$1 config=$2
    shift 2
    [[ -f $runs/$config/summary.json ]] ||
        "$qornn" train --config "configs/$config.toml" "$@" --threads 1 --out "$runs/$config"
    local flags="$*"
    # The data folder as DATA_DIR in the kept command.
    [[ -n ${data:-} ]] && flags=${flags//"$data"/DATA_DIR}
    keep_run "$runs/$config" "$dest/$config" \
        "qornn train --config configs/$config.toml${flags:+ $flags} --threads 1 --out runs/$config"
}

//! The C library (`c/qornn.h`, `c/qornn.c`) against exported traces: built with warnings
//! as errors and run under AddressSanitizer and UBSan on the host, and cross-compiled for
//! a Cortex-M4 and run on QEMU's mps2-an386 (set up by `scripts/test.sh`; without the
//! toolchain the M4 test fails and says what to install). Dense ReLU and modReLU models,
//! a Hadamard recurrence, block rotations, per-row steps and a quantized read-out; a
//! corrupted trace must fail both checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{qornn, text};

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../c")
}

/// Trains a small copy model (32 units unless `extra` says) with `extra` settings,
/// quantizes it (with `quantize` flags) and exports it for C into `dir/c`.
fn exported(dir: &Path, extra: &[&str], quantize: &[&str]) -> PathBuf {
    let run = dir.join("run");
    let mut args = vec![
        "train",
        "--delay",
        "10",
        "--batch",
        "16",
        "--eval-sequences",
        "32",
        "--optimizer",
        "adam",
        "--lr",
        "3e-3",
        "--threads",
        "1",
        "--steps",
        "60",
        "--eval-every",
        "30",
        "--out",
    ];
    let run_text = run.to_string_lossy().into_owned();
    args.push(&run_text);
    if !extra.contains(&"--hidden") {
        args.extend(["--hidden", "32"]);
    }
    args.extend(extra);
    let trained = qornn(&args);
    assert!(trained.status.success(), "{}", text(&trained));
    let mut q = vec!["quantize", "--run", &run_text, "--calib", "64"];
    q.extend(quantize);
    let quantized = qornn(&q);
    assert!(quantized.status.success(), "{}", text(&quantized));
    let out = dir.join("c");
    let model = run.join("model.qornn");
    let exported = qornn(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--c",
        out.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", text(&exported));
    out
}

fn make(target: &str, model: &Path) -> Output {
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(c_dir())
        .arg(target)
        .arg(format!("MODEL={}", model.display()))
        .output()
        .expect("make runs")
}

/// A target that needs no model (`check-validate`, `check-fuzz`), built in a temporary
/// folder.
fn make_standalone(target: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(c_dir())
        .arg(target)
        .args(args)
        .arg(format!("OUT={}", dir.path().display()))
        .output()
        .expect("make runs")
}

/// A `#define QORNN_<NAME>` of the exported model's header.
fn define(model: &Path, name: &str) -> u64 {
    let header = std::fs::read_to_string(model.join("qornn_model.h")).unwrap();
    let prefix = format!("#define QORNN_{name} ");
    header
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in the exported header"))
}

/// Changes the first hidden code of the trace: a check that still passed would prove
/// nothing.
fn corrupt_trace(model: &Path) {
    let path = model.join("qornn_trace.h");
    let trace = std::fs::read_to_string(&path).unwrap();
    let start = trace.find("qornn_trace_hidden[").unwrap();
    let open = start + trace[start..].find("{\n    ").unwrap() + 6;
    let end = open + trace[open..].find(',').unwrap();
    let value: i64 = trace[open..end].trim().parse().unwrap();
    let corrupted = format!("{}{}{}", &trace[..open], value + 1, &trace[end..]);
    std::fs::write(&path, corrupted).unwrap();
    // Rebuild from the changed trace.
    let _ = std::fs::remove_dir_all(model.join("build"));
}

const MODELS: [(&str, &[&str], &[&str]); 13] = [
    ("relu-6b", &["--bits", "6"], &["--act-bits", "8"]),
    // 8-bit codes: the paired (SXTB16 + SMLAD) kernel, four rows at a time, as 4-bit ones
    // below two at a time; U's rows (10 inputs) by the same split.
    (
        "modrelu-8b",
        &["--bits", "8", "--act", "modrelu"],
        &["--act-bits", "12"],
    ),
    (
        "modrelu-4b-readout",
        &["--bits", "4", "--act", "modrelu"],
        &["--act-bits", "12", "--readout-bits", "8"],
    ),
    (
        "hadamrnn",
        &["--model", "hadamrnn", "--bits", "4", "--act", "modrelu"],
        &["--act-bits", "12"],
    ),
    (
        "block-hadamrnn",
        &["--model", "block-hadamrnn", "--block", "8", "--bits", "3"],
        &["--act-bits", "8"],
    ),
    // Activations trained at 8 bits: quantized with the run's own A and learned step.
    (
        "modrelu-4b-act-bits-8",
        &["--bits", "4", "--act", "modrelu", "--act-bits", "8"],
        &[],
    ),
    // Block rotations: the pairs (a, b), a step mantissa per pair of rows (format v4).
    (
        "rotations",
        &[
            "--model",
            "qornn-rotations",
            "--bits",
            "4",
            "--act",
            "modrelu",
        ],
        &["--act-bits", "12", "--readout-bits", "8"],
    ),
    // The LRU's blocks: the rotations' codes with the learned radius in each row's step.
    (
        "lru",
        &["--model", "lru", "--bits", "4", "--act", "modrelu"],
        &["--act-bits", "12", "--readout-bits", "8"],
    ),
    // A per-row quantizer: W's and U's mantissas per row.
    (
        "per-row",
        &["--bits", "4", "--granularity", "per-row"],
        &["--act-bits", "10"],
    ),
    // Rows that end inside a word: the paired kernel's whole words, then 2 bytes (8-bit
    // codes, as one pair) and 6 nibbles (4-bit codes, one at a time).
    (
        "modrelu-8b-30-units",
        &["--hidden", "30", "--bits", "8", "--act", "modrelu"],
        &["--act-bits", "12"],
    ),
    (
        "modrelu-4b-30-units",
        &["--hidden", "30", "--bits", "4", "--act", "modrelu"],
        &["--act-bits", "12", "--readout-bits", "8"],
    ),
    // A number of rows that 4 does not divide: the four-row kernel, then rows two at a time
    // (the last alone); each row ends with 3 bytes (a pair and one) or 1.
    (
        "relu-8b-31-units",
        &["--hidden", "31", "--bits", "8"],
        &["--act-bits", "12"],
    ),
    (
        "relu-8b-33-units",
        &["--hidden", "33", "--bits", "8"],
        &["--act-bits", "8"],
    ),
];

/// Issue 22: the C library fuzzed (`c/examples/fuzz_model.c`): 100,000 models built from
/// mutated bytes through `qornn_validate`, the accepted ones stepped (their hidden codes
/// compared with a reference step written from `qornn.h`'s formula in plain int64) and
/// read out, under AddressSanitizer and UBSan; some must be accepted, or the steps would go
/// untested.
#[test]
fn c_library_survives_fuzzed_models_under_sanitizers() {
    let out = make_standalone("check-fuzz", &["RUNS=100000"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let accepted: u64 = log
        .split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        log.contains("qornn check: PASS (100000 inputs") && accepted > 100,
        "{log}"
    );
}

/// Issue 22, defect 3: `qornn_validate` against every arithmetic field at the extremes of
/// `int32_t` (and non-finite read-out floats), under UBSan: each refused, and the check
/// itself free of undefined behaviour (`c/examples/validate_hostile.c`).
#[test]
fn c_validate_refuses_hostile_fields_without_undefined_behaviour() {
    let out = make_standalone("check-validate", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("qornn check: PASS"), "{}", text(&out));
}

#[test]
fn c_library_matches_traces_under_sanitizers() {
    for (name, train, quantize) in MODELS {
        let dir = tempfile::tempdir().unwrap();
        let model = exported(dir.path(), train, quantize);
        let header = std::fs::read_to_string(model.join("qornn_model.h")).unwrap();
        assert!(header.contains("static const qornn_model qornn_exported_model"));
        let checked = make("check", &model);
        assert!(checked.status.success(), "{name}: {}", text(&checked));
        assert!(text(&checked).contains("qornn check: PASS"), "{name}");
        corrupt_trace(&model);
        let failed = make("check", &model);
        assert!(!failed.status.success(), "{name}: a corrupted trace passed");
        assert!(
            text(&failed).contains("qornn check: FAIL hidden code at step 0, index 0"),
            "{name}: {}",
            text(&failed)
        );
    }
}

/// The cross-compiler and the emulator, or what to install.
fn m4_tools() -> Result<(), String> {
    for tool in ["arm-none-eabi-gcc", "qemu-system-arm"] {
        let found = Command::new(tool).arg("--version").output();
        if !matches!(found, Ok(ref o) if o.status.success()) {
            return Err(format!(
                "{tool} is missing: run the README's test command (scripts/test.sh installs \
                 Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm; \
                 it needs root and apt-get)"
            ));
        }
    }
    Ok(())
}

#[test]
fn c_library_matches_traces_on_an_emulated_cortex_m4() {
    if let Err(why) = m4_tools() {
        panic!("{why}");
    }
    for (name, train, quantize) in [
        MODELS[1], MODELS[2], MODELS[4], MODELS[6], MODELS[9], MODELS[10], MODELS[11],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = exported(dir.path(), train, quantize);
        let checked = make("check-m4", &model);
        assert!(checked.status.success(), "{name}: {}", text(&checked));
        assert!(text(&checked).contains("qornn check: PASS"), "{name}");
        let size = make("size-m4", &model);
        assert!(size.status.success(), "{}", text(&size));
        assert!(text(&size).contains("check-m4.elf"));
        // Instructions per step and per multiply-add: U x (n d), plus W h for a dense W
        // (n^2) or the rotations (4 per pair: 2n); the Hadamard transform multiplies nothing.
        let (n, d) = (define(&model, "HIDDEN"), define(&model, "INPUT"));
        let multiply_adds = match name {
            "block-hadamrnn" => n * d,
            "rotations" => n * d + 2 * n,
            _ => n * d + n * n,
        };
        let steps = make("steps-m4", &model);
        let steps_text = text(&steps);
        assert!(steps.status.success(), "{name}: {steps_text}");
        let per_step: u64 = steps_text
            .strip_prefix("instructions per step: ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        assert!(per_step > multiply_adds, "{name}: {steps_text}");
        assert!(
            steps_text.contains(&format!(
                "instructions per multiply-add: {:.2} ({multiply_adds} multiply-adds per step)",
                per_step as f64 / multiply_adds as f64
            )),
            "{name}: {steps_text}"
        );
        corrupt_trace(&model);
        let failed = make("check-m4", &model);
        assert!(
            !failed.status.success(),
            "{name}: a corrupted trace passed on the M4"
        );
        assert!(
            text(&failed).contains("qornn check: FAIL hidden code at step 0, index 0"),
            "{name}: {}",
            text(&failed)
        );
    }
}

//! The binary end to end: bad input gives one clear error and a non-zero exit (never a
//! panic), and a run killed mid-way resumes to the same result.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::qornn;

/// Asserts a failure whose message contains every one of `needles`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = qornn(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{args:?} should fail; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {stderr}"
        );
    }
}

const SMALL: [&str; 16] = [
    "--delay",
    "10",
    "--hidden",
    "32",
    "--batch",
    "16",
    "--eval-sequences",
    "64",
    "--optimizer",
    "adam",
    "--lr",
    "3e-3",
    "--threads",
    "1",
    "--bits",
    "6",
];

#[test]
fn bad_flags_and_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    fails_with(
        &["train", "--bits", "9", "--out", &out("a")],
        &["bits", "2..=8"],
    );
    fails_with(&["train", "--bits", "1", "--out", &out("a")], &["bits"]);
    fails_with(&["bench", "--classes", "0"], &["--classes"]);
    fails_with(&["bench", "--seq", "0"], &["--seq"]);
    fails_with(
        &["bench", "--integer", "m.qornn", "--kernel", "fast"],
        &["--kernel", "avx2-bytes"],
    );
    fails_with(
        &["train", "--bjorck-iterations", "0", "--out", &out("a")],
        &["--bjorck-iterations"],
    );
    fails_with(
        &["train", "--lr-gamma", "nan", "--out", &out("a")],
        &["--lr-gamma"],
    );
    fails_with(
        &["train", "--model", "qornn-magic", "--out", &out("a")],
        &["model", "qornn-magic"],
    );
    fails_with(
        &["train", "--task", "sorting", "--out", &out("a")],
        &["task", "sorting"],
    );
    fails_with(
        &[
            "train",
            "--model",
            "ornn-bjorck",
            "--bits",
            "4",
            "--out",
            &out("a"),
        ],
        &["qornn-bjorck"],
    );
    fails_with(&["train", "--act", "gelu", "--out", &out("a")], &["act"]);
    fails_with(
        &["train", "--config", &out("missing.toml")],
        &["missing.toml"],
    );
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "hidden = [oops").unwrap();
    fails_with(
        &["train", "--config", bad_toml.to_str().unwrap()],
        &["bad.toml"],
    );
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "hiden = 12\n").unwrap();
    fails_with(
        &["train", "--config", unknown_key.to_str().unwrap()],
        &["hiden"],
    );
    fails_with(&["eval", "--run", &out("nowhere")], &["config.toml"]);
    fails_with(
        &[
            "train",
            "--task",
            "pmnist",
            "--data-dir",
            &out("no-data"),
            "--out",
            &out("a"),
        ],
        &["train-images-idx3-ubyte", "--data-dir"],
    );
    fails_with(
        &["train", "--epochs", "3", "--out", &out("a")],
        &["epochs", "--steps"],
    );
}

#[test]
fn corrupt_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = vec![
        "train",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(SMALL);
    assert!(qornn(&args).status.success());
    let eval = qornn(&["eval", "--run", run.to_str().unwrap()]);
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let loss = test_result(&eval.stdout)["loss"]
        .as_f64()
        .expect("eval reports a test loss");
    assert!(loss.is_finite() && loss > 0.0, "test loss {loss}");
    let ckpt = run.join("checkpoint.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &["train", "--resume", run.to_str().unwrap()],
        &["checkpoint.safetensors", "truncated"],
    );
    std::fs::write(&ckpt, b"not a checkpoint at all").unwrap();
    fails_with(
        &["train", "--resume", run.to_str().unwrap()],
        &["checkpoint.safetensors"],
    );
    // Starting over an existing run is refused rather than overwriting it.
    fails_with(&args, &["already holds a run", "--resume"]);
}

#[test]
fn diverging_loss_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = vec!["train", "--steps", "200", "--out", run.to_str().unwrap()];
    args.extend(SMALL.iter().map(|&a| if a == "3e-3" { "1e30" } else { a }));
    fails_with(&args, &["diverged", "--lr"]);
}

fn metric_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The summary's test evaluation; a summary without one (or without a numeric loss) fails
/// here, so that two missing results never compare equal.
fn test_result(stdout: &[u8]) -> serde_json::Value {
    let summary: serde_json::Value =
        serde_json::from_slice(stdout).expect("train prints its summary as JSON");
    let test = summary
        .get("test")
        .cloned()
        .expect("the summary has a test evaluation");
    assert!(test["loss"].is_f64(), "test loss missing: {test}");
    test
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let common = |out: &Path| {
        let mut a: Vec<String> = ["train", "--steps", "600", "--eval-every", "50"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(SMALL.iter().map(|s| s.to_string()));
        a.extend(["--out".to_string(), out.to_string_lossy().into_owned()]);
        a
    };
    let reference = Command::new(env!("CARGO_BIN_EXE_qornn"))
        .args(common(&whole))
        .output()
        .unwrap();
    assert!(reference.status.success());

    let mut child = Command::new(env!("CARGO_BIN_EXE_qornn"))
        .args(common(&killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while metric_lines(&killed) < 4 {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        metric_lines(&killed) < 12,
        "the run finished before it was killed"
    );
    let resumed = qornn(&["train", "--resume", killed.to_str().unwrap()]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(test_result(&resumed.stdout), test_result(&reference.stdout));
    assert_eq!(metric_lines(&killed), 12);

    // SIGTERM (a batch system's warning) checkpoints where the run stands, between two
    // evaluations, and exits with 75; the resumed run gives the same losses throughout.
    let stopped = dir.path().join("stopped");
    let child = Command::new(env!("CARGO_BIN_EXE_qornn"))
        .args(common(&stopped))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while metric_lines(&stopped) < 2 {
        assert!(start.elapsed() < Duration::from_secs(240), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("stopped at step"), "{stderr}");
    assert!(
        metric_lines(&stopped) < 12,
        "the run finished before SIGTERM"
    );
    let resumed = qornn(&["train", "--resume", stopped.to_str().unwrap()]);
    assert!(resumed.status.success());
    assert_eq!(test_result(&resumed.stdout), test_result(&reference.stdout));
    let val_losses = |dir: &Path| -> Vec<f64> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(val_losses(&stopped), val_losses(&whole));
}

/// Every `[default: V]` that `qornn train --help` states is the value training uses.
#[test]
fn help_states_the_real_defaults() {
    let help = String::from_utf8(qornn(&["train", "--help"]).stdout).unwrap();
    let defaults: toml::Table = toml::from_str(&qornn_default_config()).unwrap();
    let mut checked = 0;
    let mut flag = String::new();
    for line in help.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("--") {
            flag = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .replace('-', "_");
        } else if let Some(start) = line.find("[default: ") {
            let stated = &line[start + 10..line[start..].find(']').map(|e| start + e).unwrap()];
            if let Some(value) = defaults.get(&flag) {
                let actual = match value {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let same = match (stated.parse::<f64>(), actual.parse::<f64>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => stated == actual,
                };
                assert!(
                    same,
                    "--{flag}: help says {stated}, the default is {actual}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} defaults found in --help");
}

fn qornn_default_config() -> String {
    qornn::config::Config::default().to_toml()
}

/// `qornn weights` writes PyTorch-named tensors that `--weights` reads back; a file for
/// another model is refused, naming it.
#[test]
fn weights_export_and_start_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let (run, file) = (dir.path().join("run"), dir.path().join("lstm.safetensors"));
    let mut args = vec![
        "train",
        "--model",
        "lstm",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(SMALL.iter().filter(|a| !["--bits", "6"].contains(a)));
    assert!(qornn(&args).status.success());
    let out = qornn(&[
        "weights",
        "--run",
        run.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("weight_ih_l0"));
    let again = dir.path().join("again");
    let mut args = vec![
        "train",
        "--model",
        "lstm",
        "--weights",
        file.to_str().unwrap(),
        "--steps",
        "10",
        "--eval-every",
        "10",
    ];
    args.extend(["--out", again.to_str().unwrap()]);
    args.extend(SMALL.iter().filter(|a| !["--bits", "6"].contains(a)));
    let out = qornn(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gru = dir.path().join("gru");
    let args = [
        "train",
        "--model",
        "gru",
        "--weights",
        file.to_str().unwrap(),
        "--out",
        gru.to_str().unwrap(),
    ];
    fails_with(&args, &["lstm.safetensors", "weight_ih_l0"]);
}

/// `qornn quantize --run RUN --act-bits 10 --calib 32 EXTRA`, which must succeed; its report.
fn quantize_json(run: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "quantize",
        "--run",
        run.to_str().unwrap(),
        "--act-bits",
        "10",
        "--calib",
        "32",
    ];
    args.extend(extra);
    let out = qornn(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `qornn train` of the SMALL copy model for 40 steps (evaluated every 20) into `run`.
fn train_small(run: &Path) -> Output {
    let mut args = vec![
        "train",
        "--steps",
        "40",
        "--eval-every",
        "20",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(SMALL);
    qornn(&args)
}

/// `qornn quantize` runs a trained QORNN in integers, bit-exact with its simulated twin,
/// and refuses what it cannot do, naming the flag.
#[test]
fn quantize_reports_bit_exact_integer_inference() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    assert!(train_small(&run).status.success());
    let report = quantize_json(&run, &[]);
    assert_eq!(report["bit_exact"], true);
    assert_eq!(report["weight_bits"], 6);
    assert_eq!(
        report["simulated"], report["integer"],
        "same codes, same metrics"
    );
    assert!(report["bytes"].as_u64().unwrap() > 0);
    for key in ["float", "simulated", "integer"] {
        assert!(report[key]["loss"].as_f64().unwrap().is_finite(), "{key}");
    }
    // The file it wrote evaluates to the same integer result on its own.
    let file = run.join("model.qornn");
    let out = qornn(&["eval", "--model", file.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["integer"], report["integer"]);
    assert_eq!(again["float"]["loss"], report["float"]["loss"]);
    assert_eq!(again["bit_exact"], true);
    // The C library checks its own exports: tests/c_library.rs.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    fails_with(
        &["eval", "--model", file.to_str().unwrap()],
        &["model.qornn", "Checksum"],
    );
    fails_with(
        &[
            "quantize",
            "--run",
            run.to_str().unwrap(),
            "--act-bits",
            "3",
        ],
        &["act-bits"],
    );
    fails_with(
        &["quantize", "--run", run.to_str().unwrap(), "--bits", "4"],
        &["bits", "6"],
    );
    fails_with(
        &[
            "quantize",
            "--run",
            run.to_str().unwrap(),
            "--readout-bits",
            "17",
        ],
        &["readout-bits", "17"],
    );
    // A read-out quantized to 12 bits: still bit-exact, smaller, and the file alone
    // gives the same integer result.
    let small = dir.path().join("readout12.qornn");
    let quantized = quantize_json(
        &run,
        &["--readout-bits", "12", "--output", small.to_str().unwrap()],
    );
    assert_eq!(quantized["bit_exact"], true);
    assert_eq!(quantized["readout_bits"], 12);
    assert!(quantized["bytes"].as_u64() < report["bytes"].as_u64());
    assert!(quantized["integer"]["loss"].as_f64().unwrap().is_finite());
    let out = qornn(&["eval", "--model", small.to_str().unwrap(), "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["integer"], quantized["integer"]);
    assert_eq!(again["readout_bits"], 12);
}

/// `--resume` applies the flags a continued run can change (`--steps` trains longer) and
/// refuses the others instead of silently ignoring them; the banner counts the real steps.
#[test]
fn resume_extends_a_run_and_refuses_fixed_flags() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let first = train_small(&run);
    assert!(first.status.success());
    assert!(String::from_utf8_lossy(&first.stderr).contains("steps 0..40"));
    let resume = run.to_str().unwrap();
    fails_with(
        &["train", "--resume", resume, "--hidden", "64", "--lr", "1"],
        &["--hidden", "--lr", "cannot change"],
    );
    fails_with(
        &["train", "--resume", resume, "--steps", "0"],
        &["steps", "positive"],
    );
    let longer = qornn(&["train", "--resume", resume, "--steps", "80"]);
    let stderr = String::from_utf8_lossy(&longer.stderr);
    assert!(longer.status.success(), "{stderr}");
    assert!(stderr.contains("steps 40..80"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&longer.stdout).unwrap();
    assert_eq!(summary["steps"], 80);
    assert_eq!(metric_lines(&run), 4);
}

#[test]
fn a_reader_that_closes_early_ends_the_output_without_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qornn"))
        .args([
            "bench",
            "--hidden",
            "8",
            "--seq",
            "4",
            "--batch",
            "2",
            "--repeats",
            "1",
        ])
        .args(["--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the qornn binary runs");
    // Close the reading end before the step has been timed and anything printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("qornn ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !out.status.success(),
        "the output was lost, the exit says so"
    );
}

#[test]
fn bench_prints_the_bytes_moved_floor_of_an_elman_step() {
    let bench_with = |model: &str, more: &[&str]| {
        let shape = "bench --hidden 16 --seq 3 --batch 2 --repeats 1 --threads 1 --json";
        let mut args: Vec<&str> = shape.split(' ').chain(["--model", model]).collect();
        args.extend_from_slice(more);
        let out = qornn(&args);
        assert!(out.status.success(), "{}", common::text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("one JSON object")
    };
    let bench = |model: &str| bench_with(model, &[]);
    let elman = bench("hadamrnn");
    // Subnormal floats are flushed unless asked to be kept (to time their cost).
    assert_eq!(elman["subnormals_flushed"], true);
    assert_eq!(
        bench_with("hadamrnn", &["--keep-subnormals"])["subnormals_flushed"],
        false
    );
    // A structured W keeps h alone, written and read once: 2 x T B n floats of 4 bytes.
    assert_eq!(elman["floor_bytes"], 8 * 3 * 2 * 16);
    // A dense one keeps z too: 2 x 2 x T B n.
    assert_eq!(bench("qornn-bjorck")["floor_bytes"], 16 * 3 * 2 * 16);
    assert!(elman["copy_bytes_per_second"].as_f64().unwrap() > 0.0);
    let floor = elman["floor_seconds"].as_f64().unwrap();
    assert!(floor > 0.0 && floor.is_finite());
    // The gated cells keep other tensors: no floor is claimed for them.
    assert!(bench("lstm")["floor_bytes"].is_null());
}

//! `qornn sweep` and `qornn report` end to end: a local sweep, its errors, and a sweep on
//! a real Slurm cluster (started by `scripts/test.sh`; without one the test fails and says
//! what to install).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::qornn;

/// The 4-run grid shipped for this purpose.
fn smoke_grid() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sweeps/smoke.toml")
}

/// Bytes (one stream of the output) as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that the report in `dir` has the tables and figures of a 4-run, 2-configuration
/// sweep.
fn check_report(dir: &Path) {
    let table = std::fs::read_to_string(dir.join("results.md")).unwrap();
    assert!(table.starts_with("| bits | seeds |"), "{table}");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| 4 ") || l.starts_with("| 8 "))
            .count(),
        2,
        "{table}"
    );
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(std::fs::read_to_string(dir.join("results.tex"))
        .unwrap()
        .contains("\\begin{tabular}"));
    for figure in ["curves-loss", "curves-metric", "orthogonality", "frontier"] {
        let svg = std::fs::read_to_string(dir.join(format!("{figure}.svg"))).unwrap();
        // Lines are labelled by configuration, the frontier's points by bit width.
        let label = if figure == "frontier" { "4b" } else { "bits=4" };
        assert!(svg.contains("<svg") && svg.contains(label), "{figure}.svg");
        let png = std::fs::read(dir.join(format!("{figure}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{figure}.png"
        );
    }
}

#[test]
fn local_sweep_runs_skips_finished_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let grid = smoke_grid();
    let first = qornn(&[
        "sweep",
        grid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let log = text(&first.stderr);
    assert_eq!(
        log.matches("accuracy").count(),
        4,
        "one line per run: {log}"
    );
    for index in 0..4 {
        assert!(out.join(index.to_string()).join("summary.json").exists());
        assert!(out.join("logs").join(format!("{index}.out")).exists());
    }
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert_eq!(
        csv,
        "index,folder,bits,seed\n0,0,4,1\n1,1,4,2\n2,2,8,1\n3,3,8,2\n"
    );
    check_report(&out.join("report"));

    let again = qornn(&[
        "sweep",
        grid.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(again.status.success());
    assert_eq!(
        text(&again.stderr)
            .matches("finished before, skipped")
            .count(),
        4
    );

    // `qornn report` on the sweep folder gives the same table.
    let report = dir.path().join("report");
    let r = qornn(&[
        "report",
        out.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert_eq!(
        std::fs::read_to_string(report.join("results.md")).unwrap(),
        std::fs::read_to_string(out.join("report/results.md")).unwrap()
    );
}

#[test]
fn bad_sweeps_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let grid = smoke_grid();
    let grid = grid.to_str().unwrap();
    let fails = |args: &[&str], needle: &str| {
        let out = qornn(args);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    };
    let out = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    fails(&["sweep", grid, "bitz=4", "--out", &out("a")], "bitz");
    fails(&["sweep", grid, "bits=", "--out", &out("a")], "empty list");
    fails(
        &["sweep", grid, "bits=4,1", "--out", &out("a")],
        "run 2 (bits=1, seed=1)",
    );
    fails(&["sweep", grid, "hidden", "--out", &out("a")], "KEY=VALUE");
    assert!(
        !dir.path().join("a").exists(),
        "nothing is written for a bad grid"
    );
    let ok = qornn(&["sweep", grid, "steps=2", "--out", &out("b")]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    fails(
        &["sweep", grid, "steps=3", "--out", &out("b")],
        "different grid",
    );
    fails(&["sweep", "run", &out("b"), "--index", "9"], "no run 9");
    fails(&["report", &out("a"), "--out", &out("r")], "a");
    // --slurm without Slurm's commands on the PATH.
    let no_slurm = Command::new(env!("CARGO_BIN_EXE_qornn"))
        .args(["sweep", grid, "--out", &out("c"), "--slurm"])
        .env("PATH", "")
        .output()
        .unwrap();
    assert!(!no_slurm.status.success());
    assert!(
        text(&no_slurm.stderr).contains("sbatch"),
        "{}",
        text(&no_slurm.stderr)
    );
    assert!(!dir.path().join("c").exists());
    // --dry-run writes the scripts and submits nothing.
    let dry = qornn(&[
        "sweep",
        grid,
        "--out",
        &out("d"),
        "--slurm",
        "--dry-run",
        "--jobs",
        "3",
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let script = std::fs::read_to_string(dir.path().join("d/sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%3"), "{script}");
    assert!(dir.path().join("d/report.sbatch").exists());
    assert!(!dir.path().join("d/slurm-jobs.txt").exists());
}

/// Whether a Slurm cluster answers here, with what to do when it does not.
fn slurm_is_up() -> Result<(), String> {
    let hint = "no Slurm cluster answers here: run the README's test command \
                (scripts/test.sh installs Debian's slurm-wlm and munge and starts a one-node \
                cluster with scripts/slurm-up.sh; it needs root and apt-get)";
    match Command::new("sinfo").args(["-h", "-o", "%t"]).output() {
        Ok(out) if out.status.success() && !text(&out.stdout).trim().is_empty() => Ok(()),
        Ok(out) => Err(format!("{hint}; sinfo said: {}", text(&out.stderr).trim())),
        Err(e) => Err(format!("{hint}; sinfo: {e}")),
    }
}

/// Submits the smoke sweep with `extra` arguments to the Slurm cluster (which must be up)
/// into `out`; returns the array's job id.
fn submit_smoke_sweep(out: &Path, extra: &[&str]) -> String {
    if let Err(why) = slurm_is_up() {
        panic!("{why}");
    }
    let grid = smoke_grid();
    let mut args = vec!["sweep", grid.to_str().unwrap()];
    args.extend(extra);
    args.extend(["--out", out.to_str().unwrap(), "--slurm"]);
    let submitted = qornn(&args);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    text(&submitted.stdout).trim().to_string()
}

#[test]
fn sweep_runs_as_a_job_array_on_a_real_slurm_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let array = submit_smoke_sweep(&out, &["--jobs", "2", "--time", "00:05:00"]);
    assert!(array.parse::<u64>().is_ok(), "sbatch's job id: {array:?}");
    let jobs = std::fs::read_to_string(out.join("slurm-jobs.txt")).unwrap();
    assert!(
        jobs.starts_with(&format!("sweep {array}\nreport ")),
        "{jobs}"
    );

    // Bounded poll until both jobs have left the queue: the 4 runs take seconds, and the
    // chained report runs after them.
    let report_job = jobs
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("report ")
        .to_string();
    let start = Instant::now();
    loop {
        let queue = Command::new("squeue")
            .args(["-h", "-j", &format!("{array},{report_job}")])
            .output()
            .unwrap();
        if text(&queue.stdout).trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the sweep did not finish in 300 s; squeue: {}",
            text(&queue.stdout)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for index in 0..4 {
        let summary = out.join(index.to_string()).join("summary.json");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        assert_eq!(json["steps"], 40, "{}", summary.display());
        let log = out.join("logs").join(format!("{array}_{index}.out"));
        assert!(log.exists(), "the array task's log {}", log.display());
    }
    check_report(&out.join("report"));
}

/// What Slurm does before a time limit (`--signal=B:USR1@S`), sent by hand: the task's
/// script asks the run to checkpoint, the run stops between two evaluations, and the task
/// is requeued (Slurm holds a requeued task for about two minutes before it starts again,
/// so the resumed run is not awaited here; resuming is tested in tests/cli.rs).
#[test]
fn a_signalled_slurm_task_checkpoints_and_is_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let long_run = [
        "steps=1000000",
        "eval_every=100000",
        "bits=4",
        "seed=1",
        "--time",
        "00:10:00",
    ];
    let array = submit_smoke_sweep(&out, &long_run);
    let task = format!("{array}_0");
    let log = out.join("logs").join(format!("{array}_0.out"));
    let start = Instant::now();
    // Wait until the run is training (its banner is in the log).
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("steps 0..1000000")) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the task did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Command::new("scancel")
        .args(["--signal=USR1", "--batch", &task])
        .output()
        .unwrap();
    assert!(signalled.status.success(), "{}", text(&signalled.stderr));
    let mut requeued = false;
    while start.elapsed() < Duration::from_secs(180) {
        let job = Command::new("scontrol")
            .args(["show", "job", &task])
            .output()
            .unwrap();
        let job = text(&job.stdout);
        if job.contains("Restarts=1") && job.contains("JobState=PENDING") {
            requeued = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    // Clean up before asserting: the requeued task and the report job.
    let _ = Command::new("scancel").arg(&array).output();
    let jobs = std::fs::read_to_string(out.join("slurm-jobs.txt")).unwrap_or_default();
    if let Some(report) = jobs.lines().nth(1) {
        let _ = Command::new("scancel")
            .arg(report.trim_start_matches("report "))
            .output();
    }
    assert!(requeued, "the task was not requeued; log:\n{logged}");
    assert!(logged.contains("stopped at step"), "{logged}");
    let checkpoint = out.join("0").join("checkpoint.safetensors");
    assert!(checkpoint.exists(), "no checkpoint at the signal");
}

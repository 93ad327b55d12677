//! `qornn sweep --slurm`: the sweep as a Slurm job array, and a report job chained after it.
//!
//! Submission returns at once (`sbatch --parsable`); the login node never waits. Each array
//! task runs `qornn sweep run SWEEP --index $SLURM_ARRAY_TASK_ID`. Shortly before its time
//! limit Slurm signals the task's script (`--signal=B:USR1@S`), which asks the run to
//! checkpoint (SIGTERM) and requeues the task; the requeued task resumes the run.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The array task script.
pub const SWEEP_SCRIPT: &str = "sweep.sbatch";
/// The report job's script.
pub const REPORT_SCRIPT: &str = "report.sbatch";
/// The submitted job ids, one `name id` per line.
pub const JOBS_FILE: &str = "slurm-jobs.txt";

pub struct Options {
    /// The array's limit on tasks at once (`%P`).
    pub jobs: usize,
    pub partition: Option<String>,
    pub time: String,
    pub cpus_per_task: usize,
    pub threads: usize,
    pub signal_seconds: u32,
}

/// Fails with what to install when Slurm's `sbatch` is not on the PATH.
pub fn check_installed() -> Result<()> {
    if find_on_path("sbatch").is_none() {
        anyhow::bail!(
            "--slurm needs Slurm's `sbatch` on the PATH, and it is not there (Debian: apt-get \
             install slurm-client; a one-node cluster: scripts/test.sh sets one up); \
             --dry-run writes the scripts without submitting them"
        );
    }
    Ok(())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A path as a double-quoted shell word; `what` (the flag or folder it comes from) is named
/// when the path holds a control character (a newline would end the word's line), the one
/// thing a double-quoted word cannot hold on one line.
fn quoted(what: &str, path: &Path) -> Result<String> {
    let text = path.display().to_string();
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        anyhow::bail!(
            "{what} {text:?} holds the control character {c:?}, which cannot be written into \
             a Slurm script; choose a path without it"
        );
    }
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace('`', "\\`")
    ))
}

/// A value of an `#SBATCH` line: Slurm reads these lines as words split at white space,
/// with no shell quoting, so a value with white space, a quote, a backslash, `$`, a
/// backtick or a control character is refused, naming `what` (its flag or folder).
fn directive<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    let unsafe_char = |c: char| c.is_control() || c.is_whitespace() || "\"'\\$`".contains(c);
    if let Some(c) = value.chars().find(|&c| unsafe_char(c)) {
        anyhow::bail!(
            "{what} {value:?} holds {c:?}, which an #SBATCH line cannot hold (Slurm splits \
             those lines at white space and does not read shell quoting); choose a value \
             without white space, quotes, backslashes, `$` or control characters"
        );
    }
    Ok(value)
}

/// A path as an `#SBATCH` value (see [`directive`]).
fn directive_path(what: &str, path: &Path) -> Result<String> {
    let text = path.display().to_string();
    directive(what, &text)?;
    Ok(text)
}

/// `#SBATCH --partition=P` and a newline, or nothing for the cluster's default.
fn partition_line(o: &Options) -> Result<String> {
    Ok(match &o.partition {
        Some(p) => format!("#SBATCH --partition={}\n", directive("--partition", p)?),
        None => String::new(),
    })
}

/// Where the sweep's logs go, and the working directory, as `#SBATCH` values.
fn log_and_work_dirs(sweep: &Path, workdir: &Path) -> Result<(String, String)> {
    Ok((
        directive_path(
            "the sweep folder (--out)",
            &sweep.join(qornn::sweep::LOGS_DIR),
        )?,
        directive_path("the working directory", workdir)?,
    ))
}

/// The array task script for a sweep of `runs` runs in `sweep` (absolute paths); refused
/// when a value cannot be written into it safely.
pub fn sweep_script(
    exe: &Path,
    sweep: &Path,
    workdir: &Path,
    runs: usize,
    o: &Options,
) -> Result<String> {
    let partition = partition_line(o)?;
    let (logs, workdir) = log_and_work_dirs(sweep, workdir)?;
    Ok(format!(
        r#"#!/bin/bash
#SBATCH --job-name=qornn-sweep
#SBATCH --array=0-{last}%{jobs}
#SBATCH --output={logs}/%A_%a.out
#SBATCH --open-mode=append
#SBATCH --cpus-per-task={cpus}
#SBATCH --time={time}
{partition}#SBATCH --chdir={workdir}
#SBATCH --signal=B:USR1@{signal}
#SBATCH --requeue
# Written by `qornn sweep --slurm`: run $SLURM_ARRAY_TASK_ID of the sweep in {sweep}.
# Before the time limit Slurm sends USR1 to this script: the run checkpoints (SIGTERM),
# the task is requeued, and the requeued task resumes the run from its checkpoint.
set -u
{exe} sweep run {sweep} --index "$SLURM_ARRAY_TASK_ID" --threads {threads} &
run=$!
requeue() {{
    kill -TERM "$run"
    wait "$run"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
}}
trap requeue USR1
wait "$run"
"#,
        last = runs - 1,
        jobs = o.jobs,
        cpus = o.cpus_per_task,
        time = directive("--time", &o.time)?,
        signal = o.signal_seconds,
        exe = quoted("the qornn binary's path", exe)?,
        sweep = quoted("the sweep folder (--out)", sweep)?,
        threads = o.threads,
    ))
}

/// The report job's script: `qornn report SWEEP --out SWEEP/report`.
pub fn report_script(exe: &Path, sweep: &Path, workdir: &Path, o: &Options) -> Result<String> {
    let partition = partition_line(o)?;
    let (logs, workdir) = log_and_work_dirs(sweep, workdir)?;
    Ok(format!(
        r#"#!/bin/bash
#SBATCH --job-name=qornn-report
#SBATCH --output={logs}/report_%j.out
#SBATCH --cpus-per-task=1
#SBATCH --time=00:15:00
{partition}#SBATCH --chdir={workdir}
# Written by `qornn sweep --slurm`: the sweep's tables and plots, after every run.
{exe} report {sweep} --out {report}
"#,
        exe = quoted("the qornn binary's path", exe)?,
        sweep = quoted("the sweep folder (--out)", sweep)?,
        report = quoted("the sweep folder (--out)", &sweep.join("report"))?,
    ))
}

/// Writes both scripts and, unless `dry_run`, submits them (the report after the array
/// finishes well: `--dependency=afterok`).
pub fn submit(sweep: &Path, runs: usize, o: &Options, dry_run: bool) -> Result<()> {
    let exe = std::env::current_exe()
        .context("cannot find the qornn binary")?
        .canonicalize()
        .context("cannot resolve the qornn binary's path")?;
    let sweep = sweep
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", sweep.display()))?;
    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    let scripts = [
        (SWEEP_SCRIPT, sweep_script(&exe, &sweep, &workdir, runs, o)?),
        (REPORT_SCRIPT, report_script(&exe, &sweep, &workdir, o)?),
    ];
    for (name, text) in &scripts {
        let path = sweep.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if dry_run {
        eprintln!(
            "wrote {} and {} in {} (not submitted: --dry-run)",
            SWEEP_SCRIPT,
            REPORT_SCRIPT,
            sweep.display()
        );
        return Ok(());
    }
    let array = sbatch(&[], &sweep.join(SWEEP_SCRIPT))?;
    let report = sbatch(
        &[format!("--dependency=afterok:{array}")],
        &sweep.join(REPORT_SCRIPT),
    )?;
    let jobs = format!("sweep {array}\nreport {report}\n");
    std::fs::write(sweep.join(JOBS_FILE), jobs)
        .with_context(|| format!("cannot write {}", sweep.join(JOBS_FILE).display()))?;
    eprintln!(
        "submitted the sweep as job array {array} ({runs} runs, {} at once) and the report \
         as job {report} after it; follow with: squeue -j {array},{report}; logs in {}",
        o.jobs,
        sweep.join(qornn::sweep::LOGS_DIR).display()
    );
    println!("{array}");
    Ok(())
}

/// `sbatch --parsable ARGS SCRIPT`: the job id.
fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .arg(script)
        .output()
        .context("cannot run sbatch")?;
    anyhow::ensure!(
        out.status.success(),
        "sbatch {} failed ({}): {}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // `--parsable` prints `id` or `id;cluster`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "sbatch printed no job id: {text:?}"
    );
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            jobs: 3,
            partition: Some("gpu".into()),
            time: "00:30:00".into(),
            cpus_per_task: 4,
            threads: 4,
            signal_seconds: 90,
        }
    }

    #[test]
    fn the_array_script_names_every_setting() {
        let s = sweep_script(
            Path::new("/opt/qornn"),
            Path::new("/data/sw"),
            Path::new("/home/u"),
            12,
            &options(),
        )
        .unwrap();
        for line in [
            "#SBATCH --array=0-11%3",
            "#SBATCH --output=/data/sw/logs/%A_%a.out",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --time=00:30:00",
            "#SBATCH --partition=gpu",
            "#SBATCH --chdir=/home/u",
            "#SBATCH --signal=B:USR1@90",
            "#SBATCH --requeue",
            "\"/opt/qornn\" sweep run \"/data/sw\" --index \"$SLURM_ARRAY_TASK_ID\" --threads 4 &",
            "scontrol requeue \"$SLURM_JOB_ID\"",
        ] {
            assert!(s.contains(line), "missing {line:?} in:\n{s}");
        }
        let r = report_script(
            Path::new("/opt/qornn"),
            Path::new("/data/sw"),
            Path::new("/"),
            &options(),
        )
        .unwrap();
        assert!(r.contains("\"/opt/qornn\" report \"/data/sw\" --out \"/data/sw/report\""));
    }

    #[test]
    fn shell_words_are_quoted() {
        let word = quoted("x", Path::new("/a b/$x`y`\"z")).unwrap();
        assert_eq!(word, "\"/a b/\\$x\\`y\\`\\\"z\"");
    }

    /// Issue 22, defect 1: a newline in a path, the partition or the time limit wrote a
    /// script that ran a command of its own (`touch /tmp/PWNED`); white space or a quote
    /// made an `#SBATCH` line invalid. Every such value is now refused, naming its flag,
    /// and a quoted command word keeps shell syntax inert.
    #[test]
    fn hostile_values_are_refused_or_quoted() {
        let exe = Path::new("/opt/qornn");
        let home = Path::new("/home/u");
        let injected = Path::new("/data/x\ntouch /tmp/PWNED\n");
        let error = |r: Result<String>| r.unwrap_err().to_string();
        assert!(error(sweep_script(exe, injected, home, 2, &options())).contains("--out"));
        assert!(error(report_script(exe, injected, home, &options())).contains("--out"));
        for folder in ["/data/a b", "/data/a\"b", "/data/$(id)"] {
            let e = error(sweep_script(exe, Path::new(folder), home, 2, &options()));
            assert!(e.contains("--out"), "{folder}: {e}");
        }
        let e = error(sweep_script(
            exe,
            Path::new("/d"),
            Path::new("/w\nid"),
            2,
            &options(),
        ));
        assert!(e.contains("working directory"), "{e}");
        let partition = Options {
            partition: Some("gpu\ntouch /tmp/PWNED".into()),
            ..options()
        };
        assert!(
            error(sweep_script(exe, Path::new("/d"), home, 2, &partition)).contains("--partition")
        );
        assert!(
            error(report_script(exe, Path::new("/d"), home, &partition)).contains("--partition")
        );
        let time = Options {
            time: "1:00\ntouch /tmp/PWNED".into(),
            ..options()
        };
        assert!(error(sweep_script(exe, Path::new("/d"), home, 2, &time)).contains("--time"));
        // A binary under a strange (but single-line) path is one inert word.
        let s = sweep_script(
            Path::new("/opt/q\"$(touch x)`id`"),
            Path::new("/d"),
            home,
            2,
            &options(),
        )
        .unwrap();
        assert!(
            s.contains("\"/opt/q\\\"\\$(touch x)\\`id\\`\" sweep run \"/d\""),
            "{s}"
        );
        for line in s.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.contains("touch /tmp"), "{line}");
        }
    }
}

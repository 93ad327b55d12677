//! `qornn sweep`: a grid of runs on this machine (`--jobs P` at once) or as a Slurm job
//! array (`--slurm`), and `qornn sweep run` for one run of it (what each array task calls).

use crate::progress::Progress;
use crate::signals;
use crate::slurm;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use qornn::sweep::{self, Grid, Outcome, Point};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// A grid file: config keys shared by every run and a `[grid]` table of lists.
    #[arg(value_name = "GRID.toml", required = true)]
    grid: Option<PathBuf>,
    /// More lists, KEY=V1,V2,... (e.g. bits=2,4,8 seed=1,2,3); they replace the file's.
    #[arg(value_name = "KEY=VALUES")]
    overrides: Vec<String>,
    /// The sweep folder [default: runs/<grid file name>].
    #[arg(long, value_name = "SWEEP")]
    out: Option<PathBuf>,
    /// Runs at once (local: the cores are split between them; Slurm: the array's limit).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads of each run [default: local, the cores over --jobs; Slurm, --cpus-per-task].
    #[arg(long)]
    threads: Option<usize>,
    /// Submit the sweep as a Slurm job array (with a report job after it) and return.
    #[arg(long)]
    slurm: bool,
    /// --slurm: write the batch scripts without submitting them.
    #[arg(long, requires = "slurm")]
    dry_run: bool,
    /// --slurm: the partition [default: the cluster's default].
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// --slurm: each task's time limit (Slurm's format, e.g. 02:00:00).
    #[arg(long, requires = "slurm", default_value = "01:00:00")]
    time: String,
    /// --slurm: cores per task.
    #[arg(long, requires = "slurm", default_value_t = 1)]
    cpus_per_task: usize,
    /// --slurm: seconds before the time limit at which a task checkpoints and is requeued.
    #[arg(long, requires = "slurm", default_value_t = 120)]
    signal_seconds: u32,
}

#[derive(Subcommand)]
enum SweepAction {
    /// Run one run of a sweep folder (start, resume, or nothing when finished).
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// A sweep folder written by `qornn sweep`.
    #[arg(value_name = "SWEEP")]
    sweep: PathBuf,
    /// The run's index (Slurm: $SLURM_ARRAY_TASK_ID).
    #[arg(long)]
    index: usize,
    /// Threads for its matrix products [default: its config's].
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: SweepArgs) -> Result<()> {
    if let Some(SweepAction::Run(run)) = args.action {
        return run_one(run);
    }
    anyhow::ensure!(args.jobs >= 1, "--jobs must be at least 1");
    anyhow::ensure!(
        args.cpus_per_task >= 1,
        "--cpus-per-task must be at least 1"
    );
    let grid_path = args.grid.clone().expect("clap requires GRID.toml");
    let mut grid = Grid::from_file(&grid_path)?;
    for text in &args.overrides {
        grid.apply_override(text)?;
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = grid_path.file_stem().unwrap_or_default();
        PathBuf::from("runs").join(stem)
    });
    if args.slurm && !args.dry_run {
        slurm::check_installed()?;
    }
    // Every run's configuration is checked before anything is written or launched.
    let points = sweep::prepare(&grid, &out)?;
    if args.slurm {
        return slurm::submit(&out, points.len(), &args.slurm_options(), args.dry_run);
    }
    run_local(&out, &points, args.jobs, args.threads)
}

impl SweepArgs {
    fn slurm_options(&self) -> slurm::Options {
        slurm::Options {
            jobs: self.jobs,
            partition: self.partition.clone(),
            time: self.time.clone(),
            cpus_per_task: self.cpus_per_task,
            threads: self.threads.unwrap_or(self.cpus_per_task),
            signal_seconds: self.signal_seconds,
        }
    }
}

fn run_one(args: RunArgs) -> Result<()> {
    let banner = format!("run {} of sweep {}", args.index, args.sweep.display());
    let mut observer = Progress::new(banner);
    match sweep::run_point(&args.sweep, args.index, args.threads, &mut observer)? {
        Outcome::AlreadyDone(_) => eprintln!("run {} had finished; nothing to do", args.index),
        Outcome::Finished(summary) => println!("{}", serde_json::to_string_pretty(&summary)?),
    }
    Ok(())
}

/// One running child: `qornn sweep run SWEEP --index i`.
struct Running {
    point: usize,
    child: Child,
    started: Instant,
}

/// Runs the sweep here, `jobs` runs at once, each a child process writing its log to
/// `SWEEP/logs/<index>.out`; one line per finished run; then the report.
fn run_local(out: &Path, points: &[Point], jobs: usize, threads: Option<usize>) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.unwrap_or((cores / jobs).max(1));
    let exe = std::env::current_exe().context("cannot find the qornn binary")?;
    let stop = signals::stop_requested();
    eprintln!(
        "sweep of {} runs in {}: {jobs} at once, {threads} thread(s) each",
        points.len(),
        out.display()
    );
    let clock = Instant::now();
    let mut queue = points.iter().enumerate();
    let mut running: Vec<Running> = Vec::new();
    let (mut done, mut failed) = (0, Vec::new());
    let mut forwarded = false;
    loop {
        while running.len() < jobs && !signals::is_set(&stop) {
            let Some((p, point)) = queue.next() else {
                break;
            };
            let dir = sweep::run_dir(out, point.index);
            if dir.join(qornn::run::SUMMARY_FILE).exists() {
                done += 1;
                eprintln!(
                    "[{done:>3}/{}] run {} ({}): finished before, skipped",
                    points.len(),
                    point.index,
                    sweep::describe(&point.values)
                );
                continue;
            }
            let log_path = out
                .join(sweep::LOGS_DIR)
                .join(format!("{}.out", point.index));
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .with_context(|| format!("cannot open {}", log_path.display()))?;
            let child = Command::new(&exe)
                .args(["sweep", "run"])
                .arg(out)
                .args(["--index", &point.index.to_string()])
                .args(["--threads", &threads.to_string()])
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", exe.display()))?;
            running.push(Running {
                point: p,
                child,
                started: Instant::now(),
            });
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if signals::is_set(&stop) && !forwarded {
            // Ctrl-C reaches the children too; a SIGTERM sent to this process alone is
            // passed on, so that each run checkpoints before the sweep stops.
            for r in &running {
                signals::terminate(&r.child);
            }
            forwarded = true;
        }
        let mut still = Vec::new();
        for mut r in running {
            let Some(status) = r.child.try_wait()? else {
                still.push(r);
                continue;
            };
            done += 1;
            let point = &points[r.point];
            let seconds = r.started.elapsed().as_secs_f64();
            let what = if status.success() {
                finished_line(out, point.index)
            } else {
                failed.push(point.index);
                format!(
                    "FAILED ({status}); see {}",
                    out.join(sweep::LOGS_DIR)
                        .join(format!("{}.out", point.index))
                        .display()
                )
            };
            eprintln!(
                "[{done:>3}/{}] run {} ({}): {what}, {seconds:.1} s",
                points.len(),
                point.index,
                sweep::describe(&point.values)
            );
        }
        running = still;
    }
    let wall = clock.elapsed().as_secs_f64();
    if signals::is_set(&stop) {
        anyhow::bail!(
            "sweep stopped on request after {wall:.1} s; the runs checkpointed, and the same \
             command resumes them"
        );
    }
    eprintln!("sweep finished in {wall:.1} s");
    let report_dir = out.join("report");
    let report = qornn::report::Report::collect(&[out.to_path_buf()])?;
    report.write(&report_dir)?;
    eprintln!("report in {}", report_dir.display());
    anyhow::ensure!(
        failed.is_empty(),
        "{} run(s) failed: {:?} (their logs are in {})",
        failed.len(),
        failed,
        out.join(sweep::LOGS_DIR).display()
    );
    Ok(())
}

/// `test accuracy 99.8 %` (or the task's metric) from a finished run's summary.
fn finished_line(out: &Path, index: usize) -> String {
    match qornn::run::read_summary(&sweep::run_dir(out, index))
        .ok()
        .flatten()
    {
        Some(s) => match (s.test.accuracy, s.test.bits_per_char, s.test.perplexity) {
            (Some(a), _, _) => format!("test loss {:.4}, accuracy {:.1} %", s.test.loss, 100.0 * a),
            (_, Some(b), _) => format!("test {b:.3} bits per character"),
            (_, _, Some(p)) => format!("test perplexity {p:.1}"),
            _ => format!("test loss {:.4}", s.test.loss),
        },
        None => "finished without a summary".into(),
    }
}

//! `qornn bench`: the median time of one full training step on random data of a given
//! shape, split into its four phases, and the peak resident memory.

use anyhow::Result;
use clap::Args;
use qornn::config::Config;
use qornn::tasks::{RandomTask, Task};
use qornn::train::{StepTimes, Trainer};
use serde::Serialize;

#[derive(Args)]
pub struct BenchArgs {
    /// Model, as for `qornn train`.
    #[arg(long, default_value = "qornn-bjorck")]
    model: String,
    /// Hidden units n.
    #[arg(long, default_value_t = 170)]
    hidden: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Sequence length T.
    #[arg(long, default_value_t = 784)]
    seq: usize,
    /// Input size d.
    #[arg(long, default_value_t = 1)]
    input: usize,
    /// Classes read out at the last step.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Weight bits (32 for full precision).
    #[arg(long, default_value_t = 4)]
    bits: u32,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Threads for matrix products, 0 for every core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    hidden: usize,
    batch: usize,
    seq: usize,
    bits: u32,
    repeats: usize,
    seconds_per_step: f64,
    phases: StepTimes,
    peak_rss_bytes: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident set size of this process (`VmHWM`), 0 where /proc is absent.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub fn run(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.repeats >= 1, "--repeats must be at least 1");
    let config = Config {
        model: args.model.clone(),
        bits: Some(args.bits),
        hidden: args.hidden,
        batch: args.batch,
        threads: args.threads,
        eval_sequences: args.batch,
        ..Config::default()
    };
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    for (flag, value) in [
        ("seq", args.seq),
        ("input", args.input),
        ("classes", args.classes),
    ] {
        anyhow::ensure!(value > 0, "--{flag} must be at least 1, got 0");
    }
    let task = Task::Random(RandomTask {
        steps: args.seq,
        input: args.input,
        classes: args.classes,
    });
    let mut trainer = Trainer::new(config, task)?;
    trainer.train_step()?;
    let mut totals = Vec::new();
    let mut phases = Vec::new();
    for _ in 0..args.repeats {
        let start = std::time::Instant::now();
        let (_, t) = trainer.train_step()?;
        totals.push(start.elapsed().as_secs_f64());
        phases.push(t);
    }
    let report = Report {
        model: args.model,
        hidden: args.hidden,
        batch: args.batch,
        seq: args.seq,
        bits: args.bits,
        repeats: args.repeats,
        seconds_per_step: median(totals),
        phases: StepTimes {
            parametrise: median(phases.iter().map(|p| p.parametrise).collect()),
            forward: median(phases.iter().map(|p| p.forward).collect()),
            backward: median(phases.iter().map(|p| p.backward).collect()),
            optimiser: median(phases.iter().map(|p| p.optimiser).collect()),
        },
        peak_rss_bytes: peak_rss_bytes(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let p = &report.phases;
        println!(
            "{} n={} B={} T={} bits={}: {:.4} s/step (median of {})\n  parametrise {:.4}  forward {:.4}  backward {:.4}  optimiser {:.4}\n  peak RSS {:.1} MiB",
            report.model, report.hidden, report.batch, report.seq, report.bits, report.seconds_per_step, report.repeats,
            p.parametrise, p.forward, p.backward, p.optimiser,
            report.peak_rss_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

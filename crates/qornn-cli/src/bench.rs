//! `qornn bench`: the median time of one full training step on random data of a given
//! shape, split into its four phases, and the peak resident memory; with `--integer
//! M.qornn`, the integer engines' speed on one core against qornn's float forward.

use anyhow::Result;
use clap::Args;
use qornn::cells::ornn::Activation;
use qornn::config::Config;
use qornn::quant::activation::ActRounding;
use qornn::tasks::{RandomTask, Task};
use qornn::train::{StepTimes, Trainer};
use serde::Serialize;

#[derive(Args)]
pub struct BenchArgs {
    /// Model, as for `qornn train`.
    #[arg(long, default_value = "qornn-bjorck")]
    model: qornn::config::ModelName,
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
    /// The hidden nonlinearity, as `qornn train --act`.
    #[arg(long, default_value = "relu", value_parser = by_name::<Activation>)]
    act: Activation,
    /// Activations fake-quantized at A bits, as `qornn train --act-bits A`.
    #[arg(long)]
    act_bits: Option<u32>,
    /// With --act-bits: how training rounds the hidden state, as `qornn train
    /// --act-train-rounding`.
    #[arg(long, default_value = "nearest", value_parser = by_name::<ActRounding>, requires = "act_bits")]
    act_train_rounding: ActRounding,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Threads for matrix products, 0 for every core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// An integer model (`.qornn`): time the batched and the scalar integer engines and
    /// qornn's float forward of the same shape (--seq steps, --batch and 1 sequence per
    /// call), all on one core.
    #[arg(long, value_name = "M.qornn")]
    integer: Option<std::path::PathBuf>,
    /// With --integer: the batched engine's kernel (one the CPU or the model does not
    /// allow falls back, and the report names the one that ran); unset: the fastest.
    #[arg(long, value_parser = by_name::<qornn::deploy::engine::Kernel>, requires = "integer")]
    kernel: Option<qornn::deploy::engine::Kernel>,
    /// Leave subnormal floats on instead of flushing them to zero (`qornn::subnormal`), to
    /// time what they cost: gradients carried back through long sequences decay into them.
    #[arg(long)]
    pub keep_subnormals: bool,
}

#[derive(Serialize)]
struct IntegerReport {
    model: String,
    kernel: String,
    /// Whether the kernel rescales and activates in int32 lanes (else int64).
    finish_int32: bool,
    hidden: usize,
    input: usize,
    seq: usize,
    batch: usize,
    /// Sequences per second on one core.
    sequences_per_second: f64,
    sequences_per_second_batch_1: f64,
    scalar_sequences_per_second: f64,
    float_forward_sequences_per_second: f64,
    float_forward_sequences_per_second_batch_1: f64,
}

/// Sequences per second of `f(batch)` run `repeats` times on `batch` sequences (median).
fn rate(batch: usize, repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let times = (0..repeats)
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    batch as f64 / median(times)
}

fn integer(args: &BenchArgs, path: &std::path::Path) -> Result<()> {
    use qornn::deploy::engine::{scalar_step, BatchedEngine};
    use qornn::parametrisation::{
        bjorck::ORNN_BJORCK, hadamard::BLOCK_HADAMRNN, rotations::QORNN_ROTATIONS,
    };
    let model = qornn::deploy::model_file::IntegerModel::load(path)?;
    let q = &model.recurrence;
    let (n, d, steps, batch) = (q.hidden, q.input, args.seq, args.batch);
    anyhow::ensure!(
        batch >= 1 && steps >= 1,
        "--batch and --seq must be at least 1"
    );
    // Input codes spread over the A-bit range, the same for every engine.
    let codes: Vec<i32> = (0..steps * batch * d)
        .map(|k| ((k * 2_654_435_761) % 4096) as i32 - 2048)
        .map(|c| c.clamp(-(1 << (q.act_bits - 1)), (1 << (q.act_bits - 1)) - 1))
        .collect();
    let engine = match args.kernel {
        Some(kernel) => BatchedEngine::with_kernel(q.as_int(), kernel),
        None => BatchedEngine::new(q.as_int()),
    };
    let batched = |b: usize| {
        let mut state = engine.state(b);
        rate(b, args.repeats, || {
            for t in 0..steps {
                engine.step(&mut state, &codes[t * batch * d..(t * batch + b) * d]);
            }
        })
    };
    let (fast, fast_1) = (batched(batch), batched(1));
    let scalar = q.as_int();
    let (mut w, mut u) = (vec![0i8; n * n], vec![0i8; n * d]);
    scalar.unpack(&mut w, &mut u);
    let (mut h, mut next) = (vec![0i32; n], vec![0i32; n]);
    let scalar_batch = batch.min(8);
    let slow = rate(scalar_batch, args.repeats, || {
        for s in 0..scalar_batch {
            h.iter_mut().for_each(|v| *v = 0);
            for t in 0..steps {
                let x = &codes[(t * batch + s) * d..(t * batch + s + 1) * d];
                scalar_step(&scalar, &w, &u, &h, x, &mut next);
                std::mem::swap(&mut h, &mut next);
            }
        }
    });
    // The float model with the integer one's recurrence: its Hadamard blocks, its
    // rotations (W's bits as the integer one's), or a dense W in full precision.
    let (entry, bits) = if q.rotations {
        (&QORNN_ROTATIONS, q.weight_bits)
    } else if q.hadamard_block.is_some() {
        (&BLOCK_HADAMRNN, q.weight_bits)
    } else {
        (&ORNN_BJORCK, qornn::config::FULL_PRECISION_BITS)
    };
    // A modReLU recurrence has its biases `bm`, a ReLU one none.
    let act = if q.bias_mod.is_empty() {
        Activation::Relu
    } else {
        Activation::Modrelu
    };
    let float = |b: usize| -> Result<f64> {
        let config = Config {
            model: qornn::config::ModelName::new(entry),
            bits: Some(bits),
            act,
            block: q.hadamard_block.unwrap_or(16),
            hidden: n,
            batch: b,
            threads: 1,
            eval_sequences: b,
            ..Config::default()
        };
        let task = Task::Random(RandomTask {
            steps,
            input: d,
            classes: model.outputs,
        });
        let mut trainer = Trainer::new(config, task)?;
        trainer.train_step()?;
        let forward = (0..args.repeats)
            .map(|_| trainer.train_step().map(|(_, t)| t.forward))
            .collect::<Result<Vec<f64>, _>>()?;
        Ok(b as f64 / median(forward))
    };
    let report = IntegerReport {
        model: path.display().to_string(),
        kernel: format!("{:?}", engine.kernel()),
        finish_int32: engine.finishes_in_int32(),
        hidden: n,
        input: d,
        seq: steps,
        batch,
        sequences_per_second: fast,
        sequences_per_second_batch_1: fast_1,
        scalar_sequences_per_second: slow,
        float_forward_sequences_per_second: float(batch)?,
        float_forward_sequences_per_second_batch_1: float(1)?,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let r = &report;
        println!(
            "{}: n={} d={} T={}, one core ({} kernel, finishing in int{})\n  batched engine: {:.0} sequences/s at batch {}, {:.0} at batch 1\n  scalar engine: {:.0} sequences/s ({:.1}x slower than batched)\n  float forward: {:.0} sequences/s at batch {}, {:.0} at batch 1",
            r.model, r.hidden, r.input, r.seq, r.kernel,
            if r.finish_int32 { 32 } else { 64 },
            r.sequences_per_second, r.batch,
            r.sequences_per_second_batch_1, r.scalar_sequences_per_second,
            r.sequences_per_second / r.scalar_sequences_per_second,
            r.float_forward_sequences_per_second, r.batch, r.float_forward_sequences_per_second_batch_1
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct Report {
    model: String,
    hidden: usize,
    batch: usize,
    seq: usize,
    bits: u32,
    repeats: usize,
    /// Whether subnormal floats were flushed to zero (see `--keep-subnormals`).
    subnormals_flushed: bool,
    seconds_per_step: f64,
    phases: StepTimes,
    peak_rss_bytes: u64,
    /// Elman cores: the bytes a step cannot avoid moving ([`elman_floor_bytes`]).
    floor_bytes: Option<u64>,
    /// A plain copy's rate on this machine (bytes read + written per second).
    copy_bytes_per_second: Option<f64>,
    /// `floor_bytes` at `copy_bytes_per_second`.
    floor_seconds: Option<f64>,
}

/// The bytes an Elman core's training step cannot avoid moving (4-byte floats of every
/// step and sequence, written once by the forward pass and read once by the backward
/// pass): the state `h_t`, and under a dense `W` the pre-activation `z_t` too (a structured
/// `W` recomputes it from `h_{t-1}` for a few additions per unit):
/// `tensors x 2 passes x T B n x 4`. Weights, inputs and the read-out are left out (they
/// are small next to these).
fn elman_floor_bytes(seq: usize, batch: usize, hidden: usize, structured: bool) -> u64 {
    let tensors = if structured { 1 } else { 2 };
    8 * tensors * (seq * batch * hidden) as u64
}

/// Bytes read and written per second by a copy of 256 MiB into another buffer (best of 5),
/// counted as numpy's `copyto` is in `bench/compare.sh`.
fn copy_bytes_per_second() -> f64 {
    let floats = 64 << 20;
    let source = vec![1.0f32; floats];
    let mut target = vec![0.0f32; floats];
    let best = (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            target.copy_from_slice(std::hint::black_box(&source));
            std::hint::black_box(&target);
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (4 * floats) as f64 / best
}

/// `--act`, `--kernel`: a value by its serde name (the names configs use for `Activation`),
/// an unknown one refused with the list of names.
fn by_name<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    use serde::de::value::{Error, StrDeserializer};
    T::deserialize(StrDeserializer::<Error>::new(text)).map_err(|e| e.to_string())
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
    if let Some(path) = &args.integer {
        return integer(&args, path);
    }
    let config = Config {
        model: args.model,
        bits: Some(args.bits),
        act: args.act,
        act_bits: args.act_bits,
        act_train_rounding: args.act_train_rounding,
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
    let floor_bytes = args.model.entry().elman.then(|| {
        let structured = trainer.model.structured_recurrence();
        elman_floor_bytes(args.seq, args.batch, args.hidden, structured)
    });
    // Read before the copy's 512 MiB of buffers count in it.
    let peak_rss = peak_rss_bytes();
    let copy_rate = floor_bytes.map(|_| copy_bytes_per_second());
    let report = Report {
        model: args.model.to_string(),
        hidden: args.hidden,
        batch: args.batch,
        seq: args.seq,
        bits: args.bits,
        repeats: args.repeats,
        subnormals_flushed: !args.keep_subnormals,
        seconds_per_step: median(totals),
        phases: StepTimes {
            parametrise: median(phases.iter().map(|p| p.parametrise).collect()),
            forward: median(phases.iter().map(|p| p.forward).collect()),
            backward: median(phases.iter().map(|p| p.backward).collect()),
            optimiser: median(phases.iter().map(|p| p.optimiser).collect()),
        },
        peak_rss_bytes: peak_rss,
        floor_bytes,
        copy_bytes_per_second: copy_rate,
        floor_seconds: floor_bytes.zip(copy_rate).map(|(b, r)| b as f64 / r),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let p = &report.phases;
        println!(
            "{} n={} B={} T={} bits={}{}: {:.4} s/step (median of {})\n  parametrise {:.4}  forward {:.4}  backward {:.4}  optimiser {:.4}\n  peak RSS {:.1} MiB",
            report.model, report.hidden, report.batch, report.seq, report.bits,
            if report.subnormals_flushed { "" } else { ", subnormals kept" },
            report.seconds_per_step, report.repeats,
            p.parametrise, p.forward, p.backward, p.optimiser,
            report.peak_rss_bytes as f64 / (1024.0 * 1024.0)
        );
        if let (Some(bytes), Some(rate), Some(floor)) = (
            report.floor_bytes,
            report.copy_bytes_per_second,
            report.floor_seconds,
        ) {
            println!(
                "  bytes-moved floor {:.3} GB (h, and z under a dense W, written and read once) at a plain copy's {:.1} GB/s: {floor:.4} s; the step is {:.1}x it",
                bytes as f64 / 1e9,
                rate / 1e9,
                report.seconds_per_step / floor
            );
        }
    }
    Ok(())
}

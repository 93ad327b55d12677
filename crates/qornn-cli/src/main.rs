//! `qornn`: train, evaluate and benchmark quantized orthogonal RNNs.

mod bench;
mod progress;
mod signals;
mod slurm;
mod sweep;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use qornn::config::Config;
use qornn::run;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "qornn",
    version,
    about = "Train, evaluate and benchmark quantized orthogonal RNNs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (no flags: an 8-bit STE-Björck QORNN on the copy task, T0 = 100).
    Train(Box<TrainArgs>),
    /// Evaluate the best model of a run on its test set.
    Eval(EvalArgs),
    /// Post-training integer quantization of a run's recurrence; compares float, simulated
    /// and integer inference on the test set.
    Quantize(QuantizeArgs),
    /// Write an integer model for the C library (`qornn_model.h`) and a reference trace
    /// (`qornn_trace.h`).
    Export(ExportArgs),
    /// Write a run's best weights under PyTorch's names (a safetensors file).
    Weights(WeightsArgs),
    /// Time one full training step (parametrise, forward, backward, optimiser).
    Bench(bench::BenchArgs),
    /// Run a grid of configurations here (--jobs P at once) or as a Slurm job array
    /// (--slurm); finished runs are skipped and stopped ones resume.
    Sweep(Box<sweep::SweepArgs>),
    /// Tables (Markdown, CSV, LaTeX) and plots (SVG, PNG) from run or sweep folders.
    Report(ReportArgs),
}

#[derive(Args)]
struct ReportArgs {
    /// Run folders, sweep folders, or folders of runs.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
    /// The folder to write the tables and plots into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Flags override `--config`, which overrides the defaults shown.
#[derive(Args)]
struct TrainArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Continue the run in DIR from its last checkpoint (its config.toml is used).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    resume: Option<PathBuf>,
    /// Run folder [default: runs/<task>-<model>-<k>b-n<hidden>-s<seed>, `fp` for 32 bits].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Task: copy, adding, smnist, pmnist, ptb-char or ptb-word [default: copy].
    #[arg(long)]
    task: Option<String>,
    /// Folder with MNIST's IDX files and the PTB text files (plain or .gz) [default: $QORNN_DATA, else ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Start from these weights (a safetensors file from `qornn weights`, or PyTorch's
    /// state_dict under the same names) instead of a random initialisation.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Check the SHA-256 of data files with their usual names: true or false [default: true].
    #[arg(long)]
    verify_data: Option<bool>,
    /// Copy task delay T0 [default: 100].
    #[arg(long)]
    delay: Option<usize>,
    /// Adding task length T [default: 200].
    #[arg(long)]
    length: Option<usize>,
    /// Language modelling: truncated-BPTT segment length [default: 150].
    #[arg(long)]
    seq: Option<usize>,
    /// ptb-word: size of the float word embedding [default: 128].
    #[arg(long)]
    embedding: Option<usize>,
    /// qornn-bjorck, qornn-projunn-d, qornn-projunn-t, their full-precision twins ornn-*, the
    /// Hadamard recurrences hadamrnn and block-hadamrnn (binary or ternary W, exactly
    /// orthogonal), or a baseline: rnn, lstm, gru, fastrnn, fastgrnn [default: qornn-bjorck].
    #[arg(long)]
    model: Option<String>,
    /// Weight bits of every weight matrix (W and U of an ORNN): 2..=8, or 32 for full
    /// precision [default: 8 for qornn-*, 4 for *hadamrnn (U only: W is binary or ternary), 32
    /// otherwise].
    #[arg(long)]
    bits: Option<u32>,
    /// Quantizer scale: per-tensor or per-row [default: per-tensor].
    #[arg(long)]
    granularity: Option<String>,
    /// Quantizer range: max (a = max |w|, the paper), mse (the range with the least
    /// squared error, which clips a few weights) or lsq (a learned step, LSQ); also
    /// --quantizer [default: max].
    #[arg(long, alias = "quantizer")]
    range: Option<String>,
    /// --range lsq: initial step, max (the paper's), mse or lsq (2 mean|w| / sqrt(Q_P))
    /// [default: max].
    #[arg(long)]
    lsq_init: Option<String>,
    /// Rounding of the QORNN's W: nearest (the paper) or orthogonal (down or up, towards an
    /// orthogonal q(W)) [default: nearest].
    #[arg(long)]
    rounding: Option<String>,
    /// --range lsq: learning rate of the learned steps [default: --lr].
    #[arg(long)]
    step_lr: Option<f64>,
    /// Hidden units n [default: 128].
    #[arg(long)]
    hidden: Option<usize>,
    /// ORNN and RNN activation: relu, modrelu or tanh [default: relu].
    #[arg(long)]
    act: Option<String>,
    /// Recurrent initialisation: henaff, orthogonal or identity [default: henaff].
    #[arg(long)]
    init: Option<String>,
    /// Björck iterations [default: 15].
    #[arg(long)]
    bjorck_iterations: Option<usize>,
    /// projUNN: rank of the approximated step [default: 1].
    #[arg(long)]
    rank: Option<usize>,
    /// block-hadamrnn: Hadamard block size, a power of two dividing --hidden [default: 16].
    #[arg(long)]
    block: Option<usize>,
    /// FastRNN/FastGRNN: rank of W = W1 W2, 0 for a full matrix [default: 0].
    #[arg(long)]
    rank_w: Option<usize>,
    /// FastRNN/FastGRNN: rank of U = U1 U2, 0 for a full matrix [default: 0].
    #[arg(long)]
    rank_u: Option<usize>,
    /// Linear learning-rate warm-up over this many steps, 0 for none [default: 0].
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Bit-width schedule within the run, STEP:BITS pairs from step 0, the last at --bits,
    /// e.g. 0:8,1000:6,2000:4 (empty: --bits throughout).
    #[arg(long, value_name = "STEP:BITS,...")]
    bits_schedule: Option<String>,
    /// Start from the best model of this run folder (tensors of the same name and shape).
    #[arg(long, value_name = "RUN")]
    init_from: Option<PathBuf>,
    /// Optimiser: rmsprop or adam [default: rmsprop].
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate [default: 0.001].
    #[arg(long)]
    lr: Option<f64>,
    /// Learning rate of the recurrent matrix (A or W) [default: --lr / 32].
    #[arg(long)]
    orthogonal_lr: Option<f64>,
    /// Gradient-norm clipping threshold, 0 for none [default: 0].
    #[arg(long)]
    clip: Option<f64>,
    /// Learning-rate schedule: constant, step or exponential [default: constant].
    #[arg(long)]
    schedule: Option<String>,
    /// Schedule factor [default: 0.5].
    #[arg(long)]
    lr_gamma: Option<f64>,
    /// Steps between two decays of the step schedule [default: 1000].
    #[arg(long)]
    lr_every: Option<u64>,
    /// Training steps [default: 2000].
    #[arg(long)]
    steps: Option<u64>,
    /// Data sets: epochs to train instead of --steps, evaluating after each; --lr-every then
    /// counts epochs, 0 uses --steps [default: 0].
    #[arg(long)]
    epochs: Option<u64>,
    /// Sequences per batch [default: 128].
    #[arg(long)]
    batch: Option<usize>,
    /// Steps between evaluations (and checkpoints) [default: 100].
    #[arg(long)]
    eval_every: Option<u64>,
    /// Sequences in each of the validation and test sets [default: 512].
    #[arg(long)]
    eval_sequences: Option<usize>,
    /// Seed of every random draw [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Threads for matrix products, 0 for every core [default: 0].
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct QuantizeArgs {
    /// A run folder written by `qornn train` (an ORNN or RNN with ReLU or modReLU).
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
    /// Activation bits A (4..=16).
    #[arg(long, default_value_t = 8)]
    act_bits: u32,
    /// Training sequences for calibrating the activation ranges.
    #[arg(long, default_value_t = 512)]
    calib: usize,
    /// Weight bits for a full-precision model (weight PTQ); a QORNN keeps its own.
    #[arg(long)]
    bits: Option<u32>,
    /// Quantize the read-out V to this many bits (2..=16; its output is then an exact
    /// integer sum scaled once) [default: float read-out].
    #[arg(long)]
    readout_bits: Option<u32>,
    /// The integer model file to write [default: DIR/model.qornn].
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// An integer model file from `qornn quantize`.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// The folder to write `qornn_model.h` and `qornn_trace.h` into.
    #[arg(long = "c", value_name = "DIR")]
    c_dir: PathBuf,
    /// MNIST models: the folder with MNIST's files [default: $QORNN_DATA, else ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct WeightsArgs {
    /// A run folder written by `qornn train`.
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    /// A run folder written by `qornn train`: its best model on the test set.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    run: Option<PathBuf>,
    /// An integer model (`.qornn`, from `qornn quantize`): integer and simulated inference
    /// on the test set of its task, beside the float model's metrics.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// MNIST models: the folder with MNIST's files [default: $QORNN_DATA, else ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// With --model: print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Parses a flag's text as the TOML value of its config field.
fn set<T: serde::Serialize>(table: &mut toml::Table, key: &str, value: Option<T>) {
    if let Some(v) = value {
        table.insert(
            key.to_string(),
            toml::Value::try_from(v).expect("flag values are plain"),
        );
    }
}

impl TrainArgs {
    /// Defaults, then the config file, then the flags.
    fn config(&self) -> Result<Config> {
        let mut table = toml::Table::try_from(Config::default()).expect("Config is a table");
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --config {}", path.display()))?;
            let file: toml::Table = text
                .parse()
                .with_context(|| format!("--config {} is not valid TOML", path.display()))?;
            table.extend(file);
        }
        table.extend(self.flag_settings());
        let source = match &self.config {
            Some(path) => format!("--config {} or a flag", path.display()),
            None => "a flag".to_string(),
        };
        config_of(table, &source)
    }

    /// `--resume DIR`: the run's own config.toml with the flags that may change in a
    /// continued run (`--steps`, `--epochs` to train longer, `--threads`, `--data-dir`);
    /// any other flag is refused, as it would silently not apply.
    fn resumed_config(&self, dir: &std::path::Path) -> Result<Config> {
        const CHANGEABLE: [&str; 4] = ["steps", "epochs", "threads", "data_dir"];
        let flags = self.flag_settings();
        let fixed: Vec<String> = flags
            .keys()
            .filter(|k| !CHANGEABLE.contains(&k.as_str()))
            .map(|k| format!("--{}", k.replace('_', "-")))
            .chain(self.out.as_ref().map(|_| "--out".to_string()))
            .collect();
        if !fixed.is_empty() {
            anyhow::bail!(
                "--resume {} continues the run as its config.toml says; {} cannot change in a \
                 resumed run (only --steps, --epochs, --threads and --data-dir can)",
                dir.display(),
                fixed.join(", ")
            );
        }
        let path = dir.join(run::CONFIG_FILE);
        let mut table =
            toml::Table::try_from(Config::from_file(&path)?).expect("Config is a table");
        table.extend(flags);
        config_of(table, "a flag for --resume")
    }

    /// The settings given as flags, as config keys.
    fn flag_settings(&self) -> toml::Table {
        let mut table = toml::Table::new();
        set(&mut table, "task", self.task.clone());
        set(&mut table, "data_dir", self.data_dir.clone());
        set(&mut table, "verify_data", self.verify_data);
        set(&mut table, "weights", self.weights.clone());
        set(&mut table, "delay", self.delay);
        set(&mut table, "length", self.length);
        set(&mut table, "seq", self.seq);
        set(&mut table, "embedding", self.embedding);
        set(&mut table, "model", self.model.clone());
        set(&mut table, "bits", self.bits);
        set(&mut table, "granularity", self.granularity.clone());
        set(&mut table, "range", self.range.clone());
        set(&mut table, "lsq_init", self.lsq_init.clone());
        set(&mut table, "step_lr", self.step_lr);
        set(&mut table, "rounding", self.rounding.clone());
        set(&mut table, "hidden", self.hidden);
        set(&mut table, "act", self.act.clone());
        set(&mut table, "init", self.init.clone());
        set(&mut table, "bjorck_iterations", self.bjorck_iterations);
        set(&mut table, "rank", self.rank);
        set(&mut table, "block", self.block);
        set(&mut table, "rank_w", self.rank_w);
        set(&mut table, "rank_u", self.rank_u);
        set(&mut table, "optimizer", self.optimizer.clone());
        set(&mut table, "lr", self.lr);
        set(&mut table, "orthogonal_lr", self.orthogonal_lr);
        set(&mut table, "clip", self.clip);
        set(&mut table, "schedule", self.schedule.clone());
        set(&mut table, "lr_gamma", self.lr_gamma);
        set(&mut table, "lr_every", self.lr_every);
        set(&mut table, "steps", self.steps);
        set(&mut table, "epochs", self.epochs);
        set(&mut table, "batch", self.batch);
        set(&mut table, "eval_every", self.eval_every);
        set(&mut table, "eval_sequences", self.eval_sequences);
        set(&mut table, "seed", self.seed);
        set(&mut table, "threads", self.threads);
        set(&mut table, "warmup_steps", self.warmup_steps);
        set(&mut table, "init_from", self.init_from.clone());
        if let Some(text) = &self.bits_schedule {
            let pairs: Vec<toml::Value> = text
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    let (step, bits) = p.split_once(':').unwrap_or((p, ""));
                    toml::Value::Array(vec![
                        schedule_number(step).into(),
                        schedule_number(bits).into(),
                    ])
                })
                .collect();
            table.insert("bits_schedule".into(), toml::Value::Array(pairs));
        }
        table
    }
}

/// A schedule entry's number; text that is not one becomes -1, which the config refuses
/// with a message naming --bits-schedule.
fn schedule_number(text: &str) -> i64 {
    text.trim().parse().unwrap_or(-1)
}

/// The settings of `table` as a checked `Config`; errors name `source` or the flag.
fn config_of(table: toml::Table, source: &str) -> Result<Config> {
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e| anyhow::anyhow!("invalid setting in {source}: {e}"))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{e} (flag --{})", flag_of(&e)))?;
    Ok(config)
}

fn flag_of(e: &qornn::Error) -> String {
    match e {
        qornn::Error::Config { field, .. } => field.replace('_', "-"),
        _ => String::new(),
    }
}

fn default_out(c: &Config) -> PathBuf {
    let bits = if c.full_precision() {
        "fp".to_string()
    } else {
        format!("{}b", c.bits())
    };
    PathBuf::from("runs").join(format!(
        "{}-{}-{bits}-n{}-s{}",
        c.task, c.model, c.hidden, c.seed
    ))
}

fn train(args: TrainArgs) -> Result<()> {
    let summary = if let Some(dir) = &args.resume {
        let config = args.resumed_config(dir)?;
        let mut observer = progress::Progress::new(format!("resuming {}", dir.display()));
        run::resume_with(dir, config, &mut observer)?
    } else {
        let config = args.config()?;
        let out = args.out.clone().unwrap_or_else(|| default_out(&config));
        let banner = format!(
            "training {} ({} bits) on {}; run folder {}",
            config.model,
            if config.full_precision() {
                "32".to_string()
            } else {
                config.bits().to_string()
            },
            config.task,
            out.display(),
        );
        let mut observer = progress::Progress::new(banner);
        run::start(config, &out, &mut observer)?
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

fn quantize(args: QuantizeArgs) -> Result<()> {
    let (report, path) = qornn::deploy::quantize::quantize_run(
        &args.run,
        args.act_bits,
        args.calib,
        args.bits,
        args.readout_bits,
        args.output.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("{e} (flag --{})", flag_of(&e)))?;
    eprintln!("wrote {} ({} bytes)", path.display(), report.bytes);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn export(args: ExportArgs) -> Result<()> {
    let model = qornn::deploy::model_file::IntegerModel::load(&args.model)?;
    let task = qornn::deploy::task_record::task_of(&model.task, args.data_dir.as_deref())?;
    let t = &model.task;
    let batches = task.eval_batches(true, t.batch as usize, t.sequences as usize, t.seed);
    let first = batches
        .first()
        .context("the task has no test sequence for the trace")?;
    std::fs::create_dir_all(&args.c_dir)
        .with_context(|| format!("cannot create --c {}", args.c_dir.display()))?;
    let files = [
        (
            "qornn_model.h",
            qornn::deploy::export_c::model_header(&model),
        ),
        (
            "qornn_trace.h",
            qornn::deploy::export_c::trace_header(&model, first),
        ),
    ];
    for (name, text) in files {
        let path = args.c_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "wrote qornn_model.h and qornn_trace.h in {0} (check them with: make -C c check \
         MODEL={0}, or check-m4 on an emulated Cortex-M4)",
        args.c_dir.display()
    );
    Ok(())
}

fn weights(args: WeightsArgs) -> Result<()> {
    let tensors = run::best_weights(&args.run)?;
    qornn::weights::save(&args.out, &tensors)?;
    let names: Vec<&str> = tensors.iter().map(|t| t.name).collect();
    eprintln!("wrote {} ({})", args.out.display(), names.join(", "));
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let Some(model) = &args.model else {
        let dir = args.run.as_ref().expect("clap requires --run or --model");
        println!("{}", serde_json::to_string_pretty(&run::evaluate(dir)?)?);
        return Ok(());
    };
    let r = qornn::deploy::quantize::evaluate_file(model, args.data_dir.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let line = |name: &str, e: &qornn::train::Evaluation| {
            let acc = e
                .accuracy
                .map(|a| format!("  accuracy {:.4}", a))
                .unwrap_or_default();
            println!("{name:<10} loss {:.5}{acc}", e.loss);
        };
        let readout = r
            .readout_bits
            .map_or("float".to_string(), |b| format!("{b}-bit"));
        println!(
            "{}: {}-bit weights, {}-bit activations, {readout} read-out, {} bytes",
            model.display(),
            r.weight_bits,
            r.act_bits,
            r.bytes
        );
        line("float", &r.float);
        line("simulated", &r.simulated);
        line("integer", &r.integer);
        println!(
            "integer and simulated bit-exact on every sequence: {}",
            r.bit_exact
        );
        println!(
            "integer engine: {:.1} sequences/s (one core)",
            r.integer_sequences_per_second
        );
    }
    Ok(())
}

fn report(args: ReportArgs) -> Result<()> {
    let report = qornn::report::Report::collect(&args.paths)?;
    let written = report.write(&args.out)?;
    eprintln!(
        "{} runs in {} configurations; wrote {} files in {}",
        report.runs.len(),
        report.groups.len(),
        written.len(),
        args.out.display()
    );
    print!(
        "{}",
        std::fs::read_to_string(args.out.join("results.md"))
            .with_context(|| format!("cannot read back {}", args.out.display()))?
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(*args),
        Command::Eval(args) => eval(args),
        Command::Weights(args) => weights(args),
        Command::Quantize(args) => quantize(args),
        Command::Export(args) => export(args),
        Command::Bench(args) => bench::run(args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Report(args) => report(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if matches!(e.downcast_ref(), Some(qornn::Error::Interrupted { .. })) => {
            eprintln!("{e:#}");
            std::process::ExitCode::from(signals::EXIT_INTERRUPTED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `qornn`: train, evaluate and benchmark quantized orthogonal RNNs.

mod bench;
mod progress;
mod signals;
mod slurm;
mod sweep;

use anyhow::{Context, Result};
use clap::{Arg, Args, Parser, Subcommand};
use qornn::config::{Config, Setting, SETTINGS};
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
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "out"])]
    resume: Option<PathBuf>,
    /// Run folder [default: runs/<task>-<model>-<k>b-n<hidden>-s<seed>, `fp` for 32 bits].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingFlags,
}

/// Every setting of the library's `SETTINGS` as a flag; holds the ones given, as config
/// keys with their TOML values.
struct SettingFlags(toml::Table);

/// The flag of a setting: its key with `_` written `-`, its help with the default it has.
fn setting_flag(setting: &'static Setting, defaults: &toml::Table) -> Arg {
    let default = match defaults.get(setting.key) {
        Some(toml::Value::String(text)) => format!(" [default: {text}]"),
        Some(toml::Value::Array(items)) if items.is_empty() => String::new(),
        Some(value) => format!(" [default: {value}]"),
        None => String::new(),
    };
    let parse = setting.parse;
    let mut arg = Arg::new(setting.key)
        .long(setting.key.replace('_', "-"))
        .value_name(setting.key.to_uppercase())
        .help(format!("{}{default}", setting.help_text()))
        .value_parser(move |text: &str| parse(text));
    if let Some(alias) = setting.alias {
        arg = arg.alias(alias);
    }
    arg
}

impl clap::Args for SettingFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        let defaults = toml::Table::try_from(Config::default()).expect("Config is a table");
        command.args(SETTINGS.iter().map(|s| setting_flag(s, &defaults)))
    }
    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let given = SETTINGS.iter().filter_map(|s| {
            let value = matches.get_one::<toml::Value>(s.key)?;
            Some((s.key.to_string(), value.clone()))
        });
        Ok(Self(given.collect()))
    }
    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[derive(Args)]
struct QuantizeArgs {
    /// A run folder written by `qornn train` (an ORNN or RNN with ReLU or modReLU).
    #[arg(long, value_name = "DIR")]
    run: PathBuf,
    /// Activation bits A (4..=16) [default: the run's act_bits, whose hidden step is then
    /// used, else 8].
    #[arg(long)]
    act_bits: Option<u32>,
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

/// A library error, with the flag to fix when it names a setting.
fn with_flag(e: qornn::Error) -> anyhow::Error {
    let flags = flag_of(&e);
    if flags.is_empty() {
        anyhow::Error::new(e)
    } else {
        anyhow::anyhow!("{e} (flag {flags})")
    }
}

/// The flags of the settings an error names (`a, b` becomes `--a, --b`).
fn flag_of(e: &qornn::Error) -> String {
    match e {
        qornn::Error::Config { field, .. } => field
            .split(", ")
            .map(|key| format!("--{}", key.replace('_', "-")))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    let summary = if let Some(dir) = &args.resume {
        let config = Config::resumed(dir, &args.settings.0).map_err(with_flag)?;
        let mut observer = progress::Progress::new(format!("resuming {}", dir.display()));
        run::resume_with(dir, config, &mut observer)?
    } else {
        let config =
            Config::layered(args.config.as_deref(), &args.settings.0).map_err(with_flag)?;
        let out = args.out.clone().unwrap_or_else(|| config.default_run_dir());
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
    .map_err(with_flag)?;
    eprintln!("wrote {} ({} bytes)", path.display(), report.bytes);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn export(args: ExportArgs) -> Result<()> {
    let model = qornn::deploy::model_file::IntegerModel::load(&args.model)?;
    let task = qornn::deploy::task_record::task_of_model(&model, args.data_dir.as_deref())?;
    let first = qornn::deploy::task_record::first_test_batch(&task, &model.task)
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
            qornn::deploy::export_c::trace_header(&model, &first),
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
    let tensors = run::best_weights(&args.run, None)?;
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
    // A reader that closes early (`qornn report ... | head`) ends the program as it ends
    // any Unix tool, instead of a panic in `println!`: Rust ignores SIGPIPE by default.
    // SAFETY: called first, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Gradients carried back through long sequences decay into subnormal floats, which
    // x86 CPUs compute many times slower (`qornn::subnormal`); `qornn bench
    // --keep-subnormals` times them.
    let keep_subnormals = matches!(&cli.command, Command::Bench(args) if args.keep_subnormals);
    if !keep_subnormals {
        if let Err(e) = qornn::subnormal::flush_everywhere() {
            eprintln!("warning: subnormal floats are not flushed to zero in every thread: {e}");
        }
    }
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

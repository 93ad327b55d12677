//! A run folder: `config.toml`, `metrics.jsonl` (one line per evaluation),
//! `checkpoint.safetensors` (latest), `best.safetensors` (best validation loss) and
//! `summary.json`. Results are written as the run goes, so a crash keeps them.

use crate::checkpoint::{self, write_atomically, Checkpoint};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lock::RunLock;
use crate::model::Model;
use crate::tasks::Task;
use crate::train::{Evaluation, Orthogonality, Trainer};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::config::CONFIG_FILE;
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub use crate::checkpoint::{best_weights, BEST_FILE};
pub const SUMMARY_FILE: &str = "summary.json";

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: u64,
    pub lr: f64,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_accuracy: Option<f64>,
    pub val_bits_per_char: Option<f64>,
    pub val_perplexity: Option<f64>,
    pub baseline_loss: f64,
    /// ORNN and RNN cores only.
    pub orthogonality: Option<Orthogonality>,
    /// An exact `W`: how many of its codes changed since the previous evaluation (Hadamard
    /// recurrences: signs; block rotations: blocks' lattice directions). Older runs wrote it
    /// as `sign_flips`.
    #[serde(default, alias = "sign_flips", skip_serializing_if = "Option::is_none")]
    pub code_changes: Option<usize>,
    /// `--act-bits`: the hidden state's fraction bits `f_h` (its step `2^-f_h`) the
    /// evaluation used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_frac: Option<i32>,
    /// The hidden state's step itself, `m 2^-f_h`, where it is not a power of two
    /// (`act_range = "continuous"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_step: Option<f64>,
    pub seconds: f64,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub task: crate::config::TaskName,
    pub model: crate::config::ModelName,
    pub bits: u32,
    pub hidden: usize,
    pub steps: u64,
    /// Trainable parameters, the embedding included.
    pub params: usize,
    /// Of which in the word embedding (0 without one): FastGRNN reports sizes without it.
    pub embedding_params: usize,
    /// The weights as stored: k bits per quantized entry, a 32-bit step per tensor (or
    /// row), 32 bits per float entry.
    pub size_bytes: u64,
    /// The best model (by validation loss) on the test set.
    pub test: Evaluation,
    pub validation: Evaluation,
    pub best_step: u64,
    pub baseline_loss: f64,
    pub seconds: f64,
}

/// Where a run (re)starts: its first step, its last, and the task's memoryless baseline.
#[derive(Clone, Copy, Debug)]
pub struct RunStart {
    pub step: u64,
    /// `steps`, or `epochs` times the steps of one epoch.
    pub total_steps: u64,
    pub baseline_loss: f64,
}

/// What the caller sees while a run goes (a progress bar, or nothing).
pub trait Observer {
    fn on_start(&mut self, _start: &RunStart) {}
    fn on_step(&mut self, _step: u64, _loss: f32) {}
    fn on_eval(&mut self, _record: &EvalRecord) {}
    /// Checked after every step: `true` checkpoints the run where it stands and returns
    /// [`Error::Interrupted`] (a signal from the batch system, Ctrl-C).
    fn should_stop(&mut self) -> bool {
        false
    }
}

impl Observer for () {}

/// Starts a run in `dir` (which must not hold one already).
pub fn start(config: Config, dir: &Path, observer: &mut dyn Observer) -> Result<Summary> {
    config.validate()?;
    // Any of a run's results marks the folder as taken: a finished run whose checkpoints
    // were deleted still has its metrics and summary, which a new run would overwrite.
    let metrics = dir.join(METRICS_FILE);
    let taken = [CHECKPOINT_FILE, BEST_FILE, SUMMARY_FILE]
        .iter()
        .find(|f| dir.join(f).exists())
        .copied()
        .or_else(|| {
            metrics
                .metadata()
                .is_ok_and(|m| m.len() > 0)
                .then_some(METRICS_FILE)
        });
    if let Some(file) = taken {
        return Err(Error::config(
            "out",
            format!(
                "{} already holds a run (its {file}); use --resume {0} or another --out",
                dir.display()
            ),
        ));
    }
    // The task and the memory its training needs are checked before anything is created.
    let task = config.task()?;
    check_memory(&config, &task)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let _lock = RunLock::acquire(dir)?;
    write_atomically(&dir.join(CONFIG_FILE), config.to_toml().as_bytes())?;
    std::fs::write(dir.join(METRICS_FILE), b"")
        .map_err(|e| Error::io(dir.join(METRICS_FILE), e))?;
    let trainer = Trainer::new(config, task)?;
    let state = Bookkeeping {
        best_val_loss: f64::INFINITY,
        best_step: 0,
        seconds: 0.0,
        pending_loss: 0.0,
        pending_count: 0,
    };
    drive(trainer, state, dir, observer)
}

/// The most memory a run's activations may take: about a third of the machines the
/// project targets, so that a typo in `batch` or `hidden` is refused rather than aborting.
pub const MAX_ACTIVATION_BYTES: u64 = 8 << 30;

/// Refuses a configuration whose training activations (pre-activations, states and their
/// gradient, `(T, B, n)` floats each; a gated cell holds a few times more) would pass
/// [`MAX_ACTIVATION_BYTES`], naming the settings that set the size.
fn check_memory(config: &Config, task: &Task) -> Result<()> {
    let (steps, batch, hidden) = (
        task.steps() as u64,
        config.batch as u64,
        config.hidden as u64,
    );
    let bytes = 3 * 4 * (steps + 1) * batch * hidden;
    if bytes > MAX_ACTIVATION_BYTES {
        return Err(Error::config(
            "batch",
            format!(
                "training would hold {:.1} GiB of activations ({} steps x batch {batch} x hidden \
                 {hidden} x 3 buffers of f32), above {} GiB: lower batch or hidden",
                bytes as f64 / (1u64 << 30) as f64,
                steps,
                MAX_ACTIVATION_BYTES >> 30
            ),
        ));
    }
    Ok(())
}

/// Continues the run in `dir` from its last checkpoint.
pub fn resume(dir: &Path, observer: &mut dyn Observer) -> Result<Summary> {
    let config = Config::from_file(&dir.join(CONFIG_FILE))?;
    resume_with(dir, config, observer)
}

/// Continues the run in `dir` with `config`, its own with the settings that may change in
/// a continued run (more steps or epochs, threads, the data folder; the caller refuses
/// others), which is written back to its `config.toml`.
pub fn resume_with(dir: &Path, config: Config, observer: &mut dyn Observer) -> Result<Summary> {
    config.validate()?;
    let _lock = RunLock::acquire(dir)?;
    let task = config.task()?;
    // Before the checkpoint's tensors or the workspace are allocated.
    check_memory(&config, &task)?;
    let ckpt = checkpoint::load(&dir.join(CHECKPOINT_FILE), &config.model_spec_for(&task))?;
    if let Some(trained) = &ckpt.config {
        let trained = Config::parse(trained, &dir.join(CHECKPOINT_FILE))?;
        let changed = trained.changed_keys(&config);
        if !changed.is_empty() {
            return Err(Error::config(
                "resume",
                format!(
                    "{} was trained with other settings than its config.toml now holds ({}); \
                     only {} may change when a run continues",
                    dir.display(),
                    changed.join(", "),
                    crate::config::CHANGEABLE_ON_RESUME.join(", ")
                ),
            ));
        }
    }
    let saved = Config::from_file(&dir.join(CONFIG_FILE))?;
    if saved != config {
        write_atomically(&dir.join(CONFIG_FILE), config.to_toml().as_bytes())?;
    }
    truncate_metrics(&dir.join(METRICS_FILE), ckpt.step)?;
    let state = Bookkeeping {
        best_val_loss: ckpt.best_val_loss,
        best_step: ckpt.best_step,
        seconds: ckpt.seconds,
        pending_loss: ckpt.pending_loss,
        pending_count: ckpt.pending_count,
    };
    let trainer = Trainer::resume(config, task, ckpt)?;
    drive(trainer, state, dir, observer)
}

/// The best model of a run (by validation loss) with its config and task, without a trainer
/// (`qornn quantize`).
pub fn load_best_model(dir: &Path) -> Result<(Config, Task, Model)> {
    let config = Config::from_file(&dir.join(CONFIG_FILE))?;
    config.validate()?;
    let task = config.task()?;
    task.check_sizes(config.batch)?;
    let spec = config.model_spec_for(&task);
    let best = checkpoint::load(&dir.join(BEST_FILE), &spec)?;
    let model = Model::from_params(
        spec,
        best.params,
        crate::checkpoint::state_values(best.parametrisation_state),
    );
    Ok((config, task, model))
}

/// A trainer around the best model of a run, with that model's step and training time.
pub fn load_best(dir: &Path) -> Result<(Trainer, u64, f64)> {
    let config = Config::from_file(&dir.join(CONFIG_FILE))?;
    config.validate()?;
    let task = config.task()?;
    let best = checkpoint::load(&dir.join(BEST_FILE), &config.model_spec_for(&task))?;
    let (step, seconds) = (best.step, best.seconds);
    Ok((Trainer::resume(config, task, best)?, step, seconds))
}

/// The `summary.json` of a run folder, `None` while the run has not finished.
pub fn read_summary(dir: &Path) -> Result<Option<Summary>> {
    let path = dir.join(SUMMARY_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::bad_file(&path, e.to_string()))
}

/// Loads the best model of a finished (or interrupted) run and evaluates it on the test set.
pub fn evaluate(dir: &Path) -> Result<Summary> {
    let (mut trainer, best_step, seconds) = load_best(dir)?;
    let validation = trainer.evaluate(false);
    let test = trainer.evaluate(true);
    Ok(summary(&trainer, test, validation, best_step, seconds))
}

struct Bookkeeping {
    best_val_loss: f64,
    best_step: u64,
    seconds: f64,
    pending_loss: f64,
    pending_count: u64,
}

fn drive(
    mut trainer: Trainer,
    mut state: Bookkeeping,
    dir: &Path,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let metrics_path = dir.join(METRICS_FILE);
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&metrics_path)
        .map_err(|e| Error::io(&metrics_path, e))?;
    let (total, eval_every) = (trainer.total_steps, trainer.eval_every);
    final_arithmetic_within(&trainer.config, total)?;
    observer.on_start(&RunStart {
        step: trainer.step,
        total_steps: total,
        baseline_loss: trainer.task.baseline_loss(),
    });
    let mut clock = Instant::now();
    while trainer.step < total {
        let (loss, _) = trainer.train_step()?;
        state.pending_loss += loss as f64;
        state.pending_count += 1;
        observer.on_step(trainer.step, loss);
        let at_eval = trainer.step.is_multiple_of(eval_every) || trainer.step == total;
        if !at_eval && observer.should_stop() {
            // Batches are a function of (seed, step), so a checkpoint between two
            // evaluations resumes to the same result.
            state.seconds += clock.elapsed().as_secs_f64();
            let ckpt = with_bookkeeping(trainer.checkpoint(), &state);
            checkpoint::save(&dir.join(CHECKPOINT_FILE), &ckpt)?;
            return Err(Error::Interrupted {
                step: trainer.step,
                dir: dir.to_path_buf(),
            });
        }
        if at_eval {
            state.seconds += clock.elapsed().as_secs_f64();
            let lr = trainer.lr();
            let val = trainer.evaluate(false);
            let hidden_quantizer = trainer.model.hidden_quantizer();
            let record = EvalRecord {
                step: trainer.step,
                lr,
                train_loss: state.pending_loss / state.pending_count.max(1) as f64,
                val_loss: val.loss,
                val_accuracy: val.accuracy,
                val_bits_per_char: val.bits_per_char,
                val_perplexity: val.perplexity,
                baseline_loss: trainer.task.baseline_loss(),
                orthogonality: trainer.orthogonality(),
                code_changes: trainer.take_code_changes(),
                hidden_frac: hidden_quantizer.map(|q| q.fraction_bits()),
                hidden_step: hidden_quantizer
                    .filter(|q| q.mantissa() != 1.0)
                    .map(|q| q.step as f64),
                seconds: state.seconds,
            };
            let line = serde_json::to_string(&record).expect("records serialise");
            writeln!(metrics, "{line}").map_err(|e| Error::io(&metrics_path, e))?;
            metrics.flush().map_err(|e| Error::io(&metrics_path, e))?;
            observer.on_eval(&record);
            state.pending_loss = 0.0;
            state.pending_count = 0;
            // Only a model in its final arithmetic may be the best.
            let in_final_arithmetic = not_yet_final(&trainer.config, trainer.step - 1).is_none();
            let improved = in_final_arithmetic && val.loss < state.best_val_loss;
            if improved {
                state.best_val_loss = val.loss;
                state.best_step = trainer.step;
            }
            let ckpt = with_bookkeeping(trainer.checkpoint(), &state);
            if improved {
                checkpoint::save(&dir.join(BEST_FILE), &ckpt)?;
            }
            checkpoint::save(&dir.join(CHECKPOINT_FILE), &ckpt)?;
            clock = Instant::now();
            if trainer.step < total && observer.should_stop() {
                return Err(Error::Interrupted {
                    step: trainer.step,
                    dir: dir.to_path_buf(),
                });
            }
        }
    }
    // The test set is scored on the best model by validation loss.
    let best = checkpoint::load(&dir.join(BEST_FILE), &trainer.model.spec)?;
    trainer.load_params(
        best.params,
        crate::checkpoint::state_values(best.parametrisation_state),
    );
    let validation = trainer.evaluate(false);
    let test = trainer.evaluate(true);
    let summary = summary(&trainer, test, validation, best.step, state.seconds);
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    write_atomically(&dir.join(SUMMARY_FILE), json.as_bytes())?;
    Ok(summary)
}

/// The setting that keeps training step `step` out of the model's final arithmetic (the
/// final width of a bit-width schedule, the activations quantized when they are), if any.
fn not_yet_final(config: &crate::config::Config, step: u64) -> Option<&'static str> {
    if config.bits_at(step) != config.bits() {
        Some("bits_schedule")
    } else if config.act_bits_at(step) != config.act_bits {
        Some("act_bits_from")
    } else {
        None
    }
}

/// Only a model in its final arithmetic is scored (`drive`): a run whose last step is not
/// in it would leave no best model, so it is refused before it starts.
fn final_arithmetic_within(config: &crate::config::Config, total: u64) -> Result<()> {
    match not_yet_final(config, total.saturating_sub(1)) {
        Some(field) => Err(Error::config(
            field,
            format!(
                "the run ends at step {total}, before its final arithmetic starts: no model \
                 in it would be evaluated; train longer or start it earlier"
            ),
        )),
        None => Ok(()),
    }
}

fn with_bookkeeping(ckpt: Checkpoint, state: &Bookkeeping) -> Checkpoint {
    Checkpoint {
        best_val_loss: state.best_val_loss,
        best_step: state.best_step,
        seconds: state.seconds,
        pending_loss: state.pending_loss,
        pending_count: state.pending_count,
        ..ckpt
    }
}

fn summary(
    trainer: &Trainer,
    test: Evaluation,
    validation: Evaluation,
    best_step: u64,
    seconds: f64,
) -> Summary {
    let c = &trainer.config;
    Summary {
        task: c.task,
        model: c.model,
        bits: c.bits(),
        hidden: c.hidden,
        steps: trainer.total_steps,
        params: trainer.model.num_params(),
        embedding_params: trainer.model.embedding_params(),
        size_bytes: trainer.model.size_bytes(),
        test,
        validation,
        best_step,
        baseline_loss: trainer.task.baseline_loss(),
        seconds,
    }
}

/// Drops metric lines written after the checkpoint a resumed run restarts from.
fn truncate_metrics(path: &PathBuf, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<EvalRecord>(line)
                .map(|r| r.step <= step)
                .unwrap_or(false)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomically(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    /// Runs written before `code_changes` logged a Hadamard recurrence's `sign_flips`:
    /// `qornn report` still reads them, and new lines use the new name.
    #[test]
    fn older_metrics_lines_with_sign_flips_still_read() {
        let line = r#"{"step":100,"lr":0.001,"train_loss":0.5,"val_loss":0.4,"val_accuracy":0.1,"val_bits_per_char":null,"val_perplexity":null,"baseline_loss":0.02,"orthogonality":null,"sign_flips":3,"seconds":1.0}"#;
        let record: super::EvalRecord = serde_json::from_str(line).unwrap();
        assert_eq!(record.code_changes, Some(3));
        let written = serde_json::to_string(&record).unwrap();
        assert!(written.contains("\"code_changes\":3"), "{written}");
    }
}

//! The run configuration: one flat TOML table whose `Default` is `qornn train` with no
//! flags, declared once in `settings!` with each setting's help, type and default. The CLI
//! builds its flags from `SETTINGS` (the key with `_` written `-`); `Config::layered`
//! applies defaults, then a file, then flags.

use crate::cells::ornn::Activation;
use crate::data::ptb::{Level, Ptb};
use crate::data::Checksums;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::model::ModelSpec;
use crate::optim::{OptimizerKind, Schedule};
use crate::parametrisation::bjorck::BjorckConfig;
use crate::quant::activation::{ActRange, ActRounding, HiddenStepStart};
use crate::quant::lsq::LsqInit;
use crate::quant::Rounding;
use crate::quant::{Granularity, Quantizer, RangeRule};
pub use crate::registry::ModelName;
use crate::registry::ParametrisationContext;
use crate::tasks::{AddingTask, CopyTask, MnistTask, PtbTask, Task};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Declares a name enum whose serde and display names are its kebab-case spellings.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident ($key:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in the order of the documentation.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name in configs and on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(text: &str) -> Result<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    Error::config(
                        $key,
                        format!("unknown name `{text}`; choose one of {}", names.join(", ")),
                    )
                })
            }
        }
    };
}

names! {
    /// The task (`--task`).
    TaskName ("task") {
        Copy = "copy",
        Adding = "adding",
        Smnist = "smnist",
        Pmnist = "pmnist",
        PtbChar = "ptb-char",
        PtbWord = "ptb-word",
    }
}

impl TaskName {
    /// A language-modelling task on Penn Treebank.
    pub fn is_ptb(self) -> bool {
        matches!(self, Self::PtbChar | Self::PtbWord)
    }
}

names! {
    /// The learning-rate schedule (`--schedule`).
    ScheduleName ("schedule") {
        Constant = "constant",
        /// Times `lr_gamma` every `lr_every` steps (or epochs).
        Step = "step",
        /// Times `lr_gamma` every step (or epoch).
        Exponential = "exponential",
    }
}

/// `--bits` value meaning full precision.
pub use crate::registry::FULL_PRECISION_BITS;

/// One setting of the run: its key in config files (the CLI flag is the key with `_`
/// written `-`), the help shown by `qornn train --help`, and the parser of a flag's text.
pub struct Setting {
    pub key: &'static str,
    /// Another spelling accepted in files and on the command line.
    pub alias: Option<&'static str>,
    pub help: &'static str,
    /// The flag's text as the key's TOML value, or why it is not one.
    pub parse: fn(&str) -> std::result::Result<toml::Value, String>,
}

impl Setting {
    /// The help `qornn train --help` shows: the doc comment, and for `model` and `bits` the
    /// registered models and their default widths, read from the registry.
    pub fn help_text(&self) -> String {
        let help = self.help.trim();
        let models = || crate::registry::ModelName::all();
        match self.key {
            "model" => {
                let names: Vec<&str> = models().map(|m| m.as_str()).collect();
                format!("{help} One of: {}.", names.join(", "))
            }
            "bits" => {
                let defaults: Vec<String> = models()
                    .map(|m| format!("{} {}", m.as_str(), m.entry().default_bits))
                    .collect();
                format!("{help} Defaults: {}.", defaults.join(", "))
            }
            _ => help.to_string(),
        }
    }
}

/// Declares `Config`, its `Default` and `SETTINGS` from one list: each setting's doc comment
/// (also the flag's help), an optional alias, its key, type and default.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $(#[alias = $alias:literal])?
        $key:ident: $ty:ty = $default:expr,
    )+) => {
        /// The run configuration: one flat TOML table whose `Default` is `qornn train` with
        /// no flags. Every field is also a CLI flag (`SETTINGS`).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            $($(#[doc = $doc])+ $(#[serde(alias = $alias)])? pub $key: $ty,)+
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $($key: $default,)+ }
            }
        }

        /// Every setting, in the order of `qornn train --help`.
        pub const SETTINGS: &[Setting] = &[$(Setting {
            key: stringify!($key),
            alias: settings!(@alias $($alias)?),
            help: concat!($($doc),+),
            parse: flag_value::<$ty>,
        },)+];
    };
    (@alias $alias:literal) => { Some($alias) };
    (@alias) => { None };
}

settings! {
    /// Task: copy, adding, smnist, pmnist, ptb-char or ptb-word.
    task: TaskName = TaskName::Copy,
    /// Folder with MNIST's IDX files and the PTB text files (plain or .gz); unset:
    /// $QORNN_DATA, else ./data.
    data_dir: Option<PathBuf> = None,
    /// Start from these weights (a safetensors file from `qornn weights`, or PyTorch's
    /// state_dict under the same names) instead of a random initialisation.
    weights: Option<PathBuf> = None,
    /// Check the SHA-256 of data files under their usual names (turn off for your own
    /// variants of the files).
    verify_data: bool = true,
    /// Copy task: the delay T0 (sequences are T0 + 20 long).
    delay: usize = 100,
    /// Adding task: the sequence length T.
    length: usize = 200,
    /// Language modelling: the truncated-BPTT segment length.
    seq: usize = 150,
    /// ptb-word: the size of the float, trained word embedding.
    embedding: usize = 128,
    /// The model: a quantized ORNN (qornn-*), its full-precision twin (ornn-*), a Hadamard
    /// recurrence (binary or ternary W, exactly orthogonal), block rotations with integer
    /// codes, or a baseline.
    model: ModelName = ModelName::new(&crate::parametrisation::bjorck::QORNN_BJORCK),
    /// Weight bits of every weight matrix (W and U of an ORNN; U only where W is binary,
    /// ternary or rotation codes): 2..=8, or 32 for full precision; unset: the model's
    /// default.
    bits: Option<u32> = None,
    /// Quantizer scale: per-tensor (the paper) or per-row.
    granularity: Granularity = Granularity::PerTensor,
    /// Quantizer range: max (a = max |w|, the paper), mse (the range with the least squared
    /// error, which clips a few weights) or lsq (a learned step per tensor or row, LSQ); also
    /// spelled quantizer.
    #[alias = "quantizer"]
    range: RangeRule = RangeRule::Max,
    /// range lsq: the initial step, max (the paper's step), mse or lsq (LSQ's
    /// 2 mean|w| / sqrt(Q_P), which clips most of a sparse orthogonal W).
    lsq_init: LsqInit = LsqInit::Max,
    /// range lsq: the learning rate of the learned steps; unset: lr.
    step_lr: Option<f64> = None,
    /// Rounding of a qornn-* model's W: nearest (the paper) or orthogonal (each code rounded
    /// down or up so that q(W) is closer to orthogonal, every step; per tensor, max or mse
    /// range).
    rounding: Rounding = Rounding::Nearest,
    /// Hidden units n.
    hidden: usize = 128,
    /// ORNN and RNN activation: relu, modrelu or tanh.
    act: Activation = Activation::Relu,
    /// Recurrent initialisation: henaff, orthogonal or identity.
    init: Init = Init::Henaff,
    /// Björck iterations of STE-Björck.
    bjorck_iterations: usize = BjorckConfig::default().iterations,
    /// projUNN: rank of the approximated step.
    rank: usize = 1,
    /// block-hadamrnn: the Hadamard block size m, a power of two dividing hidden (hadamrnn
    /// uses one block of size hidden).
    block: usize = 16,
    /// FastRNN/FastGRNN: rank of W = W1 W2, 0 for a full matrix.
    rank_w: usize = 0,
    /// FastRNN/FastGRNN: rank of U = U1 U2, 0 for a full matrix.
    rank_u: usize = 0,
    /// projUNN: re-orthonormalise W when ||W^T W - I||_F exceeds this (checked every 100
    /// steps).
    orthogonality_tolerance: f64 = 1e-5,
    /// Optimiser: rmsprop or adam.
    optimizer: OptimizerKind = OptimizerKind::Rmsprop,
    /// Learning rate.
    lr: f64 = 1e-3,
    /// Learning rate of the recurrent matrix (A or W); unset: lr / 32, as in the
    /// orthogonal-RNN literature (expRNN, projUNN).
    orthogonal_lr: Option<f64> = None,
    /// Gradient-norm clipping threshold, 0 for none.
    clip: f64 = 0.0,
    /// Learning-rate schedule: constant, step (times lr_gamma every lr_every steps) or
    /// exponential (times lr_gamma each step).
    schedule: ScheduleName = ScheduleName::Constant,
    /// The schedule's decay factor, in (0, 1].
    lr_gamma: f64 = 0.5,
    /// Steps (or epochs) between two decays of the step schedule.
    lr_every: u64 = 1000,
    /// Linear learning-rate warm-up over this many steps, 0 for none; multiplies the
    /// schedule's factor.
    warmup_steps: u64 = 0,
    /// Bit-width schedule within one run: STEP:BITS pairs from step 0, e.g. 0:8,1000:6,2000:4
    /// (in a file [[0, 8], [1000, 6], [2000, 4]]); from each step on the weights train at
    /// that width, and the last width must be bits. Empty: bits throughout.
    bits_schedule: BitsSchedule = BitsSchedule::default(),
    /// From this step on the ORNN's recurrent parameter (A, W, the Hadamard signs or the
    /// rotation angles) stays as it is and only the other tensors train; unset: never.
    freeze_recurrent_at: Option<u64> = None,
    /// Quantization-aware training of the activations: the hidden state and the input
    /// fake-quantized at A bits (4..=16) as the integer engine computes them (power-of-two
    /// scales, its rounding and clamping), the hidden state's step as act_range says;
    /// `qornn quantize` then uses this A and that step. ORNN and RNN with relu or modrelu;
    /// unset: float activations.
    act_bits: Option<u32> = None,
    /// act_bits: the step from which the activations are quantized (a float model trained
    /// so far is fine-tuned from there).
    act_bits_from: u64 = 0,
    /// act_bits: the hidden state's step calibrated (held), learned (LSQ on its log2,
    /// rounded to a power of two) or continuous (LSQ on its log2, any real step, whose
    /// mantissa `qornn quantize` folds into U, the biases and V); all start at the power of
    /// two with the least squared error on the state when quantization starts, or at
    /// act_hidden_frac.
    act_range: ActRange = ActRange::Calibrated,
    /// act_bits: start the hidden state's step at 2^-F (F fraction bits; codes then hold
    /// +-2^(A-1-F)) instead of the least-squares power of two; unset: least squares.
    act_hidden_frac: Option<i32> = None,
    /// act_bits: start the hidden step at the largest power of two whose codes hold this
    /// fraction (0..=1, e.g. 0.99) of the state's magnitudes when quantization starts, the
    /// larger ones saturating; unset: least squares. One of act_hidden_frac,
    /// act_hidden_cover and act_hidden_search at most.
    act_hidden_cover: Option<f64> = None,
    /// act_bits: start the hidden step at the power of two whose quantized forward pass
    /// has the lowest loss on the batch where quantization starts, among the widest step
    /// that holds every state and the 8 finer ones; false: least squares.
    act_hidden_search: bool = false,
    /// act_bits: how training rounds the hidden state: nearest (as the integer engine) or
    /// stochastic (floor(z/s + r), r uniform in [0, 1) per unit, step and sequence: unbiased,
    /// so the straight-through gradient is the expected code's). Evaluation and `qornn
    /// quantize` round to nearest.
    act_train_rounding: ActRounding = ActRounding::Nearest,
    /// The read-out V fake-quantized at R bits (2..=16) in training, with the paper's
    /// per-tensor quantizer and a straight-through gradient, as `qornn quantize
    /// --readout-bits R` stores it (its default then); unset: float V.
    readout_bits: Option<u32> = None,
    /// Start from the best model of this run folder (its tensors with the same names and
    /// shapes, e.g. a full-precision or 8-bit run of the same architecture).
    init_from: Option<PathBuf> = None,
    /// Distil from the best model of this run folder (Hinton et al. 2015), trained on the
    /// same task (any model): each batch's loss mixes the labels' cross-entropy with the
    /// teacher's softened class probabilities, as distill_weight and distill_temperature
    /// say. The copy task and MNIST (class labels, each batch from a zero state); unset:
    /// the labels alone.
    teacher: Option<PathBuf> = None,
    /// teacher: the weight a of the teacher's term, in [0, 1]: (1 - a) CE + a tau^2 KL.
    distill_weight: f64 = 0.5,
    /// teacher: the temperature tau (> 0) both models' logits are divided by in the
    /// teacher's term.
    distill_temperature: f64 = 2.0,
    /// Training steps.
    steps: u64 = 2000,
    /// Data sets: train this many epochs instead of steps, evaluating and checkpointing
    /// after each; lr_every then counts epochs and exponential decays per epoch. 0: use
    /// steps.
    epochs: u64 = 0,
    /// Sequences per batch.
    batch: usize = 128,
    /// Steps between evaluations (and checkpoints).
    eval_every: u64 = 100,
    /// Sequences in each of the validation and test sets.
    eval_sequences: usize = 512,
    /// Seed of every random draw.
    seed: u64 = 1,
    /// Threads for matrix products, 0 for every core.
    threads: usize = 0,
}

/// A flag's text as the TOML value of a setting of type `T`: first as text (names, paths,
/// bit-width schedules), then as a TOML literal (numbers, booleans).
fn flag_value<T: DeserializeOwned>(text: &str) -> std::result::Result<toml::Value, String> {
    let as_text = toml::Value::String(text.to_string());
    let text_error = match T::deserialize(as_text.clone()) {
        Ok(_) => return Ok(as_text),
        Err(e) => e.to_string(),
    };
    let literal = toml::from_str::<toml::Table>(&format!("value = {text}"))
        .ok()
        .and_then(|mut table| table.remove("value"));
    match literal {
        Some(value) => match T::deserialize(value.clone()) {
            Ok(_) => Ok(value),
            Err(e) => Err(e.to_string()),
        },
        None => Err(text_error),
    }
}

/// `bits_schedule`: `(step, bits)` pairs, written `[[0, 8], [1000, 4]]` in a file or
/// `0:8,1000:4` as text.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleText")]
pub struct BitsSchedule(pub Vec<(u64, u32)>);

#[derive(Deserialize)]
#[serde(untagged)]
enum ScheduleText {
    Pairs(Vec<(u64, u32)>),
    Text(String),
}

impl TryFrom<ScheduleText> for BitsSchedule {
    type Error = String;
    fn try_from(repr: ScheduleText) -> std::result::Result<Self, String> {
        let text = match repr {
            ScheduleText::Pairs(pairs) => return Ok(Self(pairs)),
            ScheduleText::Text(text) => text,
        };
        let pair = |item: &str| -> Option<(u64, u32)> {
            let (step, bits) = item.split_once(':')?;
            Some((step.trim().parse().ok()?, bits.trim().parse().ok()?))
        };
        text.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(|item| pair(item).ok_or_else(|| format!("`{item}` is not STEP:BITS")))
            .collect::<std::result::Result<_, _>>()
            .map(Self)
    }
}

impl std::ops::Deref for BitsSchedule {
    type Target = [(u64, u32)];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<Vec<(u64, u32)>> for BitsSchedule {
    fn from(pairs: Vec<(u64, u32)>) -> Self {
        Self(pairs)
    }
}

mod derive;
mod files;
mod validate;

pub use files::{CHANGEABLE_ON_RESUME, CONFIG_FILE};

#[cfg(test)]
mod tests;

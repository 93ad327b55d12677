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
use crate::quant::activation::ActRange;
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
pub const FULL_PRECISION_BITS: u32 = 32;

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
    /// qornn-bjorck, qornn-projunn-d, qornn-projunn-t, their full-precision twins ornn-*,
    /// the Hadamard recurrences hadamrnn and block-hadamrnn (binary or ternary W, exactly
    /// orthogonal), qornn-rotations (2 x 2 rotations with integer codes, exactly orthogonal),
    /// or a baseline: rnn, lstm, gru, fastrnn, fastgrnn.
    model: ModelName = ModelName::new(&crate::parametrisation::bjorck::QORNN_BJORCK),
    /// Weight bits of every weight matrix (W and U of an ORNN): 2..=8, or 32 for full
    /// precision; unset: 8 for qornn-*, 4 for *hadamrnn (U only: W is binary or ternary),
    /// 32 otherwise.
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
    /// act_bits: the hidden state's step calibrated (held) or learned (LSQ on its log2);
    /// both start at the power of two with the least squared error on the state when
    /// quantization starts.
    act_range: ActRange = ActRange::Calibrated,
    /// The read-out V fake-quantized at R bits (2..=16) in training, with the paper's
    /// per-tensor quantizer and a straight-through gradient, as `qornn quantize
    /// --readout-bits R` stores it (its default then); unset: float V.
    readout_bits: Option<u32> = None,
    /// Start from the best model of this run folder (its tensors with the same names and
    /// shapes, e.g. a full-precision or 8-bit run of the same architecture).
    init_from: Option<PathBuf> = None,
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

/// The settings a resumed run may change: train longer, evaluate at another interval (the
/// training itself is the same), on other threads or another copy of the data.
pub const CHANGEABLE_ON_RESUME: [&str; 5] =
    ["steps", "epochs", "eval_every", "threads", "data_dir"];
impl Config {
    /// Reads a TOML file; unknown keys and bad values name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// A config file's text; errors name `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::bad_file(path, format!("not a valid qornn config: {e}")))
    }

    /// The run's settings: the defaults, then the config `file`, then `flags` (keys of
    /// `SETTINGS` with the values their `parse` gave); checked with `validate`. Errors name
    /// the file, or the setting (the flag) to fix.
    pub fn layered(file: Option<&Path>, flags: &toml::Table) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                text.parse::<toml::Table>()
                    .map_err(|e| Error::bad_file(path, format!("not valid TOML: {e}")))?
            }
            None => toml::Table::new(),
        };
        for (key, value) in flags {
            if let Some(alias) = SETTINGS.iter().find(|s| s.key == key).and_then(|s| s.alias) {
                table.remove(alias);
            }
            table.insert(key.clone(), value.clone());
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| match file {
                Some(path) => Error::bad_file(path, format!("not a valid qornn config: {e}")),
                None => Error::config("flags", e.to_string()),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The settings of the run in `dir` continued: its `config.toml` with the `flags` that
    /// may change (`CHANGEABLE_ON_RESUME`); any other flag is refused, naming it, as it would
    /// silently not apply.
    pub fn resumed(dir: &Path, flags: &toml::Table) -> Result<Self> {
        let fixed: Vec<&str> = flags
            .keys()
            .map(String::as_str)
            .filter(|key| !CHANGEABLE_ON_RESUME.contains(key))
            .collect();
        if !fixed.is_empty() {
            return Err(Error::config(
                &fixed.join(", "),
                format!(
                    "the run in {} continues as its config.toml says; these cannot change in \
                     a resumed run (only {} can)",
                    dir.display(),
                    CHANGEABLE_ON_RESUME.join(", ")
                ),
            ));
        }
        Self::layered(Some(&dir.join(crate::run::CONFIG_FILE)), flags)
    }

    /// The settings, other than those a resumed run may change, whose values differ
    /// between `self` and `other`.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        let table = |c: &Config| -> toml::Table {
            toml::Value::try_from(c)
                .ok()
                .and_then(|v| v.as_table().cloned())
                .unwrap_or_default()
        };
        let (a, b) = (table(self), table(other));
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| !CHANGEABLE_ON_RESUME.contains(&k.as_str()))
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }

    /// The run folder when none is given: `runs/<task>-<model>-<k>b-n<hidden>-s<seed>`,
    /// with `fp` for full precision.
    pub fn default_run_dir(&self) -> PathBuf {
        let bits = if self.full_precision() {
            "fp".to_string()
        } else {
            format!("{}b", self.bits())
        };
        PathBuf::from("runs").join(format!(
            "{}-{}-{bits}-n{}-s{}",
            self.task, self.model, self.hidden, self.seed
        ))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serialises")
    }

    /// Checks every field; the error names the field (the CLI flag) to fix.
    pub fn validate(&self) -> Result<()> {
        let bits = self.bits();
        let quantizable = (Quantizer::MIN_BITS..=Quantizer::MAX_BITS).contains(&bits);
        if !quantizable && bits != FULL_PRECISION_BITS {
            return Err(Error::config(
                "bits",
                format!(
                    "{} is not a bit width; use 2..=8, or 32 for full precision",
                    bits
                ),
            ));
        }
        if !self.model.entry().quantizable && bits != FULL_PRECISION_BITS {
            return Err(Error::config(
                "bits",
                format!(
                    "{} is full precision; use q{} to quantize to {} bits",
                    self.model, self.model, bits
                ),
            ));
        }
        // Upper bounds: a size past these is a typo (or a hostile file), and would abort
        // the process allocating before anything could be said.
        let bounded = [
            ("hidden", self.hidden, 8192),
            ("batch", self.batch, 1 << 16),
            ("delay", self.delay, 100_000),
            ("length", self.length, 100_000),
            ("seq", self.seq, 100_000),
            ("embedding", self.embedding, 1 << 16),
            ("eval_sequences", self.eval_sequences, 1 << 20),
            ("bjorck_iterations", self.bjorck_iterations, 1000),
        ];
        for (field, value, most) in bounded {
            if value > most {
                return Err(Error::config(
                    field,
                    format!("{value} is above the most qornn takes, {most}"),
                ));
            }
        }
        let positive = [
            ("hidden", self.hidden as f64),
            ("batch", self.batch as f64),
            ("steps", self.steps as f64),
            ("eval_every", self.eval_every as f64),
            ("eval_sequences", self.eval_sequences as f64),
            ("lr", self.lr),
            ("rank", self.rank as f64),
        ];
        for (field, value) in positive {
            if value.is_nan() || value <= 0.0 || value.is_infinite() {
                return Err(Error::config(
                    field,
                    format!("must be positive, got {value}"),
                ));
            }
        }
        if !self.lr_gamma.is_finite() || self.lr_gamma <= 0.0 || self.lr_gamma > 1.0 {
            return Err(Error::config(
                "lr_gamma",
                format!("the decay factor must be in (0, 1], got {}", self.lr_gamma),
            ));
        }
        if !self.bits_schedule.is_empty() {
            let widths_ok = self
                .bits_schedule
                .iter()
                .all(|&(_, b)| (Quantizer::MIN_BITS..=Quantizer::MAX_BITS).contains(&b));
            let ordered = self.bits_schedule.windows(2).all(|w| w[0].0 < w[1].0);
            let last = self.bits_schedule.last().map(|&(_, b)| b);
            if !widths_ok || !ordered || self.bits_schedule[0].0 != 0 || last != Some(bits) {
                return Err(Error::config(
                    "bits_schedule",
                    format!(
                        "needs [step, bits] pairs with steps rising from 0, widths in 2..=8 and \
                         the last width equal to --bits {bits}, got {:?}",
                        self.bits_schedule.0
                    ),
                ));
            }
            if self.range == RangeRule::Lsq {
                return Err(Error::config(
                    "bits_schedule",
                    "learned steps (lsq) are trained for one width; use range max or mse",
                ));
            }
        }
        if self.rounding == Rounding::Orthogonal
            && (self.model.entry().parametrisation.is_none()
                || self.full_precision()
                || self.range == RangeRule::Lsq
                || self.granularity == Granularity::PerRow)
        {
            return Err(Error::config(
                "rounding",
                "orthogonal rounding applies to a qornn-* model's W with one step per tensor \
                 and the max or mse range",
            ));
        }
        if self.freeze_recurrent_at.is_some() && self.model.entry().parametrisation.is_none() {
            return Err(Error::config(
                "freeze_recurrent_at",
                format!(
                    "{} has no orthogonal recurrent parameter to freeze",
                    self.model
                ),
            ));
        }
        if let Some(a) = self.act_bits {
            let integer_core = self.is_elman() && self.act != Activation::Tanh;
            if !(4..=16).contains(&a) {
                return Err(Error::config("act_bits", format!("{a} is outside 4..=16")));
            }
            if !integer_core || self.task == TaskName::PtbWord {
                return Err(Error::config(
                    "act_bits",
                    "activation quantization covers the integer engine's models: an ORNN or \
                     RNN with relu or modrelu and dense inputs (not ptb-word)",
                ));
            }
        }
        if let Some(r) = self.readout_bits.filter(|r| !(2..=16).contains(r)) {
            return Err(Error::config(
                "readout_bits",
                format!("{r} is outside 2..=16"),
            ));
        }
        if self.weights.is_some() && self.init_from.is_some() {
            return Err(Error::config(
                "init_from",
                "give --weights or --init-from, not both",
            ));
        }
        if self.schedule == ScheduleName::Step && self.lr_every == 0 {
            return Err(Error::config(
                "lr_every",
                "the step schedule needs lr_every >= 1",
            ));
        }
        if self.task == TaskName::Copy && self.delay == 0 {
            return Err(Error::config(
                "delay",
                "the copy task needs a delay of at least 1",
            ));
        }
        if self.task == TaskName::Adding && self.length < 2 {
            return Err(Error::config(
                "length",
                "the adding task needs at least 2 steps",
            ));
        }
        (self.model.entry().check)(self)?;
        if self.rounding == Rounding::Orthogonal {
            let exact = self
                .model
                .entry()
                .parametrisation
                .is_some_and(|build| build(&self.parametrisation_context()).is_exact());
            if exact {
                return Err(Error::config(
                    "rounding",
                    format!(
                        "{}'s W is exactly orthogonal; use rounding nearest",
                        self.model
                    ),
                ));
            }
        }
        if self.rank > self.hidden {
            return Err(Error::config(
                "rank",
                format!("{} exceeds --hidden {}", self.rank, self.hidden),
            ));
        }
        for (field, lr) in [
            ("orthogonal_lr", self.orthogonal_lr),
            ("step_lr", self.step_lr),
        ] {
            if let Some(lr) = lr.filter(|lr| !lr.is_finite() || *lr <= 0.0) {
                return Err(Error::config(field, format!("must be positive, got {lr}")));
            }
        }
        if self.range == RangeRule::Lsq && (!self.is_elman() || self.full_precision()) {
            return Err(Error::config(
                "range",
                format!(
                    "learned steps (lsq) quantize the W and U of a quantized ORNN, RNN or \
                     HadamRNN; {} at {} bits has none",
                    self.model,
                    self.bits()
                ),
            ));
        }
        if !self.clip.is_finite() || self.clip < 0.0 {
            return Err(Error::config(
                "clip",
                "must be 0 (off) or a finite positive threshold",
            ));
        }
        if self.task.is_ptb() && self.seq == 0 {
            return Err(Error::config(
                "seq",
                "the segment length must be at least 1",
            ));
        }
        if (self.rank_w > 0 || self.rank_u > 0) && !self.model.entry().low_rank {
            let field = if self.rank_w > 0 { "rank_w" } else { "rank_u" };
            return Err(Error::config(
                field,
                format!(
                    "low-rank matrices are FastRNN's and FastGRNN's, not {}'s",
                    self.model
                ),
            ));
        }
        if !self.is_elman() && self.act != Activation::Relu {
            return Err(Error::config(
                "act",
                format!(
                    "{} has its own nonlinearities; --act applies to ornn and rnn models",
                    self.model
                ),
            ));
        }
        if self.task == TaskName::PtbWord && self.embedding == 0 {
            return Err(Error::config(
                "embedding",
                "the word embedding needs at least 1 dimension",
            ));
        }
        if self.epochs > 0 && !self.is_data_set() {
            return Err(Error::config(
                "epochs",
                format!("the {} task is generated; give --steps instead", self.task),
            ));
        }
        self.lr_schedule()?;
        Ok(())
    }

    pub fn lr_schedule(&self) -> Result<Schedule> {
        Ok(match self.schedule {
            ScheduleName::Constant => Schedule::Constant,
            ScheduleName::Step => Schedule::Step {
                every: self.lr_every,
                gamma: self.lr_gamma,
            },
            ScheduleName::Exponential => Schedule::Exponential {
                gamma: self.lr_gamma,
            },
        })
    }

    /// The task, with its data read and checked (call after `validate`).
    pub fn task(&self) -> Result<Task> {
        let dir = || crate::data::data_dir(self.data_dir.as_deref());
        Ok(match self.task {
            TaskName::Copy => Task::Copy(CopyTask::new(self.delay)),
            TaskName::Adding => Task::Adding(AddingTask::new(self.length)),
            TaskName::PtbChar | TaskName::PtbWord => {
                let level = if self.task == TaskName::PtbChar {
                    Level::Char
                } else {
                    Level::Word
                };
                Task::Ptb(PtbTask {
                    level,
                    data: std::sync::Arc::new(Ptb::load(&dir(), level, self.checksums())?),
                    steps: self.seq,
                    embedding: self.embedding,
                })
            }
            TaskName::Smnist | TaskName::Pmnist => {
                let mnist = crate::data::mnist::Mnist::load(&dir(), self.checksums())?;
                Task::Mnist(MnistTask::new(mnist, self.task == TaskName::Pmnist))
            }
        })
    }

    /// Whether the model is an Elman-type recurrence `act(W h + U x + b)`: an ORNN (Björck,
    /// projUNN, Hadamard) or the plain RNN, whose `--act` and learned steps apply.
    fn is_elman(&self) -> bool {
        self.model.entry().elman
    }

    /// The weights' width at `step` (the bit-width schedule, else `bits`).
    pub fn bits_at(&self, step: u64) -> u32 {
        self.bits_schedule
            .iter()
            .rev()
            .find(|&&(from, _)| from <= step)
            .map_or(self.bits(), |&(_, b)| b)
    }

    /// The activation bits training step `step` runs at (`act_bits` from `act_bits_from`
    /// on), `None` while the activations are float.
    pub fn act_bits_at(&self, step: u64) -> Option<u32> {
        self.act_bits.filter(|_| step >= self.act_bits_from)
    }

    /// The warm-up's factor on the learning rate at `step`: `(step + 1) / warmup_steps`
    /// until it reaches 1.
    pub fn warmup_factor(&self, step: u64) -> f64 {
        if step >= self.warmup_steps {
            1.0
        } else {
            (step + 1) as f64 / self.warmup_steps as f64
        }
    }

    /// The recurrent matrix's learning rate before any schedule.
    pub fn recurrent_lr(&self) -> f64 {
        self.orthogonal_lr
            .unwrap_or(self.lr / Self::ORTHOGONAL_LR_DIVISOR)
    }

    /// `orthogonal_lr = lr / 32` unless set.
    pub const ORTHOGONAL_LR_DIVISOR: f64 = 32.0;

    fn checksums(&self) -> Checksums {
        if self.verify_data {
            Checksums::Verify
        } else {
            Checksums::Skip
        }
    }

    /// Whether the task reads a data set (and can train by `epochs`).
    pub fn is_data_set(&self) -> bool {
        !matches!(self.task, TaskName::Copy | TaskName::Adding)
    }

    /// The weight bits: as set, else the model's default (8 for `qornn-*`, 4 for the
    /// Hadamard recurrences (their authors' setting for U and V) and for rotations, and 32,
    /// full precision, otherwise).
    pub fn bits(&self) -> u32 {
        self.bits.unwrap_or(self.model.entry().default_bits)
    }

    /// Default bits of the Hadamard recurrences' input matrix.
    pub const HADAMRNN_BITS: u32 = 4;

    /// Default bits of the `qornn-*` models.
    pub const QORNN_BITS: u32 = 8;

    pub fn full_precision(&self) -> bool {
        self.bits() == FULL_PRECISION_BITS
    }

    /// Björck's settings: the paper's, with `bjorck_iterations`.
    fn bjorck_config(&self) -> BjorckConfig {
        BjorckConfig {
            iterations: self.bjorck_iterations,
            ..BjorckConfig::default()
        }
    }

    /// What the model's recurrent parametrisation is built from (as `ModelSpec` builds it).
    fn parametrisation_context(&self) -> ParametrisationContext {
        ParametrisationContext {
            n: self.hidden,
            bjorck: self.bjorck_config(),
            bits: (!self.full_precision()).then(|| self.bits()),
            block: self.block,
        }
    }

    /// The model's shape and arithmetic for `task`.
    pub fn model_spec_for(&self, task: &Task) -> ModelSpec {
        ModelSpec {
            model: self.model,
            block: self.block,
            hidden: self.hidden,
            input: task.input_size(),
            outputs: task.output_size(),
            activation: self.act,
            readout: task.readout(),
            quantizer: (!self.full_precision()).then(|| Quantizer {
                lsq_init: self.lsq_init,
                rounding: self.rounding,
                ..Quantizer::new(self.bits(), self.granularity).with_range(self.range)
            }),
            bjorck: self.bjorck_config(),
            init: self.init,
            vocabulary: task.embedding_vocabulary(),
            rank_w: (self.rank_w > 0).then_some(self.rank_w),
            rank_u: (self.rank_u > 0).then_some(self.rank_u),
            act_bits: self.act_bits,
            readout_bits: self.readout_bits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_toml() {
        let c = Config::default();
        c.validate().unwrap();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    /// Names are typed: an unknown one is refused when the file (or flag) is read, showing
    /// its key, and `FromStr` names the key.
    #[test]
    fn unknown_names_name_their_key() {
        for (line, key) in [
            ("model = \"lstm9\"", "model"),
            ("task = \"sort\"", "task"),
            ("schedule = \"cosine\"", "schedule"),
        ] {
            // The error shows the file's line: key and value.
            let err = Config::parse(line, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("c.toml") && err.contains(line), "{key}: {err}");
        }
        let err = "lstm9".parse::<ModelName>().unwrap_err().to_string();
        assert!(err.contains("`model`") && err.contains("fastgrnn"), "{err}");
        for m in ModelName::all() {
            assert_eq!(m.as_str().parse::<ModelName>().unwrap(), m);
            let text = toml::to_string(&Config {
                model: m,
                ..Config::default()
            })
            .unwrap();
            assert!(text.contains(&format!("model = \"{m}\"")), "{text}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        type Mutation = fn(&mut Config);
        let cases: [(Mutation, &str); 11] = [
            (|c| c.bits = Some(9), "bits"),
            (|c| c.lr = f64::NAN, "lr"),
            (|c| c.lr = f64::INFINITY, "lr"),
            (|c| c.orthogonal_lr = Some(f64::INFINITY), "orthogonal_lr"),
            (|c| c.step_lr = Some(-1.0), "step_lr"),
            (|c| c.bjorck_iterations = 0, "bjorck_iterations"),
            (|c| c.lr_gamma = 0.0, "lr_gamma"),
            (|c| c.lr_gamma = f64::NAN, "lr_gamma"),
            (|c| c.clip = f64::INFINITY, "clip"),
            (|c| c.range = RangeRule::Lsq, "range"),
            (
                |c| {
                    c.model = "block-hadamrnn".parse().unwrap();
                    c.block = 3;
                },
                "block",
            ),
        ];
        for (mutate, field) in cases {
            let mut c = Config::default();
            mutate(&mut c);
            if field == "range" {
                c.model = "lstm".parse().unwrap();
            }
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{err}");
        }
        let c = Config {
            model: "ornn-bjorck".parse().unwrap(),
            bits: Some(4),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("qornn-bjorck"));
    }

    /// Orthogonal rounding is refused for any exactly orthogonal W (asked of the built
    /// parametrisation), and kept for an approximately orthogonal one.
    #[test]
    fn orthogonal_rounding_of_an_exact_w_is_refused() {
        for model in ["hadamrnn", "block-hadamrnn", "qornn-rotations"] {
            let c = Config {
                model: model.parse().unwrap(),
                rounding: Rounding::Orthogonal,
                ..Config::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains("`rounding`") && err.contains("exactly"),
                "{model}: {err}"
            );
        }
        let c = Config {
            bits: Some(4),
            rounding: Rounding::Orthogonal,
            ..Config::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn bit_width_schedule_and_warm_up() {
        let c = Config {
            bits: Some(4),
            bits_schedule: vec![(0, 8), (100, 6), (200, 4)].into(),
            warmup_steps: 10,
            ..Config::default()
        };
        c.validate().unwrap();
        let widths: Vec<u32> = [0, 99, 100, 199, 200, 5000].map(|s| c.bits_at(s)).to_vec();
        assert_eq!(widths, [8, 8, 6, 6, 4, 4]);
        assert_eq!(c.warmup_factor(0), 0.1);
        assert_eq!(c.warmup_factor(9), 1.0);
        assert_eq!(c.warmup_factor(500), 1.0);
        for bad in [
            vec![(0, 8), (100, 6)],           // ends at 6, not --bits 4
            vec![(10, 8), (100, 4)],          // does not start at 0
            vec![(0, 8), (200, 6), (100, 4)], // steps not rising
            vec![(0, 9), (100, 4)],           // 9 bits
        ] {
            let c = Config {
                bits_schedule: bad.into(),
                ..c.clone()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("`bits_schedule`"), "{err}");
        }
    }

    /// The flags' values, parsed as the CLI parses them.
    fn flags(pairs: &[(&str, &str)]) -> toml::Table {
        pairs
            .iter()
            .map(|(key, text)| {
                let setting = SETTINGS.iter().find(|s| s.key == *key).unwrap();
                (key.to_string(), (setting.parse)(text).unwrap())
            })
            .collect()
    }

    #[test]
    fn settings_list_every_field_once() {
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        for key in defaults.keys() {
            assert_eq!(keys.iter().filter(|k| *k == key).count(), 1, "{key}");
        }
        assert!(SETTINGS.iter().all(|s| !s.help.trim().is_empty()));
    }

    /// Defaults, then the file, then the flags; an alias in the file gives way to the flag.
    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(
            &file,
            "hidden = 64\nlr = 0.01\nquantizer = \"mse\"\nbits = 4\nbits_schedule = \"0:8, 50:4\"\n",
        )
        .unwrap();
        let c = Config::layered(Some(&file), &flags(&[("lr", "0.002"), ("range", "lsq")]));
        let err = c.unwrap_err().to_string();
        assert!(err.contains("bits_schedule"), "{err}");
        let c = Config::layered(Some(&file), &flags(&[("lr", "0.002"), ("seed", "7")])).unwrap();
        assert_eq!((c.hidden, c.lr, c.seed), (64, 0.002, 7));
        assert_eq!((c.range, c.delay), (RangeRule::Mse, 100));
        assert_eq!(c.bits_schedule.0, vec![(0, 8), (50, 4)]);
        let c = Config::layered(Some(&file), &flags(&[("range", "max")])).unwrap();
        assert_eq!(c.range, RangeRule::Max);
        assert_eq!(
            Config::layered(None, &toml::Table::new()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn flag_text_is_read_by_the_setting_type() {
        let parse =
            |key: &str, text: &str| (SETTINGS.iter().find(|s| s.key == key).unwrap().parse)(text);
        assert_eq!(parse("lr", "1e-3"), Ok(toml::Value::Float(1e-3)));
        assert_eq!(parse("steps", "12"), Ok(toml::Value::Integer(12)));
        assert_eq!(
            parse("data_dir", "123"),
            Ok(toml::Value::String("123".into()))
        );
        assert!(parse("steps", "-1").is_err());
        assert!(parse("model", "qornn-magic")
            .unwrap_err()
            .contains("qornn-bjorck"));
        assert!(parse("bits_schedule", "0:8,x").unwrap_err().contains("`x`"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("hiden = 3").is_err());
    }
}

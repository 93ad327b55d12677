//! The run configuration: one flat TOML table whose `Default` is `qornn train` with no
//! flags. Every field is also a CLI flag of the same name (`_` written `-`).

use crate::cells::ornn::Activation;
use crate::data::ptb::{Level, Ptb};
use crate::data::Checksums;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::model::{Architecture, ModelSpec};
use crate::optim::{OptimizerKind, Schedule};
use crate::parametrisation::bjorck::BjorckConfig;
use crate::parametrisation::projunn::ProjUnnKind;
use crate::parametrisation::Parametrisation;
use crate::quant::lsq::LsqInit;
use crate::quant::orthogonal_rounding::Rounding;
use crate::quant::{Granularity, Quantizer, RangeRule};
use crate::tasks::{AddingTask, CopyTask, MnistTask, PtbTask, Task};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    /// The recurrent model (`--model`).
    ModelName ("model") {
        /// The paper's QORNN, STE-Björck.
        QornnBjorck = "qornn-bjorck",
        /// The paper's QORNN, STE-projUNN-D.
        QornnProjunnD = "qornn-projunn-d",
        /// The paper's QORNN, STE-projUNN-T.
        QornnProjunnT = "qornn-projunn-t",
        /// Full-precision ORNNs.
        OrnnBjorck = "ornn-bjorck",
        OrnnProjunnD = "ornn-projunn-d",
        OrnnProjunnT = "ornn-projunn-t",
        /// Binary exactly orthogonal recurrence.
        Hadamrnn = "hadamrnn",
        /// Ternary exactly orthogonal recurrence (`--block m`).
        BlockHadamrnn = "block-hadamrnn",
        Rnn = "rnn",
        Lstm = "lstm",
        Gru = "gru",
        Fastrnn = "fastrnn",
        Fastgrnn = "fastgrnn",
    }
}

impl ModelName {
    /// A QORNN: W and U quantized (8 bits unless `--bits`).
    pub fn is_qornn(self) -> bool {
        matches!(
            self,
            Self::QornnBjorck | Self::QornnProjunnD | Self::QornnProjunnT
        )
    }

    /// A full-precision ORNN.
    pub fn is_float_ornn(self) -> bool {
        matches!(
            self,
            Self::OrnnBjorck | Self::OrnnProjunnD | Self::OrnnProjunnT
        )
    }

    pub fn is_bjorck(self) -> bool {
        matches!(self, Self::QornnBjorck | Self::OrnnBjorck)
    }

    pub fn is_hadamard(self) -> bool {
        matches!(self, Self::Hadamrnn | Self::BlockHadamrnn)
    }

    /// FastRNN or FastGRNN (EdgeML's cells, with the low-rank option).
    pub fn is_fast(self) -> bool {
        matches!(self, Self::Fastrnn | Self::Fastgrnn)
    }

    /// An ORNN of any kind or the RNN: `act(W h + U x + b)`.
    pub fn is_elman(self) -> bool {
        self.is_qornn() || self.is_float_ornn() || self.is_hadamard() || self == Self::Rnn
    }

    /// The core; `block` is a Hadamard recurrence's block size.
    pub fn architecture(self, block: usize) -> Architecture {
        use Parametrisation::{Bjorck, Hadamard, ProjUnn};
        match self {
            Self::QornnBjorck | Self::OrnnBjorck => Architecture::Ornn(Bjorck),
            Self::QornnProjunnD | Self::OrnnProjunnD => {
                Architecture::Ornn(ProjUnn(ProjUnnKind::Direct))
            }
            Self::QornnProjunnT | Self::OrnnProjunnT => {
                Architecture::Ornn(ProjUnn(ProjUnnKind::Tangent))
            }
            Self::Hadamrnn | Self::BlockHadamrnn => Architecture::Ornn(Hadamard { block }),
            Self::Rnn => Architecture::Rnn,
            Self::Lstm => Architecture::Lstm,
            Self::Gru => Architecture::Gru,
            Self::Fastrnn => Architecture::FastRnn,
            Self::Fastgrnn => Architecture::FastGrnn,
        }
    }
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub task: TaskName,
    /// Folder of the data sets (MNIST's IDX files, the PTB text files); unset:
    /// `QORNN_DATA`, else `data`.
    pub data_dir: Option<std::path::PathBuf>,
    /// Initial weights: a safetensors file with the model's tensors under PyTorch's (or
    /// EdgeML's) names, as `qornn weights` writes them.
    pub weights: Option<std::path::PathBuf>,
    /// Check the SHA-256 of data files under their usual names (turn off for your own
    /// variants of the files).
    pub verify_data: bool,
    /// Copy task: the delay T0 (sequences are T0 + 20 long).
    pub delay: usize,
    /// Adding task: the sequence length T.
    pub length: usize,
    /// Language modelling: the truncated-BPTT segment length.
    pub seq: usize,
    /// `ptb-word`: the size of the (float, trained) word embedding.
    pub embedding: usize,
    pub model: ModelName,
    /// Weight bits k in 2..=8, or 32 for full precision; unset: 8 for `qornn-*`, full
    /// precision for every other model.
    pub bits: Option<u32>,
    /// Quantizer scale per tensor (the paper) or per row.
    pub granularity: Granularity,
    /// Quantizer range: `max` (max |w|, the paper), `mse` (the least squared error) or
    /// `lsq` (a learned step per tensor or row); `quantizer` is accepted for the same key.
    #[serde(alias = "quantizer")]
    pub range: RangeRule,
    /// `range = "lsq"`: the initial step, `max` (the paper's step), `mse` or `lsq`
    /// (LSQ's `2 mean|w| / sqrt(Q_P)`, which clips most of a sparse orthogonal W).
    pub lsq_init: LsqInit,
    /// `range = "lsq"`: the learned steps' learning rate; unset: `lr`.
    pub step_lr: Option<f64>,
    /// The ORNN's recurrent matrix: `nearest` (the paper) or `orthogonal` (each code rounded
    /// down or up so that q(W) is closer to orthogonal, every step; per tensor, max or mse
    /// range).
    pub rounding: Rounding,
    pub hidden: usize,
    pub act: Activation,
    pub init: Init,
    pub bjorck_iterations: usize,
    /// projUNN: rank of the approximated step.
    pub rank: usize,
    /// `block-hadamrnn`: the Hadamard block size m (a power of two dividing `hidden`);
    /// `hadamrnn` uses one block of size `hidden`.
    pub block: usize,
    /// FastRNN/FastGRNN: rank of `W = W1 W2` and of `U = U1 U2`; 0 keeps full matrices.
    pub rank_w: usize,
    pub rank_u: usize,
    /// projUNN: re-orthonormalise W when `||W^T W - I||_F` exceeds this (checked every
    /// 100 steps).
    pub orthogonality_tolerance: f64,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// Learning rate of the recurrent matrix (`A` or `W`); unset: `lr / 32`, as in the
    /// orthogonal-RNN literature (expRNN, projUNN).
    pub orthogonal_lr: Option<f64>,
    /// Gradient-norm clipping threshold; 0 disables it.
    pub clip: f64,
    /// `constant`, `step` (times `lr_gamma` every `lr_every` steps) or `exponential`
    /// (times `lr_gamma` each step).
    pub schedule: ScheduleName,
    pub lr_gamma: f64,
    pub lr_every: u64,
    /// Linear learning-rate warm-up over this many steps (0: none); multiplies the
    /// schedule's factor.
    pub warmup_steps: u64,
    /// A bit-width schedule within one run: `[[step, bits], ...]`, from each step on the
    /// weights train at that width (e.g. `[[0, 8], [1000, 6], [2000, 4]]`); the last entry's
    /// width must be `bits`, the width the model is stored at. Empty: `bits` throughout.
    pub bits_schedule: Vec<(u64, u32)>,
    /// Start from the best model of this run folder (its tensors with the same names and
    /// shapes, e.g. a full-precision or 8-bit run of the same architecture).
    pub init_from: Option<std::path::PathBuf>,
    pub steps: u64,
    /// Data sets: train this many epochs instead of `steps`, evaluating and checkpointing
    /// after each; `lr_every` then counts epochs and `exponential` decays per epoch.
    /// 0: use `steps`.
    pub epochs: u64,
    pub batch: usize,
    pub eval_every: u64,
    /// Sequences in each of the validation and test sets.
    pub eval_sequences: usize,
    pub seed: u64,
    /// Threads for matrix products; 0 uses every core.
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            task: TaskName::Copy,
            data_dir: None,
            verify_data: true,
            weights: None,
            delay: 100,
            length: 200,
            seq: 150,
            embedding: 128,
            model: ModelName::QornnBjorck,
            bits: None,
            granularity: Granularity::PerTensor,
            range: RangeRule::Max,
            lsq_init: LsqInit::Max,
            step_lr: None,
            rounding: Rounding::Nearest,
            hidden: 128,
            act: Activation::Relu,
            init: Init::Henaff,
            bjorck_iterations: BjorckConfig::default().iterations,
            rank: 1,
            block: 16,
            rank_w: 0,
            rank_u: 0,
            orthogonality_tolerance: 1e-5,
            optimizer: OptimizerKind::Rmsprop,
            lr: 1e-3,
            orthogonal_lr: None,
            clip: 0.0,
            schedule: ScheduleName::Constant,
            lr_gamma: 0.5,
            lr_every: 1000,
            warmup_steps: 0,
            bits_schedule: Vec::new(),
            init_from: None,
            steps: 2000,
            epochs: 0,
            batch: 128,
            eval_every: 100,
            eval_sequences: 512,
            seed: 1,
            threads: 0,
        }
    }
}

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
        if self.model.is_float_ornn() && bits != FULL_PRECISION_BITS {
            return Err(Error::config(
                "bits",
                format!(
                    "{} is full precision; use q{} to quantize to {} bits",
                    self.model, self.model, bits
                ),
            ));
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
        if self.bjorck_iterations == 0 && self.model.is_bjorck() {
            return Err(Error::config(
                "bjorck_iterations",
                "Björck needs at least 1 iteration (the paper uses 15)",
            ));
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
                        self.bits_schedule
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
            && (!self.model.is_qornn()
                || self.range == RangeRule::Lsq
                || self.granularity == Granularity::PerRow)
        {
            return Err(Error::config(
                "rounding",
                "orthogonal rounding applies to a qornn-* model's W with one step per tensor \
                 and the max or mse range",
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
        if self.model.is_hadamard() {
            if !self.hidden.is_power_of_two() {
                return Err(Error::config(
                    "hidden",
                    format!(
                        "{} needs a power of two (a Sylvester Hadamard matrix), got {}",
                        self.model, self.hidden
                    ),
                ));
            }
            let block = self.hadamard_block();
            if block < 2 || !block.is_power_of_two() || self.hidden % block != 0 {
                return Err(Error::config(
                    "block",
                    format!(
                        "{block} is not a power of two from 2 to --hidden {}",
                        self.hidden
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
        if (self.rank_w > 0 || self.rank_u > 0) && !self.model.is_fast() {
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
        self.model.is_elman()
    }

    /// The weights' width at `step` (the bit-width schedule, else `bits`).
    pub fn bits_at(&self, step: u64) -> u32 {
        self.bits_schedule
            .iter()
            .rev()
            .find(|&&(from, _)| from <= step)
            .map_or(self.bits(), |&(_, b)| b)
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

    /// The weight bits: as set, else 8 for `qornn-*`, 4 for the Hadamard recurrences (their
    /// authors' setting for U and V) and 32 (full precision) otherwise.
    pub fn bits(&self) -> u32 {
        self.bits.unwrap_or(if self.model.is_qornn() {
            Self::QORNN_BITS
        } else if self.model.is_hadamard() {
            Self::HADAMRNN_BITS
        } else {
            FULL_PRECISION_BITS
        })
    }

    /// Default bits of the Hadamard recurrences' input matrix.
    pub const HADAMRNN_BITS: u32 = 4;

    /// The Hadamard block size: `block` for `block-hadamrnn`, `hidden` for `hadamrnn`.
    pub fn hadamard_block(&self) -> usize {
        if self.model == ModelName::Hadamrnn {
            self.hidden
        } else {
            self.block
        }
    }

    /// Default bits of the `qornn-*` models.
    pub const QORNN_BITS: u32 = 8;

    pub fn full_precision(&self) -> bool {
        self.bits() == FULL_PRECISION_BITS
    }

    /// The model's shape and arithmetic for `task`.
    pub fn model_spec_for(&self, task: &Task) -> ModelSpec {
        let architecture = self.model.architecture(self.hadamard_block());
        ModelSpec {
            architecture,
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
            bjorck: BjorckConfig {
                iterations: self.bjorck_iterations,
                ..BjorckConfig::default()
            },
            init: self.init,
            vocabulary: task.embedding_vocabulary(),
            rank_w: (self.rank_w > 0).then_some(self.rank_w),
            rank_u: (self.rank_u > 0).then_some(self.rank_u),
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
        for &m in ModelName::ALL {
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
                    c.model = ModelName::BlockHadamrnn;
                    c.block = 3;
                },
                "block",
            ),
        ];
        for (mutate, field) in cases {
            let mut c = Config::default();
            mutate(&mut c);
            if field == "range" {
                c.model = ModelName::Lstm;
            }
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{err}");
        }
        let c = Config {
            model: ModelName::OrnnBjorck,
            bits: Some(4),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("qornn-bjorck"));
    }

    #[test]
    fn bit_width_schedule_and_warm_up() {
        let c = Config {
            bits: Some(4),
            bits_schedule: vec![(0, 8), (100, 6), (200, 4)],
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
                bits_schedule: bad,
                ..c.clone()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("`bits_schedule`"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("hiden = 3").is_err());
    }
}

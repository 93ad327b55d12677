//! What a configuration implies: the learning-rate and bit-width schedules, the task with
//! its data, the model's shape.

use super::*;

impl Config {
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
    pub(super) fn is_elman(&self) -> bool {
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

    /// The arithmetic a model is evaluated in after `steps_taken` training steps: the
    /// weights' width and whether the activations are quantized, as the last step taken
    /// ran (before any step: the first step's width, float activations).
    pub fn arithmetic_after(&self, steps_taken: u64) -> (u32, bool) {
        let last = steps_taken.saturating_sub(1);
        (
            self.bits_at(last),
            steps_taken > 0 && self.act_bits_at(last).is_some(),
        )
    }

    /// Where the hidden step starts: act_hidden_frac, else act_hidden_search, else
    /// act_hidden_cover, else least squares (validation refuses more than one).
    pub fn act_hidden_start(&self) -> HiddenStepStart {
        match (
            self.act_hidden_frac,
            self.act_hidden_search,
            self.act_hidden_cover,
        ) {
            (Some(frac), _, _) => HiddenStepStart::Fraction(frac),
            (None, true, _) => HiddenStepStart::LowestLoss,
            (None, false, Some(cover)) => HiddenStepStart::Cover(cover),
            (None, false, None) => HiddenStepStart::LeastSquares,
        }
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

    pub(super) fn checksums(&self) -> Checksums {
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

    pub fn full_precision(&self) -> bool {
        self.bits() == FULL_PRECISION_BITS
    }

    /// Björck's settings: the paper's, with `bjorck_iterations`.
    pub(super) fn bjorck_config(&self) -> BjorckConfig {
        BjorckConfig {
            iterations: self.bjorck_iterations,
            ..BjorckConfig::default()
        }
    }

    /// What the model's recurrent parametrisation is built from (as `ModelSpec` builds it).
    /// What the model's own checks read (`ModelEntry::check`).
    pub(super) fn model_settings(&self) -> crate::registry::ModelSettings {
        crate::registry::ModelSettings {
            name: self.model.as_str(),
            hidden: self.hidden,
            block: self.block,
            bjorck_iterations: self.bjorck_iterations,
            bits_schedule: !self.bits_schedule.is_empty(),
        }
    }

    pub(super) fn parametrisation_context(&self) -> ParametrisationContext {
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
            act_hidden_start: self.act_hidden_start(),
            act_step_continuous: self.act_range == ActRange::Continuous,
            readout_bits: self.readout_bits,
        }
    }
}

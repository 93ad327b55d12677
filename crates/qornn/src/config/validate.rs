//! Every setting checked, the error naming the field (the CLI flag) to fix.

use super::*;

impl Config {
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
        if let Some(f) = self.act_hidden_frac {
            if self.act_bits.is_none() {
                return Err(Error::config("act_hidden_frac", "needs act_bits"));
            }
            let limit = qornn_infer::IntRecurrence::MAX_FRAC;
            if !(-limit..=limit).contains(&f) {
                return Err(Error::config(
                    "act_hidden_frac",
                    format!("{f} is outside -{limit}..={limit}"),
                ));
            }
        }
        if let Some(cover) = self.act_hidden_cover {
            if self.act_bits.is_none() || !(cover > 0.0 && cover <= 1.0) {
                return Err(Error::config(
                    "act_hidden_cover",
                    format!("{cover}: a fraction in (0, 1], with act_bits"),
                ));
            }
        }
        if self.act_hidden_search && self.act_bits.is_none() {
            return Err(Error::config("act_hidden_search", "needs act_bits"));
        }
        if self.act_train_rounding != ActRounding::Nearest && self.act_bits.is_none() {
            return Err(Error::config("act_train_rounding", "needs act_bits"));
        }
        let starts: Vec<&str> = [
            ("act_hidden_frac", self.act_hidden_frac.is_some()),
            ("act_hidden_cover", self.act_hidden_cover.is_some()),
            ("act_hidden_search", self.act_hidden_search),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if let [_, second, ..] = starts[..] {
            return Err(Error::config(
                second,
                format!("set with {}: give one of them", starts.join(" and ")),
            ));
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
        if !(0.0..=1.0).contains(&self.distill_weight) {
            return Err(Error::config(
                "distill_weight",
                format!("{} is outside [0, 1]", self.distill_weight),
            ));
        }
        if !(self.distill_temperature > 0.0 && self.distill_temperature.is_finite()) {
            return Err(Error::config(
                "distill_temperature",
                format!("{}: a temperature > 0", self.distill_temperature),
            ));
        }
        if self.teacher.is_some() && self.task == TaskName::Adding {
            return Err(Error::config(
                "teacher",
                "distillation needs class labels; the adding task's targets are values",
            ));
        }
        if self.teacher.is_some() && matches!(self.task, TaskName::PtbChar | TaskName::PtbWord) {
            // The student carries its state from one batch to the next; a teacher that
            // started each batch from zero would teach other probabilities.
            return Err(Error::config(
                "teacher",
                "distillation covers tasks whose batches start from a zero state, not the \
                 language models, which carry it across batches",
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
        (self.model.entry().check)(&self.model_settings())?;
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
}

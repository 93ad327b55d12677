//! One training run in memory: batches, the model, the optimiser and its schedule.
//! Every random draw is a function of `(seed, step)`, so a resumed run sees the same
//! batches and sketches as an uninterrupted one.

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::distill::{distillation_loss, Teacher};
use crate::error::{Error, Result};
use crate::evaluate::{evaluate, Workspaces};
use crate::linalg::{extreme_singular_values, orthogonality_defect};
use crate::model::Model;
use crate::optim::{clip_grad_norm, Optimizer, OptimizerConfig, Schedule};
use crate::parametrisation::StepContext;
use crate::params::{Kind, Tensor};
use crate::quant::activation::{self, ActRange, ActRounding};
use crate::tasks::{rng_for, Batch, Task};
use crate::Targets;
use faer::Par;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::time::Instant;

/// Stream of the seeded generator that initialises the model (see `tasks::rng_for`).
const STREAM_INIT: u64 = u64::MAX - 2;

/// `model` around the tensors of `source` with its names and sizes, and the names it took.
/// A learned step (LSQ) that `source` lacks starts again from the loaded tensor it
/// quantizes (`Model::from_params` sets every unset step), not from the random one.
fn with_tensors(mut model: Model, source: &[Tensor]) -> (Model, Vec<&'static str>) {
    let mut copied = Vec::new();
    for t in model.params.iter_mut() {
        match source
            .iter()
            .find(|s| s.name == t.name && s.len() == t.len())
        {
            Some(s) => {
                t.data.copy_from_slice(&s.data);
                copied.push(t.name);
            }
            None if t.kind == Kind::Step => t.data.fill(0.0),
            None => {}
        }
    }
    (
        Model::from_params(model.spec.clone(), model.params, None),
        copied,
    )
}

/// The name of the first tensor of `params` whose `values` (the tensor's own, or its
/// gradient) hold a NaN or an infinity.
fn first_non_finite<'a, V: AsRef<[f32]> + 'a>(
    params: &[Tensor],
    values: impl IntoIterator<Item = V>,
) -> Option<&'static str> {
    params
        .iter()
        .zip(values)
        .find(|(_, v)| v.as_ref().iter().any(|x| !x.is_finite()))
        .map(|(t, _)| t.name)
}

/// The parallelism for matrix products: `threads == 0` uses every core.
pub fn parallelism(threads: usize) -> Par {
    let n = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    if n <= 1 {
        Par::Seq
    } else {
        Par::Rayon(NonZeroUsize::new(n).expect("n > 1"))
    }
}

/// Seconds spent in each phase of one training step.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct StepTimes {
    pub parametrise: f64,
    pub forward: f64,
    pub backward: f64,
    pub optimiser: f64,
}

pub use crate::evaluate::Evaluation;

/// `||q(W) q(W)^T - I||_F` and the extreme singular values of `q(W)` and of `W`. A diverged
/// `W` gives NaN, which JSON writes as `null` and which reads back as NaN.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Orthogonality {
    #[serde(deserialize_with = "nan_if_null")]
    pub quantized_defect: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub quantized_sigma_min: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub quantized_sigma_max: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub defect: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub sigma_min: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub sigma_max: f64,
}

/// A number, or NaN for the `null` that serde_json writes for a non-finite one.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub struct Trainer {
    pub config: Config,
    pub task: Task,
    pub model: Model,
    optimizer: Optimizer,
    schedule: Schedule,
    /// The training batch's workspace, and the evaluation batches' (shared where the
    /// shapes agree).
    workspaces: Workspaces,
    validation: Vec<Batch>,
    test: Vec<Batch>,
    /// Steps completed.
    pub step: u64,
    /// `(B, n)`: the hidden state carried from one batch to the next (language models).
    pub carried_state: Option<Vec<f32>>,
    /// Steps of the whole run (`steps`, or `epochs` times the steps of one epoch).
    pub total_steps: u64,
    /// Steps between evaluations (`eval_every`, or one epoch).
    pub eval_every: u64,
    /// Data sets trained by epochs: steps per epoch (the schedule's unit).
    epoch_steps: Option<u64>,
    par: Par,
    delta: Vec<f32>,
    /// An exact `W` (Hadamard, rotations): the recurrent parameter at the previous
    /// evaluation (a checkpoint is written at each, so a resumed run starts from the right
    /// one).
    recurrent_at_last_eval: Option<Vec<f32>>,
    /// `teacher`: the model distilled from.
    teacher: Option<Teacher>,
}

impl Trainer {
    /// A fresh run on `task` (`config.task()`, or `Task::Random` for benchmarks).
    pub fn new(config: Config, task: Task) -> Result<Self> {
        let spec = config.model_spec_for(&task);
        let mut model = Model::new(spec.clone(), &mut rng_for(config.seed, STREAM_INIT));
        if let Some(path) = &config.weights {
            // Start from saved weights (ours, or PyTorch's under the same names); tensors
            // the file lacks (an optional read-out) keep their initial values.
            let (loaded, read) = crate::weights::load(path, &spec)?;
            let source: Vec<Tensor> = loaded
                .into_iter()
                .filter(|t| read.contains(&t.name))
                .collect();
            model = with_tensors(model, &source).0;
        }
        if let Some(run) = &config.init_from {
            // The best model of another run: every tensor with this model's name and shape.
            let (loaded, copied) =
                with_tensors(model, &crate::checkpoint::best_weights(run, Some(&task))?);
            // Starting from a read-out alone would be a random recurrence under another
            // name: at least one of the core's tensors must come across.
            let core: Vec<&str> = spec.cell().tensors().iter().map(|t| t.name).collect();
            if !copied.iter().any(|name| core.contains(name)) {
                return Err(Error::config(
                    "init_from",
                    format!(
                        "{} holds none of this model's recurrent tensors ({}) with their \
                         shapes (copied: {}): a run of another size or model",
                        run.display(),
                        core.join(", "),
                        if copied.is_empty() {
                            "nothing".into()
                        } else {
                            copied.join(", ")
                        }
                    ),
                ));
            }
            model = loaded;
        }
        Self::with_model(config, task, model, 0)
    }

    /// A run continued from a checkpoint.
    pub fn resume(config: Config, task: Task, ckpt: Checkpoint) -> Result<Self> {
        let spec = config.model_spec_for(&task);
        let model = Model::from_params(
            spec,
            ckpt.params,
            crate::checkpoint::state_values(ckpt.parametrisation_state),
        );
        let mut trainer = Self::with_model(config, task, model, ckpt.step)?;
        trainer.optimizer.moments = ckpt.moments;
        if let (Some(state), Some(saved)) = (&mut trainer.carried_state, ckpt.carried_state) {
            if saved.len() != state.len() {
                return Err(Error::config(
                    "batch",
                    format!(
                        "the checkpoint carries a state of {} values, this run needs {}",
                        saved.len(),
                        state.len()
                    ),
                ));
            }
            *state = saved;
        }
        trainer.optimizer.updates = ckpt.updates;
        if let (Some(at_eval), Some(saved)) = (
            &mut trainer.recurrent_at_last_eval,
            ckpt.recurrent_at_last_eval,
        ) {
            *at_eval = saved;
        }
        Ok(trainer)
    }

    fn with_model(config: Config, task: Task, model: Model, step: u64) -> Result<Self> {
        config.validate()?;
        task.check_sizes(config.batch)?;
        let sizes: Vec<usize> = model.params.iter().map(Tensor::len).collect();
        let optimizer = Optimizer::new(OptimizerConfig::new(config.optimizer), &sizes);
        let sets = |test| task.eval_batches(test, config.batch, config.eval_sequences, config.seed);
        let epoch_steps = (config.epochs > 0)
            .then(|| task.steps_per_epoch(config.batch))
            .flatten();
        let (total_steps, eval_every) = match epoch_steps {
            Some(per_epoch) => (config.epochs * per_epoch, per_epoch),
            None => (config.steps, config.eval_every),
        };
        let teacher = match &config.teacher {
            Some(dir) => Some(Teacher::load(dir, &task)?),
            None => None,
        };
        Ok(Self {
            teacher,
            validation: sets(false),
            test: sets(true),
            carried_state: task
                .carries_state()
                .then(|| vec![0.0; model.spec.state_len(config.batch)]),
            total_steps,
            eval_every,
            epoch_steps,
            schedule: config.lr_schedule()?,
            par: parallelism(config.threads),
            delta: vec![0.0; sizes.iter().copied().max().unwrap_or(0)],
            recurrent_at_last_eval: model
                .recurrent_code_changes(&model.params[0].data)
                .map(|_| model.params[0].data.clone()),
            config,
            task,
            model,
            optimizer,
            workspaces: Workspaces::default(),
            step,
        })
    }

    /// The schedule's factor now (its unit is the step, or the epoch with `--epochs`),
    /// times the warm-up's.
    fn lr_factor(&self) -> f64 {
        let schedule = self.schedule.factor(match self.epoch_steps {
            Some(per_epoch) => self.step / per_epoch,
            None => self.step,
        });
        schedule * self.config.warmup_factor(self.step)
    }

    pub fn lr(&self) -> f64 {
        self.config.lr * self.lr_factor()
    }

    /// One step on the batch of `(seed, step)`: returns its loss and phase times.
    pub fn train_step(&mut self) -> Result<(f32, StepTimes)> {
        let batch = self
            .task
            .train_batch(self.step, self.config.batch, self.config.seed);
        let ws = self
            .workspaces
            .get(&self.model.spec, batch.steps, batch.batch);
        if let Some(state) = &mut self.carried_state {
            let per_epoch = self
                .task
                .steps_per_epoch(self.config.batch)
                .unwrap_or(u64::MAX);
            if self.step.is_multiple_of(per_epoch) {
                state.fill(0.0);
            }
            ws.core.set_initial_state(state);
        }
        let mut times = StepTimes::default();
        let t0 = Instant::now();
        if let Some(q) = &mut self.model.spec.quantizer {
            q.bits = self.config.bits_at(self.step);
        }
        self.model.parametrise(true, self.par);
        if self.config.act_bits.is_some() {
            self.model.quantize_activations = self.config.act_bits_at(self.step).is_some();
            if self.step == self.config.act_bits_from {
                self.model.init_hidden_step(ws, &batch, self.par);
            }
        }
        // Stochastic rounding draws anew each step, the same on a resumed run.
        self.model.dither = (self.config.act_train_rounding == ActRounding::Stochastic)
            .then(|| crate::quant::dither::dither_key(self.config.seed, self.step));
        let t1 = Instant::now();
        let mut loss = self.model.forward(ws, &batch, self.par);
        if let (Some(teacher), Targets::Classes(labels)) = (&mut self.teacher, &batch.targets) {
            let classes = ws.head.classes;
            let (logits, dlogits) = ws.head.logits_and_gradient();
            loss = distillation_loss(
                logits,
                teacher.logits(&batch, self.par),
                classes,
                labels,
                self.config.distill_weight,
                self.config.distill_temperature,
                dlogits,
            );
        }
        if !loss.is_finite() {
            return Err(self.diverged(format!("the loss is {loss}")));
        }
        if let Some(state) = &mut self.carried_state {
            ws.core.final_state_into(state);
        }
        let t2 = Instant::now();
        self.model.grads.iter_mut().for_each(|g| g.fill(0.0));
        self.model.backward(ws, &batch, self.par);
        self.model.dither = None;
        let t3 = Instant::now();
        if let Some(name) = first_non_finite(&self.model.params, &self.model.grads) {
            return Err(self.diverged(format!("the gradient of {name} is not finite")));
        }
        self.apply_optimizer();
        let values = self.model.params.iter().map(|t| &t.data);
        if let Some(name) = first_non_finite(&self.model.params, values) {
            return Err(self.diverged(format!("{name} is not finite after the update")));
        }
        let t4 = Instant::now();
        times.parametrise = (t1 - t0).as_secs_f64();
        times.forward = (t2 - t1).as_secs_f64();
        times.backward = (t3 - t2).as_secs_f64();
        times.optimiser = (t4 - t3).as_secs_f64();
        self.step += 1;
        Ok((loss, times))
    }

    /// The error that stops a diverged run at this step. The caller returns it before
    /// anything is written, so the run folder keeps its last good checkpoint.
    fn diverged(&self, what: String) -> Error {
        Error::Diverged {
            step: self.step,
            what,
        }
    }

    fn apply_optimizer(&mut self) {
        if self.config.clip > 0.0 {
            clip_grad_norm(&mut self.model.grads, self.config.clip as f32);
        }
        let factor = self.lr_factor();
        let lr = (self.config.lr * factor) as f32;
        let orthogonal_lr = (self.config.recurrent_lr() * factor) as f32;
        let step_lr = (self.config.step_lr.unwrap_or(self.config.lr) * factor) as f32;
        self.optimizer.begin_step();
        let context = StepContext {
            seed: self.config.seed,
            step: self.step,
            rank: self.config.rank,
            tolerance: self.config.orthogonality_tolerance,
        };
        let recurrent_frozen = self
            .config
            .freeze_recurrent_at
            .is_some_and(|step| self.step >= step);
        let held_step = self.config.act_range == ActRange::Calibrated;
        for index in 0..self.model.params.len() {
            let tensor = &self.model.params[index];
            if held_step && tensor.name == activation::HIDDEN_STEP {
                continue;
            }
            let tensor_lr = match tensor.kind {
                Kind::Recurrent if recurrent_frozen => continue,
                Kind::Recurrent => orthogonal_lr,
                Kind::Step => step_lr,
                Kind::Quantized | Kind::Float => lr,
            };
            let delta = &mut self.delta[..self.model.params[index].len()];
            self.optimizer
                .step(index, &self.model.grads[index], tensor_lr, delta);
            self.model.apply_step(index, delta, &context);
        }
    }

    /// Loss and accuracy of the current parameters on the validation or test set.
    pub fn evaluate(&mut self, test: bool) -> Evaluation {
        let (bits, quantized_activations) = self.config.arithmetic_after(self.step);
        if let Some(q) = &mut self.model.spec.quantizer {
            q.bits = bits;
        }
        self.model.parametrise(false, self.par);
        self.model.quantize_activations = quantized_activations;
        // Evaluation rounds to nearest, as the engine does, whatever a stopped step left.
        self.model.dither = None;
        let batches = if test { &self.test } else { &self.validation };
        let carried = self.carried_state.as_ref().map(Vec::len);
        evaluate(
            &self.model,
            &self.task,
            batches,
            carried,
            &mut self.workspaces,
            self.par,
        )
    }

    /// The validation or test batches.
    pub fn eval_set(&self, test: bool) -> &[Batch] {
        if test {
            &self.test
        } else {
            &self.validation
        }
    }

    /// Orthogonality of the recurrent matrix of an ORNN or RNN core (valid after
    /// `evaluate` or a step): of `q(W)` and of `W` before quantization.
    pub fn orthogonality(&self) -> Option<Orthogonality> {
        let n = self.model.spec.hidden;
        let qw = self.model.w_used()?;
        let w = self
            .model
            .w_orthogonal()
            .unwrap_or(&self.model.params[0].data);
        let (qmin, qmax) = extreme_singular_values(qw, n, n);
        let (min, max) = extreme_singular_values(w, n, n);
        Some(Orthogonality {
            quantized_defect: orthogonality_defect(qw, n),
            quantized_sigma_min: qmin,
            quantized_sigma_max: qmax,
            defect: orthogonality_defect(w, n),
            sigma_min: min,
            sigma_max: max,
        })
    }

    /// An exact `W` (Hadamard signs, rotation blocks): its codes changed since the previous
    /// call (one per evaluation).
    pub fn take_code_changes(&mut self) -> Option<usize> {
        let previous = self.recurrent_at_last_eval.as_mut()?;
        let changes = self.model.recurrent_code_changes(previous)?;
        previous.copy_from_slice(&self.model.params[0].data);
        Some(changes)
    }

    /// The state to write to disk (bookkeeping fields are the caller's).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            step: self.step,
            params: self.model.params.clone(),
            parametrisation_state: self.model.parametrisation_state(),
            carried_state: self.carried_state.clone(),
            recurrent_at_last_eval: self
                .recurrent_at_last_eval
                .clone()
                .filter(|w| *w != self.model.params[0].data),
            moments: self.optimizer.moments.clone(),
            updates: self.optimizer.updates,
            config: Some(self.config.to_toml()),
            best_val_loss: f64::INFINITY,
            best_step: 0,
            seconds: 0.0,
            pending_loss: 0.0,
            pending_count: 0,
        }
    }

    /// Replaces the parameters (e.g. with the best ones, for the test evaluation).
    pub fn load_params(&mut self, params: Vec<Tensor>, state: Option<Vec<f32>>) {
        self.model = Model::from_params(self.model.spec.clone(), params, state);
    }
}

#[cfg(test)]
mod orthogonality_tests {
    use super::Orthogonality;

    /// A diverged W's NaN is written as `null` and must read back (as NaN), or `qornn report`
    /// cannot read the run's metrics.
    #[test]
    fn a_non_finite_measurement_round_trips_through_json() {
        let o = Orthogonality {
            quantized_defect: 11.3,
            quantized_sigma_min: 0.0,
            quantized_sigma_max: 0.0,
            defect: f64::NAN,
            sigma_min: f64::NAN,
            sigma_max: f64::INFINITY,
        };
        let text = serde_json::to_string(&o).unwrap();
        assert!(text.contains("\"defect\":null"), "{text}");
        let back: Orthogonality = serde_json::from_str(&text).unwrap();
        assert_eq!(back.quantized_defect, 11.3);
        assert!(back.defect.is_nan() && back.sigma_min.is_nan() && back.sigma_max.is_nan());
    }
}

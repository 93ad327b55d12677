//! Synthetic long-memory tasks: each makes batches `x: (T, B, d)` with their targets.

mod adding;
mod copy;
mod random;

pub use adding::AddingTask;
pub use copy::CopyTask;
pub use random::RandomTask;

use crate::head::{Readout, Targets};
use rand::Rng;

/// One batch of sequences.
#[derive(Clone, Debug)]
pub struct Batch {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    /// `x: (T, B, d)`
    pub x: Vec<f32>,
    /// `(T, B)` for a many-to-many task, `(B)` (or `(B, outputs)`) for a many-to-one task.
    pub targets: Targets,
}

/// A task: its sizes, its batches, its baseline and its accuracy.
#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    Copy(CopyTask),
    Adding(AddingTask),
    /// Random data of a fixed shape, read out at the last step (benchmarks only).
    Random(RandomTask),
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Copy(_) => "copy",
            Task::Adding(_) => "adding",
            Task::Random(_) => "random",
        }
    }
    pub fn input_size(&self) -> usize {
        match self {
            Task::Copy(_) => CopyTask::ALPHABET,
            Task::Adding(_) => 2,
            Task::Random(t) => t.input,
        }
    }
    /// Classes of a classification task, or outputs of a regression task.
    pub fn output_size(&self) -> usize {
        match self {
            Task::Copy(_) => CopyTask::ALPHABET - 1,
            Task::Adding(_) => 1,
            Task::Random(t) => t.classes,
        }
    }
    pub fn readout(&self) -> Readout {
        match self {
            Task::Copy(_) => Readout::Every,
            Task::Adding(_) | Task::Random(_) => Readout::Last,
        }
    }
    pub fn steps(&self) -> usize {
        match self {
            Task::Copy(t) => t.steps(),
            Task::Adding(t) => t.length,
            Task::Random(t) => t.steps,
        }
    }
    /// The loss of the best input-blind predictor.
    pub fn baseline_loss(&self) -> f64 {
        match self {
            Task::Copy(t) => t.baseline_loss(),
            Task::Adding(_) => AddingTask::BASELINE_LOSS,
            Task::Random(t) => (t.classes as f64).ln(),
        }
    }
    pub fn sample(&self, batch: usize, rng: &mut impl Rng) -> Batch {
        match self {
            Task::Copy(t) => t.sample(batch, rng),
            Task::Adding(t) => t.sample(batch, rng),
            Task::Random(t) => t.sample(batch, rng),
        }
    }
    /// Fraction of correct predictions where the task scores them (none for regression).
    pub fn accuracy(&self, logits: &[f32], targets: &Targets) -> Option<(usize, usize)> {
        match (self, targets) {
            (Task::Copy(t), Targets::Classes(y)) => Some(t.recall_hits(logits, y)),
            _ => None,
        }
    }
}

/// Index of the largest entry of a row.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

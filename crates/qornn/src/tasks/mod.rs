//! Tasks: each makes batches `x: (T, B, d)` with their targets, for training (a function
//! of the seed and the step, so resumed runs see the same data) and for evaluation.

mod adding;
mod copy;
mod mnist;
mod ptb;
mod random;

pub use adding::AddingTask;
pub use copy::CopyTask;
pub use mnist::{MnistTask, PMNIST_PERMUTATION};
pub use ptb::PtbTask;
pub use random::RandomTask;

use crate::data::ptb::Level;
use crate::error::{Error, Result};
use crate::head::{Readout, Targets};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One batch of sequences.
#[derive(Clone, Debug)]
pub struct Batch {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    /// `x: (T, B, d)` (empty for token inputs)
    pub x: Vec<f32>,
    /// Token inputs `(T, B)` for a model with an embedding (empty for dense inputs).
    pub tokens: Vec<u32>,
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
    /// Sequential (`smnist`) or permuted (`pmnist`) MNIST.
    Mnist(MnistTask),
    /// Next-token prediction on the Penn Treebank (`ptb-char`, `ptb-word`).
    Ptb(PtbTask),
}

/// Stream numbers of the seeded generator; training steps (synthetic tasks) or epochs
/// (data sets) use their own number.
const STREAM_VALIDATION: u64 = u64::MAX;
const STREAM_TEST: u64 = u64::MAX - 1;

/// The generator of `stream` under `seed`.
pub fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Copy(_) => "copy",
            Task::Adding(_) => "adding",
            Task::Random(_) => "random",
            Task::Mnist(t) if t.permuted => "pmnist",
            Task::Mnist(_) => "smnist",
            Task::Ptb(t) if t.level == Level::Char => "ptb-char",
            Task::Ptb(_) => "ptb-word",
        }
    }
    pub fn input_size(&self) -> usize {
        match self {
            Task::Copy(_) => CopyTask::ALPHABET,
            Task::Adding(_) => 2,
            Task::Random(t) => t.input,
            Task::Mnist(_) => 1,
            Task::Ptb(t) => t.input_size(),
        }
    }
    /// Classes of a classification task, or outputs of a regression task.
    pub fn output_size(&self) -> usize {
        match self {
            Task::Copy(_) => CopyTask::ALPHABET - 1,
            Task::Adding(_) => 1,
            Task::Random(t) => t.classes,
            Task::Mnist(_) => 10,
            Task::Ptb(t) => t.vocabulary(),
        }
    }
    pub fn readout(&self) -> Readout {
        match self {
            Task::Copy(_) | Task::Ptb(_) => Readout::Every,
            Task::Adding(_) | Task::Random(_) | Task::Mnist(_) => Readout::Last,
        }
    }
    pub fn steps(&self) -> usize {
        match self {
            Task::Copy(t) => t.steps(),
            Task::Adding(t) => t.length,
            Task::Random(t) => t.steps,
            Task::Mnist(_) => crate::data::mnist::PIXELS,
            Task::Ptb(t) => t.steps,
        }
    }
    /// The loss of the best input-blind predictor.
    pub fn baseline_loss(&self) -> f64 {
        match self {
            Task::Copy(t) => t.baseline_loss(),
            Task::Adding(_) => AddingTask::BASELINE_LOSS,
            Task::Random(t) => (t.classes as f64).ln(),
            Task::Mnist(_) => 10f64.ln(),
            Task::Ptb(t) => (t.vocabulary() as f64).ln(),
        }
    }
    /// Checks that every split of a data set holds at least one batch of `batch` (MNIST's
    /// training split; one segment of `batch` streams for PTB), so that no split is read
    /// out of bounds or averaged over nothing.
    pub fn check_sizes(&self, batch: usize) -> Result<()> {
        match self {
            Task::Mnist(t) => {
                for (name, len) in [
                    ("training", t.train.len()),
                    ("validation", t.validation.len()),
                    ("test", t.test.len()),
                ] {
                    let needed = if name == "training" { batch } else { 1 };
                    if len < needed {
                        return Err(Error::config(
                            "batch",
                            format!(
                                "the MNIST {name} split has {len} images, fewer than {needed} \
                                 (one batch of --batch {batch} for training, one image to \
                                 evaluate)"
                            ),
                        ));
                    }
                }
            }
            Task::Ptb(t) => {
                for (name, tokens) in [
                    ("train", &t.data.train),
                    ("valid", &t.data.valid),
                    ("test", &t.data.test),
                ] {
                    if t.segments(tokens, batch) == 0 {
                        return Err(Error::config(
                            "seq",
                            format!(
                                "the PTB {name} split ({} tokens) is too short for one segment \
                                 of --seq {} in --batch {batch} streams",
                                tokens.len(),
                                t.steps
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Training steps in one pass over a data set (`None` for generated tasks); the last
    /// incomplete batch of an epoch is dropped.
    pub fn steps_per_epoch(&self, batch: usize) -> Option<u64> {
        match self {
            Task::Mnist(t) => Some((t.train.len() / batch).max(1) as u64),
            Task::Ptb(t) => Some(t.segments(&t.data.train, batch).max(1) as u64),
            _ => None,
        }
    }

    /// The training batch of `step`: generated from `(seed, step)`, or the step's slice of
    /// the epoch's shuffle of a data set (shuffled by `(seed, epoch)`).
    pub fn train_batch(&self, step: u64, batch: usize, seed: u64) -> Batch {
        match self {
            Task::Mnist(t) => {
                let per_epoch = self.steps_per_epoch(batch).expect("a data set has epochs");
                let (epoch, within) = (step / per_epoch, (step % per_epoch) as usize);
                let mut order: Vec<usize> = (0..t.train.len()).collect();
                order.shuffle(&mut rng_for(seed, epoch));
                t.batch(&t.train, &order[within * batch..(within + 1) * batch])
            }
            Task::Ptb(t) => {
                let per_epoch = self.steps_per_epoch(batch).expect("a data set has epochs");
                t.batch(&t.data.train, batch, (step % per_epoch) as usize)
            }
            _ => self.sample(batch, &mut rng_for(seed, step)),
        }
    }

    /// The validation or test set in batches of at most `batch`: a data set's whole split,
    /// or `sequences` generated ones (a fixed stream per split).
    pub fn eval_batches(
        &self,
        test: bool,
        batch: usize,
        sequences: usize,
        seed: u64,
    ) -> Vec<Batch> {
        match self {
            Task::Mnist(t) => {
                let split = if test { &t.test } else { &t.validation };
                let indices: Vec<usize> = (0..split.len()).collect();
                indices
                    .chunks(batch)
                    .map(|chunk| t.batch(split, chunk))
                    .collect()
            }
            Task::Ptb(t) => {
                let tokens = if test { &t.data.test } else { &t.data.valid };
                let segments = t.segments(tokens, batch);
                (0..segments).map(|s| t.batch(tokens, batch, s)).collect()
            }
            _ => {
                let mut rng = rng_for(seed, if test { STREAM_TEST } else { STREAM_VALIDATION });
                (0..sequences.div_ceil(batch))
                    .map(|_| self.sample(batch, &mut rng))
                    .collect()
            }
        }
    }

    fn sample(&self, batch: usize, rng: &mut impl Rng) -> Batch {
        match self {
            Task::Copy(t) => t.sample(batch, rng),
            Task::Adding(t) => t.sample(batch, rng),
            Task::Random(t) => t.sample(batch, rng),
            Task::Mnist(_) | Task::Ptb(_) => {
                unreachable!("data-set batches come from train_batch and eval_batches")
            }
        }
    }

    /// Whether the hidden state carries over from one batch to the next (truncated
    /// backpropagation through time over contiguous streams).
    pub fn carries_state(&self) -> bool {
        matches!(self, Task::Ptb(_))
    }

    /// Whether the metric is bits per character.
    pub fn reports_bits_per_char(&self) -> bool {
        matches!(self, Task::Ptb(t) if t.level == Level::Char)
    }

    /// Token inputs: the vocabulary of the model's embedding.
    pub fn embedding_vocabulary(&self) -> Option<usize> {
        match self {
            Task::Ptb(t) if t.level == Level::Word => Some(t.vocabulary()),
            _ => None,
        }
    }

    /// Fraction of correct predictions where the task scores them (none for regression).
    pub fn accuracy(&self, logits: &[f32], targets: &Targets) -> Option<(usize, usize)> {
        match (self, targets) {
            (Task::Copy(t), Targets::Classes(y)) => Some(t.recall_hits(logits, y)),
            (_, Targets::Classes(y)) => {
                let classes = logits.len() / y.len().max(1);
                let hits = y
                    .iter()
                    .enumerate()
                    .filter(|&(r, &label)| argmax(&logits[r * classes..(r + 1) * classes]) == label)
                    .count();
                Some((hits, y.len()))
            }
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

//! The copy task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).
//!
//! Alphabet of 10 one-hot inputs: 0 blank, 1..=8 data symbols, 9 the marker. A sequence
//! of length `T0 + 20` is 10 random data symbols, `T0 - 1` blanks, the marker, 10 blanks;
//! the target is `T0 + 10` blanks then the 10 symbols (9 output classes, 0..=8). The loss
//! is averaged over every step; a model that outputs blanks and then guesses uniformly
//! scores `10 ln 8 / (T0 + 20)`, the memoryless baseline.

use super::{argmax, Batch};
use crate::head::Targets;
use rand::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct CopyTask {
    /// `T0`, the delay between the last symbol shown and the marker's recall.
    pub delay: usize,
}

impl CopyTask {
    pub const ALPHABET: usize = 10;
    pub const SYMBOLS: usize = 8;
    pub const RECALLED: usize = 10;
    const MARKER: usize = 9;

    pub fn new(delay: usize) -> Self {
        assert!(delay >= 1, "copy task delay must be at least 1");
        Self { delay }
    }

    pub fn steps(&self) -> usize {
        self.delay + 2 * Self::RECALLED
    }

    pub fn baseline_loss(&self) -> f64 {
        Self::RECALLED as f64 * (Self::SYMBOLS as f64).ln() / self.steps() as f64
    }

    pub fn sample(&self, batch: usize, rng: &mut impl Rng) -> Batch {
        let steps = self.steps();
        let d = Self::ALPHABET;
        let mut x = vec![0.0f32; steps * batch * d];
        let mut y = vec![0usize; steps * batch];
        let marker_step = self.delay + Self::RECALLED - 1;
        for b in 0..batch {
            for k in 0..Self::RECALLED {
                let symbol = rng.gen_range(1..=Self::SYMBOLS);
                x[(k * batch + b) * d + symbol] = 1.0;
                y[(steps - Self::RECALLED + k) * batch + b] = symbol;
            }
            for t in Self::RECALLED..steps {
                let input = if t == marker_step { Self::MARKER } else { 0 };
                x[(t * batch + b) * d + input] = 1.0;
            }
        }
        Batch {
            tokens: Vec::new(),
            steps,
            batch,
            input: d,
            x,
            targets: Targets::Classes(y),
        }
    }

    /// Correct recalls over the last 10 steps: `(hits, total)`; logits are `(T, B, 9)`.
    pub fn recall_hits(&self, logits: &[f32], y: &[usize]) -> (usize, usize) {
        let classes = Self::ALPHABET - 1;
        let rows = y.len();
        let batch = rows / self.steps();
        let first = rows - Self::RECALLED * batch;
        let hits = (first..rows)
            .filter(|&r| argmax(&logits[r * classes..(r + 1) * classes]) == y[r])
            .count();
        (hits, rows - first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn layout_of_one_sequence() {
        let task = CopyTask::new(5);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let batch = task.sample(3, &mut rng);
        assert_eq!(batch.steps, 25);
        assert_eq!(batch.x.len(), 25 * 3 * 10);
        let Targets::Classes(y) = &batch.targets else {
            panic!("classes expected")
        };
        for b in 0..3 {
            let input_at = |t: usize| argmax(&batch.x[(t * 3 + b) * 10..(t * 3 + b + 1) * 10]);
            for k in 0..10 {
                let symbol = input_at(k);
                assert!((1..=8).contains(&symbol));
                assert_eq!(y[(15 + k) * 3 + b], symbol, "recall of symbol {k}");
            }
            assert_eq!(input_at(14), 9, "marker at T0 + 9");
            for t in 10..25 {
                if t != 14 {
                    assert_eq!(input_at(t), 0);
                }
            }
            assert!((0..15).all(|t| y[t * 3 + b] == 0));
        }
        assert!((task.baseline_loss() - 10.0 * 8f64.ln() / 25.0).abs() < 1e-12);
    }
}

//! Random inputs and labels of a given shape, for benchmarks (nothing to learn).

use super::Batch;
use crate::head::Targets;
use rand::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct RandomTask {
    pub steps: usize,
    pub input: usize,
    pub classes: usize,
}

impl RandomTask {
    pub fn sample(&self, batch: usize, rng: &mut impl Rng) -> Batch {
        Batch {
            tokens: Vec::new(),
            steps: self.steps,
            batch,
            input: self.input,
            x: (0..self.steps * batch * self.input)
                .map(|_| rng.gen::<f32>())
                .collect(),
            targets: Targets::Classes((0..batch).map(|_| rng.gen_range(0..self.classes)).collect()),
        }
    }
}

//! The adding task (Hochreiter & Schmidhuber 1997; Le et al. 2015).
//!
//! Two input channels over `T` steps: values uniform in [0, 1], and a marker that is 1 at
//! one step of the first half and one step of the second half. The target, read at the
//! last step, is the sum of the two marked values; predicting 1 always scores the
//! variance of that sum, 1/6 (the baseline 0.167).

use super::Batch;
use crate::head::Targets;
use rand::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct AddingTask {
    pub length: usize,
}

impl AddingTask {
    pub const BASELINE_LOSS: f64 = 1.0 / 6.0;

    pub fn new(length: usize) -> Self {
        assert!(length >= 2, "adding task length must be at least 2");
        Self { length }
    }

    pub fn sample(&self, batch: usize, rng: &mut impl Rng) -> Batch {
        let steps = self.length;
        let mut x = vec![0.0f32; steps * batch * 2];
        let mut y = vec![0.0f32; batch];
        let half = steps / 2;
        for b in 0..batch {
            for t in 0..steps {
                x[(t * batch + b) * 2] = rng.gen::<f32>();
            }
            let first = rng.gen_range(0..half);
            let second = rng.gen_range(half..steps);
            for t in [first, second] {
                x[(t * batch + b) * 2 + 1] = 1.0;
                y[b] += x[(t * batch + b) * 2];
            }
        }
        Batch {
            tokens: Vec::new(),
            steps,
            batch,
            input: 2,
            x,
            targets: Targets::Values(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn target_is_sum_of_marked_values() {
        let task = AddingTask::new(20);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let batch = task.sample(4, &mut rng);
        let Targets::Values(y) = &batch.targets else {
            panic!("values expected")
        };
        for (b, &target) in y.iter().enumerate() {
            let marked: Vec<usize> = (0..20)
                .filter(|&t| batch.x[(t * 4 + b) * 2 + 1] == 1.0)
                .collect();
            assert_eq!(marked.len(), 2);
            assert!(marked[0] < 10 && marked[1] >= 10);
            let sum: f32 = marked.iter().map(|&t| batch.x[(t * 4 + b) * 2]).sum();
            assert_eq!(target, sum);
        }
    }
}

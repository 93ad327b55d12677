//! Sequential and permuted MNIST (Le et al. 2015): one pixel per step (784 steps, input
//! size 1, values in [0, 1]), 10 classes read out at the last step. The 60,000 training
//! images are split 50,000 / 10,000 (five sixths / one sixth) into train and validation by
//! a fixed shuffle (seed [`SPLIT_SEED`], the same for every run); the 10,000 test images
//! are the test set.

use super::Batch;
use crate::data::mnist::{Mnist, Split, PIXELS};
use crate::head::Targets;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::Arc;

pub const SPLIT_SEED: u64 = 0;

/// The pMNIST pixel order of the literature: numpy `RandomState(92916).permutation(784)`.
pub const PMNIST_PERMUTATION: [u16; PIXELS] = include!("pmnist_permutation.in");

#[derive(Clone, Debug, PartialEq)]
pub struct MnistTask {
    pub permuted: bool,
    pub train: Arc<Split>,
    pub validation: Arc<Split>,
    pub test: Arc<Split>,
}

impl MnistTask {
    pub fn new(data: Mnist, permuted: bool) -> Self {
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(SPLIT_SEED));
        let take = |indices: &[usize]| Split {
            images: indices
                .iter()
                .flat_map(|&i| {
                    data.train.images[i * PIXELS..(i + 1) * PIXELS]
                        .iter()
                        .copied()
                })
                .collect(),
            labels: indices.iter().map(|&i| data.train.labels[i]).collect(),
        };
        let cut = order.len() * 5 / 6;
        Self {
            permuted,
            train: Arc::new(take(&order[..cut])),
            validation: Arc::new(take(&order[cut..])),
            test: Arc::new(data.test),
        }
    }

    /// The batch of the images `indices` of `split`: `x: (784, B, 1)`.
    pub fn batch(&self, split: &Split, indices: &[usize]) -> Batch {
        let b = indices.len();
        let mut x = vec![0.0f32; PIXELS * b];
        for (col, &i) in indices.iter().enumerate() {
            let image = &split.images[i * PIXELS..(i + 1) * PIXELS];
            for (t, &shuffled) in PMNIST_PERMUTATION.iter().enumerate() {
                let pixel = if self.permuted { shuffled as usize } else { t };
                x[t * b + col] = image[pixel] as f32 / 255.0;
            }
        }
        Batch {
            tokens: Vec::new(),
            steps: PIXELS,
            batch: b,
            input: 1,
            x,
            targets: Targets::Classes(indices.iter().map(|&i| split.labels[i] as usize).collect()),
        }
    }
}

//! The small runs the training tests share.
#![allow(dead_code)]

use qornn::config::Config;

/// A copy task small enough to learn in about a second on one core.
pub fn small_copy(model: &str, bits: u32) -> Config {
    Config {
        delay: 10,
        hidden: 64,
        batch: 32,
        steps: 600,
        eval_every: 200,
        eval_sequences: 256,
        optimizer: qornn::optim::OptimizerKind::Adam,
        lr: 3e-3,
        orthogonal_lr: Some(3e-3),
        model: model.parse().unwrap(),
        bits: Some(bits),
        threads: 1,
        ..Config::default()
    }
}

/// An 8-bit copy run of `steps` steps evaluated every 10: a finished run folder to test
/// what is done with one.
pub fn tiny_run(steps: u64) -> Config {
    Config {
        steps,
        eval_every: 10,
        ..small_copy("qornn-bjorck", 8)
    }
}

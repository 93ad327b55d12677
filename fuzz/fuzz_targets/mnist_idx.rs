#![no_main]
//! Fuzz target: see `checks::mnist_idx`.
use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::mnist_idx(data));

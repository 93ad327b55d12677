#![no_main]
//! Fuzz target: see `checks::model_file`.
use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::model_file(data));

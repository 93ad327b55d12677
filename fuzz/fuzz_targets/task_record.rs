#![no_main]
//! Fuzz target: see `checks::task_record`.
use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::task_record(data));

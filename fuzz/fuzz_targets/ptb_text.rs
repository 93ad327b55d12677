#![no_main]
//! Fuzz target: see `checks::ptb_text`.
use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::ptb_text(data));

#![no_main]
//! Fuzz target: see `checks::config_toml`.
use libfuzzer_sys::fuzz_target;

#[path = "../checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::config_toml(data));

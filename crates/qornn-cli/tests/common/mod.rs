//! What the CLI tests share: the binary, and its output as text.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `qornn` binary built for the tests.
pub fn qornn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qornn"))
        .args(args)
        .output()
        .expect("the qornn binary runs")
}

/// Standard output then standard error, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

//! Replays the fuzz targets' seeds and minimised corpora (`fuzz/seeds/<target>`,
//! `fuzz/corpus-min/<target>`: every crash the fuzzer found is there too, with its fix)
//! through the same checks, so that the normal test suite keeps what fuzzing found.

#[path = "../../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// A fuzz target's name and its check.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 6] = [
    ("model_file", checks::model_file),
    ("task_record", checks::task_record),
    ("mnist_idx", checks::mnist_idx),
    ("ptb_text", checks::ptb_text),
    ("checkpoint", checks::checkpoint),
    ("config_toml", checks::config_toml),
];

#[test]
fn fuzz_corpora_replay_without_a_failure() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (target, check) in TARGETS {
        let mut inputs = 0;
        for folder in ["seeds", "corpus-min"] {
            let dir = fuzz.join(folder).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&bytes));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                inputs += 1;
            }
        }
        assert!(
            inputs > 0,
            "{target}: no seed or corpus input in {}",
            fuzz.display()
        );
    }
}

/// A mutation driver for the same checks where cargo-fuzz cannot run (no nightly or
/// libFuzzer): `FUZZ_EXECUTIONS=N cargo test --test fuzz_corpus -- --ignored` runs every
/// target N times (default 10,000) on its seeds and corpus, each mutated a few times (bit
/// flips, interesting integers written over 1, 2, 4 or 8 bytes, insertions, deletions,
/// splices of two inputs); the test profile keeps overflow checks on. Without coverage
/// feedback it explores less than libFuzzer; a failing input is written to
/// `fuzz/artifacts/<target>/` and named in the panic.
#[test]
#[ignore = "long: run with FUZZ_EXECUTIONS=N -- --ignored"]
fn mutated_inputs_pass_every_check() {
    use rand::{Rng, SeedableRng};
    let executions: usize = std::env::var("FUZZ_EXECUTIONS").map_or(10_000, |v| {
        v.parse().expect("FUZZ_EXECUTIONS: a number of executions")
    });
    let only = std::env::var("FUZZ_TARGET").ok();
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    // A panic inside a check is reported by its input below, not by the default hook.
    std::panic::set_hook(Box::new(|_| {}));
    for (target, check) in TARGETS {
        if only.as_deref().is_some_and(|t| t != target) {
            continue;
        }
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        for folder in ["seeds", "corpus-min"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
                continue;
            };
            for entry in entries {
                corpus.push(std::fs::read(entry.unwrap().path()).unwrap());
            }
        }
        assert!(!corpus.is_empty(), "{target}: no seed");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
        let clock = std::time::Instant::now();
        for run in 0..executions {
            let mut input = corpus[rng.gen_range(0..corpus.len())].clone();
            for _ in 0..rng.gen_range(1..=4) {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                mutate(&mut input, other, &mut rng);
            }
            if std::panic::catch_unwind(|| check(&input)).is_err() {
                let dir = fuzz.join("artifacts").join(target);
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("mutated-{run}"));
                std::fs::write(&path, &input).unwrap();
                let _ = std::panic::take_hook();
                panic!(
                    "{target}: execution {run} fails; input in {}",
                    path.display()
                );
            }
        }
        let seconds = clock.elapsed().as_secs_f64();
        println!(
            "{target}: {executions} executions, no failure, {:.0} exec/s",
            executions as f64 / seconds
        );
    }
    let _ = std::panic::take_hook();
}

/// One mutation of `input`, at a random place.
fn mutate<R: rand::Rng>(input: &mut Vec<u8>, other: &[u8], rng: &mut R) {
    fn at<R: rand::Rng>(rng: &mut R, len: usize) -> usize {
        rng.gen_range(0..len.max(1))
    }
    const INTERESTING: [u64; 12] = [
        0,
        1,
        2,
        7,
        8,
        0x7f,
        0x80,
        0xff,
        0x7fff,
        0x8000,
        0x7fff_ffff,
        0x8000_0000,
    ];
    match rng.gen_range(0..6) {
        0 if !input.is_empty() => {
            let i = at(rng, input.len());
            input[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if !input.is_empty() => {
            // An interesting integer (or its negation, or all ones) over 1..=8 bytes.
            let width = [1, 2, 4, 8][rng.gen_range(0..4)];
            let value = match rng.gen_range(0..3) {
                0 => INTERESTING[rng.gen_range(0..INTERESTING.len())],
                1 => INTERESTING[rng.gen_range(0..INTERESTING.len())].wrapping_neg(),
                _ => u64::MAX,
            };
            let i = at(rng, input.len());
            for (k, byte) in value.to_le_bytes().iter().take(width).enumerate() {
                if let Some(b) = input.get_mut(i + k) {
                    *b = *byte;
                }
            }
        }
        2 => {
            let i = rng.gen_range(0..=input.len());
            let byte = rng.gen();
            input.insert(i, byte);
        }
        3 if !input.is_empty() => {
            let i = at(rng, input.len());
            let end = (i + rng.gen_range(1..=16)).min(input.len());
            input.drain(i..end);
        }
        4 if !other.is_empty() => {
            // Splice: a piece of another input over this one's tail.
            let i = rng.gen_range(0..=input.len());
            let j = at(rng, other.len());
            let end = (j + rng.gen_range(1..=64)).min(other.len());
            input.truncate(i);
            input.extend_from_slice(&other[j..end]);
        }
        _ if !input.is_empty() => {
            let i = at(rng, input.len());
            input[i] = rng.gen();
        }
        _ => input.push(rng.gen()),
    }
}

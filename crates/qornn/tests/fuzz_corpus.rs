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

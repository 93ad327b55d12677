#![allow(dead_code)] // each fuzz target (and the corpus test) uses some of these checks
//! The checks of the fuzz targets, one function each, shared with the regression test
//! that replays the corpus in the normal test suite (crates/qornn/tests/fuzz_corpus.rs).
//! Each takes any bytes and panics only on a real defect.

use qornn::config::Config;
use qornn::data::mnist::{parse_images, parse_labels};
use qornn::data::ptb::Ptb;
use qornn::deploy::engine::BatchedEngine;
use qornn::deploy::model_file::IntegerModel;
use qornn::tasks::{RandomTask, Task};
use qornn_infer::format::{fnv1a, CHECKSUM_LEN};
use std::path::Path;
use std::sync::OnceLock;

fn exercise(bytes: &[u8]) {
    let Ok(model) = IntegerModel::from_bytes(bytes) else {
        return;
    };
    let q = &model.recurrence;
    let engine = q.as_int();
    // `from_bytes` accepts only files that pass `validate`: the documented bound then
    // guarantees no overflow in the engine, which these steps exercise at the extremes.
    assert!(engine.validate().is_ok());
    if q.hidden * (q.hidden + q.input) > 1 << 10 {
        return; // keep an execution short; large models parse the same way
    }
    let (lo, hi) = engine.hidden_range();
    let x_hi = (1i32 << (q.act_bits - 1)) - 1;
    let mut h = vec![hi; q.hidden];
    let mut next = vec![0; q.hidden];
    for x_code in [x_hi, -x_hi - 1, 0] {
        let x = vec![x_code; q.input];
        engine.step(&h, &x, &mut next);
        assert!(next.iter().all(|v| (lo..=hi).contains(v)));
        std::mem::swap(&mut h, &mut next);
        h.iter_mut()
            .for_each(|v| *v = if x_code > 0 { hi } else { lo });
    }
    // Enough sequences for the SIMD kernels (the byte or the pair kernel, as the model
    // allows), each equal to the scalar engine's codes.
    let batch = 9;
    let batched = BatchedEngine::new(engine);
    let mut state = batched.state(batch);
    let x: Vec<i32> = (0..batch * q.input)
        .map(|k| if k % 2 == 0 { x_hi } else { -x_hi - 1 })
        .collect();
    let mut scalar = vec![vec![0; q.hidden]; batch];
    let mut got = vec![0; q.hidden];
    for _ in 0..2 {
        batched.step(&mut state, &x);
        for (s, h) in scalar.iter_mut().enumerate() {
            engine.step(h, &x[s * q.input..(s + 1) * q.input], &mut next);
            h.copy_from_slice(&next);
            batched.hidden(&state, s, &mut got);
            assert_eq!(&got, h, "{:?} kernel, sequence {s}", batched.kernel());
        }
    }
}

/// `.qornn` parsing, and a file that parses run through the engines: no panic, no
/// arithmetic overflow (overflow checks are on), for any bytes. The input is used twice:
/// as it is (the checksum rejects most mutations) and with its checksum fixed up, so that
/// the fuzzer reaches the header and section checks.
pub fn model_file(data: &[u8]) {
    exercise(data);
    if data.len() > CHECKSUM_LEN {
        let mut fixed = data.to_vec();
        let body = fixed.len() - CHECKSUM_LEN;
        let sum = fnv1a(&fixed[..body]);
        fixed[body..].copy_from_slice(&sum.to_le_bytes());
        exercise(&fixed);
    }
}

/// A `.qornn` task record (kind, parameter, seed, sequences, batch: 28 bytes, the rest
/// ignored) as `qornn eval --model` and `qornn export` read it: an error, or a task whose
/// test set stays within the record's bound; its first test batch (what `qornn export`
/// traces) is built and holds at most one record batch of sequences. MNIST records ask for
/// data in a folder that does not exist: an error naming it.
pub fn task_record(data: &[u8]) {
    use qornn::deploy::task_record::{first_test_batch, task_of, MAX_EVAL_BYTES};
    let mut fields = [0u8; 28];
    let n = data.len().min(28);
    fields[..n].copy_from_slice(&data[..n]);
    let word = |at: usize| u32::from_le_bytes(fields[at..at + 4].try_into().unwrap());
    let info = qornn_infer::format::TaskInfo {
        kind: word(0),
        parameter: word(4),
        seed: u64::from_le_bytes(fields[8..16].try_into().unwrap()),
        sequences: word(16),
        batch: word(20),
    };
    let Ok(task) = task_of(&info, Some(Path::new("/nonexistent/qornn-fuzz-data"))) else {
        return;
    };
    let per_sequence = 4 * (task.steps() * task.input_size()) as u64;
    let drawn = (info.sequences as u64).div_ceil(info.batch as u64) * info.batch as u64;
    assert!(per_sequence * drawn <= MAX_EVAL_BYTES);
    if per_sequence * info.batch as u64 > 1 << 24 {
        return; // within the bound, but keep an execution short
    }
    let batch = first_test_batch(&task, &info).expect("a record with a sequence");
    assert!(batch.batch <= info.batch as usize && batch.batch >= 1);
}

/// MNIST's IDX readers (images and labels) on any bytes: an error or the pixels, never a
/// panic, and never more memory than the file's own length.
pub fn mnist_idx(data: &[u8]) {
    let path = Path::new("fuzz.idx");
    if let Ok(pixels) = parse_images(data, path) {
        assert!(pixels.len() <= data.len());
    }
    if let Ok(labels) = parse_labels(data, path) {
        assert!(labels.len() <= data.len());
    }
}

/// The Penn Treebank reader on any text: the input split in three (train, valid, test) at
/// its first two NUL bytes; UTF-8 is checked as `Ptb::load` does.
pub fn ptb_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let train = parts.next().unwrap_or("");
    let valid = parts.next().unwrap_or("");
    let test = parts.next().unwrap_or("");
    let path = Path::new("fuzz.txt");
    if let Ok(ptb) = Ptb::from_texts((path, train), (path, valid), (path, test)) {
        let vocabulary = ptb.vocabulary.len() as u32;
        assert!(ptb
            .train
            .iter()
            .chain(&ptb.valid)
            .chain(&ptb.test)
            .all(|&t| t < vocabulary));
    }
}

fn specs() -> &'static [qornn::ModelSpec] {
    static SPECS: OnceLock<Vec<qornn::ModelSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let task = Task::Random(RandomTask {
            steps: 4,
            input: 2,
            classes: 3,
        });
        ["qornn-bjorck", "lstm"]
            .iter()
            .map(|model| {
                let config = Config {
                    model: model.parse().expect("a model name"),
                    hidden: 4,
                    ..Config::default()
                };
                config.model_spec_for(&task)
            })
            .collect()
    })
}

/// Checkpoint and weights loading (safetensors) on any bytes, against a small ORNN and a
/// small LSTM: an error naming the file, or tensors of the model's shapes.
pub fn checkpoint(data: &[u8]) {
    let path = Path::new("fuzz.safetensors");
    for spec in specs() {
        if let Ok(ckpt) = qornn::checkpoint::parse(data, path, spec) {
            let expected = spec.tensors();
            assert_eq!(ckpt.params.len(), expected.len());
            for (got, want) in ckpt.params.iter().zip(&expected) {
                assert_eq!(got.data.len(), want.data.len());
            }
        }
        let _ = qornn::weights::parse(data, path, spec);
    }
}

/// Config files on any text: parsing and validation give a config or an error naming the
/// setting, never a panic; a valid config turns into a model spec and writes back to the
/// same config.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text, Path::new("fuzz.toml")) else {
        return;
    };
    if config.validate().is_ok() {
        let again = Config::parse(&config.to_toml(), Path::new("again.toml")).unwrap();
        assert_eq!(again, config);
    }
}

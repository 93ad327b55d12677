//! The Penn Treebank on small text files written here (characters, and words through an
//! embedding): reading, refusals,
//! batches of contiguous streams, training with a carried state, and an exact resume from
//! the middle of an epoch (the carried state travels in the checkpoint).

use qornn::config::Config;
use qornn::data::ptb::{Level, Ptb, END_OF_LINE};
use qornn::data::Checksums;
use qornn::run;
use qornn::tasks::{PtbTask, Task};
use std::path::Path;
use std::sync::Arc;

/// A repetitive corpus in the PTB character format (`_` between words).
fn sentences(count: usize, shift: usize) -> String {
    let words = ["the", "cat", "sat", "on", "a", "mat", "and", "ate"];
    (0..count)
        .map(|i| {
            let line: Vec<String> = (0..5)
                .map(|k| {
                    words[(i + k + shift) % words.len()]
                        .chars()
                        .map(String::from)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            format!(" {} \n", line.join(" _ "))
        })
        .collect()
}

fn write_corpus(dir: &Path) {
    std::fs::write(dir.join("ptb.char.train.txt"), sentences(300, 0)).unwrap();
    std::fs::write(dir.join("ptb.char.valid.txt"), sentences(60, 3)).unwrap();
    std::fs::write(dir.join("ptb.char.test.txt"), sentences(60, 5)).unwrap();
}

#[test]
fn reads_tokens_with_end_of_line_and_refuses_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let ptb = Ptb::load(dir.path(), Level::Char, Checksums::Skip).unwrap();
    let mut expected: Vec<String> = "_acdehmnost".chars().map(String::from).collect();
    expected.push(END_OF_LINE.to_string());
    assert_eq!(ptb.vocabulary, expected);
    let eol = (ptb.vocabulary.len() - 1) as u32;
    assert_eq!(
        ptb.train.iter().filter(|&&t| t == eol).count(),
        300,
        "one end of line per sentence"
    );
    let decoded: String = ptb.train[..8]
        .iter()
        .map(|&t| ptb.vocabulary[t as usize].as_str())
        .collect();
    assert_eq!(decoded, "the_cat_");

    // Known names are checked against the real corpus's SHA-256.
    let msg = Ptb::load(dir.path(), Level::Char, Checksums::Verify)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("SHA-256") && msg.contains("ptb.char.train.txt"),
        "{msg}"
    );
    std::fs::write(dir.path().join("ptb.char.test.txt"), "q u i z \n").unwrap();
    let msg = Ptb::load(dir.path(), Level::Char, Checksums::Skip)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ptb.char.test.txt") && msg.contains("`q`"),
        "{msg}"
    );
}

#[test]
fn batches_are_segments_of_contiguous_streams() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let ptb = Arc::new(Ptb::load(dir.path(), Level::Char, Checksums::Skip).unwrap());
    let task = PtbTask {
        level: Level::Char,
        data: ptb.clone(),
        steps: 7,
        embedding: 0,
    };
    let (batch, v) = (3, task.vocabulary());
    let stream = ptb.train.len() / batch;
    assert_eq!(task.segments(&ptb.train, batch), (stream - 1) / 7);
    let b = task.batch(&ptb.train, batch, 2);
    let qornn::Targets::Classes(y) = &b.targets else {
        panic!("classes expected")
    };
    for col in 0..batch {
        for t in 0..7 {
            let position = col * stream + 2 * 7 + t;
            let row = &b.x[(t * batch + col) * v..(t * batch + col + 1) * v];
            assert_eq!(row.iter().sum::<f32>(), 1.0, "one-hot");
            assert_eq!(row[ptb.train[position] as usize], 1.0, "input token");
            assert_eq!(
                y[t * batch + col],
                ptb.train[position + 1] as usize,
                "target is the next token"
            );
        }
    }
}

fn small_ptb(dir: &Path, steps: u64) -> Config {
    Config {
        task: "ptb-char".parse().unwrap(),
        data_dir: Some(dir.to_path_buf()),
        verify_data: false,
        seq: 20,
        batch: 8,
        hidden: 32,
        steps,
        eval_every: 10,
        optimizer: qornn::optim::OptimizerKind::Adam,
        lr: 3e-3,
        orthogonal_lr: Some(3e-3),
        threads: 1,
        ..Config::default()
    }
}

#[test]
fn training_lowers_bits_per_char_and_resumes_mid_epoch_exactly() {
    let data = tempfile::tempdir().unwrap();
    write_corpus(data.path());
    let task = small_ptb(data.path(), 1).task().unwrap();
    let per_epoch = task.steps_per_epoch(8).unwrap();
    assert!(matches!(task, Task::Ptb(_)));
    assert!(per_epoch > 10, "several segments per epoch");
    let total = per_epoch * 2 + 5;
    let config = small_ptb(data.path(), total);

    let whole = tempfile::tempdir().unwrap();
    let expected = run::start(config.clone(), whole.path(), &mut ()).unwrap();
    let uniform_bits = (task.output_size() as f64).log2();
    let bpc = expected.test.bits_per_char.unwrap();
    assert!(
        bpc < 0.5 * uniform_bits,
        "test {bpc:.3} bits per character vs uniform {uniform_bits:.3}"
    );

    // Stop in the middle of the second epoch, then resume.
    let split = tempfile::tempdir().unwrap();
    let stop = per_epoch + per_epoch / 2;
    run::start(
        Config {
            steps: stop,
            eval_every: stop,
            ..config.clone()
        },
        split.path(),
        &mut (),
    )
    .unwrap();
    std::fs::write(split.path().join(run::CONFIG_FILE), config.to_toml()).unwrap();
    let resumed = run::resume(split.path(), &mut ()).unwrap();
    assert_eq!(resumed.test, expected.test, "resumed run differs");
}

/// Words: the same corpus at word level, through a trained float embedding.
#[test]
fn word_level_training_lowers_perplexity() {
    let data = tempfile::tempdir().unwrap();
    let words = |count, shift| sentences(count, shift).replace(' ', "").replace('_', " ");
    std::fs::write(data.path().join("ptb.train.txt"), words(300, 0)).unwrap();
    std::fs::write(data.path().join("ptb.valid.txt"), words(60, 3)).unwrap();
    std::fs::write(data.path().join("ptb.test.txt"), words(60, 5)).unwrap();
    let config = Config {
        task: "ptb-word".parse().unwrap(),
        embedding: 16,
        seq: 10,
        steps: 150,
        eval_every: 50,
        ..small_ptb(data.path(), 0)
    };
    let task = config.task().unwrap();
    assert_eq!(task.output_size(), 9, "8 words and the end of line");
    assert_eq!(task.input_size(), 16, "the recurrence reads the embedding");
    let dir = tempfile::tempdir().unwrap();
    let summary = run::start(config, dir.path(), &mut ()).unwrap();
    let perplexity = summary.test.perplexity.unwrap();
    assert!(
        perplexity < 3.0,
        "test perplexity {perplexity:.2} (uniform: 9)"
    );
    assert!(summary.test.bits_per_char.is_none());
}

/// A split too short for one segment is refused, naming `seq`, instead of a loss of 0.
#[test]
fn splits_shorter_than_one_segment_are_refused() {
    let data = tempfile::tempdir().unwrap();
    write_corpus(data.path());
    let config = Config {
        seq: 100_000,
        ..small_ptb(data.path(), 10)
    };
    let err = qornn::train::Trainer::new(config.clone(), config.task().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`seq`") && err.contains("too short"), "{err}");
}

/// Issue 22, defect 13: a training text with more distinct tokens than a vocabulary may have
/// (each a one-hot input and a read-out row) is refused naming the file, before anything
/// the size of the vocabulary is built.
#[test]
fn a_vocabulary_past_the_limit_is_refused() {
    use qornn::data::ptb::MAX_VOCABULARY;
    let words = |count: usize| (0..count).map(|i| format!("w{i}\n")).collect::<String>();
    let path = Path::new("ptb.train.txt");
    let at_limit = words(MAX_VOCABULARY - 1);
    let ptb = Ptb::from_texts((path, &at_limit), (path, "w1\n"), (path, "w2\n")).unwrap();
    assert_eq!(ptb.vocabulary.len(), MAX_VOCABULARY);
    let past = words(MAX_VOCABULARY);
    let err = Ptb::from_texts((path, &past), (path, "w1\n"), (path, "w2\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ptb.train.txt") && err.contains("distinct tokens"),
        "{err}"
    );
}

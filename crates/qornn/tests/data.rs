//! MNIST on small IDX files written here: reading (plain and gzip), refusals, the pMNIST
//! permutation, batches, and a few training steps that lower the loss.

mod common;

use flate2::write::GzEncoder;
use qornn::config::Config;
use qornn::data::mnist::{Mnist, PIXELS};
use qornn::data::Checksums;
use qornn::tasks::{MnistTask, Task, PMNIST_PERMUTATION};
use qornn::train::Trainer;
use std::io::Write;
use std::path::Path;

/// A learnable toy MNIST: image i of label k is bright on rows 2k and 2k + 1.
fn toy_split(count: usize, offset: usize) -> (Vec<u8>, Vec<u8>) {
    let labels: Vec<u8> = (0..count).map(|i| ((i + offset) % 10) as u8).collect();
    let mut images = vec![0u8; count * PIXELS];
    for (i, &label) in labels.iter().enumerate() {
        for p in 0..PIXELS {
            let row = p / 28;
            let noise = ((i * 31 + p * 7) % 50) as u8;
            images[i * PIXELS + p] = if row / 2 == label as usize {
                200 + noise
            } else {
                noise
            };
        }
    }
    (images, labels)
}

fn idx_images(images: &[u8]) -> Vec<u8> {
    let mut b = 0x803u32.to_be_bytes().to_vec();
    for v in [(images.len() / PIXELS) as u32, 28, 28] {
        b.extend(v.to_be_bytes());
    }
    b.extend(images);
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = 0x801u32.to_be_bytes().to_vec();
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Training files gzip-compressed, test files plain.
fn write_toy_mnist(dir: &Path, train: usize, test: usize) {
    let (images, labels) = toy_split(train, 0);
    std::fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        gzip(&idx_images(&images)),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx_labels(&labels)),
    )
    .unwrap();
    let (images, labels) = toy_split(test, 3);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx_images(&images)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_labels(&labels)).unwrap();
}

#[test]
fn reads_plain_and_gzip_files_and_splits_five_sixths() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_mnist(dir.path(), 120, 30);
    let mnist = Mnist::load(dir.path(), Checksums::Skip).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (120, 30));
    assert_eq!(mnist.train.images.len(), 120 * PIXELS);
    let task = MnistTask::new(mnist, false);
    assert_eq!(
        (task.train.len(), task.validation.len(), task.test.len()),
        (100, 20, 30)
    );
}

#[test]
fn broken_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_mnist(dir.path(), 12, 6);
    let err = |dir: &Path, checksums| Mnist::load(dir, checksums).unwrap_err().to_string();
    // Known names with other contents fail their SHA-256.
    let msg = err(dir.path(), Checksums::Verify);
    assert!(
        msg.contains("SHA-256") && msg.contains("train-images-idx3-ubyte.gz"),
        "{msg}"
    );
    // A truncated gzip stream.
    let path = dir.path().join("train-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let msg = err(dir.path(), Checksums::Skip);
    assert!(
        msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("gzip"),
        "{msg}"
    );
    // Label count that disagrees with the image count.
    let (_, labels) = toy_split(5, 0);
    std::fs::write(&path, gzip(&idx_labels(&labels))).unwrap();
    let msg = err(dir.path(), Checksums::Skip);
    assert!(msg.contains("5 labels for 12 images"), "{msg}");
    // A missing file.
    std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::write(&path, gzip(&idx_labels(&toy_split(12, 0).1))).unwrap();
    let msg = err(dir.path(), Checksums::Skip);
    assert!(
        msg.contains("t10k-images-idx3-ubyte") && msg.contains("--data-dir"),
        "{msg}"
    );
}

#[test]
fn embedded_permutation_is_the_literatures() {
    let r = common::load("pmnist_permutation");
    assert_eq!(r.shape("permutation"), [PIXELS]);
    let reference = r.labels("permutation");
    let ours: Vec<usize> = PMNIST_PERMUTATION.iter().map(|&p| p as usize).collect();
    assert_eq!(ours, reference);
}

#[test]
fn batches_are_pixels_in_order_or_permuted() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_mnist(dir.path(), 60, 10);
    for permuted in [false, true] {
        let task = MnistTask::new(Mnist::load(dir.path(), Checksums::Skip).unwrap(), permuted);
        let batch = task.batch(&task.test, &[4, 7]);
        assert_eq!((batch.steps, batch.batch, batch.input), (784, 2, 1));
        let qornn::Targets::Classes(y) = &batch.targets else {
            panic!("classes expected")
        };
        assert_eq!(y, &[7, 0], "labels of test images 4 and 7");
        for (col, &image) in [4usize, 7].iter().enumerate() {
            for (t, &shuffled) in PMNIST_PERMUTATION.iter().enumerate() {
                let pixel = if permuted { shuffled as usize } else { t };
                let expected = task.test.images[image * PIXELS + pixel] as f32 / 255.0;
                assert_eq!(batch.x[t * 2 + col], expected, "step {t} of image {image}");
            }
        }
    }
}

#[test]
fn a_few_epochs_of_toy_pmnist_lower_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_mnist(dir.path(), 192, 40);
    let task = Task::Mnist(MnistTask::new(
        Mnist::load(dir.path(), Checksums::Skip).unwrap(),
        true,
    ));
    let config = Config {
        task: "pmnist".parse().unwrap(),
        hidden: 24,
        batch: 16,
        epochs: 8,
        optimizer: qornn::optim::OptimizerKind::Adam,
        lr: 3e-3,
        orthogonal_lr: Some(3e-3),
        bits: Some(8),
        threads: 1,
        ..Config::default()
    };
    let mut trainer = Trainer::new(config, task.clone()).unwrap();
    assert_eq!(
        task.steps_per_epoch(16),
        Some(10),
        "160 training images, batch 16"
    );
    assert_eq!((trainer.total_steps, trainer.eval_every), (80, 10));
    let before = trainer.evaluate(false);
    while trainer.step < trainer.total_steps {
        trainer.train_step().unwrap();
    }
    let after = trainer.evaluate(false);
    assert!(
        after.loss < 0.8 * before.loss,
        "validation loss {} -> {}",
        before.loss,
        after.loss
    );
    assert!(after.accuracy.unwrap() > before.accuracy.unwrap());
}

/// Validation and test splits that leave different remainders are both evaluated (one
/// workspace per batch shape) and give the same result as batches that divide them; a
/// training split smaller than one batch is refused, naming `batch`.
#[test]
fn uneven_remainders_evaluate_and_small_splits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_toy_mnist(dir.path(), 192, 40);
    let task = Task::Mnist(MnistTask::new(
        Mnist::load(dir.path(), Checksums::Skip).unwrap(),
        false,
    ));
    let config = |batch| Config {
        task: "smnist".parse().unwrap(),
        hidden: 16,
        batch,
        bits: Some(8),
        threads: 1,
        ..Config::default()
    };
    // 32 validation and 40 test images: batches of 24 leave 8 and 16, batches of 8 none.
    let mut uneven = Trainer::new(config(24), task.clone()).unwrap();
    let mut even = Trainer::new(config(8), task.clone()).unwrap();
    for test in [false, true] {
        let (a, b) = (uneven.evaluate(test), even.evaluate(test));
        assert!((a.loss - b.loss).abs() < 1e-5 * b.loss, "{a:?} vs {b:?}");
        assert_eq!(a.accuracy, b.accuracy);
    }
    let err = Trainer::new(config(200), task).err().unwrap().to_string();
    assert!(err.contains("`batch`") && err.contains("160"), "{err}");
}

/// `--init-from` a run folder whose config names a data folder that is no longer there (a
/// run copied from another machine) starts from its best model when the new run has the
/// same task: the shapes come from the task already loaded, not from the source's data.
#[test]
fn init_from_a_moved_run_needs_not_its_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir(&first).unwrap();
    write_toy_mnist(&first, 64, 16);
    let config = Config {
        task: "pmnist".parse().unwrap(),
        data_dir: Some(first.clone()),
        verify_data: false,
        hidden: 16,
        batch: 16,
        steps: 2,
        eval_every: 2,
        threads: 1,
        ..Config::default()
    };
    let source = dir.path().join("source");
    qornn::run::start(config.clone(), &source, &mut ()).unwrap();
    std::fs::rename(&first, &second).unwrap();
    let fine_tune = Config {
        data_dir: Some(second),
        init_from: Some(source),
        ..config
    };
    qornn::run::start(fine_tune, &dir.path().join("fine-tune"), &mut ()).unwrap();
}

//! Short training runs: the models learn, quantizers and schedules reach the model.

use qornn::config::Config;
use qornn::run;

mod small_runs;
use small_runs::small_copy;

#[test]
fn small_copy_task_ends_well_below_its_baseline() {
    for (model, bits) in [
        ("qornn-bjorck", 8),
        ("qornn-projunn-d", 8),
        ("qornn-projunn-t", 8),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let summary = run::start(small_copy(model, bits), dir.path(), &mut ()).unwrap();
        let ratio = summary.test.loss / summary.baseline_loss;
        assert!(
            ratio < 0.6,
            "{model}: test loss {:.4} vs baseline {:.4}",
            summary.test.loss,
            summary.baseline_loss
        );
        for file in [
            run::CONFIG_FILE,
            run::METRICS_FILE,
            run::CHECKPOINT_FILE,
            run::BEST_FILE,
            run::SUMMARY_FILE,
        ] {
            assert!(dir.path().join(file).exists(), "{model}: {file} missing");
        }
        let lines = std::fs::read_to_string(dir.path().join(run::METRICS_FILE)).unwrap();
        assert_eq!(
            lines.lines().count(),
            3,
            "{model}: one metrics line per evaluation"
        );
    }
}

/// HadamRNN (binary W) and Block-HadamRNN (ternary W), U at 4 bits, modReLU: exactly
/// orthogonal recurrences learn the small copy task; every evaluation logs its sign flips.
#[test]
fn hadamard_recurrences_learn_the_small_copy_task() {
    for model in ["hadamrnn", "block-hadamrnn"] {
        let config = Config {
            act: qornn::Activation::Modrelu,
            block: 8,
            ..small_copy(model, 4)
        };
        let dir = tempfile::tempdir().unwrap();
        let summary = run::start(config, dir.path(), &mut ()).unwrap();
        let ratio = summary.test.loss / summary.baseline_loss;
        assert!(ratio < 0.6, "{model}: test loss {:.4}", summary.test.loss);
        let lines = std::fs::read_to_string(dir.path().join(run::METRICS_FILE)).unwrap();
        for line in lines.lines() {
            let record: run::EvalRecord = serde_json::from_str(line).unwrap();
            assert!(
                record.code_changes.is_some(),
                "{model}: no sign flips logged"
            );
            let o = record.orthogonality.unwrap();
            assert!(o.quantized_defect < 1e-4, "{model}: W is not orthogonal");
        }
        // n sign bits for W, 4 bits per U entry + its step, floats for the rest.
        let (n, d, c) = (64u64, 10u64, 9u64);
        let bits = n + n * d * 4 + 32 + 32 * (2 * n + c * n + c);
        assert_eq!(summary.size_bytes, bits.div_ceil(8), "{model}: size");
    }
}

/// Learned steps (LSQ) train: they move away from their initial value and the loss falls.
#[test]
fn learned_steps_train_and_are_stored_once() {
    let config = Config {
        range: qornn::quant::RangeRule::Lsq,
        ..small_copy("qornn-bjorck", 4)
    };
    let mut trainer = qornn::train::Trainer::new(config.clone(), config.task().unwrap()).unwrap();
    let step_of = |t: &qornn::train::Trainer, name: &str| {
        t.model
            .params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .data[0]
    };
    let initial = step_of(&trainer, "weight_ih.step");
    // The paper's step: max |U| / 2^(k-1).
    let u = &trainer.model.params[1].data;
    let max = u.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_eq!(initial, max / 8.0);
    let first = trainer.train_step().unwrap().0;
    let mut last = first;
    for _ in 0..200 {
        last = trainer.train_step().unwrap().0;
    }
    assert!(last < first, "loss {first} -> {last}");
    assert_ne!(step_of(&trainer, "weight_ih.step"), initial);
    assert!(step_of(&trainer, "weight_hh.step") > 0.0);
    let paper = Config {
        range: qornn::quant::RangeRule::Max,
        ..config.clone()
    };
    let size = |c: &Config| {
        qornn::Model::new(
            c.model_spec_for(&c.task().unwrap()),
            &mut rand::thread_rng(),
        )
        .size_bytes()
    };
    assert_eq!(size(&config), size(&paper), "a learned step is stored once");
}

/// An RNN's `W` under LSQ: its step gets a gradient. (The cell's `dL/dq(W)` used to
/// reach `W` only after LSQ's backward, which then saw zeros.)
#[test]
fn rnn_learned_step_of_w_gets_a_gradient() {
    let config = Config {
        range: qornn::quant::RangeRule::Lsq,
        ..small_copy("rnn", 4)
    };
    let mut trainer = qornn::train::Trainer::new(config.clone(), config.task().unwrap()).unwrap();
    trainer.train_step().unwrap();
    let m = &trainer.model;
    let step = m.params.iter().position(|t| t.name == "weight_hh.step");
    let grad = &m.grads[step.expect("the RNN's W has a learned step")];
    assert!(
        grad.iter().any(|&g| g != 0.0),
        "no gradient reached W's step"
    );
}

#[test]
fn adding_task_lowers_its_loss() {
    let config = Config {
        task: "adding".parse().unwrap(),
        length: 30,
        hidden: 32,
        batch: 32,
        steps: 1200,
        eval_every: 400,
        eval_sequences: 256,
        optimizer: qornn::optim::OptimizerKind::Adam,
        lr: 3e-3,
        orthogonal_lr: Some(3e-3),
        bits: Some(8),
        threads: 1,
        ..Config::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = run::start(config, dir.path(), &mut ()).unwrap();
    assert!(
        summary.test.accuracy.is_none(),
        "regression has no accuracy"
    );
    // Measured: 0.0074 against the baseline 1/6.
    assert!(
        summary.test.loss < 0.2 * summary.baseline_loss,
        "test MSE {} vs baseline {}",
        summary.test.loss,
        summary.baseline_loss
    );
}

/// Every baseline cell, quantized to 8 bits, learns the adding task (T = 20).
#[test]
fn baselines_learn_the_adding_task() {
    for model in ["rnn", "lstm", "gru", "fastrnn", "fastgrnn"] {
        let config = Config {
            task: "adding".parse().unwrap(),
            model: model.parse().unwrap(),
            bits: Some(8),
            length: 20,
            hidden: 32,
            batch: 32,
            steps: 1500,
            eval_every: 500,
            eval_sequences: 256,
            optimizer: qornn::optim::OptimizerKind::Adam,
            lr: 3e-3,
            threads: 1,
            ..Config::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let summary = run::start(config, dir.path(), &mut ()).unwrap();
        let ratio = summary.test.loss / summary.baseline_loss;
        assert!(
            ratio < 0.6,
            "{model}: test MSE {:.4} vs baseline {:.4}",
            summary.test.loss,
            summary.baseline_loss
        );
    }
}

/// Sizes count k bits per quantized weight, one 32-bit step per tensor (or row), and 32
/// bits per float: for n = 64 on the copy task (d = 10, C = 9).
#[test]
fn model_sizes_count_bits_as_stored() {
    let spec = |bits: Option<u32>, granularity| {
        let config = Config {
            hidden: 64,
            bits,
            granularity,
            ..Config::default()
        };
        config.model_spec_for(&config.task().unwrap())
    };
    use qornn::quant::Granularity::{PerRow, PerTensor};
    let size = |bits, granularity| {
        let model = qornn::Model::new(spec(bits, granularity), &mut rand::thread_rng());
        (model.num_params(), model.size_bytes())
    };
    let floats = 64 + 9 * 64 + 9; // b, V, c
    let quantized = 64 * 64 + 64 * 10; // W, U
    assert_eq!(
        size(Some(32), PerTensor),
        (quantized + floats, 4 * (quantized + floats) as u64)
    );
    let bits = quantized * 4 + 2 * 32 + floats * 32;
    assert_eq!(size(Some(4), PerTensor).1, bits.div_ceil(8) as u64);
    let bits = quantized * 4 + 2 * 64 * 32 + floats * 32;
    assert_eq!(size(Some(4), PerRow).1, bits.div_ceil(8) as u64);
}

/// Schedules a user can combine: a bit-width schedule (8 bits, then 4; only models at the
/// final width can be the best), a linear warm-up, and a start from another run's best
/// model (`init_from`).
#[test]
fn bit_width_schedule_warm_up_and_init_from() {
    let config = Config {
        steps: 400,
        eval_every: 100,
        warmup_steps: 200,
        bits_schedule: vec![(0, 8), (200, 4)].into(),
        ..small_copy("qornn-bjorck", 4)
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = run::start(config.clone(), dir.path(), &mut ()).unwrap();
    assert!(
        summary.best_step >= 300,
        "best at step {}",
        summary.best_step
    );
    let records: Vec<run::EvalRecord> = std::fs::read_to_string(dir.path().join(run::METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Warm-up: the learning rate at step 100 is (100 + 1) / 200 of lr.
    assert!((records[0].lr - config.lr * 101.0 / 200.0).abs() < 1e-12);
    assert_eq!(records[3].lr, config.lr);
    // q(W) at 8 bits (steps 100, 200) is closer to orthogonal than at 4 (300, 400).
    let defect = |r: &run::EvalRecord| r.orthogonality.unwrap().quantized_defect;
    assert!(defect(&records[1]) < 0.5 * defect(&records[2]));

    // A 4-bit run started from this run's best model holds its tensors at step 0.
    let source = run::best_weights(dir.path(), None).unwrap();
    let from = Config {
        init_from: Some(dir.path().to_path_buf()),
        bits_schedule: Default::default(),
        warmup_steps: 0,
        ..config
    };
    let trainer = qornn::train::Trainer::new(from.clone(), from.task().unwrap()).unwrap();
    assert_eq!(trainer.model.params, source);
    // With learned steps the source lacks, they start from the loaded U (the paper's
    // step max |U| / 2^(k-1)), not from the random initialisation's.
    let lsq = Config {
        range: qornn::quant::RangeRule::Lsq,
        ..from.clone()
    };
    let trainer = qornn::train::Trainer::new(lsq.clone(), lsq.task().unwrap()).unwrap();
    let u = &source.iter().find(|t| t.name == "weight_ih").unwrap().data;
    let max = u.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let step = trainer
        .model
        .params
        .iter()
        .find(|t| t.name == "weight_ih.step")
        .unwrap();
    assert_eq!(step.data[0], max / 8.0);
    let missing = Config {
        init_from: Some(dir.path().join("nowhere")),
        ..from
    };
    let err = qornn::train::Trainer::new(missing.clone(), missing.task().unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nowhere"), "{err}");
}

/// `rounding = "orthogonal"` reaches the model: its q(W) is closer to orthogonal than the
/// nearest rounding of the same W (a Haar-orthogonal init at 4 bits).
#[test]
fn orthogonal_rounding_reaches_the_model() {
    use qornn::quant::Rounding;
    let defect = |rounding| {
        let config = Config {
            init: qornn::init::Init::Orthogonal,
            rounding,
            ..small_copy("qornn-bjorck", 4)
        };
        let mut trainer =
            qornn::train::Trainer::new(config.clone(), config.task().unwrap()).unwrap();
        trainer.evaluate(false);
        trainer.orthogonality().unwrap().quantized_defect
    };
    let (nearest, orthogonal) = (defect(Rounding::Nearest), defect(Rounding::Orthogonal));
    assert!(orthogonal < 0.8 * nearest, "{nearest} -> {orthogonal}");
}

/// `freeze_recurrent_at`: the recurrent parameter (here the rotation angles) changes before
/// the freezing step and not after it, while the other tensors train on; a model without an
/// orthogonal recurrent parameter refuses the setting.
#[test]
fn a_frozen_recurrent_parameter_stays_while_the_rest_trains() {
    let config = Config {
        freeze_recurrent_at: Some(3),
        ..small_copy("qornn-rotations", 4)
    };
    let task = config.task().unwrap();
    let mut trainer = qornn::train::Trainer::new(config, task).unwrap();
    let initial = trainer.model.params.clone();
    for _ in 0..3 {
        trainer.train_step().unwrap();
    }
    let at_freeze = trainer.model.params.clone();
    assert_ne!(
        at_freeze[0].data, initial[0].data,
        "the angles did not train"
    );
    for _ in 0..3 {
        trainer.train_step().unwrap();
    }
    let after = &trainer.model.params;
    assert_eq!(after[0].data, at_freeze[0].data, "the frozen angles moved");
    assert!(
        after[1..]
            .iter()
            .zip(&at_freeze[1..])
            .any(|(a, b)| a.data != b.data),
        "nothing else trained"
    );
    let lstm = Config {
        freeze_recurrent_at: Some(3),
        ..small_copy("lstm", 32)
    };
    let message = lstm.validate().unwrap_err().to_string();
    assert!(message.contains("freeze_recurrent_at"), "{message}");
}

/// `teacher` reaches the loss: a student started from its teacher's own best model, taught
/// by it alone (distill_weight 1), starts at a zero loss (KL of a distribution with itself),
/// where the labels' cross-entropy of that model is well above zero; a teacher of another
/// task and a teacher for value targets are refused, naming `teacher`.
#[test]
fn a_student_started_from_its_teacher_has_nothing_to_learn_from_it() {
    let config = Config {
        steps: 40,
        eval_every: 20,
        ..small_copy("hadamrnn", 4)
    };
    let dir = tempfile::tempdir().unwrap();
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let first_loss = |distill_weight: f64| {
        let student = Config {
            init_from: Some(dir.path().to_path_buf()),
            teacher: Some(dir.path().to_path_buf()),
            distill_weight,
            ..config.clone()
        };
        let mut trainer =
            qornn::train::Trainer::new(student.clone(), student.task().unwrap()).unwrap();
        trainer.train_step().unwrap().0
    };
    let (taught, labelled) = (first_loss(1.0), first_loss(0.0));
    assert!(taught.abs() < 1e-5, "loss against itself {taught}");
    assert!(labelled > 0.1, "the labels' cross-entropy {labelled}");
    let mixed = first_loss(0.5);
    assert!(
        (mixed - 0.5 * labelled).abs() < 1e-4,
        "{mixed} vs {labelled} / 2"
    );

    let other_task = Config {
        task: "adding".parse().unwrap(),
        teacher: Some(dir.path().to_path_buf()),
        ..config.clone()
    };
    let err = other_task.validate().unwrap_err().to_string();
    assert!(err.contains("teacher"), "{err}");
    let language_model = Config {
        task: "ptb-char".parse().unwrap(),
        ..other_task
    };
    let err = language_model.validate().unwrap_err().to_string();
    assert!(err.contains("teacher") && err.contains("language"), "{err}");
    let adding = qornn::Task::Adding(qornn::tasks::AddingTask::new(50));
    let err = qornn::distill::Teacher::load(dir.path(), &adding)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("teacher") && err.contains("copy"), "{err}");
}

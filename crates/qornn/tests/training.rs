//! Short training runs: the models learn, and a resumed run equals an uninterrupted one.

use qornn::config::Config;
use qornn::run;

/// A copy task small enough to learn in about a second on one core.
fn small_copy(model: &str, bits: u32) -> Config {
    Config {
        delay: 10,
        hidden: 64,
        batch: 32,
        steps: 600,
        eval_every: 200,
        eval_sequences: 256,
        optimizer: qornn::optim::OptimizerKind::Adam,
        lr: 3e-3,
        orthogonal_lr: Some(3e-3),
        model: model.parse().unwrap(),
        bits: Some(bits),
        threads: 1,
        ..Config::default()
    }
}

/// An 8-bit copy run of `steps` steps evaluated every 10: a finished run folder to test
/// what is done with one.
fn tiny_run(steps: u64) -> Config {
    Config {
        steps,
        eval_every: 10,
        ..small_copy("qornn-bjorck", 8)
    }
}

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

/// Block rotations at 2 and 4 bits (W's cosines and sines as codes, one step per block):
/// q(W) stays exactly orthogonal while the angles train, the small copy task is learned,
/// the size counts two codes per block, and `qornn quantize` stores each block as its pair
/// of codes with a step mantissa per row: bit-exact with the twin, within reach of the
/// float model at A = 12.
#[test]
fn rotation_recurrences_learn_the_small_copy_task() {
    for bits in [2, 4] {
        let config = Config {
            act: qornn::Activation::Modrelu,
            ..small_copy("qornn-rotations", bits)
        };
        let dir = tempfile::tempdir().unwrap();
        let summary = run::start(config, dir.path(), &mut ()).unwrap();
        let ratio = summary.test.loss / summary.baseline_loss;
        assert!(
            ratio < 0.6,
            "{bits} bits: test loss {:.4}",
            summary.test.loss
        );
        let lines = std::fs::read_to_string(dir.path().join(run::METRICS_FILE)).unwrap();
        for line in lines.lines() {
            let record: run::EvalRecord = serde_json::from_str(line).unwrap();
            let o = record.orthogonality.unwrap();
            assert!(
                o.quantized_defect < 1e-4,
                "{bits} bits: W is not orthogonal"
            );
            assert!(
                record.code_changes.is_some(),
                "{bits} bits: no code changes logged"
            );
        }
        // 32 blocks of two codes, U's codes and step, floats for the rest.
        let (n, d, c) = (64u64, 10u64, 9u64);
        let size = n * bits as u64 + n * d * bits as u64 + 32 + 32 * (2 * n + c * n + c);
        assert_eq!(summary.size_bytes, size.div_ceil(8), "{bits} bits: size");
        let (report, path) =
            qornn::deploy::quantize::quantize_run(dir.path(), Some(12), 16, None, None, None)
                .unwrap();
        assert_integer_model_is_faithful(&report, bits);
        let model = qornn::deploy::model_file::IntegerModel::load(&path).unwrap();
        let q = &model.recurrence;
        assert!(q.rotations && q.w_step.is_per_row(), "{bits} bits");
        assert_eq!(q.w_packed.len(), (64 * bits as usize).div_ceil(8));
    }
}

/// What every integer model owes its run: integer = twin bit for bit, and at A = 12 a
/// loss within 5 % of the float model's.
fn assert_integer_model_is_faithful(report: &qornn::deploy::quantize::PtqReport, what: u32) {
    assert!(report.bit_exact, "{what}: not bit-exact with the twin");
    let (float, integer) = (report.float.loss, report.integer.loss);
    assert!(
        (integer - float).abs() < 0.05 * float,
        "{what}: integer loss {integer} against float {float}"
    );
}

/// A per-row quantizer's W and U have a step per row too: `qornn quantize` stores a
/// mantissa per row for each (the shift shared), bit-exact with the twin.
#[test]
fn per_row_models_run_in_integers_with_a_mantissa_per_row() {
    let config = Config {
        granularity: qornn::quant::Granularity::PerRow,
        steps: 20,
        eval_every: 20,
        ..small_copy("qornn-bjorck", 4)
    };
    let dir = tempfile::tempdir().unwrap();
    run::start(config, dir.path(), &mut ()).unwrap();
    let (report, path) =
        qornn::deploy::quantize::quantize_run(dir.path(), Some(12), 16, None, None, None).unwrap();
    assert_integer_model_is_faithful(&report, 4);
    let model = qornn::deploy::model_file::IntegerModel::load(&path).unwrap();
    let q = &model.recurrence;
    assert!(q.w_step.is_per_row() && q.u_step.is_per_row());
    let distinct = |m: &[i32]| m.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct(&q.w_step.mantissas) > 1 && distinct(&q.u_step.mantissas) > 1);
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

/// Stop after 200 of 400 steps (the config's step count then raised), resume, and compare
/// every evaluation with an uninterrupted run: equal to the last bit.
#[test]
fn resumed_run_matches_uninterrupted_run() {
    for (model, range) in [
        ("qornn-bjorck", qornn::quant::RangeRule::Max),
        ("qornn-projunn-t", qornn::quant::RangeRule::Max),
        ("qornn-bjorck", qornn::quant::RangeRule::Lsq),
    ] {
        let config = Config {
            steps: 400,
            eval_every: 100,
            threads: 2,
            range,
            ..small_copy(model, 4)
        };
        let whole = tempfile::tempdir().unwrap();
        let expected = run::start(config.clone(), whole.path(), &mut ()).unwrap();

        let split = tempfile::tempdir().unwrap();
        run::start(
            Config {
                steps: 200,
                ..config.clone()
            },
            split.path(),
            &mut (),
        )
        .unwrap();
        std::fs::write(split.path().join(run::CONFIG_FILE), config.to_toml()).unwrap();
        let resumed = run::resume(split.path(), &mut ()).unwrap();

        assert_eq!(
            resumed.test, expected.test,
            "{model}: test evaluation differs after resume"
        );
        let strip_time = |dir: &std::path::Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(dir.join(run::METRICS_FILE))
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("seconds");
                    v
                })
                .collect()
        };
        assert_eq!(
            strip_time(split.path()),
            strip_time(whole.path()),
            "{model}: metrics differ after resume"
        );
    }
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

/// `qornn quantize` of a Hadamard recurrence, of a model with learned steps and of one with
/// orthogonality-aware rounding: the integer engine takes the model's own codes (exact
/// `±1 / sqrt(m)` for W, the learned steps, the rounding chosen), agrees with its simulated twin bit for bit, and at A = 16 keeps the float
/// model's accuracy within 2 points.
#[test]
fn hadamard_and_learned_step_models_run_in_integers() {
    use qornn::quant::Rounding;
    for (model, range, rounding) in [
        ("hadamrnn", qornn::quant::RangeRule::Max, Rounding::Nearest),
        (
            "qornn-bjorck",
            qornn::quant::RangeRule::Lsq,
            Rounding::Nearest,
        ),
        (
            "qornn-bjorck",
            qornn::quant::RangeRule::Max,
            Rounding::Orthogonal,
        ),
    ] {
        let config = Config {
            act: qornn::Activation::Modrelu,
            steps: 400,
            range,
            rounding,
            ..small_copy(model, 4)
        };
        let dir = tempfile::tempdir().unwrap();
        run::start(config, dir.path(), &mut ()).unwrap();
        let (report, _) =
            qornn::deploy::quantize::quantize_run(dir.path(), Some(16), 64, None, None, None)
                .unwrap();
        assert!(report.bit_exact, "{model}: integer and simulated differ");
        let (float, integer) = (
            report.float.accuracy.unwrap(),
            report.integer.accuracy.unwrap(),
        );
        assert!(
            (float - integer).abs() < 0.02,
            "{model}: {float} vs {integer}"
        );
        // At A = 16 the integer model's loss is the float model's to 2 % (measured on the
        // README's copy models: equal to 4 decimals).
        let (float_loss, integer_loss) = (report.float.loss, report.integer.loss);
        assert!(
            (float_loss - integer_loss).abs() < 0.02 * float_loss,
            "{model}: loss {float_loss} vs {integer_loss}"
        );
    }
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
    let source = run::best_weights(dir.path()).unwrap();
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

/// Issue 22, defect 2: a recurrent learning rate of 1e20 made the recurrent parameter NaN,
/// the quantizer mapped NaN to code 0, the loss stayed finite, and NaN weights were written
/// over `checkpoint.safetensors` and `best.safetensors`. Now the run stops with an error
/// naming the step, and every checkpoint left on disk is finite and resumes.
#[test]
fn a_diverged_run_stops_and_keeps_its_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        steps: 20,
        eval_every: 1,
        orthogonal_lr: Some(1e20),
        ..small_copy("qornn-bjorck", 4)
    };
    let error = run::start(config.clone(), dir.path(), &mut ()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("step") && text.contains("not finite"),
        "{text}"
    );
    let spec = config.model_spec_for(&config.task().unwrap());
    let mut saved = 0;
    for file in [run::CHECKPOINT_FILE, run::BEST_FILE] {
        let path = dir.path().join(file);
        if !path.exists() {
            continue;
        }
        saved += 1;
        let ckpt = qornn::checkpoint::load(&path, &spec).unwrap();
        for t in &ckpt.params {
            assert!(
                t.data.iter().all(|v| v.is_finite()),
                "{file}: {} is not finite",
                t.name
            );
        }
    }
    assert!(
        saved > 0,
        "the steps before the divergence were checkpointed"
    );
    // The last good checkpoint resumes (and stops again at the same step).
    let again = run::resume(dir.path(), &mut ()).unwrap_err().to_string();
    assert!(again.contains("not finite"), "{again}");
}

/// Issue 21: a model trained with its activations (`act_bits`) and read-out
/// (`readout_bits`) fake-quantized as the integer engine computes them is quantized with
/// the run's own A, learned hidden step and read-out width by default, and the integer model
/// (bit-exact with its twin) scores as the run's own evaluation did, within a small bound:
/// the remaining differences are the weight steps' 12-bit mantissas and the biases'
/// rounding to the accumulator's unit.
#[test]
fn a_model_trained_in_integer_arithmetic_keeps_its_accuracy_in_integers() {
    use qornn::quant::activation::{ActRange, HIDDEN_STEP};
    for (model, act, act_range) in [
        (
            "qornn-bjorck",
            qornn::Activation::Modrelu,
            ActRange::Calibrated,
        ),
        ("hadamrnn", qornn::Activation::Modrelu, ActRange::Learned),
        ("qornn-bjorck", qornn::Activation::Relu, ActRange::Learned),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            act,
            act_bits: Some(8),
            act_bits_from: 200,
            act_range,
            readout_bits: Some(4),
            ..small_copy(model, 4)
        };
        let summary = run::start(config, dir.path(), &mut ()).unwrap();
        // The step starts at a power of two (an integer log2); learned, it moves.
        let best = run::best_weights(dir.path()).unwrap();
        let log2_step = best.iter().find(|t| t.name == HIDDEN_STEP).unwrap().data[0];
        let moved = log2_step != log2_step.round();
        assert_eq!(
            moved,
            act_range == ActRange::Learned,
            "{model}: log2 step {log2_step}"
        );
        assert!(
            summary.best_step > 200,
            "{model}: the best model has quantized activations"
        );
        let (report, _) =
            qornn::deploy::quantize::quantize_run(dir.path(), None, 64, None, None, None).unwrap();
        assert_eq!(report.act_bits, 8);
        assert_eq!(report.readout_bits, Some(4));
        assert_eq!(report.hidden_range, Some("trained"));
        assert!(report.bit_exact, "{model}");
        assert!(
            (report.float.loss - summary.test.loss).abs() < 1e-9,
            "{model}: quantize's float evaluation is the run's own"
        );
        let (float, integer) = (
            report.float.accuracy.unwrap(),
            report.integer.accuracy.unwrap(),
        );
        assert!(
            (float - integer).abs() <= 0.02
                && (report.float.loss - report.integer.loss).abs() < 0.01,
            "{model} {act:?}: float {:.4} / {float:.4}, integer {:.4} / {integer:.4}",
            report.float.loss,
            report.integer.loss
        );
    }
}

/// Issue 22, defect 20: `qornn train --out DIR` on a finished run whose checkpoints were
/// removed started afresh and overwrote its metrics and summary. The folder is refused
/// while it holds any of a run's results, and they stay as they were.
#[test]
fn a_finished_run_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_run(20);
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let read = |f: &str| std::fs::read(dir.path().join(f)).unwrap();
    let (metrics, summary) = (read(run::METRICS_FILE), read(run::SUMMARY_FILE));
    for file in [run::CHECKPOINT_FILE, run::BEST_FILE] {
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
    let err = run::start(config.clone(), dir.path(), &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds a run"), "{err}");
    std::fs::remove_file(dir.path().join(run::SUMMARY_FILE)).unwrap();
    let err = run::start(config, dir.path(), &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains(run::METRICS_FILE), "{err}");
    assert_eq!(read(run::METRICS_FILE), metrics);
    assert!(!summary.is_empty());
}

/// A checkpoint's bytes with one metadata entry replaced, or one tensor's shape.
fn rewritten(bytes: &[u8], meta: Option<(&str, &str)>, reshape: Option<&str>) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    use safetensors::SafeTensors;
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut info = header.metadata().clone().unwrap();
    if let Some((key, value)) = meta {
        info.insert(key.into(), value.into());
    }
    let st = SafeTensors::deserialize(bytes).unwrap();
    let tensors: Vec<(String, TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            if reshape == Some(name.as_str()) {
                let shape = view.shape().iter().rev().copied().collect();
                let view = TensorView::new(view.dtype(), shape, view.data()).unwrap();
                (name, view)
            } else {
                (name, view)
            }
        })
        .collect();
    safetensors::serialize(tensors, Some(info)).unwrap()
}

/// Issue 22, defects 15 and 16: a checkpoint's `step` of 1e30 skipped training and
/// reported success, a negative or NaN one restarted and dropped metrics, a NaN
/// `best_val_loss` froze the best model, and a transposed tensor loaded (its byte length
/// matched). Each is refused when the checkpoint is read, naming the entry.
#[test]
fn checkpoints_with_impossible_bookkeeping_or_shapes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_run(10);
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let spec = config.model_spec_for(&config.task().unwrap());
    let path = dir.path().join(run::CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let load = |b: Vec<u8>| {
        std::fs::write(&path, b).unwrap();
        qornn::checkpoint::load(&path, &spec)
    };
    assert!(load(rewritten(&bytes, None, None)).is_ok());
    for (key, value) in [
        ("step", "1e30"),
        ("step", "-3"),
        ("step", "NaN"),
        ("best_val_loss", "NaN"),
        ("best_val_loss", "-1"),
        ("best_step", "11"),
        ("seconds", "inf"),
        ("updates", "2.5"),
    ] {
        let err = load(rewritten(&bytes, Some((key, value)), None))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key} = {value}: {err}");
    }
    let err = load(rewritten(&bytes, None, Some("param.weight_ih")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("param.weight_ih") && err.contains("shape"),
        "{err}"
    );
}

/// Issue 22, defect 9: `qornn report` spun at 100 % CPU when a loss was about 2e307 or more,
/// or a size 0 (the log axes' tick search). It now draws what an axis can hold and returns.
#[test]
fn reports_of_absurd_values_finish() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = tiny_run(20);
    run::start(config, &run_dir, &mut ()).unwrap();
    let edit = |file: &str, from: &str, to: &str| {
        let path = run_dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let re = |t: &str, key: &str| -> String {
            let start = t.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
            let end = start + t[start..].find([',', '\n', '}']).unwrap();
            format!("{}{}{}", &t[..start], to.trim(), &t[end..])
        };
        std::fs::write(&path, re(&text, from)).unwrap();
    };
    edit(run::METRICS_FILE, "val_loss", "2e307");
    edit(run::SUMMARY_FILE, "size_bytes", "0");
    edit(run::SUMMARY_FILE, "loss", "1.7e308");
    let out = dir.path().join("report");
    let (done, finished) = std::sync::mpsc::channel();
    let paths = vec![run_dir.clone()];
    std::thread::spawn(move || {
        let report = qornn::report::Report::collect(&paths).unwrap();
        done.send(report.write(&out).map(|files| files.len()))
            .unwrap();
    });
    let written = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the report finishes");
    assert!(written.unwrap() > 0);
}

/// Issue 22, defect 18: the same run given twice to `qornn report` (by two spellings of its
/// path) counted as two seeds. It is read once.
#[test]
fn a_run_named_twice_is_one_run_in_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = tiny_run(10);
    run::start(config, &run_dir, &mut ()).unwrap();
    let again = dir.path().join(".").join("run");
    let report =
        qornn::report::Report::collect(&[run_dir.clone(), again, dir.path().into()]).unwrap();
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.groups.len(), 1);
    assert_eq!(report.groups[0].runs.len(), 1);
}

/// Issue 22, defect 17: `--init-from` a run of another size copied only what fitted (here
/// the read-out's bias) and trained on silently. It is refused when none of the recurrence
/// comes across, naming what did.
#[test]
fn init_from_a_run_of_another_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let config = tiny_run(10);
    run::start(config.clone(), &source, &mut ()).unwrap();
    let other = Config {
        hidden: 32,
        init_from: Some(source.clone()),
        ..config.clone()
    };
    let err = run::start(other, &dir.path().join("other"), &mut ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recurrent tensors") && err.contains("readout.bias"),
        "{err}"
    );
    let same = Config {
        init_from: Some(source),
        ..config
    };
    run::start(same, &dir.path().join("same"), &mut ()).unwrap();
}

/// Issue 22, defect 14: a run's `config.toml` edited between a checkpoint and `--resume`
/// was used silently. The checkpoint carries the settings it was trained with; a resumed
/// run may change only steps, epochs, threads and the data folder, and is refused naming
/// any other setting that differs.
#[test]
fn a_run_resumes_only_with_the_settings_it_was_trained_with() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_run(10);
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let edited = Config {
        lr: 0.5,
        hidden: config.hidden,
        ..config.clone()
    };
    let err = run::resume_with(dir.path(), edited, &mut ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr") && !err.contains("hidden,"), "{err}");
    let on_disk = Config::from_file(&dir.path().join(run::CONFIG_FILE)).unwrap();
    assert_eq!(
        on_disk.lr,
        small_copy("qornn-bjorck", 8).lr,
        "a refused resume writes nothing"
    );
    let longer = Config {
        steps: 20,
        threads: 2,
        ..config
    };
    let summary = run::resume_with(dir.path(), longer, &mut ()).unwrap();
    assert_eq!(summary.steps, 20);
}

/// Issue 22, defect 12: sizes had no upper bound, and the process aborted allocating after
/// creating the run folder. A size past its bound, or a configuration whose activations
/// would take more than 8 GiB, is refused naming the setting, and nothing is created.
#[test]
fn oversized_configurations_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let huge = Config {
        hidden: 100_000,
        ..tiny_run(10)
    };
    let err = run::start(huge, &out, &mut ()).unwrap_err().to_string();
    assert!(err.contains("hidden") && err.contains("100000"), "{err}");
    let heavy = Config {
        delay: 1000,
        batch: 20_000,
        hidden: 1024,
        ..tiny_run(10)
    };
    let err = run::start(heavy, &out, &mut ()).unwrap_err().to_string();
    assert!(err.contains("GiB") && err.contains("batch 20000"), "{err}");
    assert!(!out.exists(), "nothing was created");
}

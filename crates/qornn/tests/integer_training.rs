//! Models for integers: trained (Hadamard, rotations, per-row steps, activations at A
//! bits), quantized, and faithful to their run in integers.

use qornn::config::Config;
use qornn::run;

mod small_runs;
use small_runs::small_copy;

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

/// The LRU's diagonal recurrence (rotation blocks with a learned radius below 1): it learns
/// the small copy task, its radii stay below 1 (so `q(W)` is not orthogonal),
/// the size counts one float per radius, and `qornn quantize` stores each block as its
/// codes with the radius in the rows' step: bit-exact with the twin, within reach of the
/// float model at A = 12.
#[test]
fn lru_blocks_learn_the_small_copy_task_and_run_in_integers() {
    let config = Config {
        act: qornn::Activation::Modrelu,
        ..small_copy("lru", 4)
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = run::start(config, dir.path(), &mut ()).unwrap();
    let ratio = summary.test.loss / summary.baseline_loss;
    assert!(ratio < 0.6, "test loss {:.4}", summary.test.loss);
    let lines = std::fs::read_to_string(dir.path().join(run::METRICS_FILE)).unwrap();
    let last: run::EvalRecord = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let o = last.orthogonality.unwrap();
    assert!(
        o.quantized_sigma_max < 1.0 && o.quantized_sigma_min > 0.5,
        "radii {} to {}",
        o.quantized_sigma_min,
        o.quantized_sigma_max
    );
    // 32 blocks of two 4-bit codes and a float radius, U's codes and step, floats for the
    // rest.
    let (n, d, c) = (64u64, 10u64, 9u64);
    let size = n * 4 + 32 * 32 + n * d * 4 + 32 + 32 * (2 * n + c * n + c);
    assert_eq!(summary.size_bytes, size.div_ceil(8), "size");
    let (report, path) =
        qornn::deploy::quantize::quantize_run(dir.path(), Some(12), 16, None, None, None).unwrap();
    assert_integer_model_is_faithful(&report, 4);
    let model = qornn::deploy::model_file::IntegerModel::load(&path).unwrap();
    let q = &model.recurrence;
    assert!(q.rotations && q.w_step.is_per_row());
    let distinct = q
        .w_step
        .mantissas
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(distinct > 8, "{distinct} distinct row steps");
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

/// Issue 21: a model trained with its activations (`act_bits`) and read-out
/// (`readout_bits`) fake-quantized as the integer engine computes them is quantized with
/// the run's own A, learned hidden step and read-out width by default, and the integer model
/// (bit-exact with its twin) scores as the run's own evaluation did, within a small bound:
/// the remaining differences are the weight steps' 12-bit mantissas and the biases'
/// rounding to the accumulator's unit. A continuous step's mantissa, folded into U, the
/// biases and V, keeps it so.
#[test]
fn a_model_trained_in_integer_arithmetic_keeps_its_accuracy_in_integers() {
    use qornn::quant::activation::{ActRange, ActRounding, HIDDEN_STEP};
    use qornn::Activation::{Modrelu, Relu};
    use ActRange::{Calibrated, Continuous, Learned};
    use ActRounding::{Nearest, Stochastic};
    for (model, act, act_range, act_train_rounding) in [
        ("qornn-bjorck", Modrelu, Calibrated, Nearest),
        ("hadamrnn", Modrelu, Learned, Nearest),
        ("qornn-bjorck", Relu, Learned, Nearest),
        // Trained with stochastic rounding, evaluated (and run in integers) to nearest.
        ("hadamrnn", Modrelu, Calibrated, Stochastic),
        ("hadamrnn", Modrelu, Continuous, Nearest),
        ("qornn-bjorck", Relu, Continuous, Nearest),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            act,
            act_bits: Some(8),
            act_bits_from: 200,
            act_range,
            act_train_rounding,
            act_hidden_frac: None,
            act_hidden_cover: None,
            readout_bits: Some(4),
            ..small_copy(model, 4)
        };
        let summary = run::start(config, dir.path(), &mut ()).unwrap();
        // The step starts at a power of two (an integer log2); learned, it moves.
        let best = run::best_weights(dir.path(), None).unwrap();
        let log2_step = best.iter().find(|t| t.name == HIDDEN_STEP).unwrap().data[0];
        let moved = log2_step != log2_step.round();
        assert_eq!(
            moved,
            act_range != ActRange::Calibrated,
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
        // Learned, the step is 2^round(l); continuous, 2^l = m 2^-f_h with m folded.
        let mantissa = 2f64.powf(log2_step as f64 - (log2_step as f64).floor());
        match act_range {
            Continuous => assert!(
                (report.hidden_mantissa.unwrap() - mantissa).abs() < 1e-6
                    && report.hidden_frac == -(log2_step.floor() as i32),
                "{model}: {:?} 2^-{} for log2 step {log2_step}",
                report.hidden_mantissa,
                report.hidden_frac
            ),
            _ => assert_eq!(report.hidden_mantissa, None),
        }
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

/// `act_hidden_frac` starts (and, calibrated, holds) the hidden step at `2^-F` (and
/// `act_hidden_cover` where its codes hold a fraction of the state) instead of
/// the least-squares power of two, and `qornn quantize` takes it; without `act_bits`, or
/// past the engine's fraction bound, it is refused.
#[test]
fn the_hidden_step_can_be_set_in_fraction_bits() {
    use qornn::quant::activation::HIDDEN_STEP;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        act: qornn::Activation::Modrelu,
        act_bits: Some(8),
        act_hidden_frac: Some(5),
        steps: 20,
        eval_every: 10,
        eval_sequences: 64,
        ..small_copy("hadamrnn", 4)
    };
    run::start(config.clone(), dir.path(), &mut ()).unwrap();
    let best = run::best_weights(dir.path(), None).unwrap();
    let log2_step = best.iter().find(|t| t.name == HIDDEN_STEP).unwrap().data[0];
    assert_eq!(log2_step, -5.0);
    let (report, _) =
        qornn::deploy::quantize::quantize_run(dir.path(), None, 64, None, None, None).unwrap();
    assert_eq!((report.hidden_frac, report.bit_exact), (5, true));
    for (act_bits, frac) in [(None, 5), (Some(8), 63), (Some(8), -63)] {
        let bad = Config {
            act_bits,
            act_hidden_frac: Some(frac),
            ..config.clone()
        };
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("act_hidden_frac"), "{error}");
    }
    // `act_hidden_cover`: the step whose codes hold that fraction of the state, held and
    // taken by `qornn quantize`; a fraction outside (0, 1] or without act_bits is refused.
    let covered = tempfile::tempdir().unwrap();
    let config = Config {
        act_hidden_frac: None,
        act_hidden_cover: Some(0.5),
        ..config
    };
    run::start(config.clone(), covered.path(), &mut ()).unwrap();
    let best = run::best_weights(covered.path(), None).unwrap();
    let log2_step = best.iter().find(|t| t.name == HIDDEN_STEP).unwrap().data[0];
    assert_eq!(log2_step, log2_step.round());
    let (report, _) =
        qornn::deploy::quantize::quantize_run(covered.path(), None, 64, None, None, None).unwrap();
    assert_eq!(report.hidden_frac, -log2_step as i32);
    for (act_bits, cover) in [
        (None, 0.5),
        (Some(8), 0.0),
        (Some(8), 1.5),
        (Some(8), f64::NAN),
    ] {
        let bad = Config {
            act_bits,
            act_hidden_cover: Some(cover),
            ..config.clone()
        };
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("act_hidden_cover"), "{error}");
    }
}

/// `act_hidden_search` starts the hidden step at the power of two whose quantized forward
/// pass has the lowest loss on the batch, among the widest step that holds every state and
/// the finer ones: no candidate (the least-squares step among them) has a lower loss, and
/// it is refused without act_bits or beside another start rule.
#[test]
fn the_hidden_step_search_starts_at_the_lowest_loss() {
    use qornn::quant::activation::{self, HiddenStepStart, HIDDEN_STEP, LOSS_SEARCH_SPAN};
    use rand::SeedableRng;
    let config = Config {
        act: qornn::Activation::Modrelu,
        act_bits: Some(6),
        act_hidden_search: true,
        ..small_copy("hadamrnn", 4)
    };
    config.validate().unwrap();
    let task = config.task().unwrap();
    let spec = config.model_spec_for(&task);
    assert_eq!(spec.act_hidden_start, HiddenStepStart::LowestLoss);
    let mut model = qornn::Model::new(spec, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    let batch = task.train_batch(0, 32, 1);
    let mut ws = qornn::Workspace::new(&model.spec, batch.steps, batch.batch);
    let par = faer::Par::Seq;
    model.parametrise(false, par);
    model.init_hidden_step(&mut ws, &batch, par);
    let step = model
        .params
        .iter()
        .position(|t| t.name == HIDDEN_STEP)
        .unwrap();
    let chosen = -model.params[step].data[0] as i32;
    let chosen_loss = model.forward(&mut ws, &batch, par);
    // The float model's states, as the search saw them.
    model.quantize_activations = false;
    model.forward(&mut ws, &batch, par);
    let states = ws.core.outputs().to_vec();
    let widest = activation::widest_fraction_bits(&states, 6, true);
    let least_squares = activation::least_squares_fraction_bits(&states, 6, true);
    assert!((widest..=widest + LOSS_SEARCH_SPAN).contains(&chosen));
    model.quantize_activations = true;
    let mut highest = chosen_loss;
    for frac in (widest..=widest + LOSS_SEARCH_SPAN).chain([least_squares]) {
        model.params[step].data[0] = -frac as f32;
        let loss = model.forward(&mut ws, &batch, par);
        assert!(
            chosen_loss <= loss,
            "2^-{chosen}: loss {chosen_loss} above 2^-{frac}'s {loss}"
        );
        highest = highest.max(loss);
    }
    // The step matters on this batch, so the search had something to find.
    assert!(highest > 1.01 * chosen_loss, "{chosen_loss} {highest}");
    for bad in [
        Config {
            act_bits: None,
            ..config.clone()
        },
        Config {
            act_hidden_frac: Some(3),
            ..config.clone()
        },
        Config {
            act_hidden_cover: Some(0.9),
            ..config.clone()
        },
    ] {
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("act_hidden_search"), "{error}");
    }
}

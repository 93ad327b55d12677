//! `qornn quantize`: post-training quantization of a trained ORNN or RNN's recurrence to
//! integers. Activation ranges are calibrated on training sequences and rounded to
//! power-of-two scales; weight codes come from the model's own quantizer (or, for a
//! full-precision model, the paper's per-tensor quantizer at `--bits`). The test set is
//! then run three ways: the float model, the simulated (fake-quantized) twin, and the
//! integer engine, which must agree with the twin bit for bit.

use super::calibrate::{activation_fractions, Calibration};
use super::convert::{FloatRecurrence, QuantizedRecurrence};
use super::integer_run::{run_integer, IntegerRun};
use super::model_file::{IntegerModel, QuantizedReadout};
use super::task_record::{task_info, task_of_model};
use crate::cells::ornn::Activation;
use crate::error::{Error, Result};
use crate::evaluate::{evaluate, Workspaces};
use crate::quant::RangeRule;
use crate::run::load_best_model;
use crate::train::Evaluation;
use serde::Serialize;
use std::path::Path;

/// A when neither `--act-bits` nor the run sets it.
pub const DEFAULT_ACT_BITS: u32 = 8;

/// What `qornn quantize` reports.
#[derive(Clone, Debug, Serialize)]
pub struct PtqReport {
    pub weight_bits: u32,
    pub act_bits: u32,
    /// The read-out's bits, `None` for a float read-out.
    pub readout_bits: Option<u32>,
    pub hidden_frac: i32,
    pub input_frac: i32,
    /// Where `hidden_frac` came from: "trained" (the step the run trained with, held or
    /// learned, `--act-bits`) or "calibrated" (the largest `|h|` on training sequences);
    /// absent for a file read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_range: Option<&'static str>,
    /// A continuous trained step's mantissa `m` (`s = m 2^-f_h`), folded into U, the
    /// biases and V; absent for a power of two.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden_mantissa: Option<f64>,
    pub float: Evaluation,
    pub simulated: Evaluation,
    pub integer: Evaluation,
    /// Whether integer and simulated hidden codes agreed at every step of every sequence.
    pub bit_exact: bool,
    /// The size of the `.qornn` file: packed k-bit codes, integer biases, the read-out
    /// (float or packed codes), header and checksum.
    pub bytes: u64,
    /// Test sequences per second: the integer engine (one sequence at a time, one core)
    /// and, when the float model was run here, batched float inference (all cores).
    pub integer_sequences_per_second: f64,
    pub float_sequences_per_second: Option<f64>,
}

/// Quantizes the best model of the run in `dir`, writes it (`output`, else
/// `DIR/model.qornn`), and reports the three inferences on the test set. `act_bits`:
/// A, by default the run's own (`--act-bits`, whose hidden step is then used), else 8;
/// `readout_bits`: by default the run's (`--readout-bits`), else a float read-out.
pub fn quantize_run(
    dir: &Path,
    act_bits: Option<u32>,
    calibration: usize,
    bits: Option<u32>,
    readout_bits: Option<u32>,
    output: Option<&Path>,
) -> Result<(PtqReport, std::path::PathBuf)> {
    if calibration == 0 {
        return Err(Error::config(
            "calib",
            "calibration needs at least one training sequence",
        ));
    }
    if let Some(a) = act_bits.filter(|a| !(4..=16).contains(a)) {
        return Err(Error::config("act_bits", format!("{a} is outside 4..=16")));
    }
    if let Some(r) = readout_bits.filter(|r| !(2..=16).contains(r)) {
        return Err(Error::config(
            "readout_bits",
            format!("{r} is outside 2..=16"),
        ));
    }
    let (config, task, mut float_model) = load_best_model(dir)?;
    let spec = float_model.spec.clone();
    let act_bits = act_bits.or(spec.act_bits).unwrap_or(DEFAULT_ACT_BITS);
    let readout_bits = readout_bits.or(spec.readout_bits);
    if !spec.is_elman() || spec.activation == Activation::Tanh {
        return Err(Error::config(
            "run",
            "integer inference covers ReLU/modReLU ORNN and RNN models",
        ));
    }
    if spec.vocabulary.is_some() {
        return Err(Error::config(
            "run",
            "integer inference of embedding models is not supported",
        ));
    }
    let range = spec.quantizer.map_or(RangeRule::Max, |q| q.range);
    let weight_bits = match (spec.quantizer, bits) {
        (Some(q), None) => q.bits,
        (Some(q), Some(b)) if b == q.bits => b,
        (Some(q), Some(b)) => {
            return Err(Error::config(
                "bits",
                format!("the model was trained at {} bits, not {b}", q.bits),
            ))
        }
        (None, Some(b)) if (2..=8).contains(&b) => b,
        (None, _) => {
            return Err(Error::config(
                "bits",
                "a full-precision model needs --bits 2..=8 for its weights",
            ))
        }
    };
    let par = crate::train::parallelism(config.threads);
    float_model.parametrise(false, par);
    // A quantized model's own codes (its learned steps, per-row steps, a Hadamard matrix's
    // or a rotation block's exact codes); `None` for a full-precision one, quantized below
    // at --bits.
    let codes = float_model.weight_codes();
    let test = task.eval_batches(true, config.batch, config.eval_sequences, config.seed);
    let mut workspaces = Workspaces::default();
    let carried = task.carries_state().then(|| spec.state_len(config.batch));
    let clock = std::time::Instant::now();
    let float = evaluate(&float_model, &task, &test, carried, &mut workspaces, par);
    let float_seconds = clock.elapsed().as_secs_f64();

    let (calibrated_frac, input_frac) = activation_fractions(
        &float_model,
        &task,
        &config,
        Calibration {
            sequences: calibration,
            act_bits,
        },
        &mut workspaces,
        par,
    );
    // The run's own step when it trained its activations at this A.
    let trained = float_model
        .hidden_quantizer()
        .filter(|_| spec.act_bits == Some(act_bits));
    let trained_frac = trained.map(|q| q.fraction_bits());
    let hidden_frac = trained_frac.unwrap_or(calibrated_frac);
    // A continuous step s = m 2^-f_h (`ActRange::Continuous`) runs as the state h / m, whose
    // step 2^-f_h the engine shifts by: for ReLU and modReLU (positively homogeneous)
    // act(W h + U x + b; bm) / m = act(W (h / m) + (U / m) x + b / m; bm / m), and
    // V h = (V m)(h / m). The codes are the same; U's step, b, bm and V's step are scaled.
    // m = 1 (a power of two) changes nothing.
    let mantissa = trained.map_or(1.0, |q| q.mantissa());
    let fold =
        |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| (x as f64 / mantissa) as f32).collect() };
    let codes = codes.map(|(w, mut u)| {
        u.steps = fold(&u.steps);
        (w, u)
    });

    let m = &float_model;
    let core = m.elman_tensors().expect("an Elman core (checked above)");
    let (u, bias, bias_mod) = (fold(core.u), fold(core.bias), core.bias_mod.map(fold));
    let float_recurrence = FloatRecurrence {
        hidden: spec.hidden,
        input: spec.input,
        w: core.w,
        u: &u,
        bias: &bias,
        bias_mod: bias_mod.as_deref(),
        weight_bits,
        range,
        act_bits,
        hidden_frac,
        input_frac,
    };
    // Block rotations are stored as their pairs of codes (4 multiply-adds per pair of
    // units), a Hadamard recurrence as its n signs and run multiplier-free.
    let rotations = spec.is_block_rotations() && spec.quantizer.is_some();
    let recurrence = match codes {
        Some((w, u)) if rotations => {
            QuantizedRecurrence::from_rotation_codes(&float_recurrence, &w, &u)
        }
        Some((w, u)) => QuantizedRecurrence::from_codes(&float_recurrence, &w, &u),
        None => QuantizedRecurrence::new(&float_recurrence),
    };
    let recurrence = match spec.hadamard_block() {
        Some(block) => recurrence.into_hadamard(block),
        None => recurrence,
    };
    recurrence.as_int().validate().map_err(|e| {
        Error::config(
            "act_bits",
            format!("the integer model is out of range: {e:?}"),
        )
    })?;
    let (readout_weight, readout_bias) = m.readout_tensors();
    let readout_codes = readout_bits.map(|r| {
        QuantizedReadout::with_step_times(readout_weight, spec.outputs, spec.hidden, r, mantissa)
    });
    let model = IntegerModel {
        recurrence,
        outputs: spec.outputs,
        readout: spec.readout,
        readout_weight: match &readout_codes {
            Some(r) => r.dequantized_f32(),
            None => readout_weight
                .iter()
                .map(|&v| (v as f64 * mantissa) as f32)
                .collect(),
        },
        readout_codes,
        readout_bias: readout_bias.to_vec(),
        task: task_info(&task, &config)?,
        float_loss: float.loss,
        float_accuracy: float.accuracy.unwrap_or(f64::NAN),
    };
    let run = run_integer(&model, &task, &test);
    let output = output.map_or_else(|| dir.join("model.qornn"), Path::to_path_buf);
    model.save(&output)?;
    let sequences: usize = test.iter().map(|b| b.batch).sum();
    let float_speed = sequences as f64 / float_seconds.max(1e-12);
    let mut report = report(&model, float, run, Some(float_speed));
    report.hidden_range = Some(if trained_frac.is_some() {
        "trained"
    } else {
        "calibrated"
    });
    report.hidden_mantissa = (mantissa != 1.0).then_some(mantissa);
    Ok((report, output))
}

/// `qornn eval --model M.qornn`: the integer model (and its simulated twin) on the test
/// set of the task it records, beside the float metrics stored when it was written.
pub fn evaluate_file(path: &Path, data_dir: Option<&Path>) -> Result<PtqReport> {
    let model = IntegerModel::load(path)?;
    let task = task_of_model(&model, data_dir)?;
    let t = &model.task;
    let batches = task.eval_batches(true, t.batch as usize, t.sequences as usize, t.seed);
    let run = run_integer(&model, &task, &batches);
    let float = Evaluation {
        loss: model.float_loss,
        accuracy: (!model.float_accuracy.is_nan()).then_some(model.float_accuracy),
        bits_per_char: None,
        perplexity: None,
    };
    Ok(report(&model, float, run, None))
}

fn report(
    model: &IntegerModel,
    float: Evaluation,
    run: IntegerRun,
    float_speed: Option<f64>,
) -> PtqReport {
    let q = &model.recurrence;
    PtqReport {
        weight_bits: q.weight_bits,
        act_bits: q.act_bits,
        readout_bits: model.readout_codes.as_ref().map(|r| r.bits),
        hidden_frac: q.hidden_frac,
        input_frac: q.input_frac,
        hidden_range: None,
        hidden_mantissa: None,
        float,
        simulated: run.simulated,
        integer: run.integer,
        bit_exact: run.bit_exact,
        bytes: model.to_bytes().len() as u64,
        integer_sequences_per_second: run.sequences_per_second,
        float_sequences_per_second: float_speed,
    }
}

#[cfg(test)]
mod tests {
    /// Issue 22, defect 19: `--calib 0` wrote an uncalibrated model; it is refused before
    /// the run is read.
    #[test]
    fn calibration_needs_a_sequence() {
        let path = std::path::Path::new("no-such-run");
        let err = super::quantize_run(path, None, 0, None, None, None).unwrap_err();
        assert!(err.to_string().contains("calib"), "{err}");
    }
}

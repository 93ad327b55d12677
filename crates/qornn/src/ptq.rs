//! `qornn quantize`: post-training quantization of a trained ORNN or RNN's recurrence to
//! integers. Activation ranges are calibrated on training sequences and rounded to
//! power-of-two scales; weight codes come from the model's own quantizer (or, for a
//! full-precision model, the paper's per-tensor quantizer at `--bits`). The test set is
//! then run three ways: the float model, the simulated (fake-quantized) twin, and the
//! integer engine, which must agree with the twin bit for bit.

use crate::batched_engine::BatchedEngine;
use crate::cells::ornn::Activation;
use crate::error::{Error, Result};
use crate::evaluate::{evaluate, Workspaces};
use crate::head::Head;
use crate::integer::{FloatRecurrence, QuantizedRecurrence};
use crate::linalg::to_f64_vec;
use crate::model_file::{IntegerModel, QuantizedReadout};
use crate::quant::{Granularity, RangeRule};
use crate::run::load_best_model;
use crate::tasks::Batch;
use crate::tasks::Task;
use crate::train::Evaluation;
use qornn_infer::format::TaskInfo;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;

/// What `qornn quantize` reports.
#[derive(Clone, Debug, Serialize)]
pub struct PtqReport {
    pub weight_bits: u32,
    pub act_bits: u32,
    /// The read-out's bits, `None` for a float read-out.
    pub readout_bits: Option<u32>,
    pub hidden_frac: i32,
    pub input_frac: i32,
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

/// The largest power-of-two fraction `f` with `max |v| 2^f <= limit`.
fn fraction_bits(max_abs: f32, limit: i64) -> i32 {
    if max_abs <= 0.0 {
        return 0;
    }
    (limit as f64 / max_abs as f64).log2().floor() as i32
}

/// Quantizes the best model of the run in `dir`, writes it (`output`, else
/// `DIR/model.qornn`), and reports the three inferences on the test set.
pub fn quantize_run(
    dir: &Path,
    act_bits: u32,
    calibration: usize,
    bits: Option<u32>,
    readout_bits: Option<u32>,
    output: Option<&Path>,
) -> Result<(PtqReport, std::path::PathBuf)> {
    if !(4..=16).contains(&act_bits) {
        return Err(Error::config(
            "act_bits",
            format!("{act_bits} is outside 4..=16"),
        ));
    }
    if let Some(r) = readout_bits.filter(|r| !(2..=16).contains(r)) {
        return Err(Error::config(
            "readout_bits",
            format!("{r} is outside 2..=16"),
        ));
    }
    let (config, task, mut float_model) = load_best_model(dir)?;
    let spec = float_model.spec.clone();
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
    if spec
        .quantizer
        .is_some_and(|q| q.granularity == Granularity::PerRow)
    {
        return Err(Error::config(
            "run",
            "the integer engine takes one step per tensor; this model was trained per row",
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
    let test = task.eval_batches(true, config.batch, config.eval_sequences, config.seed);
    let mut workspaces = Workspaces::default();
    let carried = task.carries_state().then(|| spec.state_len(config.batch));
    let clock = std::time::Instant::now();
    let float = evaluate(&float_model, &task, &test, carried, &mut workspaces, par);
    let float_seconds = clock.elapsed().as_secs_f64();

    // Calibration: the largest |h| and |x| over `calibration` training sequences.
    let batch_size = config.batch;
    let ws = workspaces.get(&spec, task.steps(), batch_size);
    if let Some(len) = carried {
        // Calibration starts each batch from h_0 = 0, whatever the evaluation left there.
        ws.core.set_initial_state(&vec![0.0; len]);
    }
    let (mut max_h, mut max_x) = (0.0f32, 0.0f32);
    for step in 0..calibration.div_ceil(batch_size) as u64 {
        let batch = task.train_batch(step, batch_size, config.seed);
        float_model.forward(ws, &batch, par);
        max_h = ws.core.outputs().iter().fold(max_h, |m, v| m.max(v.abs()));
        max_x = batch.x.iter().fold(max_x, |m, v| m.max(v.abs()));
    }
    let modrelu = spec.activation == Activation::Modrelu;
    let hidden_limit = if modrelu {
        (1i64 << (act_bits - 1)) - 1
    } else {
        (1i64 << act_bits) - 1
    };
    let hidden_frac = fraction_bits(max_h, hidden_limit);
    let input_frac = fraction_bits(max_x, (1i64 << (act_bits - 1)) - 1);

    let m = &float_model;
    let tensor = |name| &m.tensor(name).expect("an Elman core's tensor").data[..];
    // The ORNN's orthogonalised W, the RNN's own.
    let w = m
        .w_orthogonal()
        .unwrap_or_else(|| tensor("weight_hh"))
        .to_vec();
    let float_recurrence = FloatRecurrence {
        hidden: spec.hidden,
        input: spec.input,
        w: &w,
        u: tensor("weight_ih"),
        bias: tensor("bias"),
        bias_mod: modrelu.then(|| tensor("bias_mod")),
        weight_bits,
        range,
        act_bits,
        hidden_frac,
        input_frac,
    };
    // A quantized model's own codes (its learned steps, a Hadamard matrix's exact codes);
    // a full-precision one is quantized here at --bits.
    let recurrence = match m.weight_codes() {
        Some((w, u)) => QuantizedRecurrence::from_codes(&float_recurrence, &w, &u),
        None => QuantizedRecurrence::new(&float_recurrence),
    };
    // A Hadamard recurrence is stored as its n signs and run multiplier-free.
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
    let readout = m
        .params
        .iter()
        .position(|t| t.name == "readout.weight")
        .expect("a read-out");
    let readout_codes = readout_bits
        .map(|r| QuantizedReadout::new(&m.params[readout].data, spec.outputs, spec.hidden, r));
    let model = IntegerModel {
        recurrence,
        outputs: spec.outputs,
        readout: spec.readout,
        readout_weight: match &readout_codes {
            Some(r) => r.dequantized_f32(),
            None => m.params[readout].data.clone(),
        },
        readout_codes,
        readout_bias: m.params[readout + 1].data.clone(),
        task: task_info(&task, &config)?,
        float_loss: float.loss,
        float_accuracy: float.accuracy.unwrap_or(f64::NAN),
    };
    let run = run_integer(&model, &task, &test);
    let output = output.map_or_else(|| dir.join("model.qornn"), Path::to_path_buf);
    model.save(&output)?;
    let sequences: usize = test.iter().map(|b| b.batch).sum();
    let float_speed = sequences as f64 / float_seconds.max(1e-12);
    Ok((report(&model, float, run, Some(float_speed)), output))
}

/// What the integer engine and its twin did on a test set.
pub struct IntegerRun {
    pub simulated: Evaluation,
    pub integer: Evaluation,
    pub bit_exact: bool,
    /// The engine alone, one sequence after another on one core.
    pub sequences_per_second: f64,
}

/// The test set through the simulated twin and the integer engine; the float read-out
/// reads the dequantized hidden codes `H 2^-f_h`. Batches run in parallel; the engine is
/// the batched one (`batched_engine`: every sequence of a batch per call, AVX2 where the
/// CPU has it), and its speed is its own time per sequence on one core.
pub fn run_integer(model: &IntegerModel, task: &Task, batches: &[Batch]) -> IntegerRun {
    let q = &model.recurrence;
    let engine = BatchedEngine::new(q.as_int());
    let (n, d) = (q.hidden, q.input);
    let unit = 2f64.powi(-q.hidden_frac);
    // A quantized read-out in f64 is exactly the integer one: every product of a code
    // with a hidden value and every partial sum is a multiple of one unit below 2^53.
    let readout_f64 = model
        .readout_codes
        .as_ref()
        .map(|r| (r.dequantized(), to_f64_vec(&model.readout_bias)));
    let per_batch = |batch: &Batch| -> BatchResult {
        let Batch {
            steps, batch: b, ..
        } = *batch;
        let mut result = BatchResult::default();
        let mut states = [vec![0.0f64; steps * b * n], vec![0.0f64; steps * b * n]];
        let mut x_codes = vec![0i32; b * d];
        let mut int_state = engine.state(b);
        let mut h_sim = vec![vec![0i32; n]; b];
        let (mut h_int, mut next) = (vec![0i32; n], vec![0i32; n]);
        for t in 0..steps {
            for seq in 0..b {
                q.quantize_input(
                    &batch.x[(t * b + seq) * d..(t * b + seq + 1) * d],
                    &mut x_codes[seq * d..(seq + 1) * d],
                );
            }
            let clock = std::time::Instant::now();
            engine.step(&mut int_state, &x_codes);
            result.integer_seconds += clock.elapsed().as_secs_f64();
            for seq in 0..b {
                engine.hidden(&int_state, seq, &mut h_int);
                twin_step(q, &h_sim[seq], &x_codes[seq * d..(seq + 1) * d], &mut next);
                std::mem::swap(&mut h_sim[seq], &mut next);
                result.mismatched_steps += usize::from(h_int != h_sim[seq]);
                for (state, h) in states.iter_mut().zip([&h_int, &h_sim[seq]]) {
                    let row = &mut state[(t * b + seq) * n..(t * b + seq + 1) * n];
                    row.iter_mut()
                        .zip(h.iter())
                        .for_each(|(o, &code)| *o = code as f64 * unit);
                }
            }
        }
        for (total, state) in result.totals.iter_mut().zip(&states) {
            let (loss, accuracy) = match &readout_f64 {
                Some((v, c)) => {
                    let mut head = Head::<f64>::new(model.readout, steps, b, model.outputs);
                    let loss = head.forward(state, n, v, c, &batch.targets, faer::Par::Seq);
                    let logits: Vec<f32> = head.logits().iter().map(|&l| l as f32).collect();
                    (loss, task.accuracy(&logits, &batch.targets))
                }
                None => {
                    // Hidden codes times 2^-f_h are exact in f32 (codes below 2^16).
                    let state: Vec<f32> = state.iter().map(|&h| h as f32).collect();
                    let (v, c) = (&model.readout_weight, &model.readout_bias);
                    let mut head = Head::<f32>::new(model.readout, steps, b, model.outputs);
                    let loss = head.forward(&state, n, v, c, &batch.targets, faer::Par::Seq);
                    (loss as f64, task.accuracy(head.logits(), &batch.targets))
                }
            };
            total.loss += loss * b as f64;
            total.sequences += b;
            if let Some((hits, count)) = accuracy {
                total.hits += hits;
                total.count += count;
            }
        }
        result
    };
    let total = batches
        .par_iter()
        .map(per_batch)
        .reduce(BatchResult::default, BatchResult::merge);
    let evaluation = |t: Totals| Evaluation {
        loss: t.loss / t.sequences.max(1) as f64,
        accuracy: (t.count > 0).then(|| t.hits as f64 / t.count as f64),
        bits_per_char: None,
        perplexity: None,
    };
    let [integer, simulated] = total.totals;
    IntegerRun {
        simulated: evaluation(simulated),
        integer: evaluation(integer),
        bit_exact: total.mismatched_steps == 0,
        sequences_per_second: integer.sequences as f64 / total.integer_seconds.max(1e-12),
    }
}

/// The simulated twin's step, compiled for AVX2 where the CPU has it, like
/// `batched_engine::scalar_step`.
fn twin_step(q: &QuantizedRecurrence, h: &[i32], x: &[i32], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { twin_step_avx2(q, h, x, out) };
    }
    q.simulated_step(h, x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn twin_step_avx2(q: &QuantizedRecurrence, h: &[i32], x: &[i32], out: &mut [i32]) {
    q.simulated_step(h, x, out)
}

/// Loss summed over sequences, and accuracy hits over counts.
#[derive(Clone, Copy, Default)]
struct Totals {
    loss: f64,
    sequences: usize,
    hits: usize,
    count: usize,
}

/// One batch (or several, merged) through the engine and the twin: `totals` is
/// `[integer, simulated]`.
#[derive(Default)]
struct BatchResult {
    totals: [Totals; 2],
    /// Steps where the engine's hidden codes differ from the twin's.
    mismatched_steps: usize,
    integer_seconds: f64,
}

impl BatchResult {
    fn merge(a: Self, b: Self) -> Self {
        let add = |x: Totals, y: Totals| Totals {
            loss: x.loss + y.loss,
            sequences: x.sequences + y.sequences,
            hits: x.hits + y.hits,
            count: x.count + y.count,
        };
        Self {
            totals: [add(a.totals[0], b.totals[0]), add(a.totals[1], b.totals[1])],
            mismatched_steps: a.mismatched_steps + b.mismatched_steps,
            integer_seconds: a.integer_seconds + b.integer_seconds,
        }
    }
}

/// The task record of a `.qornn` file, for the tasks integer inference covers.
fn task_info(task: &Task, config: &crate::config::Config) -> Result<TaskInfo> {
    let (kind, parameter) = match task {
        Task::Copy(t) => (0, t.delay as u32),
        Task::Adding(t) => (1, t.length as u32),
        Task::Mnist(t) => (if t.permuted { 3 } else { 2 }, 0),
        _ => {
            return Err(Error::config(
                "run",
                format!(
                    "integer inference of the {} task is not supported",
                    task.name()
                ),
            ))
        }
    };
    Ok(TaskInfo {
        kind,
        parameter,
        seed: config.seed,
        sequences: config.eval_sequences as u32,
        batch: config.batch as u32,
    })
}

/// The task a `.qornn` file was trained on (MNIST is read from `data_dir`).
pub fn task_of(info: &TaskInfo, data_dir: Option<&Path>) -> Result<Task> {
    use crate::data::{data_dir as resolve, mnist::Mnist, Checksums};
    Ok(match info.kind {
        0 => Task::Copy(crate::tasks::CopyTask::new(info.parameter.max(1) as usize)),
        1 => Task::Adding(crate::tasks::AddingTask::new(info.parameter.max(2) as usize)),
        2 | 3 => Task::Mnist(crate::tasks::MnistTask::new(
            Mnist::load(&resolve(data_dir), Checksums::Verify)?,
            info.kind == 3,
        )),
        other => {
            return Err(Error::config(
                "model",
                format!("unknown task id {other} in the model file"),
            ))
        }
    })
}

/// `qornn eval --model M.qornn`: the integer model (and its simulated twin) on the test
/// set of the task it records, beside the float metrics stored when it was written.
pub fn evaluate_file(path: &Path, data_dir: Option<&Path>) -> Result<PtqReport> {
    let model = IntegerModel::load(path)?;
    let task = task_of(&model.task, data_dir)?;
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
        float,
        simulated: run.simulated,
        integer: run.integer,
        bit_exact: run.bit_exact,
        bytes: model.to_bytes().len() as u64,
        integer_sequences_per_second: run.sequences_per_second,
        float_sequences_per_second: float_speed,
    }
}

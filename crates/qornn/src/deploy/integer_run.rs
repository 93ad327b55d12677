//! The engine's evaluation: a test set through the batched integer engine and, step by
//! step beside it, the simulated twin, with the float read-out (or the quantized one) on
//! their hidden codes; counts the steps where the two disagree.

use super::engine::BatchedEngine;
use super::model_file::IntegerModel;
use super::twin::Twin;
use crate::head::{Head, Readout};
use crate::linalg::to_f64_vec;
use crate::tasks::{Batch, Task};
use crate::train::Evaluation;
use rayon::prelude::*;

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
/// the batched one (`engine.rs`: every sequence of a batch per call, AVX2 where the
/// CPU has it), and its speed is its own time per sequence on one core.
pub fn run_integer(model: &IntegerModel, task: &Task, batches: &[Batch]) -> IntegerRun {
    let q = &model.recurrence;
    let engine = BatchedEngine::new(q.as_int());
    let twin = Twin::new(q);
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
        // The read-out's input: every step's states, or only the last step's (a
        // many-to-one read-out reads no other).
        let kept = match model.readout {
            Readout::Last => 1,
            Readout::Every => steps,
        };
        let mut states = [vec![0.0f64; kept * b * n], vec![0.0f64; kept * b * n]];
        let mut x_codes = vec![0i32; b * d];
        let mut int_state = engine.state(b);
        let mut h_sim = vec![vec![0i32; n]; b];
        let (mut h_int, mut next) = (vec![0i32; n], vec![0i32; n]);
        let mut twin_values = Vec::with_capacity(n + d);
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
                let x_seq = &x_codes[seq * d..(seq + 1) * d];
                twin.step(&h_sim[seq], x_seq, &mut next, &mut twin_values);
                std::mem::swap(&mut h_sim[seq], &mut next);
                result.mismatched_steps += usize::from(h_int != h_sim[seq]);
                let Some(slot) = (t + kept).checked_sub(steps) else {
                    continue;
                };
                for (state, h) in states.iter_mut().zip([&h_int, &h_sim[seq]]) {
                    let row = &mut state[(slot * b + seq) * n..(slot * b + seq + 1) * n];
                    row.iter_mut()
                        .zip(h.iter())
                        .for_each(|(o, &code)| *o = code as f64 * unit);
                }
            }
        }
        for (total, state) in result.totals.iter_mut().zip(&states) {
            let (loss, accuracy) = match &readout_f64 {
                Some((v, c)) => {
                    let mut head = Head::<f64>::new(model.readout, kept, b, model.outputs);
                    let loss = head.forward(state, n, v, c, &batch.targets, faer::Par::Seq);
                    let logits: Vec<f32> = head.logits().iter().map(|&l| l as f32).collect();
                    (loss, task.accuracy(&logits, &batch.targets))
                }
                None => {
                    // Hidden codes times 2^-f_h are exact in f32 (codes below 2^16).
                    let state: Vec<f32> = state.iter().map(|&h| h as f32).collect();
                    let (v, c) = (&model.readout_weight, &model.readout_bias);
                    let mut head = Head::<f32>::new(model.readout, kept, b, model.outputs);
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

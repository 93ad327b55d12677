//! Calibration: the activation ranges of a float model on training sequences, rounded to
//! power-of-two scales `2^-f` for A-bit codes.

use crate::cells::ornn::Activation;
use crate::config::Config;
use crate::evaluate::Workspaces;
use crate::model::Model;
use crate::quant::activation::{fraction_bits, hidden_code_range, input_code_limit};
use crate::tasks::Task;
use faer::Par;

/// How many training sequences calibrate, and the activation bits A.
pub struct Calibration {
    pub sequences: usize,
    pub act_bits: u32,
}

/// The fraction bits `(f_h, f_x)` of the hidden state and of the input: the largest
/// `|h|` and `|x|` over the calibration sequences fit A-bit codes (unsigned for ReLU's
/// non-negative `h`, signed otherwise).
pub fn activation_fractions(
    float_model: &Model,
    task: &Task,
    config: &Config,
    c: Calibration,
    workspaces: &mut Workspaces,
    par: Par,
) -> (i32, i32) {
    let (calibration, act_bits, spec) = (c.sequences, c.act_bits, &float_model.spec);
    let carried = task.carries_state().then(|| spec.state_len(config.batch));
    let batch_size = config.batch;
    let ws = workspaces.get(spec, task.steps(), batch_size);
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
    let hidden_frac = fraction_bits(max_h, hidden_code_range(act_bits, modrelu).1);
    let input_frac = fraction_bits(max_x, input_code_limit(act_bits));
    (hidden_frac, input_frac)
}

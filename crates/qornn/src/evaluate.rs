//! Evaluation of a model on a set of batches, shared by training (validation and test),
//! `qornn eval` and `qornn quantize`; and the workspaces every forward pass runs in, one per
//! batch shape (a split's last, smaller batch gets its own; the training batch's is reused).

use crate::model::{Model, ModelSpec, Workspace};
use crate::tasks::{Batch, Task};
use faer::Par;
use serde::{Deserialize, Serialize};

/// Loss and (for classification) accuracy over a set of sequences.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: Option<f64>,
    /// Character-level language modelling: the loss in bits (`loss / ln 2`).
    pub bits_per_char: Option<f64>,
    /// Word-level language modelling: `exp(loss)`.
    pub perplexity: Option<f64>,
}

/// Workspaces by `(steps, batch)`, each allocated once.
#[derive(Default)]
pub struct Workspaces {
    pool: Vec<Workspace>,
}

impl Workspaces {
    /// The workspace for `(steps, batch)`, made on first use.
    pub fn get(&mut self, spec: &ModelSpec, steps: usize, batch: usize) -> &mut Workspace {
        let index = match self.pool.iter().position(|w| w.shape() == (steps, batch)) {
            Some(index) => index,
            None => {
                self.pool.push(Workspace::new(spec, steps, batch));
                self.pool.len() - 1
            }
        };
        &mut self.pool[index]
    }
}

/// Loss and accuracy of `model` (already parametrised) over `batches`, averaged over
/// sequences. `carried_state`: the length of a hidden state carried from one batch to the
/// next (language models), which starts from zero and runs through the batches in order.
pub fn evaluate(
    model: &Model,
    task: &Task,
    batches: &[Batch],
    carried_state: Option<usize>,
    workspaces: &mut Workspaces,
    par: Par,
) -> Evaluation {
    let (mut loss, mut sequences) = (0.0, 0usize);
    let (mut hits, mut total, mut scored) = (0usize, 0usize, false);
    let mut state = carried_state.map(|len| vec![0.0f32; len]);
    for batch in batches {
        let ws = workspaces.get(&model.spec, batch.steps, batch.batch);
        if let Some(state) = &state {
            ws.core.set_initial_state(state);
        }
        let batch_loss = model.forward(ws, batch, par) as f64;
        if let Some(state) = &mut state {
            ws.core.final_state_into(state);
        }
        loss += batch_loss * batch.batch as f64;
        sequences += batch.batch;
        if let Some((h, t)) = task.accuracy(ws.head.logits(), &batch.targets) {
            hits += h;
            total += t;
            scored = true;
        }
    }
    let loss = loss / sequences.max(1) as f64;
    Evaluation {
        loss,
        accuracy: scored.then(|| hits as f64 / total.max(1) as f64),
        bits_per_char: task
            .reports_bits_per_char()
            .then(|| loss / std::f64::consts::LN_2),
        perplexity: task.embedding_vocabulary().map(|_| loss.exp()),
    }
}

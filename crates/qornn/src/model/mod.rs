//! A model wires a float embedding (token inputs) -> a recurrent core (`cells/`, an ORNN's
//! recurrent matrix from its parametrisation, `parametrisation/`) -> a float read-out
//! (`head.rs`), with the weight matrices quantized to k bits (`quant/`) and a
//! straight-through estimator. Holds the parameters and their gradients; buffers that
//! depend on `(T, B)` live in a [`Workspace`].

use crate::cells::ornn::Activation;
use crate::cells::{Cell, CellBuffers, CoreGrads, CoreWeights};
use crate::head::{self, Head, Readout};
use crate::init::Init;
use crate::parametrisation::bjorck::BjorckConfig;
use crate::parametrisation::{RecurrentParametrisation, StepContext};
use crate::params::{stored_bits, zeros_like, Kind, Tensor};
use crate::quant::activation::{self, HiddenQuantizer, HiddenStepStart};
use crate::quant::{self, lsq, Granularity, QuantizedTensor, Quantizer};
use crate::registry::{ModelName, ParametrisationContext};
use crate::tasks::Batch;
use faer::Par;
use rand::{Rng, RngCore};

mod quantize;
mod spec;

pub use spec::{ModelSpec, Workspace};

/// The index of the recurrent parameter of an ORNN (its core lists it first).
const RECURRENT: usize = crate::cells::ornn::slot::W;

/// An Elman core's float tensors by role, as the integer conversion reads them.
pub struct ElmanTensors<'a> {
    /// The ORNN's orthogonalised `W` (before quantization), the RNN's own.
    pub w: &'a [f32],
    pub u: &'a [f32],
    pub bias: &'a [f32],
    /// modReLU only.
    pub bias_mod: Option<&'a [f32]>,
}

pub struct Model {
    pub spec: ModelSpec,
    /// The core's tensors, then the learned steps, the read-out's and the embedding (see
    /// `ModelSpec::tensors`).
    pub params: Vec<Tensor>,
    /// One gradient per tensor of `params`.
    pub grads: Vec<Vec<f32>>,
    /// The number of the core's tensors, at the start of `params`.
    core_tensors: usize,
    /// ORNN: how `W` comes from `params[RECURRENT]`.
    parametrisation: Option<Box<dyn RecurrentParametrisation>>,
    /// What the forward pass uses in place of each tensor: `q(.)` of a quantized matrix,
    /// `q(W)` of the orthogonalised recurrent matrix; empty where the tensor is used as is.
    used: Vec<Vec<f32>>,
    /// ORNN: `(n, n)`, the orthogonalised recurrent matrix before quantization.
    w_orth: Vec<f32>,
    /// ORNN and RNN: the cell's gradient of the recurrence it applied (see `CoreGrads`).
    recurrent_grad: Vec<f32>,
    /// LSQ: each quantized tensor with the index of its learned step.
    learned_steps: Vec<LearnedStep>,
    readout: usize,
    embedding: Option<usize>,
    /// `--act-bits`: the index of the hidden state's learned `log2` step.
    hidden_step: Option<usize>,
    /// Whether the forward pass quantizes the activations (with `--act-bits`: from
    /// `act_bits_from` on; a loaded model does).
    pub quantize_activations: bool,
    /// Stochastic rounding's key for the hidden state in this training step
    /// (`act_train_rounding`); `None` rounds to nearest, as evaluation and the engine do.
    pub dither: Option<u32>,
}

/// A quantized tensor and its learned step (LSQ), as indices into `Model::params`.
#[derive(Clone, Copy, Debug)]
struct LearnedStep {
    tensor: usize,
    step: usize,
}

impl Model {
    /// A freshly initialised model: each tensor by its owner (the parametrisation, the
    /// core, the read-out; the embedding in `±0.1`, Zaremba et al.).
    pub fn new(spec: ModelSpec, rng: &mut impl Rng) -> Self {
        let rng: &mut dyn RngCore = rng;
        let mut params = spec.tensors();
        let parametrisation = spec.parametrisation();
        let cell = spec.cell();
        let core_tensors = cell.tensors().len();
        for (i, t) in params.iter_mut().enumerate() {
            match (&parametrisation, t.kind) {
                (Some(p), Kind::Recurrent) => p.init(t, spec.init, rng),
                _ if i < core_tensors => cell.init(t, rng),
                (_, Kind::Step) => {}
                // Set from the activations when their quantization starts.
                _ if t.name == activation::HIDDEN_STEP => {}
                _ if t.name == "embedding.weight" => t
                    .data
                    .iter_mut()
                    .for_each(|v| *v = rng.gen_range(-0.1..0.1)),
                _ => head::init_readout(t, spec.hidden, rng),
            }
        }
        Self::from_params(spec, params, None)
    }

    /// A model around given tensors; `state` restores the parametrisation's (Björck's
    /// power-iteration vector).
    pub fn from_params(spec: ModelSpec, params: Vec<Tensor>, state: Option<Vec<f32>>) -> Self {
        let n = spec.hidden;
        let mut parametrisation = spec.parametrisation();
        if let Some(p) = &mut parametrisation {
            p.restore(&params[RECURRENT].data, state);
        }
        let cell = spec.cell();
        let quantized = spec.quantizer.is_some();
        let used = params
            .iter()
            .map(|t| match t.kind {
                Kind::Recurrent => vec![0.0; n * n],
                Kind::Quantized if quantized => vec![0.0; t.len()],
                _ if t.name == head::READOUT_WEIGHT && spec.readout_bits.is_some() => {
                    vec![0.0; t.len()]
                }
                _ => Vec::new(),
            })
            .collect();
        let learned_steps = params
            .iter()
            .enumerate()
            .filter_map(|(step, t)| {
                let name = t
                    .name
                    .strip_suffix(".step")
                    .filter(|_| t.kind == Kind::Step)?;
                let tensor = params.iter().position(|p| p.name == name)?;
                Some(LearnedStep { tensor, step })
            })
            .collect();
        let position = |name| params.iter().position(|t| t.name == name);
        let mut model = Self {
            core_tensors: cell.tensors().len(),
            readout: position(head::READOUT_WEIGHT).expect("every model has a read-out"),
            embedding: position("embedding.weight"),
            hidden_step: position(activation::HIDDEN_STEP),
            quantize_activations: spec.act_bits.is_some(),
            dither: None,
            learned_steps,
            grads: zeros_like(&params),
            used,
            w_orth: vec![0.0; if parametrisation.is_some() { n * n } else { 0 }],
            recurrent_grad: vec![0.0; if spec.is_elman() { n * n } else { 0 }],
            parametrisation,
            spec,
            params,
        };
        model.init_unset_steps();
        model
    }

    /// LSQ: gives every learned step that is not yet set (zero: a fresh model, or weights
    /// without steps) its initial value from the tensor it quantizes.
    fn init_unset_steps(&mut self) {
        let unset = |m: &Self| {
            m.learned_steps
                .iter()
                .any(|l| m.params[l.step].data.iter().any(|&s| s <= 0.0))
        };
        let Some(q) = self.spec.quantizer.filter(|_| unset(self)) else {
            return;
        };
        self.orthogonalise(false, Par::Seq);
        for l in self.learned_steps.clone() {
            let t = &self.params[l.tensor];
            let source = if t.kind == Kind::Recurrent {
                &self.w_orth
            } else {
                &t.data
            };
            let cols = if t.kind == Kind::Recurrent {
                self.spec.hidden
            } else {
                t.cols
            };
            let rows = source.len() / cols;
            let init = lsq::initial_steps(source, rows, cols, q.bits, q.granularity, q.lsq_init);
            self.params[l.step].data.copy_from_slice(&init);
        }
    }

    /// Number of trainable scalars, the embedding included.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(Tensor::len).sum()
    }

    /// Scalars in the word embedding (0 without one).
    pub fn embedding_params(&self) -> usize {
        self.embedding.map_or(0, |i| self.params[i].len())
    }

    /// The tensor called `name`.
    /// The Elman core's tensors by role (valid after `parametrise`); `None` for another core.
    pub fn elman_tensors(&self) -> Option<ElmanTensors<'_>> {
        use crate::cells::ornn::slot;
        if !self.spec.is_elman() {
            return None;
        }
        let data = |i: usize| &self.params[i].data[..];
        Some(ElmanTensors {
            w: self.w_orthogonal().unwrap_or_else(|| data(slot::W)),
            u: data(slot::U),
            bias: data(slot::B),
            bias_mod: (self.spec.activation == Activation::Modrelu).then(|| data(slot::BM)),
        })
    }

    /// The float read-out: `V: (C, n)` and `c: (C)` as trained (before quantization).
    pub fn readout_tensors(&self) -> (&[f32], &[f32]) {
        (
            &self.params[self.readout].data,
            &self.params[self.readout_bias()].data,
        )
    }

    /// The read-out bias's index: the head lists it after `V`.
    fn readout_bias(&self) -> usize {
        self.readout + 1
    }

    /// The weights as stored: k bits per quantized entry plus a 32-bit step per tensor
    /// (or row), R bits per entry of a quantized read-out, 32 bits per float entry; in
    /// bytes, rounded up.
    pub fn size_bytes(&self) -> u64 {
        let bits = self.spec.quantizer.map(|q| q.bits);
        let per_row = self
            .spec
            .quantizer
            .is_some_and(|q| q.granularity == Granularity::PerRow);
        self.params
            .iter()
            .map(|t| match (&self.parametrisation, t.kind) {
                (Some(p), Kind::Recurrent) => p.stored_bits(t, bits, per_row),
                // A quantized read-out: R bits an entry and one step.
                _ if t.name == head::READOUT_WEIGHT => match self.spec.readout_bits {
                    Some(r) => t.len() as u64 * r as u64 + 32,
                    None => stored_bits(t, bits, per_row),
                },
                _ => stored_bits(t, bits, per_row),
            })
            .sum::<u64>()
            .div_ceil(8)
    }

    /// What the forward pass uses for tensor `i` (its quantized form where it has one).
    fn used(&self, i: usize) -> &[f32] {
        used_tensor(&self.params, &self.used, i)
    }

    /// The ORNN's orthogonalised recurrent matrix before quantization (valid after
    /// `parametrise`); `None` for other cores.
    pub fn w_orthogonal(&self) -> Option<&[f32]> {
        (!self.w_orth.is_empty()).then_some(&self.w_orth[..])
    }

    /// The recurrent matrix the recurrence uses, `q(W)`, for ORNN and RNN cores.
    pub fn w_used(&self) -> Option<&[f32]> {
        self.spec.is_elman().then(|| self.used(RECURRENT))
    }

    /// An exact `W`'s codes that differ between the recurrent parameter `before` and now
    /// (`RecurrentParametrisation::code_changes`).
    pub fn recurrent_code_changes(&self, before: &[f32]) -> Option<usize> {
        let now = &self.params[RECURRENT].data;
        self.parametrisation.as_ref()?.code_changes(before, now)
    }

    /// Whether the recurrence is structured (Hadamard, rotations): its training step keeps
    /// the states alone, and recomputes the pre-activations in the backward pass.
    pub fn structured_recurrence(&self) -> bool {
        self.parametrisation
            .as_ref()
            .is_some_and(|p| !p.recurrence(&self.used[RECURRENT]).is_dense())
    }

    /// The parametrisation's state for a checkpoint: its name and value.
    pub fn parametrisation_state(&self) -> Option<(&'static str, Vec<f32>)> {
        let p = self.parametrisation.as_ref()?;
        Some((p.state_layout()?.0, p.state()?))
    }

    /// Computes the ORNN's `W` from its parameters, and quantizes the weight matrices.
    /// In training the power iteration advances one step; in evaluation it stays.
    pub fn parametrise(&mut self, training: bool, par: Par) {
        self.orthogonalise(training, par);
        self.quantize_weights();
    }

    /// The ORNN's orthogonal `W` (before quantization) into `w_orth`.
    fn orthogonalise(&mut self, training: bool, par: Par) {
        if let Some(p) = &mut self.parametrisation {
            p.forward(
                &self.params[RECURRENT].data,
                training,
                &mut self.w_orth,
                par,
            );
        }
    }

    /// Forward pass over `batch`; returns the mean loss (logits stay in `ws.head`).
    pub fn forward(&self, ws: &mut Workspace, batch: &Batch, par: Par) -> f32 {
        let x = self.input((&mut ws.embedded, &mut ws.quantized_input), batch);
        let weights = core_weights(
            &self.params[..self.core_tensors],
            &self.used,
            self.parametrisation.as_deref(),
            self.hidden_quantizer(),
        );
        ws.core.forward(&weights, x, par);
        ws.head.forward(
            ws.core.outputs(),
            self.spec.hidden,
            self.used(self.readout),
            &self.params[self.readout_bias()].data,
            &batch.targets,
            par,
        )
    }

    /// Backward pass after `forward`; adds into `self.grads`.
    ///
    /// Quantizers pass gradients straight through (STE): `dL/dW = dL/dq(W)`, with LSQ's
    /// clipping mask and step gradients. The ORNN's recurrent gradient then flows back
    /// through its parametrisation. With an embedding, `dL/dx` is scattered back onto the
    /// rows of its tokens.
    pub fn backward(&mut self, ws: &mut Workspace, batch: &Batch, par: Par) {
        let n = self.spec.hidden;
        let (readout, readout_bias, core) = (self.readout, self.readout_bias(), self.core_tensors);
        let [grad_v, grad_c] = self
            .grads
            .get_disjoint_mut([readout, readout_bias])
            .expect("distinct indices");
        // dh's steps before the read-out's rows stay zero from the workspace's allocation.
        let read_out = ws.dh.len() - ws.head.rows * n;
        ws.head.backward(
            ws.core.outputs(),
            n,
            used_tensor(&self.params, &self.used, readout),
            grad_v,
            grad_c,
            &mut ws.dh[read_out..],
            par,
        );
        let embedding = self.embedding.is_some();
        let x = if embedding {
            &ws.embedded[..]
        } else if self.act_bits_in_use().is_some() {
            &ws.quantized_input[..]
        } else {
            &batch.x[..]
        };
        let grad_x = embedding.then_some(&mut ws.grad_embedded[..]);
        let hidden_quant = self.hidden_quantizer();
        let weights = core_weights(
            &self.params[..core],
            &self.used,
            self.parametrisation.as_deref(),
            hidden_quant,
        );
        self.recurrent_grad.fill(0.0);
        let mut d_hidden_step = 0.0;
        let grads = CoreGrads {
            tensors: &mut self.grads[..core],
            recurrence: &mut self.recurrent_grad,
            hidden_step: &mut d_hidden_step,
        };
        ws.core.backward(&weights, x, &ws.dh, grads, grad_x, par);
        if let (Some(q), Some(index), Some(bits)) =
            (hidden_quant, self.hidden_step, self.act_bits_in_use())
        {
            // s = 2^l (rounded to an integer l unless continuous, straight through):
            // ds/dl = s ln 2, times LSQ's scale g.
            let (steps, batch) = ws.shape();
            let count = steps * batch * self.spec.hidden;
            let g = activation::step_gradient_scale(count, bits, q.modrelu);
            let ds_dl = q.step as f64 * std::f64::consts::LN_2;
            self.grads[index][0] += (d_hidden_step as f64 * ds_dl * g) as f32;
        }
        if self.parametrisation.is_none() && !self.recurrent_grad.is_empty() {
            // The RNN's `W` is a plain quantized tensor: `dL/dq(W)` is its gradient.
            self.grads[RECURRENT]
                .iter_mut()
                .zip(&self.recurrent_grad)
                .for_each(|(g, &d)| *g += d);
        }
        self.quantizers_backward();
        if let Some(p) = &mut self.parametrisation {
            p.backward(
                &self.params[RECURRENT].data,
                &self.recurrent_grad,
                &mut self.grads[RECURRENT],
                par,
            );
        }
        if let Some(e) = self.embedding {
            let d = self.spec.input;
            for (row, &token) in ws.grad_embedded.chunks(d).zip(&batch.tokens) {
                let t = token as usize;
                let dst = &mut self.grads[e][t * d..(t + 1) * d];
                dst.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
            }
        }
    }

    /// Applies the optimiser's step `delta` to tensor `index`: a learned step stays
    /// positive, the ORNN's parameter goes through its parametrisation (retracted or
    /// clamped), any other tensor adds it.
    pub fn apply_step(&mut self, index: usize, delta: &[f32], context: &StepContext) {
        let t = &mut self.params[index];
        match (&self.parametrisation, t.kind) {
            (_, Kind::Step) => lsq::apply_step(&mut t.data, delta),
            (Some(p), Kind::Recurrent) => p.apply_step(&mut t.data, delta, context),
            _ => t.data.iter_mut().zip(delta).for_each(|(p, d)| *p += d),
        }
    }
}

/// What the forward pass uses for tensor `i`: its quantized form where it has one.
fn used_tensor<'a>(params: &'a [Tensor], used: &'a [Vec<f32>], i: usize) -> &'a [f32] {
    if used[i].is_empty() {
        &params[i].data
    } else {
        &used[i]
    }
}

/// The core's tensors as used, and the recurrence its parametrisation applies (a free
/// function: the backward pass holds the gradients mutably while it builds one).
fn core_weights<'a>(
    core: &'a [Tensor],
    used: &'a [Vec<f32>],
    parametrisation: Option<&'a dyn RecurrentParametrisation>,
    hidden_quant: Option<HiddenQuantizer<f32>>,
) -> CoreWeights<'a> {
    let tensors: Vec<&[f32]> = (0..core.len())
        .map(|i| used_tensor(core, used, i))
        .collect();
    CoreWeights {
        recurrence: parametrisation.map(|p| p.recurrence(tensors[RECURRENT])),
        tensors,
        hidden_quant,
    }
}

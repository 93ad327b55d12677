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
use crate::quant::activation::{self, HiddenQuantizer};
use crate::quant::{self, lsq, Granularity, QuantizedTensor, Quantizer};
use crate::registry::{ModelName, ParametrisationContext};
use crate::tasks::Batch;
use faer::Par;
use rand::{Rng, RngCore};

/// Everything that fixes a model's shape and arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The registered model: its core and, for an ORNN, its recurrent parametrisation.
    pub model: ModelName,
    /// `--block`: the block size of a block-structured recurrence (`block-hadamrnn`).
    pub block: usize,
    pub hidden: usize,
    pub input: usize,
    pub outputs: usize,
    /// ORNN and RNN only.
    pub activation: Activation,
    pub readout: Readout,
    /// `None`: full precision.
    pub quantizer: Option<Quantizer>,
    pub bjorck: BjorckConfig,
    pub init: Init,
    /// Token inputs: the vocabulary of a float embedding `(V, d)` whose rows feed the core
    /// (`input` is then the embedding size d). `None`: dense inputs.
    pub vocabulary: Option<usize>,
    /// FastRNN/FastGRNN: `W = W1 W2` of rank `rank_w` and `U = U1 U2` of rank `rank_u`
    /// (EdgeML's low-rank option); `None`: full matrices.
    pub rank_w: Option<usize>,
    pub rank_u: Option<usize>,
    /// ORNN and RNN: the hidden state and the input fake-quantized at this many bits in
    /// training, as the integer engine computes them (`quant/activation.rs`), with a
    /// power-of-two step (the tensor `hidden.log2_step`); `None`: float activations.
    pub act_bits: Option<u32>,
    /// The read-out `V` fake-quantized at this many bits in training (the paper's
    /// per-tensor quantizer, straight through), as `qornn quantize --readout-bits` stores
    /// it; `None`: float `V`.
    pub readout_bits: Option<u32>,
}

impl ModelSpec {
    /// The parametrisation of an ORNN's recurrent matrix; `None` for other cores.
    pub fn parametrisation(&self) -> Option<Box<dyn RecurrentParametrisation>> {
        let build = self.model.entry().parametrisation?;
        Some(build(&ParametrisationContext {
            n: self.hidden,
            bjorck: self.bjorck,
            bits: self.quantizer.map(|q| q.bits),
            block: self.block,
        }))
    }

    /// The recurrent core (an ORNN's with its parametrisation's parameter tensor).
    pub fn cell(&self) -> Box<dyn Cell> {
        (self.model.entry().cell)(self, self.parametrisation().map(|p| p.tensor()))
    }

    /// The core's tensors, then the learned quantizer steps (LSQ), the hidden state's learned
    /// `log2` step (`--act-bits`), `readout.weight`, `readout.bias` and (for token inputs)
    /// `embedding.weight`, all zero.
    pub fn tensors(&self) -> Vec<Tensor> {
        let mut t = self.cell().tensors();
        if let Some(q) = self.quantizer {
            let exact_recurrence = self.parametrisation().is_some_and(|p| p.is_exact());
            t.extend(lsq::step_tensors(&t, &q, exact_recurrence));
        }
        if self.act_bits.is_some() {
            t.push(Tensor::zeros(activation::HIDDEN_STEP, 1, 1, Kind::Float));
        }
        t.extend(head::readout_tensors(self.hidden, self.outputs));
        if let Some(v) = self.vocabulary {
            t.push(Tensor::zeros(
                "embedding.weight",
                v,
                self.input,
                Kind::Float,
            ));
        }
        t
    }

    /// The block size `m` of a Hadamard recurrence.
    pub fn hadamard_block(&self) -> Option<usize> {
        self.parametrisation()?.hadamard_block()
    }

    /// Whether W is quantized block rotations (`qornn-rotations`).
    pub fn is_block_rotations(&self) -> bool {
        self.parametrisation()
            .is_some_and(|p| p.is_block_rotations())
    }

    /// ORNN or RNN: a core `act(W h + U x + b)`.
    pub fn is_elman(&self) -> bool {
        self.model.entry().elman
    }

    /// Floats carried from one batch to the next: `h` (and `c` for the LSTM), per sequence.
    pub fn state_len(&self, batch: usize) -> usize {
        self.cell().state_width() * batch
    }
}

/// Per-`(T, B)` activations: the core's, the head's, and the gradient between them.
pub struct Workspace {
    pub core: Box<dyn CellBuffers>,
    pub head: Head<f32>,
    /// `dh: (T, B, n)`: `dL/dh_t` from the read-out.
    dh: Vec<f32>,
    /// Token models: `embedded: (T, B, d)`, the gathered embedding rows, and its gradient.
    embedded: Vec<f32>,
    grad_embedded: Vec<f32>,
    /// `--act-bits`: the input as the integer engine quantizes it, `(T, B, d)`.
    quantized_input: Vec<f32>,
    /// `(T, B)`.
    steps: usize,
    batch: usize,
}

impl Workspace {
    /// The `(steps, batch)` this workspace holds.
    pub fn shape(&self) -> (usize, usize) {
        (self.steps, self.batch)
    }

    pub fn new(spec: &ModelSpec, steps: usize, batch: usize) -> Self {
        let embedded = if spec.vocabulary.is_some() {
            steps * batch * spec.input
        } else {
            0
        };
        let quantized_input = match (spec.act_bits, spec.vocabulary) {
            (Some(_), None) => steps * batch * spec.input,
            _ => 0,
        };
        Self {
            core: spec.cell().buffers(steps, batch),
            quantized_input: vec![0.0; quantized_input],
            head: Head::new(spec.readout, steps, batch, spec.outputs),
            dh: vec![0.0; steps * batch * spec.hidden],
            embedded: vec![0.0; embedded],
            grad_embedded: vec![0.0; embedded],
            steps,
            batch,
        }
    }
}

/// The index of the recurrent parameter of an ORNN (its core lists it first).
const RECURRENT: usize = 0;

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
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.params.iter().find(|t| t.name == name)
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

    /// `used`: the quantized forms of the recurrent matrix and of the weight matrices, from
    /// the same codes that `weight_codes` gives the integer path.
    fn quantize_weights(&mut self) {
        if let Some(p) = &self.parametrisation {
            match self.spec.quantizer {
                // Exactly representable: `W` is its own quantized form.
                _ if p.is_exact() => self.used[RECURRENT].copy_from_slice(&self.w_orth),
                Some(q) => {
                    let codes = self.recurrent_codes(&q);
                    codes.dequantize_into(&mut self.used[RECURRENT]);
                }
                None => self.used[RECURRENT].copy_from_slice(&self.w_orth),
            }
        }
        if let Some(q) = self.spec.quantizer {
            for i in 0..self.params.len() {
                if self.params[i].kind == Kind::Quantized {
                    let codes = self.tensor_codes(&q, i);
                    codes.dequantize_into(&mut self.used[i]);
                }
            }
        }
        if let Some(bits) = self.spec.readout_bits {
            let v = &self.params[self.readout];
            let q = Quantizer::post_training(bits, Granularity::PerTensor);
            q.quantize(&v.data, v.rows, v.cols)
                .dequantize_into(&mut self.used[self.readout]);
        }
    }

    /// The recurrence's input for `batch`: its dense `x` (quantized as the integer engine
    /// quantizes it while the activations are), or (with an embedding) the embedding rows
    /// of its tokens gathered into `embedded: (T, B, d)`.
    fn input<'a>(
        &self,
        (embedded, quantized): (&'a mut [f32], &'a mut [f32]),
        batch: &'a Batch,
    ) -> &'a [f32] {
        let Some(e) = self.embedding else {
            return match self.act_bits_in_use() {
                Some(bits) => {
                    activation::quantize_inputs(&batch.x, bits, quantized);
                    quantized
                }
                None => &batch.x,
            };
        };
        let d = self.spec.input;
        let table = &self.params[e].data;
        for (row, &token) in embedded.chunks_mut(d).zip(&batch.tokens) {
            let t = token as usize;
            row.copy_from_slice(&table[t * d..(t + 1) * d]);
        }
        embedded
    }

    /// The codes and steps of a quantized ORNN's or RNN's `W` and `U`, as the forward pass
    /// uses them (valid after `parametrise`): the model's own quantizer with its learned
    /// steps if any, and the parametrisation's exact codes where it has them (Hadamard).
    /// `None` for a full-precision model or another core.
    pub fn weight_codes(&self) -> Option<(QuantizedTensor<f32>, QuantizedTensor<f32>)> {
        let q = self.spec.quantizer?;
        if !self.spec.is_elman() {
            return None;
        }
        let w = match &self.parametrisation {
            Some(p) if p.is_exact() => p.exact_codes(&self.params[RECURRENT].data, q.bits)?,
            Some(_) => self.recurrent_codes(&q),
            None => self.tensor_codes(&q, RECURRENT),
        };
        let u = self.params.iter().position(|t| t.name == "weight_ih")?;
        Some((w, self.tensor_codes(&q, u)))
    }

    /// Tensor `tensor`'s learned steps (LSQ), if it has them.
    fn learned_steps_of(&self, tensor: usize) -> Option<&[f32]> {
        self.learned_steps
            .iter()
            .find(|l| l.tensor == tensor)
            .map(|l| &self.params[l.step].data[..])
    }

    /// The codes and steps of weight tensor `i` from the model's quantizer.
    fn tensor_codes(&self, q: &Quantizer, i: usize) -> QuantizedTensor<f32> {
        let t = &self.params[i];
        quant::for_tensor(q, false).codes(&t.data, t.rows, t.cols, self.learned_steps_of(i))
    }

    /// The ORNN's `q(W)` as codes and steps, from the quantizer of its recurrent matrix.
    fn recurrent_codes(&self, q: &Quantizer) -> QuantizedTensor<f32> {
        let n = self.spec.hidden;
        quant::for_tensor(q, true).codes(&self.w_orth, n, n, self.learned_steps_of(RECURRENT))
    }

    /// The activation bits the forward pass quantizes at now (`--act-bits`, when active).
    fn act_bits_in_use(&self) -> Option<u32> {
        self.spec.act_bits.filter(|_| self.quantize_activations)
    }

    /// The hidden state's fake quantizer, while the activations are quantized.
    pub fn hidden_quantizer(&self) -> Option<HiddenQuantizer<f32>> {
        let bits = self.act_bits_in_use()?;
        let log2_step = self.params[self.hidden_step?].data[0];
        let modrelu = self.spec.activation == Activation::Modrelu;
        Some(HiddenQuantizer::new(bits, log2_step, modrelu))
    }

    /// Starts the hidden state's step at the power of two that represents the float
    /// model's `h` on `batch` with the least squared error (`l = -f_h`; the largest `|h|`
    /// clipped when that costs less than a coarser step). Quantization of the activations
    /// is on afterwards.
    pub fn init_hidden_step(&mut self, ws: &mut Workspace, batch: &Batch, par: Par) {
        let (Some(bits), Some(index)) = (self.spec.act_bits, self.hidden_step) else {
            return;
        };
        self.quantize_activations = false;
        self.forward(ws, batch, par);
        let modrelu = self.spec.activation == Activation::Modrelu;
        let frac = activation::least_squares_fraction_bits(ws.core.outputs(), bits, modrelu);
        self.params[index].data[0] = -frac as f32;
        self.quantize_activations = true;
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
            &self.params[self.readout + 1].data,
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
        let (readout, core) = (self.readout, self.core_tensors);
        let [grad_v, grad_c] = self
            .grads
            .get_disjoint_mut([readout, readout + 1])
            .expect("distinct indices");
        ws.head.backward(
            ws.core.outputs(),
            n,
            used_tensor(&self.params, &self.used, readout),
            grad_v,
            grad_c,
            &mut ws.dh,
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
            // s = 2^round(l), straight through: ds/dl = s ln 2, times LSQ's scale g.
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

    /// The quantizers' straight-through backward where it is not the identity (learned
    /// steps: the clipping mask and the steps' gradients); the ORNN's `dL/dq(W)` is in
    /// `recurrent_grad`.
    fn quantizers_backward(&mut self) {
        let Some(q) = self.spec.quantizer else {
            return;
        };
        for l in &self.learned_steps {
            let t = &self.params[l.tensor];
            let steps = &self.params[l.step].data;
            let recurrent = t.kind == Kind::Recurrent;
            let quantizer = quant::for_tensor(&q, recurrent);
            if recurrent {
                let n = self.spec.hidden;
                let grad_steps = &mut self.grads[l.step];
                quantizer.backward(&self.w_orth, n, steps, &mut self.recurrent_grad, grad_steps);
            } else {
                let [grad, grad_steps] = self
                    .grads
                    .get_disjoint_mut([l.tensor, l.step])
                    .expect("distinct indices");
                quantizer.backward(&t.data, t.cols, steps, grad, grad_steps);
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

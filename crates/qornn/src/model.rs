//! A model: a recurrent core (the ORNN with its parametrisation, or a baseline cell), its
//! weight matrices quantized to k bits with a straight-through estimator, an optional
//! float embedding below it and a float read-out above it. Holds the parameters and their
//! gradients; buffers that depend on `(T, B)` live in a [`Workspace`].

use crate::bjorck::{Bjorck, BjorckConfig, SpectralNorm};
use crate::cells::fastgrnn::{self, FastGrnnCell, FastGrnnGrads, FastGrnnParams};
use crate::cells::fastrnn::{FastRnnCell, FastRnnGrads, FastRnnParams};
use crate::cells::gru::{GruCell, GruGrads, GruParams};
use crate::cells::lstm::{LstmCell, LstmGrads, LstmParams};
use crate::hadamard;
use crate::head::{Head, Readout};
use crate::init::Init;
use crate::linalg::{gemm, mat, mat_mut};
use crate::lsq;
use crate::ornn::{Activation, CellGrads, CellParams, CellShape, OrnnCell, Recurrence};
use crate::orthogonal_rounding::{round_towards_orthogonal, Rounding};
use crate::params::{stored_bits, zeros_like, Kind, Tensor};
use crate::projunn::ProjUnnKind;
use crate::quant::{Granularity, QuantizedTensor, Quantizer, RangeRule};
use crate::tasks::Batch;
use faer::{Accum, Par};
use rand::Rng;
use rand_distr::StandardNormal;

/// How the ORNN's recurrent matrix is kept (approximately) orthogonal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parametrisation {
    /// Free `A` -> spectral normalisation -> Björck iterations (gradients flow through).
    Bjorck,
    /// `W` itself kept orthogonal by projUNN retractions of the optimiser's step.
    ProjUnn(ProjUnnKind),
    /// `W = diag(sign(v)) (I ⊗ H_m) / sqrt(m)`, exactly orthogonal, only the signs `v`
    /// learned (HadamRNN; `block = n` binary, `block < n` ternary): see `hadamard.rs`.
    Hadamard { block: usize },
}

/// The recurrent core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// The (quantized) orthogonal RNN.
    Ornn(Parametrisation),
    /// Elman RNN with an unconstrained `W` (ReLU or tanh): the ORNN cell without a constraint.
    Rnn,
    Lstm,
    Gru,
    FastRnn,
    FastGrnn,
}

/// Everything that fixes a model's shape and arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub architecture: Architecture,
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
}

/// FastRNN/FastGRNN: where the cell's `W` or `U` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The tensor at this index.
    Full(usize),
    /// The product of the tensors at these indices (`left (n x r)`, `right (r x cols)`).
    LowRank { left: usize, right: usize },
}

/// FastRNN/FastGRNN: the sources of `W` and `U`, and the index of the first other tensor.
#[derive(Clone, Copy, Debug)]
struct FastLayout {
    w: Source,
    u: Source,
    rest: usize,
}

impl ModelSpec {
    /// The tensors of the core, then `readout.weight`, `readout.bias` and (for token
    /// inputs) `embedding.weight`, all zero.
    pub fn tensors(&self) -> Vec<Tensor> {
        let (n, d, c) = (self.hidden, self.input, self.outputs);
        use Kind::{Float, Quantized, Recurrent};
        let mut t = match self.architecture {
            Architecture::Ornn(_) | Architecture::Rnn => {
                let w_kind = if matches!(self.architecture, Architecture::Rnn) {
                    Quantized
                } else {
                    Recurrent
                };
                // A Hadamard recurrence learns only its `n` signs.
                let w_rows = if self.hadamard_block().is_some() {
                    1
                } else {
                    n
                };
                let mut t = vec![
                    Tensor::zeros("weight_hh", w_rows, n, w_kind),
                    Tensor::zeros("weight_ih", n, d, Quantized),
                    Tensor::zeros("bias", 1, n, Float),
                ];
                if self.activation == Activation::Modrelu {
                    t.push(Tensor::zeros("bias_mod", 1, n, Float));
                }
                if let Some(q) = self.quantizer.filter(|q| q.range == RangeRule::Lsq) {
                    let steps = |rows| match q.granularity {
                        Granularity::PerTensor => 1,
                        Granularity::PerRow => rows,
                    };
                    if self.hadamard_block().is_none() {
                        t.push(Tensor::zeros("weight_hh.step", steps(n), 1, Kind::Step));
                    }
                    t.push(Tensor::zeros("weight_ih.step", steps(n), 1, Kind::Step));
                }
                t
            }
            Architecture::Lstm | Architecture::Gru => {
                let g = if self.architecture == Architecture::Lstm {
                    4
                } else {
                    3
                };
                vec![
                    Tensor::zeros("weight_ih_l0", g * n, d, Quantized),
                    Tensor::zeros("weight_hh_l0", g * n, n, Quantized),
                    Tensor::zeros("bias_ih_l0", 1, g * n, Float),
                    Tensor::zeros("bias_hh_l0", 1, g * n, Float),
                ]
            }
            Architecture::FastRnn | Architecture::FastGrnn => {
                let mut t = Vec::new();
                match self.rank_w {
                    Some(r) => t.extend([
                        Tensor::zeros("W1", n, r, Quantized),
                        Tensor::zeros("W2", r, d, Quantized),
                    ]),
                    None => t.push(Tensor::zeros("W", n, d, Quantized)),
                }
                match self.rank_u {
                    Some(r) => t.extend([
                        Tensor::zeros("U1", n, r, Quantized),
                        Tensor::zeros("U2", r, n, Quantized),
                    ]),
                    None => t.push(Tensor::zeros("U", n, n, Quantized)),
                }
                if self.architecture == Architecture::FastRnn {
                    t.extend([
                        Tensor::zeros("b_h", 1, n, Float),
                        Tensor::zeros("alpha", 1, 1, Float),
                        Tensor::zeros("beta", 1, 1, Float),
                    ]);
                } else {
                    t.extend([
                        Tensor::zeros("b_z", 1, n, Float),
                        Tensor::zeros("b_h", 1, n, Float),
                        Tensor::zeros("zeta", 1, 1, Float),
                        Tensor::zeros("nu", 1, 1, Float),
                    ]);
                }
                t
            }
        };
        t.push(Tensor::zeros("readout.weight", c, n, Float));
        t.push(Tensor::zeros("readout.bias", 1, c, Float));
        if let Some(v) = self.vocabulary {
            t.push(Tensor::zeros("embedding.weight", v, d, Float));
        }
        t
    }

    /// The block size `m` of a Hadamard recurrence.
    pub fn hadamard_block(&self) -> Option<usize> {
        match self.architecture {
            Architecture::Ornn(Parametrisation::Hadamard { block }) => Some(block),
            _ => None,
        }
    }

    fn fast_layout(&self) -> FastLayout {
        let (w, next) = match self.rank_w {
            Some(_) => (Source::LowRank { left: 0, right: 1 }, 2),
            None => (Source::Full(0), 1),
        };
        let (u, rest) = match self.rank_u {
            Some(_) => (
                Source::LowRank {
                    left: next,
                    right: next + 1,
                },
                next + 2,
            ),
            None => (Source::Full(next), next + 1),
        };
        FastLayout { w, u, rest }
    }

    /// Floats carried from one batch to the next: `h` (and `c` for the LSTM), `(B, n)` each.
    pub fn state_len(&self, batch: usize) -> usize {
        let copies = if self.architecture == Architecture::Lstm {
            2
        } else {
            1
        };
        copies * batch * self.hidden
    }
}

/// The core's activations for one `(T, B)`.
pub enum Core {
    Ornn(OrnnCell<f32>),
    Lstm(LstmCell<f32>),
    Gru(GruCell<f32>),
    FastRnn(FastRnnCell<f32>),
    FastGrnn(FastGrnnCell<f32>),
}

impl Core {
    /// `h_1 .. h_T`, `(T, B, n)`.
    pub fn outputs(&self) -> &[f32] {
        match self {
            Core::Ornn(c) => c.outputs(),
            Core::Lstm(c) => c.outputs(),
            Core::Gru(c) => c.outputs(),
            Core::FastRnn(c) => c.outputs(),
            Core::FastGrnn(c) => c.outputs(),
        }
    }

    pub fn set_initial_state(&mut self, state: &[f32]) {
        match self {
            Core::Ornn(c) => c.set_initial_state(state),
            Core::Lstm(c) => c.set_initial_state(state),
            Core::Gru(c) => c.set_initial_state(state),
            Core::FastRnn(c) => c.set_initial_state(state),
            Core::FastGrnn(c) => c.set_initial_state(state),
        }
    }

    pub fn final_state_into(&self, state: &mut [f32]) {
        match self {
            Core::Ornn(c) => c.final_state_into(state),
            Core::Lstm(c) => c.final_state_into(state),
            Core::Gru(c) => c.final_state_into(state),
            Core::FastRnn(c) => c.final_state_into(state),
            Core::FastGrnn(c) => c.final_state_into(state),
        }
    }
}

/// Per-`(T, B)` activations: the core's, the head's, and the gradient between them.
pub struct Workspace {
    pub core: Core,
    pub head: Head<f32>,
    /// `dh: (T, B, n)`: `dL/dh_t` from the read-out.
    dh: Vec<f32>,
    /// Token models: `embedded: (T, B, d)`, the gathered embedding rows, and its gradient.
    embedded: Vec<f32>,
    grad_embedded: Vec<f32>,
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
        let shape = CellShape {
            hidden: spec.hidden,
            input: spec.input,
            steps,
            batch,
        };
        let core = match spec.architecture {
            Architecture::Ornn(_) | Architecture::Rnn => {
                Core::Ornn(OrnnCell::new(shape, spec.activation))
            }
            Architecture::Lstm => Core::Lstm(LstmCell::new(shape)),
            Architecture::Gru => Core::Gru(GruCell::new(shape)),
            Architecture::FastRnn => Core::FastRnn(FastRnnCell::new(shape)),
            Architecture::FastGrnn => Core::FastGrnn(FastGrnnCell::new(shape)),
        };
        let embedded = if spec.vocabulary.is_some() {
            steps * batch * spec.input
        } else {
            0
        };
        Self {
            core,
            head: Head::new(spec.readout, steps, batch, spec.outputs),
            dh: vec![0.0; steps * batch * spec.hidden],
            embedded: vec![0.0; embedded],
            grad_embedded: vec![0.0; embedded],
            steps,
            batch,
        }
    }
}

pub struct Model {
    pub spec: ModelSpec,
    /// The core's tensors, then the read-out's, then the embedding (see `ModelSpec::tensors`).
    pub params: Vec<Tensor>,
    /// One gradient per tensor of `params`.
    pub grads: Vec<Vec<f32>>,
    /// ORNN with Björck: the power-iteration state.
    pub spectral: Option<SpectralNorm<f32>>,
    bjorck: Option<Bjorck<f32>>,
    /// What the forward pass uses in place of each tensor: `q(.)` of a quantized matrix,
    /// `q(W)` of the orthogonalised recurrent matrix; empty where the tensor is used as is.
    used: Vec<Vec<f32>>,
    /// ORNN: `(n, n)`, the orthogonalised recurrent matrix before quantization.
    w_orth: Vec<f32>,
    /// Hadamard recurrence: `sign(v_i) / sqrt(m)`, `(n)`, what the cell applies.
    row_scale: Vec<f32>,
    /// ORNN and RNN: `(n, n)` scratch: the spectrally normalised `A`, then `dL/dq(W)`.
    scratch: Vec<f32>,
    /// ReLU cores: `(n)` zeros standing for the absent modReLU bias, and a sink for its
    /// (unused) gradient.
    zero_bias_mod: Vec<f32>,
    unused_grad: Vec<f32>,
    /// LSQ: each quantized tensor with the index of its learned step.
    learned_steps: Vec<LearnedStep>,
    /// Low-rank FastRNN/FastGRNN: the products `W = q(W1) q(W2)`, `U = q(U1) q(U2)` and
    /// their gradients (empty for full matrices).
    low_rank_w: Vec<f32>,
    low_rank_u: Vec<f32>,
    grad_low_rank_w: Vec<f32>,
    grad_low_rank_u: Vec<f32>,
}

/// How the ORNN/RNN cell applies the recurrent matrix: the Hadamard transform with its row
/// scale, or the dense `q(W)` (a free function: the backward pass holds the gradients
/// mutably while it builds one).
fn recurrence_of<'a>(
    spec: &ModelSpec,
    row_scale: &'a [f32],
    dense: &'a [f32],
) -> Recurrence<'a, f32> {
    match spec.hadamard_block() {
        Some(block) => Recurrence::Hadamard { row_scale, block },
        None => Recurrence::Dense(dense),
    }
}

/// A quantized tensor and its learned step (LSQ), as indices into `Model::params`.
#[derive(Clone, Copy, Debug)]
struct LearnedStep {
    tensor: usize,
    step: usize,
}

/// Indices of the read-out and embedding tensors, which follow the core's.
struct HeadIndex {
    readout: usize,
    readout_bias: usize,
    embedding: Option<usize>,
}

impl Model {
    /// A freshly initialised model:
    /// - ORNN: W from `spec.init` (for Björck, `A = W`, a fixed point); RNN likewise;
    /// - LSTM, GRU: PyTorch's uniform `+-1/sqrt(n)` for every tensor;
    /// - FastRNN, FastGRNN: EdgeML's `0.1 N(0, 1)` matrices, biases 1, `alpha = -3`,
    ///   `beta = 3`, `zeta = 1`, `nu = -4`;
    /// - input matrices of the ORNN/RNN and the read-out: `nn.Linear`'s `+-1/sqrt(fan_in)`,
    ///   biases zero, modReLU biases in `+-0.01`, embeddings in `+-0.1` (Zaremba et al.).
    pub fn new(spec: ModelSpec, rng: &mut impl Rng) -> Self {
        let mut params = spec.tensors();
        let uniform = |t: &mut Tensor, bound: f32, rng: &mut dyn rand::RngCore| {
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.gen_range(-bound..bound));
        };
        let n = spec.hidden;
        let pytorch_bound = 1.0 / (n as f32).sqrt();
        for t in params.iter_mut() {
            match t.name {
                // HadamRNN's sign vector: Xavier-uniform on a (1, n) tensor, as its authors.
                "weight_hh" if t.rows == 1 => uniform(t, (6.0 / (n as f32 + 1.0)).sqrt(), rng),
                "weight_hh" => t.data = spec.init.sample(n, rng),
                "weight_ih" => uniform(t, 1.0 / (spec.input as f32).sqrt(), rng),
                "bias_mod" => uniform(t, 0.01, rng),
                "weight_ih_l0" | "weight_hh_l0" | "bias_ih_l0" | "bias_hh_l0" => {
                    uniform(t, pytorch_bound, rng)
                }
                "W" | "U" | "W1" | "W2" | "U1" | "U2" => t
                    .data
                    .iter_mut()
                    .for_each(|v| *v = 0.1 * rng.sample::<f32, _>(StandardNormal)),
                "b_h" | "b_z" => t.data.fill(1.0),
                "alpha" => t.data.fill(-3.0),
                "beta" => t.data.fill(3.0),
                "zeta" => t.data.fill(fastgrnn::ZETA_INIT as f32),
                "nu" => t.data.fill(fastgrnn::NU_INIT as f32),
                "readout.weight" => uniform(t, pytorch_bound, rng),
                "embedding.weight" => uniform(t, 0.1, rng),
                _ => {}
            }
        }
        Self::from_params(spec, params, None)
    }

    /// A model around given tensors; `spectral_u` restores the power-iteration vector.
    pub fn from_params(spec: ModelSpec, params: Vec<Tensor>, spectral_u: Option<Vec<f32>>) -> Self {
        let n = spec.hidden;
        let (spectral, bjorck) = match spec.architecture {
            Architecture::Ornn(Parametrisation::Bjorck) => {
                let a = &params[0].data;
                let s = match spectral_u {
                    Some(u) => SpectralNorm::with_u(a, n, u),
                    None => SpectralNorm::new(a, n, 50),
                };
                (Some(s), Some(Bjorck::new(spec.bjorck, n)))
            }
            _ => (None, None),
        };
        let quantized = spec.quantizer.is_some();
        let used = params
            .iter()
            .map(|t| match t.kind {
                Kind::Recurrent => vec![0.0; n * n],
                Kind::Quantized if quantized => vec![0.0; t.len()],
                _ => Vec::new(),
            })
            .collect();
        let ornn = matches!(spec.architecture, Architecture::Ornn(_));
        let elman = ornn || spec.architecture == Architecture::Rnn;
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
        let mut model = Self {
            learned_steps,
            grads: zeros_like(&params),
            used,
            w_orth: vec![0.0; if ornn { n * n } else { 0 }],
            row_scale: vec![
                0.0;
                if spec.hadamard_block().is_some() {
                    n
                } else {
                    0
                }
            ],
            scratch: vec![0.0; if elman { n * n } else { 0 }],
            zero_bias_mod: vec![0.0; if elman { n } else { 0 }],
            unused_grad: vec![0.0; if elman { n } else { 0 }],
            low_rank_w: vec![0.0; spec.rank_w.map_or(0, |_| n * spec.input)],
            low_rank_u: vec![0.0; spec.rank_u.map_or(0, |_| n * n)],
            grad_low_rank_w: vec![0.0; spec.rank_w.map_or(0, |_| n * spec.input)],
            grad_low_rank_u: vec![0.0; spec.rank_u.map_or(0, |_| n * n)],
            spec,
            params,
            spectral,
            bjorck,
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
        self.head_index()
            .embedding
            .map_or(0, |i| self.params[i].len())
    }

    /// The weights as stored: k bits per quantized entry plus a 32-bit step per tensor
    /// (or row), 32 bits per float entry; in bytes, rounded up.
    pub fn size_bytes(&self) -> u64 {
        let bits = self.spec.quantizer.map(|q| q.bits);
        let per_row = self
            .spec
            .quantizer
            .is_some_and(|q| q.granularity == Granularity::PerRow);
        self.params
            .iter()
            .map(|t| match (t.kind, self.spec.hadamard_block()) {
                // One sign bit per row; the block size is part of the architecture.
                (Kind::Recurrent, Some(_)) => t.len() as u64,
                _ => stored_bits(t, bits, per_row),
            })
            .sum::<u64>()
            .div_ceil(8)
    }

    fn head_index(&self) -> HeadIndex {
        let embedding = self.spec.vocabulary.map(|_| self.params.len() - 1);
        let readout = self.params.len() - 2 - embedding.map_or(0, |_| 1);
        HeadIndex {
            readout,
            readout_bias: readout + 1,
            embedding,
        }
    }

    /// What the forward pass uses for tensor `i` (its quantized form where it has one).
    fn used(&self, i: usize) -> &[f32] {
        if self.used[i].is_empty() {
            &self.params[i].data
        } else {
            &self.used[i]
        }
    }

    /// The ORNN's orthogonalised recurrent matrix before quantization (valid after
    /// `parametrise`); `None` for other cores.
    pub fn w_orthogonal(&self) -> Option<&[f32]> {
        (!self.w_orth.is_empty()).then_some(&self.w_orth[..])
    }

    /// The recurrent matrix the recurrence uses, `q(W)`, for ORNN and RNN cores.
    pub fn w_used(&self) -> Option<&[f32]> {
        match self.spec.architecture {
            Architecture::Ornn(_) | Architecture::Rnn => Some(self.used(0)),
            _ => None,
        }
    }

    /// Computes the ORNN's `W` from its parameters, and quantizes the weight matrices.
    /// In training the power iteration advances one step; in evaluation it stays.
    pub fn parametrise(&mut self, training: bool, par: Par) {
        self.orthogonalise(training, par);
        self.quantize_weights(par);
    }

    /// The ORNN's orthogonal `W` (before quantization) into `w_orth`.
    fn orthogonalise(&mut self, training: bool, par: Par) {
        if let Architecture::Ornn(parametrisation) = self.spec.architecture {
            match parametrisation {
                Parametrisation::Bjorck => {
                    let spectral = self
                        .spectral
                        .as_mut()
                        .expect("Björck model has a spectral norm");
                    if training {
                        spectral.forward(&self.params[0].data, &mut self.scratch);
                    } else {
                        spectral.normalize_into(&self.params[0].data, &mut self.scratch);
                    }
                    let bjorck = self
                        .bjorck
                        .as_mut()
                        .expect("Björck model has its iterations");
                    self.w_orth
                        .copy_from_slice(bjorck.forward(&self.scratch, par));
                }
                Parametrisation::ProjUnn(_) => self.w_orth.copy_from_slice(&self.params[0].data),
                Parametrisation::Hadamard { block } => {
                    let v = &self.params[0].data;
                    let scale = 1.0 / (block as f32).sqrt();
                    for (r, &vi) in self.row_scale.iter_mut().zip(v) {
                        *r = hadamard::sign(vi) * scale;
                    }
                    hadamard::dense_into(v, block, &mut self.w_orth)
                }
            }
        }
    }

    /// `used`: the quantized forms of the recurrent matrix and of the weight matrices, from
    /// the same codes that `weight_codes` gives the integer path.
    fn quantize_weights(&mut self, par: Par) {
        if let Architecture::Ornn(_) = self.spec.architecture {
            match self.spec.quantizer {
                // Exactly representable: `W` is its own quantized form.
                _ if self.spec.hadamard_block().is_some() => {
                    self.used[0].copy_from_slice(&self.w_orth)
                }
                Some(q) => {
                    let codes = self.recurrent_codes(&q);
                    codes.dequantize_into(&mut self.used[0]);
                }
                None => self.used[0].copy_from_slice(&self.w_orth),
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
        if self.spec.rank_w.is_some() || self.spec.rank_u.is_some() {
            self.compose_low_rank(par);
        }
    }

    /// Low-rank FastRNN/FastGRNN: `W = q(W1) q(W2)`, `U = q(U1) q(U2)`.
    fn compose_low_rank(&mut self, par: Par) {
        let layout = self.spec.fast_layout();
        for (source, is_w) in [(layout.w, true), (layout.u, false)] {
            if let Source::LowRank { left, right } = source {
                let (l, r) = (&self.params[left], &self.params[right]);
                let (rows, rank, cols) = (l.rows, l.cols, r.cols);
                let mut out = std::mem::take(if is_w {
                    &mut self.low_rank_w
                } else {
                    &mut self.low_rank_u
                });
                gemm(
                    mat_mut(&mut out, rows, cols),
                    Accum::Replace,
                    mat(self.used(left), rows, rank),
                    mat(self.used(right), rank, cols),
                    1.0,
                    par,
                );
                *(if is_w {
                    &mut self.low_rank_w
                } else {
                    &mut self.low_rank_u
                }) = out;
            }
        }
    }

    /// What a FastRNN/FastGRNN uses as `W` or `U`.
    fn fast_matrix(&self, source: Source, is_w: bool) -> &[f32] {
        match source {
            Source::Full(i) => self.used(i),
            Source::LowRank { .. } if is_w => &self.low_rank_w,
            Source::LowRank { .. } => &self.low_rank_u,
        }
    }

    /// The recurrence's input for `batch`: its dense `x`, or (with an embedding) the
    /// embedding rows of its tokens gathered into `embedded: (T, B, d)`.
    fn input<'a>(&self, embedded: &'a mut [f32], batch: &'a Batch) -> &'a [f32] {
        let Some(e) = self.head_index().embedding else {
            return &batch.x;
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
    /// steps if any, and for a Hadamard recurrence the exact codes `sign(v_i) H_ij` with the
    /// step `1 / sqrt(m)`. `None` for a full-precision model or another core.
    pub fn weight_codes(&self) -> Option<(QuantizedTensor<f32>, QuantizedTensor<f32>)> {
        let q = self.spec.quantizer?;
        if !matches!(
            self.spec.architecture,
            Architecture::Ornn(_) | Architecture::Rnn
        ) {
            return None;
        }
        let n = self.spec.hidden;
        let w = match self.spec.hadamard_block() {
            Some(block) => QuantizedTensor {
                rows: n,
                cols: n,
                bits: q.bits,
                granularity: Granularity::PerTensor,
                codes: (0..n * n)
                    .map(|k| {
                        let (i, j) = (k / n, k % n);
                        let sign = hadamard::sign(self.params[0].data[i]) as i32;
                        sign * hadamard::hadamard_entry(i, j, block)
                    })
                    .collect(),
                steps: vec![1.0 / (block as f32).sqrt()],
            },
            None if matches!(self.spec.architecture, Architecture::Ornn(_)) => {
                self.recurrent_codes(&q)
            }
            None => self.tensor_codes(&q, 0),
        };
        Some((w, self.tensor_codes(&q, 1)))
    }

    /// The index of tensor `tensor`'s learned step (LSQ), if it has one.
    fn learned_step(&self, tensor: usize) -> Option<usize> {
        self.learned_steps
            .iter()
            .find(|l| l.tensor == tensor)
            .map(|l| l.step)
    }

    /// The codes and steps of weight tensor `i`: its learned steps, or the quantizer's range.
    fn tensor_codes(&self, q: &Quantizer, i: usize) -> QuantizedTensor<f32> {
        let t = &self.params[i];
        match self.learned_step(i) {
            Some(step) => q.quantize_with_steps(&t.data, t.rows, t.cols, &self.params[step].data),
            None => q.quantize(&t.data, t.rows, t.cols),
        }
    }

    /// The ORNN's `q(W)` as codes and steps: its learned steps (LSQ), or rounded as the
    /// quantizer says (to nearest, or towards orthogonality: `orthogonal_rounding.rs`).
    fn recurrent_codes(&self, q: &Quantizer) -> QuantizedTensor<f32> {
        let n = self.spec.hidden;
        if let Some(step) = self.learned_step(0) {
            return q.quantize_with_steps(&self.w_orth, n, n, &self.params[step].data);
        }
        let mut t = q.quantize(&self.w_orth, n, n);
        if q.rounding == Rounding::Orthogonal {
            round_towards_orthogonal(&self.w_orth, n, t.steps[0], q.bits, &mut t.codes);
        }
        t
    }

    fn scalar(&self, i: usize) -> f32 {
        self.params[i].data[0]
    }

    /// Forward pass over `batch`; returns the mean loss (logits stay in `ws.head`).
    pub fn forward(&self, ws: &mut Workspace, batch: &Batch, par: Par) -> f32 {
        let x = self.input(&mut ws.embedded, batch);
        let u = |i| self.used(i);
        match &mut ws.core {
            Core::Ornn(cell) => {
                let bm = if self.spec.activation == Activation::Modrelu {
                    u(3)
                } else {
                    &self.zero_bias_mod[..]
                };
                let p = CellParams {
                    w: recurrence_of(&self.spec, &self.row_scale, u(0)),
                    u: u(1),
                    b: u(2),
                    bm,
                };
                cell.forward(&p, x, par);
            }
            Core::Lstm(cell) => cell.forward(
                &LstmParams {
                    weight_ih: u(0),
                    weight_hh: u(1),
                    bias_ih: u(2),
                    bias_hh: u(3),
                },
                x,
                par,
            ),
            Core::Gru(cell) => cell.forward(
                &GruParams {
                    weight_ih: u(0),
                    weight_hh: u(1),
                    bias_ih: u(2),
                    bias_hh: u(3),
                },
                x,
                par,
            ),
            Core::FastRnn(cell) => {
                let f = self.spec.fast_layout();
                let p = FastRnnParams {
                    w: self.fast_matrix(f.w, true),
                    u: self.fast_matrix(f.u, false),
                    b_h: u(f.rest),
                    alpha: self.scalar(f.rest + 1),
                    beta: self.scalar(f.rest + 2),
                };
                cell.forward(&p, x, par);
            }
            Core::FastGrnn(cell) => {
                let f = self.spec.fast_layout();
                let p = FastGrnnParams {
                    w: self.fast_matrix(f.w, true),
                    u: self.fast_matrix(f.u, false),
                    b_z: u(f.rest),
                    b_h: u(f.rest + 1),
                    zeta: self.scalar(f.rest + 2),
                    nu: self.scalar(f.rest + 3),
                };
                cell.forward(&p, x, par);
            }
        }
        let h = self.head_index();
        ws.head.forward(
            ws.core.outputs(),
            self.spec.hidden,
            &self.params[h.readout].data,
            &self.params[h.readout_bias].data,
            &batch.targets,
            par,
        )
    }

    /// Backward pass after `forward`; adds into `self.grads`.
    ///
    /// Quantizers pass gradients straight through (STE): `dL/dW = dL/dq(W)`. The ORNN's
    /// recurrent gradient then flows back through Björck and the normalisation (or, for
    /// projUNN, is left to the optimiser's retraction). With an embedding, `dL/dx` is
    /// scattered back onto the rows of its tokens.
    pub fn backward(&mut self, ws: &mut Workspace, batch: &Batch, par: Par) {
        let n = self.spec.hidden;
        let h = self.head_index();
        let [grad_v, grad_c] = self
            .grads
            .get_disjoint_mut([h.readout, h.readout_bias])
            .expect("distinct indices");
        ws.head.backward(
            ws.core.outputs(),
            n,
            &self.params[h.readout].data,
            grad_v,
            grad_c,
            &mut ws.dh,
            par,
        );
        let embedding = h.embedding.is_some();
        let x = if embedding {
            &ws.embedded[..]
        } else {
            &batch.x[..]
        };
        let grad_x = embedding.then_some(&mut ws.grad_embedded[..]);
        let dh = &ws.dh;
        let used = |i: usize| -> &[f32] {
            if self.used[i].is_empty() {
                &self.params[i].data
            } else {
                &self.used[i]
            }
        };
        let recurrence = recurrence_of(&self.spec, &self.row_scale, used(0));
        match &mut ws.core {
            Core::Ornn(cell) => {
                // The recurrent matrix's gradient goes to `scratch`: `recurrent_backward`
                // takes it on to the parameter.
                self.scratch.fill(0.0);
                let modrelu = self.spec.activation == Activation::Modrelu;
                let bm = if modrelu {
                    used(3)
                } else {
                    &self.zero_bias_mod[..]
                };
                let p = CellParams {
                    w: recurrence,
                    u: used(1),
                    b: used(2),
                    bm,
                };
                let (g_core, g_rest) = self.grads.split_at_mut(3);
                let g_bm = if modrelu {
                    &mut g_rest[0][..]
                } else {
                    &mut self.unused_grad[..]
                };
                let [g_u, g_b] = g_core.get_disjoint_mut([1, 2]).expect("distinct indices");
                let mut g = CellGrads {
                    w: &mut self.scratch,
                    u: g_u,
                    b: g_b,
                    bm: g_bm,
                };
                cell.backward(&p, x, dh, &mut g, grad_x, par);
            }
            Core::Lstm(cell) => {
                let p = LstmParams {
                    weight_ih: used(0),
                    weight_hh: used(1),
                    bias_ih: used(2),
                    bias_hh: used(3),
                };
                let [a, b, c, d] = self
                    .grads
                    .get_disjoint_mut([0, 1, 2, 3])
                    .expect("distinct indices");
                cell.backward(
                    &p,
                    x,
                    dh,
                    &mut LstmGrads {
                        weight_ih: a,
                        weight_hh: b,
                        bias_ih: c,
                        bias_hh: d,
                    },
                    grad_x,
                    par,
                );
            }
            Core::Gru(cell) => {
                let p = GruParams {
                    weight_ih: used(0),
                    weight_hh: used(1),
                    bias_ih: used(2),
                    bias_hh: used(3),
                };
                let [a, b, c, d] = self
                    .grads
                    .get_disjoint_mut([0, 1, 2, 3])
                    .expect("distinct indices");
                cell.backward(
                    &p,
                    x,
                    dh,
                    &mut GruGrads {
                        weight_ih: a,
                        weight_hh: b,
                        bias_ih: c,
                        bias_hh: d,
                    },
                    grad_x,
                    par,
                );
            }
            Core::FastRnn(_) | Core::FastGrnn(_) => {
                self.fast_backward(&mut ws.core, x, dh, grad_x, par);
            }
        }
        self.learned_steps_backward();
        self.recurrent_backward(par);
        if let Some(e) = h.embedding {
            let d = self.spec.input;
            for (row, &token) in ws.grad_embedded.chunks(d).zip(&batch.tokens) {
                let t = token as usize;
                let dst = &mut self.grads[e][t * d..(t + 1) * d];
                dst.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
            }
        }
    }

    /// FastRNN/FastGRNN backward; a low-rank `W = W1 W2` passes `dL/dW` on as
    /// `dL/dW1 = dL/dW q(W2)^T` and `dL/dW2 = q(W1)^T dL/dW` (likewise `U`).
    fn fast_backward(
        &mut self,
        core: &mut Core,
        x: &[f32],
        dh: &[f32],
        grad_x: Option<&mut [f32]>,
        par: Par,
    ) {
        let f = self.spec.fast_layout();
        let mut grads = std::mem::take(&mut self.grads);
        let mut grad_w = std::mem::take(&mut self.grad_low_rank_w);
        let mut grad_u = std::mem::take(&mut self.grad_low_rank_u);
        grad_w.fill(0.0);
        grad_u.fill(0.0);
        {
            let (factors, rest) = grads.split_at_mut(f.rest);
            let (gw, gu): (&mut [f32], &mut [f32]) = match (f.w, f.u) {
                (Source::Full(a), Source::Full(b)) => {
                    let [gw, gu] = factors.get_disjoint_mut([a, b]).expect("distinct indices");
                    (gw, gu)
                }
                (Source::Full(a), Source::LowRank { .. }) => (&mut factors[a], &mut grad_u),
                (Source::LowRank { .. }, Source::Full(b)) => (&mut grad_w, &mut factors[b]),
                (Source::LowRank { .. }, Source::LowRank { .. }) => (&mut grad_w, &mut grad_u),
            };
            let (w, u) = (self.fast_matrix(f.w, true), self.fast_matrix(f.u, false));
            let used = |i: usize| self.used(i);
            match core {
                Core::FastRnn(cell) => {
                    let p = FastRnnParams {
                        w,
                        u,
                        b_h: used(f.rest),
                        alpha: self.scalar(f.rest + 1),
                        beta: self.scalar(f.rest + 2),
                    };
                    let [b_h, alpha, beta] =
                        rest.get_disjoint_mut([0, 1, 2]).expect("distinct indices");
                    let mut g = FastRnnGrads {
                        w: gw,
                        u: gu,
                        b_h,
                        alpha: &mut alpha[0],
                        beta: &mut beta[0],
                    };
                    cell.backward(&p, x, dh, &mut g, grad_x, par);
                }
                Core::FastGrnn(cell) => {
                    let p = FastGrnnParams {
                        w,
                        u,
                        b_z: used(f.rest),
                        b_h: used(f.rest + 1),
                        zeta: self.scalar(f.rest + 2),
                        nu: self.scalar(f.rest + 3),
                    };
                    let [b_z, b_h, zeta, nu] = rest
                        .get_disjoint_mut([0, 1, 2, 3])
                        .expect("distinct indices");
                    let mut g = FastGrnnGrads {
                        w: gw,
                        u: gu,
                        b_z,
                        b_h,
                        zeta: &mut zeta[0],
                        nu: &mut nu[0],
                    };
                    cell.backward(&p, x, dh, &mut g, grad_x, par);
                }
                _ => unreachable!("fast_backward serves FastRNN and FastGRNN"),
            }
        }
        for (source, grad) in [(f.w, &grad_w), (f.u, &grad_u)] {
            if let Source::LowRank { left, right } = source {
                let (rows, rank, cols) = (
                    self.params[left].rows,
                    self.params[left].cols,
                    self.params[right].cols,
                );
                let [gl, gr] = grads
                    .get_disjoint_mut([left, right])
                    .expect("distinct indices");
                gemm(
                    mat_mut(gl, rows, rank),
                    Accum::Add,
                    mat(grad, rows, cols),
                    mat(self.used(right), rank, cols).transpose(),
                    1.0,
                    par,
                );
                gemm(
                    mat_mut(gr, rank, cols),
                    Accum::Add,
                    mat(self.used(left), rows, rank).transpose(),
                    mat(grad, rows, cols),
                    1.0,
                    par,
                );
            }
        }
        self.grads = grads;
        self.grad_low_rank_w = grad_w;
        self.grad_low_rank_u = grad_u;
    }

    /// LSQ: `dL/dq(.)` to `dL/d.` (zero where clipped) and to the learned steps' gradients;
    /// the recurrent matrix's `dL/dq(W)` is in `scratch`.
    fn learned_steps_backward(&mut self) {
        let Some(q) = self.spec.quantizer else {
            return;
        };
        for l in &self.learned_steps {
            let t = &self.params[l.tensor];
            let steps = &self.params[l.step].data;
            if t.kind == Kind::Recurrent {
                let grad_steps = &mut self.grads[l.step];
                let n = self.spec.hidden;
                lsq::backward(
                    &self.w_orth,
                    n,
                    steps,
                    q.bits,
                    &mut self.scratch,
                    grad_steps,
                );
            } else {
                let [grad, grad_steps] = self
                    .grads
                    .get_disjoint_mut([l.tensor, l.step])
                    .expect("distinct indices");
                lsq::backward(&t.data, t.cols, steps, q.bits, grad, grad_steps);
            }
        }
    }

    /// ORNN: `dL/dq(W)` (in `scratch`) to the recurrent parameter's gradient.
    fn recurrent_backward(&mut self, par: Par) {
        match self.spec.architecture {
            Architecture::Ornn(Parametrisation::Bjorck) => {
                let bjorck = self
                    .bjorck
                    .as_mut()
                    .expect("Björck model has its iterations");
                let grad_w0 = bjorck.backward(&self.scratch, par);
                let spectral = self
                    .spectral
                    .as_ref()
                    .expect("Björck model has a spectral norm");
                spectral.backward(&self.params[0].data, grad_w0, &mut self.grads[0]);
            }
            // The cell left dL/d row_scale in `scratch[..n]`; row_scale_i = sign(v_i) / sqrt(m)
            // with the identity straight-through gradient on sign.
            Architecture::Ornn(Parametrisation::Hadamard { block }) => {
                let scale = 1.0 / (block as f32).sqrt();
                self.grads[0]
                    .iter_mut()
                    .zip(&self.scratch[..self.spec.hidden])
                    .for_each(|(g, &d)| *g += d * scale);
            }
            Architecture::Ornn(Parametrisation::ProjUnn(_)) | Architecture::Rnn => {
                self.grads[0]
                    .iter_mut()
                    .zip(&self.scratch)
                    .for_each(|(g, &d)| *g += d);
            }
            _ => {}
        }
    }
}

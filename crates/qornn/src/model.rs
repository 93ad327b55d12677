//! A QORNN: parametrise the recurrent matrix (Björck or projUNN), quantize W and U,
//! recur, read out. Holds the parameters and their gradients; buffers that depend on
//! `(T, B)` live in a [`Workspace`].

use crate::bjorck::{Bjorck, BjorckConfig, SpectralNorm};
use crate::head::{Head, Readout};
use crate::init::Init;
use crate::ornn::{Activation, CellGrads, CellParams, CellShape, OrnnCell};
use crate::projunn::ProjUnnKind;
use crate::quant::{maybe_fake_quantize, Quantizer};
use crate::tasks::Batch;
use faer::Par;
use rand::Rng;

/// How the recurrent matrix is kept (approximately) orthogonal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parametrisation {
    /// Free `A` -> spectral normalisation -> Björck iterations (gradients flow through).
    Bjorck,
    /// `W` itself kept orthogonal by projUNN retractions of the optimiser's step.
    ProjUnn(ProjUnnKind),
}

/// Everything that fixes a model's shape and arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub parametrisation: Parametrisation,
    pub hidden: usize,
    pub input: usize,
    pub outputs: usize,
    pub activation: Activation,
    pub readout: Readout,
    /// `None`: full precision.
    pub quantizer: Option<Quantizer>,
    pub bjorck: BjorckConfig,
    pub init: Init,
    /// Token inputs: the vocabulary of a float embedding `(V, d)` whose rows feed U
    /// (`input` is then the embedding size d). `None`: dense inputs.
    pub vocabulary: Option<usize>,
}

/// The trainable tensors, row-major, named as in checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensors {
    /// `(n, n)`: the free `A` (Björck) or the orthogonal `W` (projUNN).
    pub recurrent: Vec<f32>,
    /// `U: (n, d)`
    pub input: Vec<f32>,
    /// `b: (n)`
    pub bias: Vec<f32>,
    /// `bm: (n)`, modReLU only (zeros and frozen for ReLU)
    pub bias_mod: Vec<f32>,
    /// `V: (C, n)`
    pub readout: Vec<f32>,
    /// `c: (C)`
    pub readout_bias: Vec<f32>,
    /// `E: (V, d)`, token models only (empty otherwise); float, never quantized.
    pub embedding: Vec<f32>,
}

impl Tensors {
    pub const NAMES: [&'static str; 7] = [
        "weight_hh",
        "weight_ih",
        "bias",
        "bias_mod",
        "readout.weight",
        "readout.bias",
        "embedding.weight",
    ];

    pub fn zeros(spec: &ModelSpec) -> Self {
        let (n, d, c) = (spec.hidden, spec.input, spec.outputs);
        Self {
            recurrent: vec![0.0; n * n],
            input: vec![0.0; n * d],
            bias: vec![0.0; n],
            bias_mod: vec![0.0; n],
            readout: vec![0.0; c * n],
            readout_bias: vec![0.0; c],
            embedding: vec![0.0; spec.vocabulary.unwrap_or(0) * d],
        }
    }

    pub fn all(&self) -> [&Vec<f32>; 7] {
        [
            &self.recurrent,
            &self.input,
            &self.bias,
            &self.bias_mod,
            &self.readout,
            &self.readout_bias,
            &self.embedding,
        ]
    }

    pub fn all_mut(&mut self) -> [&mut Vec<f32>; 7] {
        [
            &mut self.recurrent,
            &mut self.input,
            &mut self.bias,
            &mut self.bias_mod,
            &mut self.readout,
            &mut self.readout_bias,
            &mut self.embedding,
        ]
    }

    pub fn fill_zero(&mut self) {
        self.all_mut().into_iter().for_each(|t| t.fill(0.0));
    }
}

/// Per-`(T, B)` activations: the cell's and the head's.
pub struct Workspace {
    pub cell: OrnnCell<f32>,
    pub head: Head<f32>,
    /// Token models: `embedded: (T, B, d)`, the gathered embedding rows, and its gradient.
    embedded: Vec<f32>,
    grad_embedded: Vec<f32>,
}

impl Workspace {
    pub fn new(spec: &ModelSpec, steps: usize, batch: usize) -> Self {
        let shape = CellShape {
            hidden: spec.hidden,
            input: spec.input,
            steps,
            batch,
        };
        Self {
            cell: OrnnCell::new(shape, spec.activation),
            head: Head::new(spec.readout, steps, batch, spec.outputs),
            embedded: vec![
                0.0;
                if spec.vocabulary.is_some() {
                    steps * batch * spec.input
                } else {
                    0
                }
            ],
            grad_embedded: vec![
                0.0;
                if spec.vocabulary.is_some() {
                    steps * batch * spec.input
                } else {
                    0
                }
            ],
        }
    }
}

pub struct Model {
    pub spec: ModelSpec,
    pub params: Tensors,
    pub grads: Tensors,
    /// Björck only: the power-iteration state.
    pub spectral: Option<SpectralNorm<f32>>,
    bjorck: Option<Bjorck<f32>>,
    /// `(n, n)`: the orthogonalised matrix before quantization (Björck output, or W).
    w_orth: Vec<f32>,
    /// `(n, n)`: what the recurrence uses, `q(w_orth)`.
    w_used: Vec<f32>,
    /// `(n, d)`: `q(U)`.
    u_used: Vec<f32>,
    /// `(n, n)` scratch: spectrally normalised `A`, then `dL/dW_used`.
    scratch: Vec<f32>,
}

impl Model {
    /// A freshly initialised model: W from `spec.init` (for Björck, `A = W`, a fixed
    /// point), U and V uniform in `+-1/sqrt(fan_in)` as `nn.Linear`, biases zero,
    /// modReLU biases uniform in [-0.01, 0.01].
    pub fn new(spec: ModelSpec, rng: &mut impl Rng) -> Self {
        let mut params = Tensors::zeros(&spec);
        params.recurrent = spec.init.sample(spec.hidden, rng);
        let bound_in = 1.0 / (spec.input as f32).sqrt();
        params
            .input
            .iter_mut()
            .for_each(|u| *u = rng.gen_range(-bound_in..bound_in));
        // Embeddings as in Zaremba et al. (2014): uniform in [-0.1, 0.1].
        params
            .embedding
            .iter_mut()
            .for_each(|e| *e = rng.gen_range(-0.1..0.1));
        let bound_out = 1.0 / (spec.hidden as f32).sqrt();
        params
            .readout
            .iter_mut()
            .for_each(|v| *v = rng.gen_range(-bound_out..bound_out));
        if spec.activation == Activation::Modrelu {
            params
                .bias_mod
                .iter_mut()
                .for_each(|v| *v = rng.gen_range(-0.01..0.01));
        }
        Self::from_params(spec, params, None)
    }

    /// A model around given tensors; `spectral_u` restores the power-iteration vector.
    pub fn from_params(spec: ModelSpec, params: Tensors, spectral_u: Option<Vec<f32>>) -> Self {
        let n = spec.hidden;
        let (spectral, bjorck) = match spec.parametrisation {
            Parametrisation::Bjorck => {
                let s = match spectral_u {
                    Some(u) => SpectralNorm::with_u(&params.recurrent, n, u),
                    None => SpectralNorm::new(&params.recurrent, n, 50),
                };
                (Some(s), Some(Bjorck::new(spec.bjorck, n)))
            }
            Parametrisation::ProjUnn(_) => (None, None),
        };
        let grads = Tensors::zeros(&spec);
        Self {
            u_used: vec![0.0; params.input.len()],
            w_orth: vec![0.0; n * n],
            w_used: vec![0.0; n * n],
            scratch: vec![0.0; n * n],
            spec,
            params,
            grads,
            spectral,
            bjorck,
        }
    }

    /// Number of trainable scalars (the modReLU bias counts only with modReLU).
    pub fn num_params(&self) -> usize {
        let p = &self.params;
        let bm = if self.spec.activation == Activation::Modrelu {
            p.bias_mod.len()
        } else {
            0
        };
        p.recurrent.len()
            + p.input.len()
            + p.bias.len()
            + bm
            + p.readout.len()
            + p.readout_bias.len()
            + p.embedding.len()
    }

    /// The orthogonalised recurrent matrix before quantization (valid after `parametrise`).
    pub fn w_orthogonal(&self) -> &[f32] {
        &self.w_orth
    }

    /// The recurrent matrix the recurrence uses, `q(W)` (valid after `parametrise`).
    pub fn w_used(&self) -> &[f32] {
        &self.w_used
    }

    /// Computes `W` from the parameters and quantizes W and U. In training the power
    /// iteration advances one step; in evaluation its state is left as it is.
    pub fn parametrise(&mut self, training: bool, par: Par) {
        let n = self.spec.hidden;
        match self.spec.parametrisation {
            Parametrisation::Bjorck => {
                let spectral = self
                    .spectral
                    .as_mut()
                    .expect("Björck model has a spectral norm");
                if training {
                    spectral.forward(&self.params.recurrent, &mut self.scratch);
                } else {
                    spectral.normalize_into(&self.params.recurrent, &mut self.scratch);
                }
                let bjorck = self
                    .bjorck
                    .as_mut()
                    .expect("Björck model has its iterations");
                self.w_orth
                    .copy_from_slice(bjorck.forward(&self.scratch, par));
            }
            Parametrisation::ProjUnn(_) => self.w_orth.copy_from_slice(&self.params.recurrent),
        }
        let q = self.spec.quantizer.as_ref();
        maybe_fake_quantize(q, &self.w_orth, n, n, &mut self.w_used);
        maybe_fake_quantize(q, &self.params.input, n, self.spec.input, &mut self.u_used);
    }

    /// The recurrence's input for `batch`: its dense `x`, or (with an embedding) the
    /// embedding rows of its tokens gathered into `embedded: (T, B, d)`.
    fn input<'a>(&self, embedded: &'a mut [f32], batch: &'a Batch) -> &'a [f32] {
        if self.spec.vocabulary.is_none() {
            return &batch.x;
        }
        let d = self.spec.input;
        for (row, &token) in embedded.chunks_mut(d).zip(&batch.tokens) {
            let t = token as usize;
            row.copy_from_slice(&self.params.embedding[t * d..(t + 1) * d]);
        }
        embedded
    }

    /// Forward pass over `batch`; returns the mean loss (logits stay in `ws.head`).
    pub fn forward(&self, ws: &mut Workspace, batch: &Batch, par: Par) -> f32 {
        let params = CellParams {
            w: &self.w_used,
            u: &self.u_used,
            b: &self.params.bias,
            bm: &self.params.bias_mod,
        };
        let x = self.input(&mut ws.embedded, batch);
        ws.cell.forward(&params, x, par);
        ws.head.forward(
            ws.cell.outputs(),
            self.spec.hidden,
            &self.params.readout,
            &self.params.readout_bias,
            &batch.targets,
            par,
        )
    }

    /// Backward pass after `forward`; adds into `self.grads`.
    ///
    /// The quantizer's gradient is the identity (STE): `dL/dW = dL/dq(W)`, `dL/dU = dL/dq(U)`.
    /// For Björck, `dL/dW` then flows back through the iterations and the normalisation.
    /// With an embedding, `dL/dx` is scattered back onto the rows of its tokens.
    pub fn backward(&mut self, ws: &mut Workspace, batch: &Batch, par: Par) {
        let n = self.spec.hidden;
        let (outputs, grad_outputs) = ws.cell.outputs_and_grads_mut();
        ws.head.backward(
            outputs,
            n,
            &self.params.readout,
            &mut self.grads.readout,
            &mut self.grads.readout_bias,
            grad_outputs,
            par,
        );
        self.scratch.fill(0.0);
        let params = CellParams {
            w: &self.w_used,
            u: &self.u_used,
            b: &self.params.bias,
            bm: &self.params.bias_mod,
        };
        let mut grads = CellGrads {
            w: &mut self.scratch,
            u: &mut self.grads.input,
            b: &mut self.grads.bias,
            bm: &mut self.grads.bias_mod,
        };
        let embedding = self.spec.vocabulary.is_some();
        let x = if embedding { &ws.embedded } else { &batch.x };
        let grad_x = embedding.then_some(&mut ws.grad_embedded[..]);
        ws.cell.backward(&params, x, &mut grads, grad_x, par);
        if embedding {
            let d = self.spec.input;
            for (row, &token) in ws.grad_embedded.chunks(d).zip(&batch.tokens) {
                let t = token as usize;
                let dst = &mut self.grads.embedding[t * d..(t + 1) * d];
                dst.iter_mut().zip(row).for_each(|(g, &v)| *g += v);
            }
        }
        if self.spec.activation == Activation::Relu {
            self.grads.bias_mod.fill(0.0);
        }
        match self.spec.parametrisation {
            Parametrisation::Bjorck => {
                let bjorck = self
                    .bjorck
                    .as_mut()
                    .expect("Björck model has its iterations");
                let grad_w0 = bjorck.backward(&self.scratch, par);
                let spectral = self
                    .spectral
                    .as_ref()
                    .expect("Björck model has a spectral norm");
                spectral.backward(&self.params.recurrent, grad_w0, &mut self.grads.recurrent);
            }
            Parametrisation::ProjUnn(_) => {
                for (g, &d) in self.grads.recurrent.iter_mut().zip(&self.scratch) {
                    *g += d;
                }
            }
        }
    }
}

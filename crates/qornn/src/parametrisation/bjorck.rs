//! Spectral normalisation (power iteration) and Björck orthonormalisation, forward and
//! backward written explicitly. Derivation of the backward: `docs/bjorck.md`.
//!
//! Forward: `W_0 = A / sigma(A)`, then `W_{k+1} = (1 + beta) W_k - beta W_k W_k^T W_k`
//! for `k < N` (the paper: N = 15, beta = 0.5).

use crate::registry::{ModelEntry, ParametrisationContext};
use crate::linalg::{dot, gemm, mat, mat_mut};
use crate::Real;
use faer::reborrow::ReborrowMut;
use faer::{Accum, Par};
use serde::{Deserialize, Serialize};

/// Björck iteration settings; `Default` holds the paper's values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BjorckConfig {
    pub iterations: usize,
    pub beta: f64,
}

impl Default for BjorckConfig {
    fn default() -> Self {
        Self {
            iterations: 15,
            beta: 0.5,
        }
    }
}

/// Björck iterations over a square matrix, keeping every iterate for the backward pass.
pub struct Bjorck<T> {
    pub config: BjorckConfig,
    n: usize,
    /// `(N + 1) x n x n`: `W_0 .. W_N`.
    iterates: Vec<T>,
    /// `n x n` scratch: `W_k^T W_k`, then products in the backward.
    gram: Vec<T>,
    scratch: Vec<T>,
    grad: Vec<T>,
    next: Vec<T>,
}

impl<T: Real> Bjorck<T> {
    pub fn new(config: BjorckConfig, n: usize) -> Self {
        Self {
            config,
            n,
            iterates: vec![T::zero(); (config.iterations + 1) * n * n],
            gram: vec![T::zero(); n * n],
            scratch: vec![T::zero(); n * n],
            grad: vec![T::zero(); n * n],
            next: vec![T::zero(); n * n],
        }
    }

    fn iterate(&self, k: usize) -> &[T] {
        let nn = self.n * self.n;
        &self.iterates[k * nn..(k + 1) * nn]
    }

    /// Runs the iterations from `w0`; returns the last iterate `W_N`.
    pub fn forward(&mut self, w0: &[T], par: Par) -> &[T] {
        let (n, nn) = (self.n, self.n * self.n);
        let beta = T::of(self.config.beta);
        self.iterates[..nn].copy_from_slice(w0);
        for k in 0..self.config.iterations {
            let (done, rest) = self.iterates.split_at_mut((k + 1) * nn);
            let w = &done[k * nn..];
            let next = &mut rest[..nn];
            // gram = W^T W; next = (1 + beta) W - beta W gram
            gemm(
                mat_mut(&mut self.gram, n, n),
                Accum::Replace,
                mat(w, n, n).transpose(),
                mat(w, n, n),
                T::one(),
                par,
            );
            for (o, &x) in next.iter_mut().zip(w) {
                *o = (T::one() + beta) * x;
            }
            gemm(
                mat_mut(next, n, n),
                Accum::Add,
                mat(w, n, n),
                mat(&self.gram, n, n),
                -beta,
                par,
            );
        }
        self.iterate(self.config.iterations)
    }

    /// Given `dL/dW_N`, returns `dL/dW_0` (valid after `forward`).
    ///
    /// One step back: `G_k = (1 + beta) G - beta (G W^T W + W G^T W + W W^T G)` with
    /// `W = W_k`, `G = G_{k+1}`.
    pub fn backward(&mut self, grad_out: &[T], par: Par) -> &[T] {
        let n = self.n;
        let beta = T::of(self.config.beta);
        self.grad.copy_from_slice(grad_out);
        for k in (0..self.config.iterations).rev() {
            let nn = n * n;
            let w = &self.iterates[k * nn..(k + 1) * nn];
            let g = &self.grad;
            // gram = W^T W, scratch = G^T W
            gemm(
                mat_mut(&mut self.gram, n, n),
                Accum::Replace,
                mat(w, n, n).transpose(),
                mat(w, n, n),
                T::one(),
                par,
            );
            gemm(
                mat_mut(&mut self.scratch, n, n),
                Accum::Replace,
                mat(g, n, n).transpose(),
                mat(w, n, n),
                T::one(),
                par,
            );
            // next = (1 + beta) G - beta (G gram + W scratch + W (W^T G)); W (W^T G) = W scratch^T.
            for (o, &x) in self.next.iter_mut().zip(g.iter()) {
                *o = (T::one() + beta) * x;
            }
            let mut out = mat_mut(&mut self.next, n, n);
            gemm(
                out.rb_mut(),
                Accum::Add,
                mat(g, n, n),
                mat(&self.gram, n, n),
                -beta,
                par,
            );
            gemm(
                out.rb_mut(),
                Accum::Add,
                mat(w, n, n),
                mat(&self.scratch, n, n),
                -beta,
                par,
            );
            gemm(
                out,
                Accum::Add,
                mat(w, n, n),
                mat(&self.scratch, n, n).transpose(),
                -beta,
                par,
            );
            std::mem::swap(&mut self.grad, &mut self.next);
        }
        &self.grad
    }
}

/// Spectral normalisation `W_0 = A / sigma` with `sigma = u^T A v` estimated by power
/// iteration; `u` persists between calls (one iteration per training step, as in
/// PyTorch's `spectral_norm`). The gradient flows through `sigma` with `u`, `v` held
/// fixed: `dL/dA = G / sigma - (<G, A> / sigma^2) u v^T`.
#[derive(Clone, Debug)]
pub struct SpectralNorm<T> {
    pub n: usize,
    /// Left singular vector estimate (persisted in checkpoints).
    pub u: Vec<T>,
    v: Vec<T>,
    sigma: T,
}

impl<T: Real> SpectralNorm<T> {
    /// Starts from a fixed non-degenerate `u` and runs `warmup` iterations on `a`.
    pub fn new(a: &[T], n: usize, warmup: usize) -> Self {
        let u = (0..n)
            .map(|i| T::one() + T::of(0.01 * ((i * 7919) % 101) as f64))
            .collect();
        let mut s = Self {
            n,
            u,
            v: vec![T::zero(); n],
            sigma: T::one(),
        };
        normalize(&mut s.u);
        for _ in 0..warmup {
            s.power_iteration(a);
        }
        s.update_sigma(a);
        s
    }

    /// Restores a persisted `u` (from a checkpoint) and recomputes `v` and `sigma`.
    pub fn with_u(a: &[T], n: usize, u: Vec<T>) -> Self {
        assert_eq!(u.len(), n);
        let mut s = Self {
            n,
            u,
            v: vec![T::zero(); n],
            sigma: T::one(),
        };
        s.update_v(a);
        s.update_sigma(a);
        s
    }

    fn update_v(&mut self, a: &[T]) {
        let n = self.n;
        // v = normalize(A^T u)
        for j in 0..n {
            self.v[j] = (0..n).map(|i| a[i * n + j] * self.u[i]).sum();
        }
        normalize(&mut self.v);
    }

    /// One power iteration: `v = A^T u / |.|`, `u = A v / |.|`.
    pub fn power_iteration(&mut self, a: &[T]) {
        let n = self.n;
        self.update_v(a);
        for i in 0..n {
            self.u[i] = dot(&a[i * n..(i + 1) * n], &self.v);
        }
        normalize(&mut self.u);
    }

    fn update_sigma(&mut self, a: &[T]) {
        let n = self.n;
        self.sigma = (0..n)
            .map(|i| self.u[i] * dot(&a[i * n..(i + 1) * n], &self.v))
            .sum();
    }

    /// One power iteration, then `w0 = A / sigma`.
    pub fn forward(&mut self, a: &[T], w0: &mut [T]) {
        self.power_iteration(a);
        self.normalize_into(a, w0);
    }

    /// `w0 = A / sigma` with `sigma = u^T A v` for the current vectors (no power iteration).
    pub fn normalize_into(&mut self, a: &[T], w0: &mut [T]) {
        self.update_sigma(a);
        let inv = T::one() / self.sigma;
        for (o, &x) in w0.iter_mut().zip(a) {
            *o = x * inv;
        }
    }

    /// Adds `dL/dA` to `grad_a` given `grad_w0 = dL/dW_0`.
    pub fn backward(&self, a: &[T], grad_w0: &[T], grad_a: &mut [T]) {
        let n = self.n;
        let sigma = self.sigma;
        let coupling = dot(grad_w0, a) / (sigma * sigma);
        for i in 0..n {
            for j in 0..n {
                let k = i * n + j;
                grad_a[k] += grad_w0[k] / sigma - coupling * self.u[i] * self.v[j];
            }
        }
    }
}

fn normalize<T: Real>(x: &mut [T]) {
    let norm = x.iter().map(|&v| v * v).sum::<T>().sqrt();
    let norm = if norm > T::zero() { norm } else { T::one() };
    for v in x {
        *v /= norm;
    }
}

/// STE-Björck (the paper): `W = bjorck(A / sigma(A))` for a free parameter `A`, with the
/// power iteration's vector kept from step to step (and in checkpoints as `spectral.u`).
/// Construction is cheap (the model builds one to learn the parameter's shape); the
/// iterations' buffers come with `restore`, which the model calls before any use.
pub struct BjorckParametrisation {
    n: usize,
    config: BjorckConfig,
    state: Option<BjorckState>,
}

/// What the forward and backward passes keep.
struct BjorckState {
    spectral: SpectralNorm<f32>,
    bjorck: Bjorck<f32>,
    /// `(n, n)`: `A / sigma(A)`, Björck's input.
    normalised: Vec<f32>,
}

/// Power iterations that set up `sigma(A)`'s vector of a fresh model.
const SPECTRAL_WARMUP: usize = 50;

/// The paper's QORNN, STE-Björck (8 bits unless `--bits`).
pub const QORNN_BJORCK: ModelEntry = ModelEntry::elman("qornn-bjorck", Some(build))
    .quantized(crate::registry::QORNN_BITS)
    .checked(check);

/// Its full-precision twin.
pub const ORNN_BJORCK: ModelEntry = ModelEntry::elman("ornn-bjorck", Some(build))
    .float_only()
    .checked(check);

fn build(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(BjorckParametrisation::new(context.n, context.bjorck))
}

fn check(config: &crate::registry::ModelSettings) -> crate::Result<()> {
    if config.bjorck_iterations == 0 {
        return Err(crate::Error::config(
            "bjorck_iterations",
            "Björck needs at least 1 iteration (the paper uses 15)",
        ));
    }
    Ok(())
}

impl BjorckParametrisation {
    pub fn new(n: usize, config: BjorckConfig) -> Self {
        Self {
            n,
            config,
            state: None,
        }
    }

    fn restored(&mut self) -> &mut BjorckState {
        self.state
            .as_mut()
            .expect("the model restores the parametrisation before use")
    }
}

impl super::RecurrentParametrisation for BjorckParametrisation {
    fn tensor(&self) -> crate::Tensor {
        crate::Tensor::zeros("weight_hh", self.n, self.n, crate::Kind::Recurrent)
    }

    /// `A = W_init`, a fixed point of the map for an orthogonal initialisation.
    fn init(&self, param: &mut crate::Tensor, init: crate::Init, rng: &mut dyn rand::RngCore) {
        param.data = init.sample(self.n, &mut &mut *rng);
    }

    fn forward(&mut self, param: &[f32], training: bool, w: &mut [f32], par: Par) {
        let BjorckState {
            spectral,
            bjorck,
            normalised,
        } = self.restored();
        if training {
            spectral.forward(param, normalised);
        } else {
            spectral.normalize_into(param, normalised);
        }
        w.copy_from_slice(bjorck.forward(normalised, par));
    }

    /// Through Björck's iterations, then through the normalisation.
    fn backward(&mut self, param: &[f32], grad_applied: &[f32], grad: &mut [f32], par: Par) {
        let BjorckState {
            spectral, bjorck, ..
        } = self.restored();
        let grad_w0 = bjorck.backward(grad_applied, par);
        spectral.backward(param, grad_w0, grad);
    }

    fn state_layout(&self) -> Option<(&'static str, usize)> {
        Some(("spectral.u", self.n))
    }

    fn state(&self) -> Option<Vec<f32>> {
        self.state.as_ref().map(|s| s.spectral.u.clone())
    }

    fn restore(&mut self, param: &[f32], state: Option<Vec<f32>>) {
        let n = self.n;
        let spectral = match state {
            Some(u) => SpectralNorm::with_u(param, n, u),
            None => SpectralNorm::new(param, n, SPECTRAL_WARMUP),
        };
        self.state = Some(BjorckState {
            spectral,
            bjorck: Bjorck::new(self.config, n),
            normalised: vec![0.0; n * n],
        });
    }
}

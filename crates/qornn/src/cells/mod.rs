//! The recurrent cores, one file each behind the [`Cell`] trait: the (quantized) orthogonal
//! RNN and the Elman RNN (`ornn.rs`, their nonlinearity in `activation.rs`), LSTM and GRU with PyTorch's equations and parameter
//! layout (`lstm.rs`, `gru.rs`, sharing `gated.rs`), FastRNN and FastGRNN with EdgeML's
//! (`fastrnn.rs`, `fastgrnn.rs`, sharing `edge.rs`, low-rank factors in `low_rank.rs`).
//! Each has its forward pass and its backward pass through time written explicitly over
//! buffers allocated once per `(T, B)`. Every `backward` takes `dL/dh_t` for every step, `(T, B, n)`, and adds into
//! the gradients of its parameters.
//!
//! Adding a cell: a file with a type implementing [`Cell`] (its tensors and their
//! initialisation), one implementing [`CellBuffers`] (forward, backward, state) and its
//! `--model` entry ([`crate::registry::ModelEntry::cell`]), and its line in the
//! `register!` below.

pub mod activation;
pub mod edge;
mod fused;
pub mod gated;
pub mod low_rank;
pub mod recurrence;

use crate::linalg::{gemm, mat, mat_mut};
use crate::params::Tensor;
use crate::quant::activation::HiddenQuantizer;
use crate::registry::register;
use crate::Real;
use faer::{Accum, Par};
use rand::RngCore;
use rayon::prelude::*;
use recurrence::Recurrence;

register! {
    ornn: RNN;
    lstm: LSTM;
    gru: GRU;
    fastrnn: FASTRNN;
    fastgrnn: FASTGRNN;
}

/// A recurrent core as the model sees it: its named tensors and their initial values, and
/// the buffers of one `(T, B)` in which it runs.
pub trait Cell: Send + Sync {
    /// The core's tensors, zero, in the order the model stores them (for an ORNN the
    /// recurrent parameter first, shaped by its parametrisation).
    fn tensors(&self) -> Vec<Tensor>;

    /// Sets the initial value of the core's tensor `t` (one of `tensors()`, by name).
    fn init(&self, t: &mut Tensor, rng: &mut dyn RngCore);

    /// Floats per sequence carried from one batch to the next (`h`; `h` and `c` for the
    /// LSTM).
    fn state_width(&self) -> usize;

    /// The activation buffers of a forward and backward pass over `(steps, batch)`.
    fn buffers(&self, steps: usize, batch: usize) -> Box<dyn CellBuffers>;
}

/// What the core computes with: its tensors as used (quantized where they are), in the
/// order of [`Cell::tensors`], and the recurrence its parametrisation applies (ORNN).
pub struct CoreWeights<'a> {
    pub tensors: Vec<&'a [f32]>,
    pub recurrence: Option<Recurrence<'a, f32>>,
    /// An Elman core's hidden-state fake quantizer (`--act-bits`); other cores have none.
    pub hidden_quant: Option<HiddenQuantizer<f32>>,
}

/// Where the core's backward pass adds its gradients: one per tensor, with respect to the
/// tensor as used (the quantizer's straight-through estimator takes them on), and, for an
/// Elman core, the recurrent matrix's: `dL/dq(W)` `(n, n)` (the RNN's and the ORNN's), or
/// `dL/d row_scale` in the first `n` entries for a Hadamard recurrence.
pub struct CoreGrads<'a> {
    pub tensors: &'a mut [Vec<f32>],
    pub recurrence: &'a mut [f32],
    /// `dL/ds` of the hidden quantizer's step `s` (with `CoreWeights::hidden_quant`).
    pub hidden_step: &'a mut f32,
}

/// One `(T, B)`'s activations of a core, with its forward and backward passes.
pub trait CellBuffers: Send {
    /// Runs the core over `x: (T, B, d)`.
    fn forward(&mut self, weights: &CoreWeights<'_>, x: &[f32], par: Par);

    /// Backward through time from `dh: (T, B, n)` after `forward`; adds into `grads` and,
    /// when asked, writes `dL/dx` into `grad_x`.
    fn backward(
        &mut self,
        weights: &CoreWeights<'_>,
        x: &[f32],
        dh: &[f32],
        grads: CoreGrads<'_>,
        grad_x: Option<&mut [f32]>,
        par: Par,
    );

    /// `h_1 .. h_T`, `(T, B, n)`.
    fn outputs(&self) -> &[f32];

    /// Sets the initial state, `(B, state_width)`.
    fn set_initial_state(&mut self, state: &[f32]);

    /// Copies the last state into `state`.
    fn final_state_into(&self, state: &mut [f32]);
}

#[inline(always)]
pub(crate) fn sigmoid<T: Real>(x: T) -> T {
    x.sigmoid()
}

/// Adds the column sums of the row-major `rows x cols` matrix `m` into `out`.
pub(crate) fn add_column_sums<T: Real>(m: &[T], cols: usize, out: &mut [T]) {
    for row in m.chunks(cols) {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
    }
}

/// The weight gradients after a backward time loop, each one product over all
/// `rows = T B` rows: `dW_in += D_in^T X`, `dW_rec += D_rec^T H_prev` and, when asked,
/// `dX = D_in W_in` (the input's gradient, for an embedding below the cell).
pub(crate) struct TimeLoopGrads<'a, T> {
    /// `(rows, width)`: the gradients of the input projection's and of the recurrent
    /// projection's outputs (the same buffer where the cell adds the two).
    pub d_input: &'a [T],
    pub d_recurrent: &'a [T],
    pub width: usize,
    /// `x: (rows, d)`, `h_prev: (rows, n)`, `w_input: (width, d)`.
    pub x: &'a [T],
    pub h_prev: &'a [T],
    pub w_input: &'a [T],
}

impl<T: Real> TimeLoopGrads<'_, T> {
    /// `grad_w_recurrent: None` skips `dW_rec` (a recurrence that sums its own gradient).
    pub fn apply(
        &self,
        grad_w_input: &mut [T],
        grad_w_recurrent: Option<&mut [T]>,
        grad_x: Option<&mut [T]>,
        par: Par,
    ) {
        let rows = self.d_input.len() / self.width;
        let (d, n) = (self.x.len() / rows, self.h_prev.len() / rows);
        if let Some(grad_x) = grad_x {
            gemm(
                mat_mut(grad_x, rows, d),
                Accum::Replace,
                mat(self.d_input, rows, self.width),
                mat(self.w_input, self.width, d),
                T::one(),
                par,
            );
        }
        gemm(
            mat_mut(grad_w_input, self.width, d),
            Accum::Add,
            mat(self.d_input, rows, self.width).transpose(),
            mat(self.x, rows, d),
            T::one(),
            par,
        );
        if let Some(grad_w_recurrent) = grad_w_recurrent {
            gemm(
                mat_mut(grad_w_recurrent, self.width, n),
                Accum::Add,
                mat(self.d_recurrent, rows, self.width).transpose(),
                mat(self.h_prev, rows, n),
                T::one(),
                par,
            );
        }
    }
}

/// How many threads a batch-parallel time loop uses. The rows of a batch are independent
/// through the whole recurrence, so each thread runs every time step on its own rows and
/// the threads meet only once, after the loop (not at every step, as a parallel matrix
/// product per step would).
pub(crate) fn batch_parts(par: Par, batch: usize) -> usize {
    match par {
        Par::Seq => 1,
        Par::Rayon(threads) => threads.get().clamp(1, batch.max(1)),
    }
}

/// The rows `start..end` of a batch that part `p` of `parts` owns.
pub(crate) fn part_rows(batch: usize, parts: usize, p: usize) -> std::ops::Range<usize> {
    p * batch / parts..(p + 1) * batch / parts
}

/// Cuts every `(batch, width)` block of `buf` (blocks stored one after another) into the
/// row ranges of [`part_rows`]: `result[p][t]` is part `p`'s rows of block `t`.
pub(crate) fn split_batch_rows<T>(
    buf: &mut [T],
    batch: usize,
    width: usize,
    parts: usize,
) -> Vec<Rows<'_, T>> {
    let blocks = buf.len() / (batch * width).max(1);
    let mut out: Vec<Rows<'_, T>> = (0..parts).map(|_| Vec::with_capacity(blocks)).collect();
    for block in buf.chunks_mut(batch * width) {
        let mut rest = block;
        for (p, rows) in out.iter_mut().enumerate() {
            let (mine, tail) = rest.split_at_mut(part_rows(batch, parts, p).len() * width);
            rows.push(mine);
            rest = tail;
        }
    }
    out
}

/// One thread's rows of a buffer, one slice per time block (from [`split_batch_rows`]).
pub(crate) type Rows<'a, T> = Vec<&'a mut [T]>;
/// Three and four buffers' rows of one thread, as `zip` pairs them.
pub(crate) type Buffers3<'a, T> = ((Rows<'a, T>, Rows<'a, T>), Rows<'a, T>);
pub(crate) type Buffers4<'a, T> = (Buffers3<'a, T>, Rows<'a, T>);

/// Runs `run(p, buffers_p)` for every part `p`: on this thread when there is one part,
/// else one rayon task per part. The results come back in part order.
pub(crate) fn run_parts<B: Send, R: Send>(
    parts: Vec<B>,
    run: impl Fn(usize, B) -> R + Sync + Send,
) -> Vec<R> {
    if parts.len() == 1 {
        parts
            .into_iter()
            .enumerate()
            .map(|(p, b)| run(p, b))
            .collect()
    } else {
        parts
            .into_par_iter()
            .enumerate()
            .map(|(p, b)| run(p, b))
            .collect()
    }
}

/// One step of one part's pre-activations, `out = x W_in^T + h W_rec^T`, with
/// `x: (rows, d)`, `h: (rows, n)`, `W_in: (width, d)`, `W_rec: (width, n)` and
/// `out: (rows, width)`; a sequential product (the parts are the parallelism).
pub(crate) fn project_step<T: Real>(
    out: &mut [T],
    width: usize,
    (x, w_input): (&[T], &[T]),
    (h, w_recurrent): (&[T], &[T]),
) {
    let rows = out.len() / width;
    let n = h.len() / rows;
    project_input(out, width, x, w_input);
    gemm(
        mat_mut(out, rows, width),
        Accum::Add,
        mat(h, rows, n),
        mat(w_recurrent, width, n).transpose(),
        T::one(),
        Par::Seq,
    );
}

/// The input half of [`project_step`]: `out = x W_in^T`; sequential.
pub(crate) fn project_input<T: Real>(out: &mut [T], width: usize, x: &[T], w_input: &[T]) {
    let rows = out.len() / width;
    let d = x.len() / rows;
    gemm(
        mat_mut(out, rows, width),
        Accum::Replace,
        mat(x, rows, d),
        mat(w_input, width, d).transpose(),
        T::one(),
        Par::Seq,
    );
}

/// One step of the backward recurrence for one part: `carry (+)= d W_rec`, with
/// `d: (rows, width)`, `W_rec: (width, n)` and `carry: (rows, n)`; sequential.
pub(crate) fn backprop_step<T: Real>(
    carry: &mut [T],
    accum: Accum,
    d: &[T],
    w_recurrent: &[T],
    rows: usize,
) {
    let (n, width) = (carry.len() / rows, d.len() / rows);
    gemm(
        mat_mut(carry, rows, n),
        accum,
        mat(d, rows, width),
        mat(w_recurrent, width, n),
        T::one(),
        Par::Seq,
    );
}

//! The orthogonal RNN cell `h_t = act(W h_{t-1} + U x_t + b)` with explicit
//! backpropagation through time over preallocated buffers.
//!
//! Matrices act on row vectors as in PyTorch: `z_t = h_{t-1} W^T + x_t U^T + b`.
//! A dense recurrent weight's gradient is one `(n x T*B) * (T*B x n)` product after the
//! time loop; only the `dz_{t+1} W` carry is a per-step product. A structured one sums its
//! gradient, and `dU`'s, inside the loop.

use crate::cells::recurrence::{
    CellShape, FusedBackward, FusedForward, FusedKernel, FusedQuant, InputShare, Recurrence,
};
use crate::cells::{
    add_column_sums, batch_parts, part_rows, project_input, run_parts, split_batch_rows, Rows,
    TimeLoopGrads,
};
use crate::linalg::{gemm, mat, mat_mut};
use crate::quant::activation::HiddenQuantizer;
use crate::Real;
use faer::{Accum, Par};

pub use super::activation::Activation;
use super::activation::BiasGrads;

/// Parameters of the cell as the recurrence sees them (already parametrised/quantized).
pub struct CellParams<'a, T> {
    pub w: Recurrence<'a, T>,
    /// `(n, d)`
    pub u: &'a [T],
    /// `(n)`
    pub b: &'a [T],
    /// `(n)`, modReLU bias (ignored for ReLU)
    pub bm: &'a [T],
    /// The hidden state's fake quantizer (`--act-bits`); `None`: float activations.
    pub hidden_quant: Option<HiddenQuantizer<T>>,
}

/// Gradients of the cell parameters; `backward` adds into them.
pub struct CellGrads<'a, T> {
    /// The recurrence's parameter: `dL/dW`, `(n, n)`, for a dense matrix (for rotations
    /// only its 2 x 2 diagonal blocks); `dL/d row_scale` in the first `n` entries for a
    /// Hadamard one.
    pub w: &'a mut [T],
    pub u: &'a mut [T],
    pub b: &'a mut [T],
    pub bm: &'a mut [T],
    /// `dL/ds` of the hidden quantizer's step (with `hidden_quant`).
    pub hidden_step: &'a mut T,
}

/// Activations and their gradients for one `(steps, batch)`, allocated once.
pub struct OrnnCell<T> {
    pub shape: CellShape,
    pub activation: Activation,
    /// `z: (T, B, n)` pre-activations, block `s` is `z_{s+1}`, under a dense `W` only
    /// (sized at its first forward pass; empty otherwise): a structured `W`'s backward pass
    /// recomputes `z_t` from `h_{t-1}` (a few additions per unit) instead of reading it
    /// back, so its step moves `h` alone.
    z: Vec<T>,
    /// `h: (T + 1, B, n)`; block 0 is `h_0`.
    h: Vec<T>,
    /// `dz: (T, B, n)`; block `s` is `dL/dz_{s+1}` (a structured W without an input
    /// gradient uses blocks 0 and 1 in turn; the others are then never touched).
    dz: Vec<T>,
    /// The read-out's gradient `dh` is zero at every step but the last (a many-to-one
    /// read-out): `backward` reads only that step of it, and a block of zeros that stays
    /// in cache for the others.
    dh_last_only: bool,
    /// The kernels of a structured `W`'s forward and backward steps in one pass each where
    /// `Recurrence::has_fused_steps` (the fastest by default); `Unfused`, the pass per
    /// operation that they fuse.
    fused: FusedKernel,
}

impl<T: Real> OrnnCell<T> {
    pub fn new(shape: CellShape, activation: Activation) -> Self {
        let block = shape.batch * shape.hidden;
        Self {
            shape,
            activation,
            z: Vec::new(),
            h: vec![T::zero(); (shape.steps + 1) * block],
            dz: vec![T::zero(); shape.steps * block],
            dh_last_only: false,
            fused: FusedKernel::Fastest,
        }
    }

    /// The cell under a many-to-one read-out (`h_T` only) when `last_only`: see
    /// `dh_last_only`.
    pub fn with_last_step_readout(self, last_only: bool) -> Self {
        Self {
            dh_last_only: last_only,
            ..self
        }
    }

    /// The cell with a structured `W`'s fused steps run by `kernel` (the fastest by
    /// default) or not fused: the same results, as the tests check.
    pub fn with_fused_kernel(self, kernel: FusedKernel) -> Self {
        Self {
            fused: kernel,
            ..self
        }
    }

    /// Whether the steps run fused: a structured `W` with fused steps
    /// (`Recurrence::has_fused_steps`), not tanh.
    fn fuses(&self, p: &CellParams<'_, T>) -> bool {
        self.fused != FusedKernel::Unfused
            && p.w.has_fused_steps()
            && self.activation != Activation::Tanh
    }

    fn block(&self) -> usize {
        self.shape.batch * self.shape.hidden
    }

    /// `h_{s+1}` for `s` in `0..T`, i.e. the states the read-out sees, `(T, B, n)`.
    pub fn outputs(&self) -> &[T] {
        &self.h[self.block()..]
    }

    /// Sets the initial state `h_0`, `(B, n)` (zero unless a state is carried over).
    pub fn set_initial_state(&mut self, state: &[T]) {
        let block = self.block();
        self.h[..block].copy_from_slice(state);
    }

    /// Copies the last state `h_T`, `(B, n)`, into `state`.
    pub fn final_state_into(&self, state: &mut [T]) {
        state.copy_from_slice(&self.h[self.h.len() - self.block()..]);
    }

    /// Runs the recurrence over `x: (T, B, d)`.
    ///
    /// The batch is cut into one row range per thread; each thread runs all `T` steps on
    /// its rows with sequential products (see [`batch_parts`]).
    pub fn forward(&mut self, p: &CellParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        assert_eq!(x.len(), steps * batch * d, "forward: x is not (T, B, d)");
        let parts = batch_parts(par, batch);
        if p.w.is_dense() {
            self.z.resize(steps * batch * n, T::zero());
        }
        let activation = self.activation;
        let (fused, kernel) = (self.fuses(p), self.fused);
        let zs = split_batch_rows(&mut self.z, batch, n, parts);
        let hs = split_batch_rows(&mut self.h, batch, n, parts);
        let run = |part: usize, (mut z, mut h): (Rows<'_, T>, Rows<'_, T>)| {
            let rows = part_rows(batch, parts, part);
            if fused {
                // h_{t-1} and h_t in two row blocks used in turn, which stay in cache; the
                // kept states are only written.
                let mut step_z = vec![T::zero(); if d == 1 { 0 } else { rows.len() * n }];
                let mut states = [h[0].to_vec(), vec![T::zero(); rows.len() * n]];
                // A row's transform, for blocks larger than 16.
                let mut transformed = vec![T::zero(); n];
                for s in 0..steps {
                    let x_s = &x[(s * batch + rows.start) * d..(s * batch + rows.end) * d];
                    let input = input_share(&mut step_z, n, x_s, p.u);
                    let [prev, next] = states.each_mut();
                    let (h_prev, h_next) = if s % 2 == 0 { (prev, next) } else { (next, prev) };
                    p.w.forward_fused(FusedForward {
                        input,
                        h_prev,
                        h_next,
                        h_kept: &mut *h[s + 1],
                        b: p.b,
                        bm: p.bm,
                        modrelu: activation == Activation::Modrelu,
                        quant: p.hidden_quant.as_ref().map(|q| FusedQuant::new(q, s * batch + rows.start)),
                        transformed: &mut transformed,
                    }, kernel);
                }
                return;
            }
            // A structured W's z_t lives here, one step at a time (`z` is empty then).
            let mut step_z = vec![T::zero(); if z.is_empty() { rows.len() * n } else { 0 }];
            let mut transformed = vec![T::zero(); rows.len() * n];
            for s in 0..steps {
                let z = match z.get_mut(s) {
                    Some(z) => &mut **z,
                    None => &mut step_z[..],
                };
                let x_s = &x[(s * batch + rows.start) * d..(s * batch + rows.end) * d];
                // z_t = x_t U^T + h_{t-1} W^T + b, then h_t = act(z_t)
                let (done, next) = h.split_at_mut(s + 1);
                p.w.project(z, n, (x_s, p.u), done[s], (&mut transformed, false));
                match &p.hidden_quant {
                    Some(q) => q.forward_rows(z, next[0], p.b, p.bm, s * batch + rows.start),
                    None => activation.forward_rows(z, next[0], p.b, p.bm),
                }
            }
        };
        run_parts(zs.into_iter().zip(hs).collect(), run);
    }

    /// Backpropagates `dh: (T, B, n)`, the read-out's `dL/dh_t`, through time; adds into
    /// `g`, and writes `dL/dx: (T, B, d)` into `grad_x` when given.
    ///
    /// `dz_t = (dh_t + dz_{t+1} W) * act'(z_t)`, then
    /// `dW = sum_t dz_t^T h_{t-1}`, `dU = sum_t dz_t^T x_t`, `db = sum_t dz_t`, `dx_t = dz_t U`.
    /// The time loop runs batch-parallel like `forward`; `db` and `dbm` are summed per
    /// thread inside it, the weight gradients are one product each after it.
    pub fn backward(
        &mut self,
        p: &CellParams<'_, T>,
        x: &[T],
        dh: &[T],
        g: &mut CellGrads<'_, T>,
        grad_x: Option<&mut [T]>,
        par: Par,
    ) {
        let CellShape {
            hidden: n,
            steps,
            batch,
            ..
        } = self.shape;
        let parts = batch_parts(par, batch);
        let activation = self.activation;
        let d = self.shape.input;
        // A structured W sums its own gradient inside the time loop. Without an input
        // gradient to give back, `dU = sum_t dz_t^T x_t` is summed there too, and `dz`
        // lives in two step blocks used in turn instead of all `T`: it is never written
        // out and read back after the loop.
        let streaming = !p.w.is_dense() && grad_x.is_none();
        let (fused, kernel) = (self.fuses(p), self.fused);
        let dh_last_only = self.dh_last_only;
        let (z, h) = (&self.z, &self.h);
        let dzs = split_batch_rows(&mut self.dz, batch, n, parts);
        let run = |part: usize, mut dz: Rows<'_, T>| -> ([Vec<T>; 4], T) {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            let (mut db, mut dbm) = (vec![T::zero(); n], vec![T::zero(); n]);
            // A structured W's gradient, summed here (`Recurrence::accumulate_gradient`).
            let mut d_scale = vec![T::zero(); Recurrence::<T>::gradient_sums_len(n)];
            let mut du = vec![T::zero(); if streaming { n * d } else { 0 }];
            // A structured W's z_t, recomputed from h_{t-1} as `forward` made it, and the
            // transformed rows the recomputation leaves.
            let mut step_z = vec![T::zero(); if z.is_empty() { nb * n } else { 0 }];
            // (The fused step keeps the transformed rows in registers, or for blocks larger
            // than 16 one row and its carry, and reads no zeros.)
            let mut transformed = vec![T::zero(); if fused { 2 * n } else { nb * n }];
            let mut d_hidden_step = T::zero();
            let quantized_fused = fused && p.hidden_quant.is_some();
            let mut d_step_units = vec![T::zero(); if quantized_fused { n } else { 0 }];
            let zeros = vec![T::zero(); if dh_last_only && !fused { nb * n } else { 0 }];
            let block = |s: usize| if streaming { s % 2 } else { s };
            for s in (0..steps).rev() {
                let at = (s * batch + rows.start) * n..(s * batch + rows.end) * n;
                let x_s = &x[(s * batch + rows.start) * d..(s * batch + rows.end) * d];
                if fused {
                    let (dz_s, later) = if s + 1 == steps {
                        (&mut *dz[block(s)], None)
                    } else {
                        let [dz_s, later] = dz
                            .get_disjoint_mut([block(s), block(s + 1)])
                            .expect("two distinct step blocks");
                        (&mut **dz_s, Some(&**later))
                    };
                    p.w.backward_fused(FusedBackward {
                        dz: dz_s,
                        later,
                        input: input_share(&mut step_z, n, x_s, p.u),
                        h_prev: &h[at.clone()],
                        dh: (!dh_last_only || s + 1 == steps).then(|| &dh[at]),
                        b: p.b,
                        bm: p.bm,
                        modrelu: activation == Activation::Modrelu,
                        quant: p.hidden_quant.as_ref().map(|q| FusedQuant::new(q, s * batch + rows.start)),
                        transformed: &mut transformed,
                        d_scale: &mut d_scale,
                        db: &mut db,
                        dbm: &mut dbm,
                        d_step: &mut d_step_units,
                    }, kernel);
                    // The quantizer's step gradient of this step, summed over units as
                    // `HiddenQuantizer::backward_rows` sums it.
                    d_hidden_step += d_step_units.iter().fold(T::zero(), |sum, &v| sum + v);
                    d_step_units.fill(T::zero());
                    if streaming {
                        add_input_gradient(&mut du, n, dz[block(s)], x_s);
                    }
                    continue;
                }
                if s + 1 == steps {
                    dz[block(s)].fill(T::zero());
                } else {
                    let [dz_s, later] = dz
                        .get_disjoint_mut([block(s), block(s + 1)])
                        .expect("two distinct step blocks");
                    p.w.carry(dz_s, later, n, nb);
                }
                let dz_s = &mut *dz[block(s)];
                let h_prev = &h[at.clone()];
                let z_s = if z.is_empty() {
                    // `forward`'s z_t exactly: the same products, then `+= b` as the
                    // activation's forward adds it.
                    p.w.project(&mut step_z, n, (x_s, p.u), h_prev, (&mut transformed, true));
                    for z_row in step_z.chunks_mut(n) {
                        z_row.iter_mut().zip(p.b).for_each(|(zi, &bi)| *zi += bi);
                    }
                    &step_z[..]
                } else {
                    &z[at.clone()]
                };
                let dh_s = if dh_last_only && s + 1 < steps {
                    &zeros[..]
                } else {
                    &dh[at]
                };
                match &p.hidden_quant {
                    Some(q) => {
                        let grads = (&mut db[..], &mut dbm[..]);
                        let first_row = s * batch + rows.start;
                        d_hidden_step += q.backward_rows(dz_s, z_s, dh_s, p.bm, grads, first_row)
                    }
                    None => {
                        let grads = BiasGrads {
                            b: &mut db,
                            bm: &mut dbm,
                        };
                        activation.backward_rows(dz_s, z_s, dh_s, p.bm, grads);
                    }
                }
                p.w.accumulate_gradient(&mut d_scale, dz_s, (h_prev, &transformed), n);
                if streaming {
                    add_input_gradient(&mut du, n, dz_s, x_s);
                }
            }
            ([db, dbm, d_scale, du], d_hidden_step)
        };
        let sums = run_parts(dzs, run);
        for ([db, dbm, d_scale, du], d_hidden_step) in &sums {
            *g.hidden_step += *d_hidden_step;
            add_column_sums(db, n, g.b);
            add_column_sums(dbm, n, g.bm);
            p.w.add_gradient(d_scale, n, g.w);
            g.u.iter_mut().zip(du).for_each(|(g, &v)| *g += v);
        }
        if streaming {
            return;
        }
        let rows = steps * batch;
        TimeLoopGrads {
            d_input: &self.dz,
            d_recurrent: &self.dz,
            width: n,
            x,
            h_prev: &self.h[..rows * n],
            w_input: p.u,
        }
        .apply(
            g.u,
            p.w.is_dense().then_some(&mut *g.w),
            grad_x,
            par,
        );
    }
}

/// The input's share of a fused step's `z_t` for one step's rows: read in the kernel for one
/// input (`u: (n, 1)`), else projected into `z` (`(rows, n)`).
fn input_share<'a, T: Real>(
    z: &'a mut [T],
    n: usize,
    x: &'a [T],
    u: &'a [T],
) -> InputShare<'a, T> {
    if u.len() == n {
        return InputShare::Single { x, u };
    }
    project_input(z, n, x, u);
    InputShare::Projected(z)
}

/// `du += dz^T x` for one step's rows (`du: (n, d)`, `dz: (rows, n)`, `x: (rows, d)`).
fn add_input_gradient<T: Real>(du: &mut [T], n: usize, dz: &[T], x: &[T]) {
    let (rows, d) = (dz.len() / n, du.len() / n);
    gemm(
        mat_mut(du, n, d),
        Accum::Add,
        mat(dz, rows, n).transpose(),
        mat(x, rows, d),
        T::one(),
        Par::Seq,
    );
}

/// The ORNN and the Elman RNN as the model's core: `weight_hh` (the ORNN's parameter,
/// shaped by its parametrisation; the RNN's free `W`), `weight_ih`, `bias` and, with
/// modReLU, `bias_mod`.
pub struct ElmanCore {
    hidden: usize,
    input: usize,
    activation: Activation,
    /// Many-to-one: the read-out sees `h_T` only.
    last_step_readout: bool,
    init: crate::Init,
    recurrent: crate::Tensor,
}

/// Elman RNN with an unconstrained `W` (ReLU or tanh): the ORNN cell without a constraint.
pub const RNN: crate::registry::ModelEntry = crate::registry::ModelEntry::elman("rnn", None);

impl ElmanCore {
    /// The core as a model entry builds it.
    pub fn build(
        spec: &crate::ModelSpec,
        recurrent: Option<crate::Tensor>,
    ) -> Box<dyn super::Cell> {
        Box::new(Self::new(spec, recurrent))
    }

    /// `recurrent`: the ORNN's parameter tensor from its parametrisation; `None` for the
    /// RNN, whose `W (n, n)` is quantized like any weight matrix.
    pub fn new(spec: &crate::ModelSpec, recurrent: Option<crate::Tensor>) -> Self {
        let n = spec.hidden;
        Self {
            hidden: n,
            input: spec.input,
            activation: spec.activation,
            last_step_readout: spec.readout == crate::head::Readout::Last,
            init: spec.init,
            recurrent: recurrent
                .unwrap_or_else(|| crate::Tensor::zeros("weight_hh", n, n, crate::Kind::Quantized)),
        }
    }
}

/// Where the Elman core keeps each of its tensors in its list (`Cell::tensors`), which the
/// cell, the model and the integer conversion read by role.
pub mod slot {
    /// `W` (`weight_hh`): an ORNN's parameter, an RNN's free matrix.
    pub const W: usize = 0;
    /// `U` (`weight_ih`).
    pub const U: usize = 1;
    /// `b` (`bias`).
    pub const B: usize = 2;
    /// modReLU's `bm` (`bias_mod`), present with modReLU only.
    pub const BM: usize = 3;
}

impl super::Cell for ElmanCore {
    fn tensors(&self) -> Vec<crate::Tensor> {
        use crate::{Kind, Tensor};
        let (n, d) = (self.hidden, self.input);
        // In the order of `slot`.
        let mut t = vec![
            self.recurrent.clone(),
            Tensor::zeros("weight_ih", n, d, Kind::Quantized),
            Tensor::zeros("bias", 1, n, Kind::Float),
        ];
        if self.activation == Activation::Modrelu {
            t.push(Tensor::zeros("bias_mod", 1, n, Kind::Float));
        }
        t
    }

    /// `W` from the model's initialisation (an ORNN's is its parametrisation's), `U` as
    /// `nn.Linear` (`±1/sqrt(d)`), the bias zero, modReLU's bias in `±0.01`.
    fn init(&self, t: &mut crate::Tensor, rng: &mut dyn rand::RngCore) {
        use rand::Rng;
        let mut uniform = |bound: f32| {
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.gen_range(-bound..bound))
        };
        match t.name {
            "weight_hh" => t.data = self.init.sample(self.hidden, &mut &mut *rng),
            "weight_ih" => uniform(1.0 / (self.input as f32).sqrt()),
            "bias_mod" => uniform(0.01),
            "bias" => {}
            name => unreachable!("the Elman core has no tensor {name}"),
        }
    }

    fn state_width(&self) -> usize {
        self.hidden
    }

    fn buffers(&self, steps: usize, batch: usize) -> Box<dyn super::CellBuffers> {
        let shape = CellShape {
            hidden: self.hidden,
            input: self.input,
            steps,
            batch,
        };
        Box::new(ElmanBuffers {
            cell: OrnnCell::new(shape, self.activation)
                .with_last_step_readout(self.last_step_readout),
            zero_bias_mod: vec![0.0; self.hidden],
            unused_grad: vec![0.0; self.hidden],
        })
    }
}

/// An Elman core's activations, with zeros standing for the absent modReLU bias of a
/// ReLU or tanh core and a sink for its (unused) gradient.
struct ElmanBuffers {
    cell: OrnnCell<f32>,
    zero_bias_mod: Vec<f32>,
    unused_grad: Vec<f32>,
}

/// The cell's view of the core's weights: the recurrence (a dense `q(W)` unless the
/// parametrisation gives another), `U`, `b` and the modReLU bias (or zeros).
fn elman_params<'a>(
    weights: &super::CoreWeights<'a>,
    zero_bias_mod: &'a [f32],
) -> CellParams<'a, f32> {
    let t = &weights.tensors;
    CellParams {
        w: weights.recurrence.unwrap_or(Recurrence::Dense(t[slot::W])),
        u: t[slot::U],
        b: t[slot::B],
        bm: t.get(slot::BM).copied().unwrap_or(zero_bias_mod),
        hidden_quant: weights.hidden_quant,
    }
}

impl super::CellBuffers for ElmanBuffers {
    fn forward(&mut self, weights: &super::CoreWeights<'_>, x: &[f32], par: Par) {
        let p = elman_params(weights, &self.zero_bias_mod);
        self.cell.forward(&p, x, par);
    }

    fn backward(
        &mut self,
        weights: &super::CoreWeights<'_>,
        x: &[f32],
        dh: &[f32],
        grads: super::CoreGrads<'_>,
        grad_x: Option<&mut [f32]>,
        par: Par,
    ) {
        let p = elman_params(weights, &self.zero_bias_mod);
        let (core, rest) = grads.tensors.split_at_mut(3);
        let [u, b] = core.get_disjoint_mut([1, 2]).expect("distinct indices");
        let bm = match rest.first_mut() {
            Some(bm) => &mut bm[..],
            None => &mut self.unused_grad[..],
        };
        let mut g = CellGrads {
            w: grads.recurrence,
            u,
            b,
            bm,
            hidden_step: grads.hidden_step,
        };
        self.cell.backward(&p, x, dh, &mut g, grad_x, par);
    }

    fn outputs(&self) -> &[f32] {
        self.cell.outputs()
    }

    fn set_initial_state(&mut self, state: &[f32]) {
        self.cell.set_initial_state(state)
    }

    fn final_state_into(&self, state: &mut [f32]) {
        self.cell.final_state_into(state)
    }
}

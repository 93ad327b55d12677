//! GRU with PyTorch's equations, gate order (r, z, n) and parameters
//! `weight_ih (3n, d)`, `weight_hh (3n, n)`, `bias_ih (3n)`, `bias_hh (3n)`:
//!
//! `A = x W_ih^T + b_ih`, `B = h_{t-1} W_hh^T + b_hh`, `r = sigmoid(A_r + B_r)`,
//! `z = sigmoid(A_z + B_z)`, `m = tanh(A_n + r B_n)`, `h_t = (1 - z) m + z h_{t-1}`.

use super::{
    add_column_sums, backprop_step, batch_parts, part_rows, run_parts, sigmoid, split_batch_rows,
    Buffers3, TimeLoopGrads,
};
use crate::cells::recurrence::CellShape;
use crate::linalg::{gemm, mat, mat_mut};
use crate::Real;
use faer::{Accum, Par};

/// PyTorch's layout, shared with the LSTM (`gated.rs`).
pub type GruParams<'a, T> = super::gated::GateParams<'a, T>;
pub type GruGrads<'a, T> = super::gated::GateGrads<'a, T>;

/// GRU with PyTorch's equations and layout.
pub const GRU: crate::registry::ModelEntry =
    crate::registry::ModelEntry::cell("gru", |spec, _| {
        Box::new(super::gated::GatedCore::<GruCell<f32>>::new(spec))
    });

pub struct GruCell<T> {
    pub shape: CellShape,
    /// `input_gates: (T, B, 3n)`: `A`, then (in place) `r, z, m` in its three blocks.
    input_gates: Vec<T>,
    /// `hidden_gates: (T, B, 3n)`: `B = h_{t-1} W_hh^T + b_hh` (its `B_n` block is reused).
    hidden_gates: Vec<T>,
    /// `h: (T + 1, B, n)`; block 0 is the initial state.
    h: Vec<T>,
    /// `dinput: (T, B, 3n)` and `dhidden: (T, B, 3n)`: gradients of `A` and `B`.
    dinput: Vec<T>,
    dhidden: Vec<T>,
    /// `(B, n)`: `dL/dh_{t-1}` carried to the previous step.
    dh_carry: Vec<T>,
}

impl<T: Real> GruCell<T> {
    pub fn new(shape: CellShape) -> Self {
        let block = shape.batch * shape.hidden;
        let steps = shape.steps;
        Self {
            shape,
            input_gates: vec![T::zero(); steps * 3 * block],
            hidden_gates: vec![T::zero(); steps * 3 * block],
            h: vec![T::zero(); (steps + 1) * block],
            dinput: vec![T::zero(); steps * 3 * block],
            dhidden: vec![T::zero(); steps * 3 * block],
            dh_carry: vec![T::zero(); block],
        }
    }

    /// `h_1 .. h_T`, `(T, B, n)`.
    pub fn outputs(&self) -> &[T] {
        &self.h[self.shape.batch * self.shape.hidden..]
    }

    /// Sets the initial state `h_0`, `(B, n)` (zero unless a state is carried over).
    pub fn set_initial_state(&mut self, state: &[T]) {
        let block = self.shape.batch * self.shape.hidden;
        self.h[..block].copy_from_slice(state);
    }

    /// Copies the last state `h_T`, `(B, n)`, into `state`.
    pub fn final_state_into(&self, state: &mut [T]) {
        let block = self.shape.batch * self.shape.hidden;
        state.copy_from_slice(&self.h[self.h.len() - block..]);
    }

    /// Runs the recurrence over `x: (T, B, d)`, batch-parallel like the ORNN cell.
    pub fn forward(&mut self, p: &GruParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        let parts = batch_parts(par, batch);
        let input_gates = split_batch_rows(&mut self.input_gates, batch, 3 * n, parts);
        let hidden_gates = split_batch_rows(&mut self.hidden_gates, batch, 3 * n, parts);
        let hs = split_batch_rows(&mut self.h, batch, n, parts);
        let run = |part: usize, ((mut ig, mut hg), mut h): Buffers3<'_, T>| {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            for s in 0..steps {
                let (ig, hg) = (&mut *ig[s], &mut *hg[s]);
                let x_s = &x[(s * batch + rows.start) * d..(s * batch + rows.end) * d];
                gemm(
                    mat_mut(ig, nb, 3 * n),
                    Accum::Replace,
                    mat(x_s, nb, d),
                    mat(p.weight_ih, 3 * n, d).transpose(),
                    T::one(),
                    Par::Seq,
                );
                for row in hg.chunks_mut(3 * n) {
                    row.copy_from_slice(p.bias_hh);
                }
                let (h_done, h_next) = h.split_at_mut(s + 1);
                let (h_prev, h_next) = (&*h_done[s], &mut *h_next[0]);
                gemm(
                    mat_mut(hg, nb, 3 * n),
                    Accum::Add,
                    mat(h_prev, nb, n),
                    mat(p.weight_hh, 3 * n, n).transpose(),
                    T::one(),
                    Par::Seq,
                );
                for b in 0..nb {
                    let (a, bh) = (
                        &mut ig[b * 3 * n..(b + 1) * 3 * n],
                        &hg[b * 3 * n..(b + 1) * 3 * n],
                    );
                    a.iter_mut().zip(p.bias_ih).for_each(|(a, &bi)| *a += bi);
                    for j in 0..n {
                        let r = sigmoid(a[j] + bh[j]);
                        let z = sigmoid(a[n + j] + bh[n + j]);
                        let m = (a[2 * n + j] + r * bh[2 * n + j]).tanh_fast();
                        a[j] = r;
                        a[n + j] = z;
                        a[2 * n + j] = m;
                        let k = b * n + j;
                        h_next[k] = (T::one() - z) * m + z * h_prev[k];
                    }
                }
            }
        };
        run_parts(
            input_gates.into_iter().zip(hidden_gates).zip(hs).collect(),
            run,
        );
    }

    /// Backward through time given `dh: (T, B, n)`; adds into `g`. Batch-parallel like
    /// `forward`; the bias gradients are summed per thread inside the time loop.
    pub fn backward(
        &mut self,
        p: &GruParams<'_, T>,
        x: &[T],
        dh: &[T],
        g: &mut GruGrads<'_, T>,
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
        self.dh_carry.fill(T::zero());
        let (input_gates, hidden_gates, h) = (&self.input_gates, &self.hidden_gates, &self.h);
        let dinput = split_batch_rows(&mut self.dinput, batch, 3 * n, parts);
        let dhidden = split_batch_rows(&mut self.dhidden, batch, 3 * n, parts);
        let dh_carry = split_batch_rows(&mut self.dh_carry, batch, n, parts);
        let run = |part: usize, ((mut di, mut dhg), mut carry): Buffers3<'_, T>| {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            let carry = &mut *carry[0];
            let (mut dbias_ih, mut dbias_hh) = (vec![T::zero(); 3 * n], vec![T::zero(); 3 * n]);
            for s in (0..steps).rev() {
                let at =
                    |width: usize| (s * batch + rows.start) * width..(s * batch + rows.end) * width;
                let (gates, hg) = (&input_gates[at(3 * n)], &hidden_gates[at(3 * n)]);
                let (h_prev, dh_t) = (&h[at(n)], &dh[at(n)]);
                let (di, dhg) = (&mut *di[s], &mut *dhg[s]);
                for b in 0..nb {
                    let o = b * 3 * n;
                    for j in 0..n {
                        let k = b * n + j;
                        let (r, z, m) = (gates[o + j], gates[o + n + j], gates[o + 2 * n + j]);
                        let dh_total = dh_t[k] + carry[k];
                        let da_n = dh_total * (T::one() - z) * (T::one() - m * m);
                        let dr = da_n * hg[o + 2 * n + j] * r * (T::one() - r);
                        let dz = dh_total * (h_prev[k] - m) * z * (T::one() - z);
                        di[o + j] = dr;
                        di[o + n + j] = dz;
                        di[o + 2 * n + j] = da_n;
                        dhg[o + j] = dr;
                        dhg[o + n + j] = dz;
                        dhg[o + 2 * n + j] = da_n * r;
                        // The direct path h_t = ... + z h_{t-1}; the matrix path is added below.
                        carry[k] = dh_total * z;
                    }
                    let row = o..o + 3 * n;
                    dbias_ih
                        .iter_mut()
                        .zip(&di[row.clone()])
                        .for_each(|(acc, &v)| *acc += v);
                    dbias_hh
                        .iter_mut()
                        .zip(&dhg[row])
                        .for_each(|(acc, &v)| *acc += v);
                }
                backprop_step(carry, Accum::Add, dhg, p.weight_hh, nb);
            }
            (dbias_ih, dbias_hh)
        };
        let sums: Vec<(Vec<T>, Vec<T>)> =
            run_parts(dinput.into_iter().zip(dhidden).zip(dh_carry).collect(), run);
        for (dbias_ih, dbias_hh) in &sums {
            add_column_sums(dbias_ih, 3 * n, g.bias_ih);
            add_column_sums(dbias_hh, 3 * n, g.bias_hh);
        }
        let rows = steps * batch;
        TimeLoopGrads {
            d_input: &self.dinput,
            d_recurrent: &self.dhidden,
            width: 3 * n,
            x,
            h_prev: &self.h[..rows * n],
            w_input: p.weight_ih,
        }
        .apply(g.weight_ih, Some(&mut *g.weight_hh), grad_x, par);
    }
}

super::gated::gated_cell!(GruCell, 3, 1);

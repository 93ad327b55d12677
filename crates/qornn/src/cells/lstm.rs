//! LSTM with PyTorch's equations, gate order (i, f, g, o) and parameters
//! `weight_ih (4n, d)`, `weight_hh (4n, n)`, `bias_ih (4n)`, `bias_hh (4n)`:
//!
//! `G = x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh`, `i, f, o = sigmoid(G_i, G_f, G_o)`,
//! `g = tanh(G_g)`, `c_t = f c_{t-1} + i g`, `h_t = o tanh(c_t)`.

use super::{
    add_column_sums, backprop_step, batch_parts, part_rows, project_step, run_parts, sigmoid,
    split_batch_rows, Buffers3, Buffers4, TimeLoopGrads,
};
use crate::cells::recurrence::CellShape;
use crate::Real;
use faer::{Accum, Par};

/// PyTorch's layout, shared with the GRU (`gated.rs`).
pub type LstmParams<'a, T> = super::gated::GateParams<'a, T>;
pub type LstmGrads<'a, T> = super::gated::GateGrads<'a, T>;

/// LSTM with PyTorch's equations and layout.
pub const LSTM: crate::registry::ModelEntry =
    crate::registry::ModelEntry::cell("lstm", |spec, _| {
        Box::new(super::gated::GatedCore::<LstmCell<f32>>::new(spec))
    });

pub struct LstmCell<T> {
    pub shape: CellShape,
    /// `gates: (T, B, 4n)`: pre-activations, then (in place) `i, f, g, o`.
    gates: Vec<T>,
    /// `c: (T + 1, B, n)`, `h: (T + 1, B, n)`; block 0 is the initial state.
    c: Vec<T>,
    h: Vec<T>,
    /// `tanh_c: (T, B, n)`
    tanh_c: Vec<T>,
    /// `dgates: (T, B, 4n)`
    dgates: Vec<T>,
    /// `(B, n)` carries of the backward pass: `dL/dh_{t-1}` from the recurrence, `dL/dc_t`.
    dh_carry: Vec<T>,
    dc_carry: Vec<T>,
}

impl<T: Real> LstmCell<T> {
    pub fn new(shape: CellShape) -> Self {
        let block = shape.batch * shape.hidden;
        let steps = shape.steps;
        Self {
            shape,
            gates: vec![T::zero(); steps * 4 * block],
            c: vec![T::zero(); (steps + 1) * block],
            h: vec![T::zero(); (steps + 1) * block],
            tanh_c: vec![T::zero(); steps * block],
            dgates: vec![T::zero(); steps * 4 * block],
            dh_carry: vec![T::zero(); block],
            dc_carry: vec![T::zero(); block],
        }
    }

    /// `h_1 .. h_T`, `(T, B, n)`.
    pub fn outputs(&self) -> &[T] {
        &self.h[self.shape.batch * self.shape.hidden..]
    }

    /// Sets the initial state `(h_0, c_0)`, `2 x (B, n)` (zero unless carried over).
    pub fn set_initial_state(&mut self, state: &[T]) {
        let block = self.shape.batch * self.shape.hidden;
        self.h[..block].copy_from_slice(&state[..block]);
        self.c[..block].copy_from_slice(&state[block..]);
    }

    /// Copies the last state `(h_T, c_T)`, `2 x (B, n)`, into `state`.
    pub fn final_state_into(&self, state: &mut [T]) {
        let block = self.shape.batch * self.shape.hidden;
        state[..block].copy_from_slice(&self.h[self.h.len() - block..]);
        state[block..].copy_from_slice(&self.c[self.c.len() - block..]);
    }

    /// Runs the recurrence over `x: (T, B, d)`, batch-parallel like the ORNN cell.
    pub fn forward(&mut self, p: &LstmParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        let parts = batch_parts(par, batch);
        let gates = split_batch_rows(&mut self.gates, batch, 4 * n, parts);
        let cs = split_batch_rows(&mut self.c, batch, n, parts);
        let hs = split_batch_rows(&mut self.h, batch, n, parts);
        let tanh_cs = split_batch_rows(&mut self.tanh_c, batch, n, parts);
        let run = |part: usize, (((mut gates, mut c), mut h), mut tanh_c): Buffers4<'_, T>| {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            for s in 0..steps {
                let gates = &mut *gates[s];
                let x_s = &x[(s * batch + rows.start) * d..(s * batch + rows.end) * d];
                let (h_done, h_next) = h.split_at_mut(s + 1);
                project_step(gates, 4 * n, (x_s, p.weight_ih), (h_done[s], p.weight_hh));
                let (c_done, c_next) = c.split_at_mut(s + 1);
                let (c_prev, c_next, h_next) = (&*c_done[s], &mut *c_next[0], &mut *h_next[0]);
                let tanh_c = &mut *tanh_c[s];
                for b in 0..nb {
                    let row = &mut gates[b * 4 * n..(b + 1) * 4 * n];
                    for ((g, &bi), &bh) in row.iter_mut().zip(p.bias_ih).zip(p.bias_hh) {
                        *g += bi + bh;
                    }
                    for j in 0..n {
                        let (i, f, g, o) = (
                            sigmoid(row[j]),
                            sigmoid(row[n + j]),
                            row[2 * n + j].tanh_fast(),
                            sigmoid(row[3 * n + j]),
                        );
                        row[j] = i;
                        row[n + j] = f;
                        row[2 * n + j] = g;
                        row[3 * n + j] = o;
                        let k = b * n + j;
                        let c = f * c_prev[k] + i * g;
                        c_next[k] = c;
                        tanh_c[k] = c.tanh_fast();
                        h_next[k] = o * tanh_c[k];
                    }
                }
            }
        };
        run_parts(
            gates.into_iter().zip(cs).zip(hs).zip(tanh_cs).collect(),
            run,
        );
    }

    /// Backward through time given `dh: (T, B, n)`; adds into `g`. Batch-parallel like
    /// `forward`; the bias gradients are summed per thread inside the time loop.
    pub fn backward(
        &mut self,
        p: &LstmParams<'_, T>,
        x: &[T],
        dh: &[T],
        g: &mut LstmGrads<'_, T>,
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
        self.dc_carry.fill(T::zero());
        let (gates, c, tanh_c) = (&self.gates, &self.c, &self.tanh_c);
        let dgates = split_batch_rows(&mut self.dgates, batch, 4 * n, parts);
        let dh_carry = split_batch_rows(&mut self.dh_carry, batch, n, parts);
        let dc_carry = split_batch_rows(&mut self.dc_carry, batch, n, parts);
        let run = |part: usize, ((mut dgates, mut dh_carry), mut dc_carry): Buffers3<'_, T>| {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            let (dh_carry, dc_carry) = (&mut *dh_carry[0], &mut *dc_carry[0]);
            let mut dbias = vec![T::zero(); 4 * n];
            for s in (0..steps).rev() {
                let at =
                    |width: usize| (s * batch + rows.start) * width..(s * batch + rows.end) * width;
                let gates = &gates[at(4 * n)];
                let c_prev = &c[at(n)];
                let tanh_c = &tanh_c[at(n)];
                let dh_t = &dh[at(n)];
                let dgates = &mut *dgates[s];
                for b in 0..nb {
                    let row = &gates[b * 4 * n..(b + 1) * 4 * n];
                    let drow = &mut dgates[b * 4 * n..(b + 1) * 4 * n];
                    for j in 0..n {
                        let k = b * n + j;
                        let (i, f, gg, o) = (row[j], row[n + j], row[2 * n + j], row[3 * n + j]);
                        let dh_total = dh_t[k] + dh_carry[k];
                        let dc = dc_carry[k] + dh_total * o * (T::one() - tanh_c[k] * tanh_c[k]);
                        drow[j] = dc * gg * i * (T::one() - i);
                        drow[n + j] = dc * c_prev[k] * f * (T::one() - f);
                        drow[2 * n + j] = dc * i * (T::one() - gg * gg);
                        drow[3 * n + j] = dh_total * tanh_c[k] * o * (T::one() - o);
                        dc_carry[k] = dc * f;
                    }
                    dbias.iter_mut().zip(&*drow).for_each(|(acc, &v)| *acc += v);
                }
                // dL/dh_{t-1} through the recurrence: dG W_hh.
                backprop_step(dh_carry, Accum::Replace, dgates, p.weight_hh, nb);
            }
            dbias
        };
        let sums: Vec<Vec<T>> = run_parts(
            dgates.into_iter().zip(dh_carry).zip(dc_carry).collect(),
            run,
        );
        for dbias in &sums {
            add_column_sums(dbias, 4 * n, g.bias_ih);
            add_column_sums(dbias, 4 * n, g.bias_hh);
        }
        let rows = steps * batch;
        TimeLoopGrads {
            d_input: &self.dgates,
            d_recurrent: &self.dgates,
            width: 4 * n,
            x,
            h_prev: &self.h[..rows * n],
            w_input: p.weight_ih,
        }
        .apply(g.weight_ih, Some(&mut *g.weight_hh), grad_x, par);
    }
}

super::gated::gated_cell!(LstmCell, 4, 2);

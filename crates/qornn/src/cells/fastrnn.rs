//! FastRNN (Kusupati et al. 2018, EdgeML): `W (n, d)` on the input, `U (n, n)` on the
//! state, scalars `alpha`, `beta` (trained through a sigmoid):
//!
//! `h~ = tanh(x W^T + h_{t-1} U^T + b_h)`, `h_t = sigmoid(alpha) h~ + sigmoid(beta) h_{t-1}`.

use super::{
    add_column_sums, backprop_step, batch_parts, part_rows, project_step, run_parts, sigmoid,
    split_batch_rows, Rows, TimeLoopGrads,
};
use crate::cells::recurrence::CellShape;
use crate::Real;
use faer::{Accum, Par};

pub struct FastRnnParams<'a, T> {
    pub w: &'a [T],
    pub u: &'a [T],
    pub b_h: &'a [T],
    pub alpha: T,
    pub beta: T,
}

pub struct FastRnnGrads<'a, T> {
    pub w: &'a mut [T],
    pub u: &'a mut [T],
    pub b_h: &'a mut [T],
    pub alpha: &'a mut T,
    pub beta: &'a mut T,
}

/// FastRNN (EdgeML), with the low-rank option.
pub const FASTRNN: crate::registry::ModelEntry =
    crate::registry::ModelEntry::cell("fastrnn", |spec, _| {
        Box::new(super::edge::EdgeCore::<FastRnnCell<f32>>::new(spec))
    }).with_low_rank();

pub struct FastRnnCell<T> {
    pub shape: CellShape,
    /// `candidate: (T, B, n)`: the pre-activation without `b_h`, then (in place) `h~`.
    candidate: Vec<T>,
    /// `h: (T + 1, B, n)`; block 0 is the initial state.
    h: Vec<T>,
    /// `dpre: (T, B, n)`
    dpre: Vec<T>,
    dh_carry: Vec<T>,
}

impl<T: Real> FastRnnCell<T> {
    pub fn new(shape: CellShape) -> Self {
        let block = shape.batch * shape.hidden;
        Self {
            shape,
            candidate: vec![T::zero(); shape.steps * block],
            h: vec![T::zero(); (shape.steps + 1) * block],
            dpre: vec![T::zero(); shape.steps * block],
            dh_carry: vec![T::zero(); block],
        }
    }

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
    pub fn forward(&mut self, p: &FastRnnParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        let parts = batch_parts(par, batch);
        let (a, b) = (sigmoid(p.alpha), sigmoid(p.beta));
        let candidate = split_batch_rows(&mut self.candidate, batch, n, parts);
        let hs = split_batch_rows(&mut self.h, batch, n, parts);
        let run = |part: usize, (mut cand, mut h): (Rows<'_, T>, Rows<'_, T>)| {
            let rows = part_rows(batch, parts, part);
            for s in 0..steps {
                let cand = &mut *cand[s];
                let x_s = &x[(s * batch + rows.start) * d..(s * batch + rows.end) * d];
                let (h_done, h_next) = h.split_at_mut(s + 1);
                let (h_prev, h_next) = (&*h_done[s], &mut *h_next[0]);
                project_step(cand, n, (x_s, p.w), (h_prev, p.u));
                for ((h, c), (&hp, &bh)) in h_next
                    .iter_mut()
                    .zip(cand.iter_mut())
                    .zip(h_prev.iter().zip(p.b_h.iter().cycle()))
                {
                    *c = (*c + bh).tanh_fast();
                    *h = a * *c + b * hp;
                }
            }
        };
        run_parts(candidate.into_iter().zip(hs).collect(), run);
    }

    /// Backward through time given `dh: (T, B, n)`; adds into `g`. Batch-parallel like
    /// `forward`; the gradients of the bias and scalars are summed per thread.
    pub fn backward(
        &mut self,
        p: &FastRnnParams<'_, T>,
        x: &[T],
        dh: &[T],
        g: &mut FastRnnGrads<'_, T>,
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
        let (a, b) = (sigmoid(p.alpha), sigmoid(p.beta));
        self.dh_carry.fill(T::zero());
        let (candidate, h) = (&self.candidate, &self.h);
        let dpre = split_batch_rows(&mut self.dpre, batch, n, parts);
        let dh_carry = split_batch_rows(&mut self.dh_carry, batch, n, parts);
        let run = |part: usize, (mut dpre, mut carry): (Rows<'_, T>, Rows<'_, T>)| {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            let carry = &mut *carry[0];
            // Per unit, so that the loop has no serial dependency and vectorises.
            let (mut da, mut db, mut db_h) =
                (vec![T::zero(); n], vec![T::zero(); n], vec![T::zero(); n]);
            for s in (0..steps).rev() {
                let at = (s * batch + rows.start) * n..(s * batch + rows.end) * n;
                let (cand, h_prev, dh_t) = (&candidate[at.clone()], &h[at.clone()], &dh[at]);
                let dpre = &mut *dpre[s];
                for row in 0..nb {
                    for j in 0..n {
                        let k = row * n + j;
                        let dh_total = dh_t[k] + carry[k];
                        da[j] += dh_total * cand[k];
                        db[j] += dh_total * h_prev[k];
                        dpre[k] = dh_total * a * (T::one() - cand[k] * cand[k]);
                        db_h[j] += dpre[k];
                        carry[k] = dh_total * b;
                    }
                }
                backprop_step(carry, Accum::Add, dpre, p.u, nb);
            }
            (da, db, db_h)
        };
        let sums: Vec<(Vec<T>, Vec<T>, Vec<T>)> =
            run_parts(dpre.into_iter().zip(dh_carry).collect(), run);
        for (da, db, db_h) in &sums {
            // d sigmoid(v) / dv = sigmoid(v) (1 - sigmoid(v))
            *g.alpha += da.iter().copied().sum::<T>() * a * (T::one() - a);
            *g.beta += db.iter().copied().sum::<T>() * b * (T::one() - b);
            add_column_sums(db_h, n, g.b_h);
        }
        let rows = steps * batch;
        TimeLoopGrads {
            d_input: &self.dpre,
            d_recurrent: &self.dpre,
            width: n,
            x,
            h_prev: &self.h[..rows * n],
            w_input: p.w,
        }
        .apply(g.w, Some(&mut *g.u), grad_x, par);
    }
}

/// The cell's parameters from `W`, `U` and its own tensors in EdgeML's order.
fn edge_params<'a>(w: &'a [f32], u: &'a [f32], own: &[&'a [f32]]) -> FastRnnParams<'a, f32> {
    FastRnnParams {
        w,
        u,
        b_h: own[0],
        alpha: own[1][0],
        beta: own[2][0],
    }
}

/// EdgeML's form of the cell, for the model's core (`edge.rs`).
impl super::edge::EdgeCell for FastRnnCell<f32> {
    fn own_tensors(n: usize) -> Vec<crate::Tensor> {
        use crate::{Kind, Tensor};
        vec![
            Tensor::zeros("b_h", 1, n, Kind::Float),
            Tensor::zeros("alpha", 1, 1, Kind::Float),
            Tensor::zeros("beta", 1, 1, Kind::Float),
        ]
    }

    /// EdgeML's: `b_h = 1`, `alpha = -3`, `beta = 3`.
    fn init_own(t: &mut crate::Tensor) {
        match t.name {
            "b_h" => t.data.fill(1.0),
            "alpha" => t.data.fill(-3.0),
            "beta" => t.data.fill(3.0),
            name => unreachable!("FastRNN has no tensor {name}"),
        }
    }

    fn with_shape(shape: CellShape) -> Self {
        Self::new(shape)
    }

    fn run_forward(&mut self, w: &[f32], u: &[f32], own: &[&[f32]], x: &[f32], par: Par) {
        let p = edge_params(w, u, own);
        self.forward(&p, x, par);
    }

    fn run_backward(
        &mut self,
        (w, u): (&[f32], &[f32]),
        own: &[&[f32]],
        x: &[f32],
        dh: &[f32],
        (grad_w, grad_u): (&mut [f32], &mut [f32]),
        own_grads: &mut [Vec<f32>],
        grad_x: Option<&mut [f32]>,
        par: Par,
    ) {
        let p = edge_params(w, u, own);
        let [b_h, alpha, beta] = own_grads
            .get_disjoint_mut([0, 1, 2])
            .expect("distinct indices");
        let mut g = FastRnnGrads {
            w: grad_w,
            u: grad_u,
            b_h,
            alpha: &mut alpha[0],
            beta: &mut beta[0],
        };
        self.backward(&p, x, dh, &mut g, grad_x, par);
    }

    fn hidden_states(&self) -> &[f32] {
        self.outputs()
    }

    fn set_state(&mut self, state: &[f32]) {
        self.set_initial_state(state)
    }

    fn state_into(&self, state: &mut [f32]) {
        self.final_state_into(state)
    }
}

//! FastRNN (Kusupati et al. 2018, EdgeML): `W (n, d)` on the input, `U (n, n)` on the
//! state, scalars `alpha`, `beta` (trained through a sigmoid):
//!
//! `h~ = tanh(x W^T + h_{t-1} U^T + b_h)`, `h_t = sigmoid(alpha) h~ + sigmoid(beta) h_{t-1}`.

use super::{add_column_sums, sigmoid, TimeLoopGrads};
use crate::linalg::{gemm, mat, mat_mut};
use crate::ornn::CellShape;
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

pub struct FastRnnCell<T> {
    pub shape: CellShape,
    /// `candidate: (T, B, n)`: the pre-activation, then (in place) `h~`.
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

    pub fn forward(&mut self, p: &FastRnnParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        let block = batch * n;
        let rows = steps * batch;
        let (a, b) = (sigmoid(p.alpha), sigmoid(p.beta));
        gemm(
            mat_mut(&mut self.candidate, rows, n),
            Accum::Replace,
            mat(x, rows, d),
            mat(p.w, n, d).transpose(),
            T::one(),
            par,
        );
        for row in self.candidate.chunks_mut(n) {
            row.iter_mut().zip(p.b_h).for_each(|(c, &bh)| *c += bh);
        }
        for s in 0..steps {
            let (done, rest) = self.h.split_at_mut((s + 1) * block);
            let h_prev = &done[s * block..];
            let cand = &mut self.candidate[s * block..(s + 1) * block];
            gemm(
                mat_mut(cand, batch, n),
                Accum::Add,
                mat(h_prev, batch, n),
                mat(p.u, n, n).transpose(),
                T::one(),
                par,
            );
            for ((h, c), &hp) in rest[..block].iter_mut().zip(cand.iter_mut()).zip(h_prev) {
                *c = c.tanh();
                *h = a * *c + b * hp;
            }
        }
    }

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
        let block = batch * n;
        let (a, b) = (sigmoid(p.alpha), sigmoid(p.beta));
        let (mut da, mut db) = (T::zero(), T::zero());
        self.dh_carry.fill(T::zero());
        for s in (0..steps).rev() {
            let cand = &self.candidate[s * block..(s + 1) * block];
            let h_prev = &self.h[s * block..(s + 1) * block];
            let dpre = &mut self.dpre[s * block..(s + 1) * block];
            for k in 0..block {
                let dh_total = dh[s * block + k] + self.dh_carry[k];
                da += dh_total * cand[k];
                db += dh_total * h_prev[k];
                dpre[k] = dh_total * a * (T::one() - cand[k] * cand[k]);
                self.dh_carry[k] = dh_total * b;
            }
            gemm(
                mat_mut(&mut self.dh_carry, batch, n),
                Accum::Add,
                mat(dpre, batch, n),
                mat(p.u, n, n),
                T::one(),
                par,
            );
        }
        // d sigmoid(v) / dv = sigmoid(v) (1 - sigmoid(v))
        *g.alpha += da * a * (T::one() - a);
        *g.beta += db * b * (T::one() - b);
        let rows = steps * batch;
        TimeLoopGrads {
            d_input: &self.dpre,
            d_recurrent: &self.dpre,
            width: n,
            x,
            h_prev: &self.h[..rows * n],
            w_input: p.w,
        }
        .apply(g.w, g.u, grad_x, par);
        add_column_sums(&self.dpre, n, g.b_h);
    }
}

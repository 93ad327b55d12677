//! FastGRNN (Kusupati et al. 2018, EdgeML): one shared pre-activation for the gate and
//! the candidate, scalars `zeta`, `nu` (trained through a sigmoid; EdgeML starts them at
//! 1 and -4):
//!
//! `p = x W^T + h_{t-1} U^T`, `z = sigmoid(p + b_z)`, `c = tanh(p + b_h)`,
//! `h_t = z h_{t-1} + (sigmoid(zeta) (1 - z) + sigmoid(nu)) c`.

use super::{add_column_sums, sigmoid, TimeLoopGrads};
use crate::linalg::{gemm, mat, mat_mut};
use crate::ornn::CellShape;
use crate::Real;
use faer::{Accum, Par};

/// EdgeML's initial values of the pre-sigmoid scalars.
pub const ZETA_INIT: f64 = 1.0;
pub const NU_INIT: f64 = -4.0;

pub struct FastGrnnParams<'a, T> {
    pub w: &'a [T],
    pub u: &'a [T],
    pub b_z: &'a [T],
    pub b_h: &'a [T],
    pub zeta: T,
    pub nu: T,
}

pub struct FastGrnnGrads<'a, T> {
    pub w: &'a mut [T],
    pub u: &'a mut [T],
    pub b_z: &'a mut [T],
    pub b_h: &'a mut [T],
    pub zeta: &'a mut T,
    pub nu: &'a mut T,
}

pub struct FastGrnnCell<T> {
    pub shape: CellShape,
    /// `pre: (T, B, n)`: `p`; `gate: (T, B, n)`: `z`; `candidate: (T, B, n)`: `c`.
    pre: Vec<T>,
    gate: Vec<T>,
    candidate: Vec<T>,
    /// `h: (T + 1, B, n)`; block 0 is the initial state.
    h: Vec<T>,
    /// `dpre: (T, B, n)`: `dL/dp`; and the gradients of `b_z`, `b_h` before summing.
    dpre: Vec<T>,
    dgate: Vec<T>,
    dcandidate: Vec<T>,
    dh_carry: Vec<T>,
}

impl<T: Real> FastGrnnCell<T> {
    pub fn new(shape: CellShape) -> Self {
        let block = shape.batch * shape.hidden;
        let all = shape.steps * block;
        Self {
            shape,
            pre: vec![T::zero(); all],
            gate: vec![T::zero(); all],
            candidate: vec![T::zero(); all],
            h: vec![T::zero(); all + block],
            dpre: vec![T::zero(); all],
            dgate: vec![T::zero(); all],
            dcandidate: vec![T::zero(); all],
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

    pub fn forward(&mut self, p: &FastGrnnParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        let block = batch * n;
        let rows = steps * batch;
        let (zeta, nu) = (sigmoid(p.zeta), sigmoid(p.nu));
        gemm(
            mat_mut(&mut self.pre, rows, n),
            Accum::Replace,
            mat(x, rows, d),
            mat(p.w, n, d).transpose(),
            T::one(),
            par,
        );
        for s in 0..steps {
            let (done, rest) = self.h.split_at_mut((s + 1) * block);
            let h_prev = &done[s * block..];
            let range = s * block..(s + 1) * block;
            let pre = &mut self.pre[range.clone()];
            gemm(
                mat_mut(pre, batch, n),
                Accum::Add,
                mat(h_prev, batch, n),
                mat(p.u, n, n).transpose(),
                T::one(),
                par,
            );
            let (gate, cand) = (&mut self.gate[range.clone()], &mut self.candidate[range]);
            for k in 0..block {
                let j = k % n;
                let z = sigmoid(pre[k] + p.b_z[j]);
                let c = (pre[k] + p.b_h[j]).tanh();
                gate[k] = z;
                cand[k] = c;
                rest[k] = z * h_prev[k] + (zeta * (T::one() - z) + nu) * c;
            }
        }
    }

    pub fn backward(
        &mut self,
        p: &FastGrnnParams<'_, T>,
        x: &[T],
        dh: &[T],
        g: &mut FastGrnnGrads<'_, T>,
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
        let (zeta, nu) = (sigmoid(p.zeta), sigmoid(p.nu));
        let (mut dzeta, mut dnu) = (T::zero(), T::zero());
        self.dh_carry.fill(T::zero());
        for s in (0..steps).rev() {
            let range = s * block..(s + 1) * block;
            let h_prev = &self.h[range.clone()];
            let (gate, cand) = (&self.gate[range.clone()], &self.candidate[range.clone()]);
            let (dpre, dgate, dcand) = (
                &mut self.dpre[range.clone()],
                &mut self.dgate[range.clone()],
                &mut self.dcandidate[range],
            );
            for k in 0..block {
                let (z, c) = (gate[k], cand[k]);
                let dh_total = dh[s * block + k] + self.dh_carry[k];
                dzeta += dh_total * (T::one() - z) * c;
                dnu += dh_total * c;
                dgate[k] = dh_total * (h_prev[k] - zeta * c) * z * (T::one() - z);
                dcand[k] = dh_total * (zeta * (T::one() - z) + nu) * (T::one() - c * c);
                dpre[k] = dgate[k] + dcand[k];
                self.dh_carry[k] = dh_total * z;
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
        *g.zeta += dzeta * zeta * (T::one() - zeta);
        *g.nu += dnu * nu * (T::one() - nu);
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
        add_column_sums(&self.dgate, n, g.b_z);
        add_column_sums(&self.dcandidate, n, g.b_h);
    }
}

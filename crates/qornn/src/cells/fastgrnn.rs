//! FastGRNN (Kusupati et al. 2018, EdgeML): one shared pre-activation for the gate and
//! the candidate, scalars `zeta`, `nu` (trained through a sigmoid; EdgeML starts them at
//! 1 and -4):
//!
//! `p = x W^T + h_{t-1} U^T`, `z = sigmoid(p + b_z)`, `c = tanh(p + b_h)`,
//! `h_t = z h_{t-1} + (sigmoid(zeta) (1 - z) + sigmoid(nu)) c`.

use super::{
    add_column_sums, backprop_step, batch_parts, part_rows, project_step, run_parts, sigmoid,
    split_batch_rows, Buffers4, Rows, TimeLoopGrads,
};
use crate::cells::recurrence::CellShape;
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

/// FastGRNN (EdgeML), with the low-rank option.
pub const FASTGRNN: crate::registry::ModelEntry =
    crate::registry::ModelEntry::cell("fastgrnn", |spec, _| {
        Box::new(super::edge::EdgeCore::<FastGrnnCell<f32>>::new(spec))
    }).with_low_rank();

pub struct FastGrnnCell<T> {
    pub shape: CellShape,
    /// `pre: (T, B, n)`: `p`; `gate: (T, B, n)`: `z`; `candidate: (T, B, n)`: `c`.
    pre: Vec<T>,
    gate: Vec<T>,
    candidate: Vec<T>,
    /// `h: (T + 1, B, n)`; block 0 is the initial state.
    h: Vec<T>,
    /// `dpre: (T, B, n)`: `dL/dp`.
    dpre: Vec<T>,
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
    pub fn forward(&mut self, p: &FastGrnnParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        let parts = batch_parts(par, batch);
        let (zeta, nu) = (sigmoid(p.zeta), sigmoid(p.nu));
        let pre = split_batch_rows(&mut self.pre, batch, n, parts);
        let gate = split_batch_rows(&mut self.gate, batch, n, parts);
        let candidate = split_batch_rows(&mut self.candidate, batch, n, parts);
        let hs = split_batch_rows(&mut self.h, batch, n, parts);
        let run = |part: usize, (((mut pre, mut gate), mut cand), mut h): Buffers4<'_, T>| {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            for s in 0..steps {
                let pre = &mut *pre[s];
                let x_s = &x[(s * batch + rows.start) * d..(s * batch + rows.end) * d];
                let (h_done, h_next) = h.split_at_mut(s + 1);
                let (h_prev, h_next) = (&*h_done[s], &mut *h_next[0]);
                project_step(pre, n, (x_s, p.w), (h_prev, p.u));
                let (gate, cand) = (&mut *gate[s], &mut *cand[s]);
                for row in 0..nb {
                    let k0 = row * n;
                    for j in 0..n {
                        let k = k0 + j;
                        let z = sigmoid(pre[k] + p.b_z[j]);
                        let c = (pre[k] + p.b_h[j]).tanh_fast();
                        gate[k] = z;
                        cand[k] = c;
                        h_next[k] = z * h_prev[k] + (zeta * (T::one() - z) + nu) * c;
                    }
                }
            }
        };
        run_parts(
            pre.into_iter().zip(gate).zip(candidate).zip(hs).collect(),
            run,
        );
    }

    /// Backward through time given `dh: (T, B, n)`; adds into `g`. Batch-parallel like
    /// `forward`; the gradients of the biases and scalars are summed per thread.
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
        let parts = batch_parts(par, batch);
        let (zeta, nu) = (sigmoid(p.zeta), sigmoid(p.nu));
        self.dh_carry.fill(T::zero());
        let (gate, cand, h) = (&self.gate, &self.candidate, &self.h);
        let dpre = split_batch_rows(&mut self.dpre, batch, n, parts);
        let dh_carry = split_batch_rows(&mut self.dh_carry, batch, n, parts);
        let run = |part: usize, (mut dpre, mut carry): (Rows<'_, T>, Rows<'_, T>)| {
            let rows = part_rows(batch, parts, part);
            let nb = rows.len();
            let carry = &mut *carry[0];
            let mut sums = ScalarSums::new(n);
            for s in (0..steps).rev() {
                let at = (s * batch + rows.start) * n..(s * batch + rows.end) * n;
                let (h_prev, dh_t) = (&h[at.clone()], &dh[at.clone()]);
                let (gate, cand) = (&gate[at.clone()], &cand[at]);
                let dpre = &mut *dpre[s];
                for row in 0..nb {
                    for j in 0..n {
                        let k = row * n + j;
                        let (z, c) = (gate[k], cand[k]);
                        let dh_total = dh_t[k] + carry[k];
                        sums.zeta[j] += dh_total * (T::one() - z) * c;
                        sums.nu[j] += dh_total * c;
                        let dgate = dh_total * (h_prev[k] - zeta * c) * z * (T::one() - z);
                        let dcand = dh_total * (zeta * (T::one() - z) + nu) * (T::one() - c * c);
                        sums.b_z[j] += dgate;
                        sums.b_h[j] += dcand;
                        dpre[k] = dgate + dcand;
                        carry[k] = dh_total * z;
                    }
                }
                backprop_step(carry, Accum::Add, dpre, p.u, nb);
            }
            sums
        };
        let sums: Vec<ScalarSums<T>> = run_parts(dpre.into_iter().zip(dh_carry).collect(), run);
        for part in &sums {
            *g.zeta += part.zeta.iter().copied().sum::<T>() * zeta * (T::one() - zeta);
            *g.nu += part.nu.iter().copied().sum::<T>() * nu * (T::one() - nu);
            add_column_sums(&part.b_z, n, g.b_z);
            add_column_sums(&part.b_h, n, g.b_h);
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

/// One thread's sums of the gradients of the biases and of the (pre-sigmoid) scalars.
struct ScalarSums<T> {
    b_z: Vec<T>,
    b_h: Vec<T>,
    /// Per unit, so that the loop has no serial dependency and vectorises.
    zeta: Vec<T>,
    nu: Vec<T>,
}

impl<T: Real> ScalarSums<T> {
    fn new(n: usize) -> Self {
        Self {
            b_z: vec![T::zero(); n],
            b_h: vec![T::zero(); n],
            zeta: vec![T::zero(); n],
            nu: vec![T::zero(); n],
        }
    }
}

/// The cell's parameters from `W`, `U` and its own tensors in EdgeML's order.
fn edge_params<'a>(w: &'a [f32], u: &'a [f32], own: &[&'a [f32]]) -> FastGrnnParams<'a, f32> {
    FastGrnnParams {
        w,
        u,
        b_z: own[0],
        b_h: own[1],
        zeta: own[2][0],
        nu: own[3][0],
    }
}

/// EdgeML's form of the cell, for the model's core (`edge.rs`).
impl super::edge::EdgeCell for FastGrnnCell<f32> {
    fn own_tensors(n: usize) -> Vec<crate::Tensor> {
        use crate::{Kind, Tensor};
        vec![
            Tensor::zeros("b_z", 1, n, Kind::Float),
            Tensor::zeros("b_h", 1, n, Kind::Float),
            Tensor::zeros("zeta", 1, 1, Kind::Float),
            Tensor::zeros("nu", 1, 1, Kind::Float),
        ]
    }

    /// EdgeML's: biases 1, `zeta` and `nu` at [`ZETA_INIT`] and [`NU_INIT`].
    fn init_own(t: &mut crate::Tensor) {
        match t.name {
            "b_z" | "b_h" => t.data.fill(1.0),
            "zeta" => t.data.fill(ZETA_INIT as f32),
            "nu" => t.data.fill(NU_INIT as f32),
            name => unreachable!("FastGRNN has no tensor {name}"),
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
        let [b_z, b_h, zeta, nu] = own_grads
            .get_disjoint_mut([0, 1, 2, 3])
            .expect("distinct indices");
        let mut g = FastGrnnGrads {
            w: grad_w,
            u: grad_u,
            b_z,
            b_h,
            zeta: &mut zeta[0],
            nu: &mut nu[0],
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

//! The orthogonal RNN cell `h_t = act(W h_{t-1} + U x_t + b)` with explicit
//! backpropagation through time over preallocated buffers.
//!
//! Matrices act on row vectors as in PyTorch: `z_t = h_{t-1} W^T + x_t U^T + b`.
//! The recurrent weight gradient is one `(n x T*B) * (T*B x n)` product after the time
//! loop; only the `dz_{t+1} W` carry is a per-step product.

use crate::cells::{add_column_sums, TimeLoopGrads};
use crate::linalg::{gemm, mat, mat_mut};
use crate::Real;
use faer::{Accum, Par};
use serde::{Deserialize, Serialize};

/// The hidden nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    /// `modrelu(z) = sign(z) relu(|z| + bm)` with a learned bias `bm` per unit.
    Modrelu,
    /// The Elman RNN's classic nonlinearity.
    Tanh,
}

impl Activation {
    /// `(act(z), d act / dz, d act / d bm)` for one unit.
    #[inline(always)]
    fn eval<T: Real>(self, z: T, bm: T) -> (T, T, T) {
        match self {
            Activation::Relu => {
                if z > T::zero() {
                    (z, T::one(), T::zero())
                } else {
                    (T::zero(), T::zero(), T::zero())
                }
            }
            Activation::Tanh => {
                let h = z.tanh();
                (h, T::one() - h * h, T::zero())
            }
            Activation::Modrelu => {
                let sign = if z > T::zero() {
                    T::one()
                } else if z < T::zero() {
                    -T::one()
                } else {
                    T::zero()
                };
                let m = z.abs() + bm;
                if m > T::zero() {
                    // d/dz = sign(z)^2, d/dbm = sign(z)
                    (sign * m, sign * sign, sign)
                } else {
                    (T::zero(), T::zero(), T::zero())
                }
            }
        }
    }
}

/// Sizes of one forward pass: hidden `n`, input `d`, steps `t`, batch `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellShape {
    pub hidden: usize,
    pub input: usize,
    pub steps: usize,
    pub batch: usize,
}

/// Parameters of the cell as the recurrence sees them (already parametrised/quantized).
pub struct CellParams<'a, T> {
    /// `(n, n)`
    pub w: &'a [T],
    /// `(n, d)`
    pub u: &'a [T],
    /// `(n)`
    pub b: &'a [T],
    /// `(n)`, modReLU bias (ignored for ReLU)
    pub bm: &'a [T],
}

/// Gradients of the cell parameters; `backward` adds into them.
pub struct CellGrads<'a, T> {
    pub w: &'a mut [T],
    pub u: &'a mut [T],
    pub b: &'a mut [T],
    pub bm: &'a mut [T],
}

/// Activations and their gradients for one `(steps, batch)`, allocated once.
pub struct OrnnCell<T> {
    pub shape: CellShape,
    pub activation: Activation,
    /// `z: (T, B, n)` pre-activations; block `s` is `z_{s+1}`.
    z: Vec<T>,
    /// `h: (T + 1, B, n)`; block 0 is `h_0`.
    h: Vec<T>,
    /// `dz: (T, B, n)`; block `s` is `dL/dz_{s+1}`.
    dz: Vec<T>,
}

impl<T: Real> OrnnCell<T> {
    pub fn new(shape: CellShape, activation: Activation) -> Self {
        let block = shape.batch * shape.hidden;
        Self {
            shape,
            activation,
            z: vec![T::zero(); shape.steps * block],
            h: vec![T::zero(); (shape.steps + 1) * block],
            dz: vec![T::zero(); shape.steps * block],
        }
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
    pub fn forward(&mut self, p: &CellParams<'_, T>, x: &[T], par: Par) {
        let CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        } = self.shape;
        let block = self.block();
        assert_eq!(x.len(), steps * batch * d, "forward: x is not (T, B, d)");
        // All input projections at once: z = X U^T + b.
        gemm(
            mat_mut(&mut self.z, steps * batch, n),
            Accum::Replace,
            mat(x, steps * batch, d),
            mat(p.u, n, d).transpose(),
            T::one(),
            par,
        );
        for row in self.z.chunks_mut(n) {
            for (zi, &bi) in row.iter_mut().zip(p.b) {
                *zi += bi;
            }
        }
        for s in 0..steps {
            let (prev, next) = self.h.split_at_mut((s + 1) * block);
            let h_prev = &prev[s * block..];
            let z = &mut self.z[s * block..(s + 1) * block];
            gemm(
                mat_mut(z, batch, n),
                Accum::Add,
                mat(h_prev, batch, n),
                mat(p.w, n, n).transpose(),
                T::one(),
                par,
            );
            let h = &mut next[..block];
            for (row_h, row_z) in h.chunks_mut(n).zip(z.chunks(n)) {
                for ((hi, &zi), &bmi) in row_h.iter_mut().zip(row_z).zip(p.bm) {
                    *hi = self.activation.eval(zi, bmi).0;
                }
            }
        }
    }

    /// Backpropagates `dh: (T, B, n)`, the read-out's `dL/dh_t`, through time; adds into
    /// `g`, and writes `dL/dx: (T, B, d)` into `grad_x` when given.
    ///
    /// `dz_t = (dh_t + dz_{t+1} W) * act'(z_t)`, then
    /// `dW = sum_t dz_t^T h_{t-1}`, `dU = sum_t dz_t^T x_t`, `db = sum_t dz_t`, `dx_t = dz_t U`.
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
        let block = self.block();
        for s in (0..steps).rev() {
            let (cur, later) = self.dz.split_at_mut((s + 1) * block);
            let dz = &mut cur[s * block..];
            dz.copy_from_slice(&dh[s * block..(s + 1) * block]);
            if s + 1 < steps {
                gemm(
                    mat_mut(dz, batch, n),
                    Accum::Add,
                    mat(&later[..block], batch, n),
                    mat(p.w, n, n),
                    T::one(),
                    par,
                );
            }
            let z = &self.z[s * block..(s + 1) * block];
            for (row_dz, row_z) in dz.chunks_mut(n).zip(z.chunks(n)) {
                for (j, (dzi, &zi)) in row_dz.iter_mut().zip(row_z).enumerate() {
                    let (_, dact, dbm) = self.activation.eval(zi, p.bm[j]);
                    g.bm[j] += *dzi * dbm;
                    *dzi *= dact;
                }
            }
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
        .apply(g.u, g.w, grad_x, par);
        add_column_sums(&self.dz, n, g.b);
    }
}

//! EdgeML's low-rank option for FastRNN and FastGRNN: a matrix `M (rows, cols)` is either
//! one tensor or the product `M1 M2` of two factors `(rows, r)` and `(r, cols)`, each
//! quantized on its own, so `M = q(M1) q(M2)`. Backward: `dL/dM1 = dL/dM q(M2)^T`,
//! `dL/dM2 = q(M1)^T dL/dM`.

use crate::linalg::{gemm, mat, mat_mut};
use crate::params::{Kind, Tensor};
use faer::{Accum, Par};

/// One matrix of a cell, full or factored, and where its tensors sit among the cell's.
#[derive(Clone, Copy, Debug)]
pub struct Factored {
    /// The full matrix's name, then the two factors' names.
    names: [&'static str; 3],
    rows: usize,
    cols: usize,
    rank: Option<usize>,
    /// Index of the (first) tensor among the cell's tensors.
    first: usize,
}

impl Factored {
    pub fn new(
        names: [&'static str; 3],
        (rows, cols): (usize, usize),
        rank: Option<usize>,
        first: usize,
    ) -> Self {
        Self {
            names,
            rows,
            cols,
            rank,
            first,
        }
    }

    /// The index after this matrix's tensors.
    pub fn end(&self) -> usize {
        self.first + if self.rank.is_some() { 2 } else { 1 }
    }

    /// Its tensors, zero: the full matrix or the two factors.
    pub fn tensors(&self) -> Vec<Tensor> {
        let [full, left, right] = self.names;
        match self.rank {
            Some(r) => vec![
                Tensor::zeros(left, self.rows, r, Kind::Quantized),
                Tensor::zeros(right, r, self.cols, Kind::Quantized),
            ],
            None => vec![Tensor::zeros(full, self.rows, self.cols, Kind::Quantized)],
        }
    }

    /// A scratch buffer for the product (empty for a full matrix).
    pub fn buffer(&self) -> Vec<f32> {
        vec![0.0; self.rank.map_or(0, |_| self.rows * self.cols)]
    }

    /// The matrix as the cell uses it: its tensor, or `q(M1) q(M2)` composed into
    /// `product`.
    pub fn compose<'a>(
        &self,
        tensors: &[&'a [f32]],
        product: &'a mut [f32],
        par: Par,
    ) -> &'a [f32] {
        if let Some(rank) = self.rank {
            gemm(
                mat_mut(product, self.rows, self.cols),
                Accum::Replace,
                mat(tensors[self.first], self.rows, rank),
                mat(tensors[self.first + 1], rank, self.cols),
                1.0,
                par,
            );
        }
        self.matrix(tensors, product)
    }

    /// The matrix as composed: its tensor, or the product of its factors in `product`.
    fn matrix<'a>(&self, tensors: &[&'a [f32]], product: &'a [f32]) -> &'a [f32] {
        match self.rank {
            Some(_) => product,
            None => tensors[self.first],
        }
    }

    /// Where the cell adds `dL/dM`: the tensor's gradient (the first of `own`, the
    /// gradients from this matrix's tensors on), or `product_grad` (zeroed here) for a
    /// factored matrix, which [`Factored::backward`] then takes on.
    fn gradient<'a>(&self, own: &'a mut [Vec<f32>], product_grad: &'a mut [f32]) -> &'a mut [f32] {
        match self.rank {
            Some(_) => {
                product_grad.fill(0.0);
                product_grad
            }
            None => &mut own[0],
        }
    }

    /// A factored matrix: `dL/dM` (in `product_grad`) onto the two factors' gradients.
    fn backward(&self, tensors: &[&[f32]], product_grad: &[f32], grads: &mut [Vec<f32>], par: Par) {
        let Some(rank) = self.rank else {
            return;
        };
        let (rows, cols, left, right) = (self.rows, self.cols, self.first, self.first + 1);
        let [gl, gr] = grads
            .get_disjoint_mut([left, right])
            .expect("distinct indices");
        gemm(
            mat_mut(gl, rows, rank),
            Accum::Add,
            mat(product_grad, rows, cols),
            mat(tensors[right], rank, cols).transpose(),
            1.0,
            par,
        );
        gemm(
            mat_mut(gr, rank, cols),
            Accum::Add,
            mat(tensors[left], rows, rank).transpose(),
            mat(product_grad, rows, cols),
            1.0,
            par,
        );
    }
}

/// FastRNN's and FastGRNN's `W (n, d)` and `U (n, n)`, each full or factored, ahead of
/// the cell's other tensors; with their products and gradients for one `(T, B)`.
pub struct InputAndRecurrent {
    pub w: Factored,
    pub u: Factored,
    product_w: Vec<f32>,
    product_u: Vec<f32>,
    grad_w: Vec<f32>,
    grad_u: Vec<f32>,
}

impl InputAndRecurrent {
    /// The layout: `W = W1 W2` of rank `rank_w`, `U = U1 U2` of rank `rank_u` (EdgeML's
    /// names); without buffers.
    pub fn new(spec: &crate::ModelSpec) -> Self {
        let (n, d) = (spec.hidden, spec.input);
        let w = Factored::new(["W", "W1", "W2"], (n, d), spec.rank_w, 0);
        let u = Factored::new(["U", "U1", "U2"], (n, n), spec.rank_u, w.end());
        Self {
            w,
            u,
            product_w: Vec::new(),
            product_u: Vec::new(),
            grad_w: Vec::new(),
            grad_u: Vec::new(),
        }
    }

    /// The same layout with buffers for one `(T, B)`.
    pub fn with_buffers(&self) -> Self {
        Self {
            product_w: self.w.buffer(),
            product_u: self.u.buffer(),
            grad_w: self.w.buffer(),
            grad_u: self.u.buffer(),
            ..*self
        }
    }

    /// Index of the first of the cell's other tensors.
    pub fn rest(&self) -> usize {
        self.u.end()
    }

    pub fn tensors(&self) -> Vec<Tensor> {
        let mut t = self.w.tensors();
        t.extend(self.u.tensors());
        t
    }

    /// `W` and `U` as the cell uses them.
    pub fn compose<'a>(&'a mut self, tensors: &[&'a [f32]], par: Par) -> (&'a [f32], &'a [f32]) {
        (
            self.w.compose(tensors, &mut self.product_w, par),
            self.u.compose(tensors, &mut self.product_u, par),
        )
    }

    /// Runs `backward(W, U, dL/dW, dL/dU, the other tensors' gradients)` with the matrices
    /// of the last `compose`, then takes factored matrices' gradients on to their factors.
    pub fn backward(
        &mut self,
        tensors: &[&[f32]],
        grads: &mut [Vec<f32>],
        par: Par,
        backward: impl FnOnce(&[f32], &[f32], &mut [f32], &mut [f32], &mut [Vec<f32>]),
    ) {
        let rest = self.rest();
        let Self {
            w,
            u,
            product_w,
            product_u,
            grad_w,
            grad_u,
        } = self;
        let (matrix_w, matrix_u) = (w.matrix(tensors, product_w), u.matrix(tensors, product_u));
        {
            let (factors, others) = grads.split_at_mut(rest);
            let (own_w, own_u) = factors.split_at_mut(w.end());
            let gw = w.gradient(own_w, grad_w);
            let gu = u.gradient(own_u, grad_u);
            backward(matrix_w, matrix_u, gw, gu, others);
        }
        w.backward(tensors, grad_w, grads, par);
        u.backward(tensors, grad_u, grads, par);
    }
}

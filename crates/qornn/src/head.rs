//! The float read-out `y_t = h_t V^T + c` (at the last step or at every step) and the
//! losses on it: mean softmax cross-entropy over classes, or mean squared error.

use crate::linalg::{gemm, mat, mat_mut};
use crate::params::{Kind, Tensor};
use crate::Real;
use faer::{Accum, Par};
use serde::{Deserialize, Serialize};

/// The name of the read-out's weight `V`.
pub const READOUT_WEIGHT: &str = "readout.weight";

/// The read-out's tensors, zero: `readout.weight (C, n)` and `readout.bias (C)`.
pub fn readout_tensors(hidden: usize, classes: usize) -> Vec<Tensor> {
    vec![
        Tensor::zeros(READOUT_WEIGHT, classes, hidden, Kind::Float),
        Tensor::zeros("readout.bias", 1, classes, Kind::Float),
    ]
}

/// `nn.Linear`'s initialisation: the weight uniform in `±1/sqrt(n)`, the bias zero.
pub fn init_readout(t: &mut Tensor, hidden: usize, rng: &mut dyn rand::RngCore) {
    use rand::Rng;
    match t.name {
        READOUT_WEIGHT => {
            let bound = 1.0 / (hidden as f32).sqrt();
            t.data
                .iter_mut()
                .for_each(|v| *v = rng.gen_range(-bound..bound));
        }
        "readout.bias" => {}
        name => unreachable!("the read-out has no tensor {name}"),
    }
}

/// Which hidden states are read out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Readout {
    /// Many-to-one: only `h_T`.
    Last,
    /// Many-to-many: every `h_t`.
    Every,
}

/// The targets of one batch, laid out like the read-out rows (`(T, B)` or `(B)`).
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Classes(Vec<usize>),
    Values(Vec<f32>),
}

/// Read-out buffers for one `(rows, classes)`; `rows` is `B` or `T * B`.
pub struct Head<T> {
    pub readout: Readout,
    pub rows: usize,
    pub classes: usize,
    /// `logits: (rows, C)`
    logits: Vec<T>,
    /// `dlogits: (rows, C)`
    dlogits: Vec<T>,
}

impl<T: Real> Head<T> {
    pub fn new(readout: Readout, steps: usize, batch: usize, classes: usize) -> Self {
        let rows = match readout {
            Readout::Last => batch,
            Readout::Every => steps * batch,
        };
        Self {
            readout,
            rows,
            classes,
            logits: vec![T::zero(); rows * classes],
            dlogits: vec![T::zero(); rows * classes],
        }
    }

    pub fn logits(&self) -> &[T] {
        &self.logits
    }

    /// The logits of the last `forward` and the gradient `backward` will use, for a loss
    /// computed elsewhere (distillation) to replace `forward`'s.
    pub fn logits_and_gradient(&mut self) -> (&[T], &mut [T]) {
        (&self.logits, &mut self.dlogits)
    }

    /// Logits from the hidden states `outputs: (T, B, n)`; returns the mean loss and
    /// leaves `dL/dlogits` ready for `backward`.
    pub fn forward(
        &mut self,
        outputs: &[T],
        hidden: usize,
        v: &[T],
        c: &[T],
        targets: &Targets,
        par: Par,
    ) -> T {
        let h = &outputs[outputs.len() - self.rows * hidden..];
        gemm(
            mat_mut(&mut self.logits, self.rows, self.classes),
            Accum::Replace,
            mat(h, self.rows, hidden),
            mat(v, self.classes, hidden).transpose(),
            T::one(),
            par,
        );
        for row in self.logits.chunks_mut(self.classes) {
            for (l, &ci) in row.iter_mut().zip(c) {
                *l += ci;
            }
        }
        match targets {
            Targets::Classes(y) => cross_entropy(&self.logits, self.classes, y, &mut self.dlogits),
            Targets::Values(y) => mean_squared_error(&self.logits, y, &mut self.dlogits),
        }
    }

    /// Adds `dV`, `dc` and writes `dL/dh` of the read-out's rows (the last `rows x n` of
    /// `outputs`) into `grad_outputs: (rows, n)`. The steps before them have no read-out:
    /// their `dL/dh_t` is zero, and a caller that keeps all of `(T, B, n)` leaves that part
    /// zero once instead of writing it every step.
    #[allow(clippy::too_many_arguments)] // destination-first, like faer's matmul
    pub fn backward(
        &self,
        outputs: &[T],
        hidden: usize,
        v: &[T],
        grad_v: &mut [T],
        grad_c: &mut [T],
        grad_outputs: &mut [T],
        par: Par,
    ) {
        let start = outputs.len() - self.rows * hidden;
        gemm(
            mat_mut(grad_v, self.classes, hidden),
            Accum::Add,
            mat(&self.dlogits, self.rows, self.classes).transpose(),
            mat(&outputs[start..], self.rows, hidden),
            T::one(),
            par,
        );
        for row in self.dlogits.chunks(self.classes) {
            for (g, &d) in grad_c.iter_mut().zip(row) {
                *g += d;
            }
        }
        gemm(
            mat_mut(grad_outputs, self.rows, hidden),
            Accum::Replace,
            mat(&self.dlogits, self.rows, self.classes),
            mat(v, self.classes, hidden),
            T::one(),
            par,
        );
    }
}

/// Mean softmax cross-entropy over rows; writes its gradient into `dlogits`.
pub fn cross_entropy<T: Real>(logits: &[T], classes: usize, y: &[usize], dlogits: &mut [T]) -> T {
    let rows = y.len();
    assert_eq!(
        logits.len(),
        rows * classes,
        "cross_entropy: logits vs targets"
    );
    let inv_rows = T::one() / T::of(rows as f64);
    let mut total = 0.0f64;
    for ((row, drow), &yi) in logits
        .chunks(classes)
        .zip(dlogits.chunks_mut(classes))
        .zip(y)
    {
        let max = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
        let mut sum = T::zero();
        for (d, &l) in drow.iter_mut().zip(row) {
            *d = (l - max).exp();
            sum += *d;
        }
        total += (sum.ln() + max - row[yi]).to_f64().unwrap_or(f64::NAN);
        for d in drow.iter_mut() {
            *d = *d / sum * inv_rows;
        }
        drow[yi] -= inv_rows;
    }
    T::of(total / rows as f64)
}

/// Mean squared error over all entries; writes its gradient into `dlogits`.
pub fn mean_squared_error<T: Real>(out: &[T], y: &[f32], dout: &mut [T]) -> T {
    assert_eq!(out.len(), y.len(), "mean_squared_error: outputs vs targets");
    let scale = T::of(2.0 / y.len() as f64);
    let mut total = 0.0f64;
    for ((d, &o), &t) in dout.iter_mut().zip(out).zip(y) {
        let e = o - T::of(t as f64);
        total += e.to_f64().unwrap_or(f64::NAN).powi(2);
        *d = scale * e;
    }
    T::of(total / y.len() as f64)
}

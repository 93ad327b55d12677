//! The baseline cells, each with its forward pass and its backward pass through time
//! written explicitly over buffers allocated once per `(T, B)`, like the ORNN cell:
//! LSTM and GRU with PyTorch's equations and parameter layout, FastRNN and FastGRNN with
//! EdgeML's. Every `backward` takes `dL/dh_t` for every step, `(T, B, n)`, and adds into
//! the gradients of its parameters.

pub mod fastgrnn;
pub mod fastrnn;
pub mod gru;
pub mod lstm;

use crate::Real;

#[inline(always)]
pub(crate) fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// Adds the column sums of the row-major `rows x cols` matrix `m` into `out`.
pub(crate) fn add_column_sums<T: Real>(m: &[T], cols: usize, out: &mut [T]) {
    for row in m.chunks(cols) {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
    }
}

//! The paper's symmetric min-max weight quantizer, per tensor or per row.
//!
//! With `a = max |w|` (1 when the tensor is all zeros) and `s = 2^(k-1)`:
//! `code = clamp(round(w s / a), -s, s - 1)` (ties to even) and `q(w) = code * a / s`.
//! In training it is recomputed at every forward and its gradient is the identity
//! (straight-through estimator), so the backward of a quantized tensor is a no-op.

use crate::Real;
use serde::{Deserialize, Serialize};

/// Where one scale is shared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One scale for the whole tensor (the paper's choice).
    #[default]
    PerTensor,
    /// One scale per output row: `a_i = max_j |w_ij|`.
    PerRow,
}

/// A k-bit symmetric quantizer; `bits == None` means full precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantizer {
    pub bits: u32,
    pub granularity: Granularity,
}

/// Integer codes and the step between two codes (`a / s`), one step per tensor or per row.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedTensor<T> {
    pub rows: usize,
    pub cols: usize,
    pub bits: u32,
    pub granularity: Granularity,
    /// `rows * cols` codes in `[-2^(k-1), 2^(k-1) - 1]`, row-major.
    pub codes: Vec<i32>,
    /// One step for a per-tensor quantizer, `rows` steps for a per-row one.
    pub steps: Vec<T>,
}

impl<T: Real> QuantizedTensor<T> {
    /// The step that scales the code at `row`.
    pub fn step(&self, row: usize) -> T {
        match self.granularity {
            Granularity::PerTensor => self.steps[0],
            Granularity::PerRow => self.steps[row],
        }
    }

    /// Writes `code * step` into `out` (`rows * cols`).
    pub fn dequantize_into(&self, out: &mut [T]) {
        assert_eq!(out.len(), self.codes.len(), "dequantize: output length");
        for (r, (out_row, code_row)) in out
            .chunks_mut(self.cols)
            .zip(self.codes.chunks(self.cols))
            .enumerate()
        {
            let step = self.step(r);
            for (o, &c) in out_row.iter_mut().zip(code_row) {
                *o = T::of(c as f64) * step;
            }
        }
    }
}

impl Quantizer {
    pub const MIN_BITS: u32 = 2;
    pub const MAX_BITS: u32 = 8;

    pub fn new(bits: u32, granularity: Granularity) -> Self {
        assert!(
            (Self::MIN_BITS..=Self::MAX_BITS).contains(&bits),
            "quantizer bits must be in 2..=8, got {bits}"
        );
        Self { bits, granularity }
    }

    /// The widest post-training quantizer: an integer read-out at up to A = 16 bits.
    pub const MAX_POST_TRAINING_BITS: u32 = 16;

    /// The same quantizer for post-training use, where up to 16 bits are allowed.
    pub fn post_training(bits: u32, granularity: Granularity) -> Self {
        assert!(
            (Self::MIN_BITS..=Self::MAX_POST_TRAINING_BITS).contains(&bits),
            "post-training quantizer bits must be in 2..=16, got {bits}"
        );
        Self { bits, granularity }
    }

    /// Number of positive levels `s = 2^(k-1)`.
    pub fn levels(&self) -> i32 {
        1 << (self.bits - 1)
    }

    /// Integer codes and steps of the `rows x cols` row-major tensor `w`.
    pub fn quantize<T: Real>(&self, w: &[T], rows: usize, cols: usize) -> QuantizedTensor<T> {
        assert_eq!(
            w.len(),
            rows * cols,
            "quantize: tensor length vs {rows}x{cols}"
        );
        let s = self.levels();
        let ranges: Vec<T> = match self.granularity {
            Granularity::PerTensor => vec![max_abs(w)],
            Granularity::PerRow => w.chunks(cols.max(1)).map(max_abs).collect(),
        };
        let steps: Vec<T> = ranges
            .iter()
            .map(|&a| {
                let a = if a == T::zero() { T::one() } else { a };
                a / T::of(s as f64)
            })
            .collect();
        let mut codes = vec![0i32; w.len()];
        for (r, (code_row, w_row)) in codes
            .chunks_mut(cols.max(1))
            .zip(w.chunks(cols.max(1)))
            .enumerate()
        {
            let range = match self.granularity {
                Granularity::PerTensor => ranges[0],
                Granularity::PerRow => ranges[r],
            };
            let range = if range == T::zero() { T::one() } else { range };
            // round(w s / a), computed as the reference does (multiply, then divide).
            let s_t = T::of(s as f64);
            for (c, &x) in code_row.iter_mut().zip(w_row) {
                let v = (x * s_t / range).round_even();
                let v = v.to_f64().unwrap_or(0.0) as i64;
                *c = v.clamp(-(s as i64), s as i64 - 1) as i32;
            }
        }
        QuantizedTensor {
            rows,
            cols,
            bits: self.bits,
            granularity: self.granularity,
            codes,
            steps,
        }
    }

    /// The fake-quantized tensor `q(w)` written into `out`; returns the codes and steps.
    pub fn fake_quantize_into<T: Real>(
        &self,
        w: &[T],
        rows: usize,
        cols: usize,
        out: &mut [T],
    ) -> QuantizedTensor<T> {
        let q = self.quantize(w, rows, cols);
        q.dequantize_into(out);
        q
    }
}

fn max_abs<T: Real>(w: &[T]) -> T {
    w.iter().fold(T::zero(), |m, &x| m.max(x.abs()))
}

/// Applies an optional quantizer: `q(w)` into `out`, or a plain copy at full precision.
pub fn maybe_fake_quantize<T: Real>(
    quantizer: Option<&Quantizer>,
    w: &[T],
    rows: usize,
    cols: usize,
    out: &mut [T],
) {
    match quantizer {
        Some(q) => {
            q.fake_quantize_into(w, rows, cols, out);
        }
        None => out.copy_from_slice(w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_to_even_and_codes_clamp() {
        // a = 1, s = 2 (k = 2): w s / a = {0.5, 1.5, -2.0, 1.0} -> {0, 2 -> clamp 1, -2, 1}.
        let q = Quantizer::new(2, Granularity::PerTensor);
        let t = q.quantize(&[0.25f64, 0.75, -1.0, 0.5], 1, 4);
        assert_eq!(t.codes, vec![0, 1, -2, 1]);
        assert_eq!(t.steps, vec![0.5]);
    }

    #[test]
    fn zero_tensor_uses_unit_range() {
        let q = Quantizer::new(4, Granularity::PerRow);
        let t = q.quantize(&[0.0f32; 6], 2, 3);
        assert!(t.codes.iter().all(|&c| c == 0));
        assert_eq!(t.steps, vec![1.0 / 8.0; 2]);
    }
}

//! Weight quantizers, one file each behind [`WeightQuantizer`] (codes in the forward pass,
//! the straight-through estimator written out in the backward pass): here the paper's
//! symmetric min-max quantizer, per tensor or per row, and the same quantizer with an
//! MSE-optimal range; learned steps in `lsq.rs`; rounding of the recurrent matrix towards
//! orthogonality in `orthogonal_rounding.rs`. Adding one: a file with a type implementing
//! the trait and its line in `choices!` below ([`RangeRule`] for a way of choosing steps,
//! [`Rounding`] for a way of rounding `W`), which declares the file and names the choice.
//!
//! With `a = max |w|` (1 when the tensor is all zeros) and `s = 2^(k-1)`:
//! `code = clamp(round(w s / a), -s, s - 1)` (ties to even) and `q(w) = code * a / s`.
//! In training it is recomputed at every forward and its gradient is the identity
//! (straight-through estimator), so the backward of a quantized tensor is a no-op.

pub mod activation;
pub mod dither;

use crate::Real;
use serde::{Deserialize, Serialize};

/// Declares a setting's choices of quantizer: an enum whose serde names are the spellings,
/// the file (`in module`) that implements each, and `quantizer`, the quantizer a choice
/// makes of the configured `Quantizer`. One line per choice.
macro_rules! choices {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal $(in $module:ident)? => $make:expr,)+
    }) => {
        $($(pub mod $module;)?)+

        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// The quantizer this choice makes of `q`.
            pub fn quantizer(self, q: Quantizer) -> Box<dyn WeightQuantizer> {
                match self {
                    $($name::$variant => ($make)(q),)+
                }
            }
        }
    };
}

choices! {
    /// How the range `a` of a scale is chosen.
    RangeRule {
        /// `a = max |w|` (the paper): no weight is clipped.
        #[default]
        Max = "max" => |q: Quantizer| Box::new(q),
        /// The `a` in `{max|w| i / 64 : i = 16..=64}` with the smallest squared error
        /// `||w - q_a(w)||^2`: a few large weights are clipped so that the others get finer
        /// steps (the choice that matters at 2 to 4 bits). Ties go to the larger range.
        Mse = "mse" => |q: Quantizer| Box::new(q),
        /// A learned step per tensor (or row), trained with the model (LSQ, `lsq.rs`); the
        /// step starts from `Quantizer::lsq_init`. Where no learned step is at hand (a fresh
        /// tensor) this quantizer uses the max range.
        Lsq = "lsq" in lsq => |q| Box::new(lsq::Lsq(q)),
    }
}

choices! {
    /// How the recurrent matrix's codes are rounded (the other matrices: to nearest, by
    /// their range's quantizer).
    Rounding {
        /// To the nearest level (the paper).
        #[default]
        Nearest = "nearest" => |q: Quantizer| q.range.quantizer(q),
        /// Down or up, whichever brings `q(W)` closer to orthogonal (greedy sweeps).
        Orthogonal = "orthogonal" in orthogonal_rounding
            => |q| Box::new(orthogonal_rounding::TowardsOrthogonal(q)),
    }
}

/// One weight matrix's quantizer as the model runs it.
pub trait WeightQuantizer {
    /// The codes and steps of `w: (rows, cols)`; `steps`: the tensor's learned steps, for a
    /// quantizer that learns them (`None` before they exist).
    fn codes(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        steps: Option<&[f32]>,
    ) -> QuantizedTensor<f32>;

    /// The straight-through backward: `grad` holds `dL/dq(w)` and becomes `dL/dw`; a
    /// quantizer with learned steps adds their gradient into `grad_steps`. The default is
    /// the paper's estimator, the identity.
    fn backward(
        &self,
        _w: &[f32],
        _cols: usize,
        _steps: &[f32],
        _grad: &mut [f32],
        _grad_steps: &mut [f32],
    ) {
    }
}

/// The paper's quantizer (max or MSE range, nearest rounding).
impl WeightQuantizer for Quantizer {
    fn codes(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        _: Option<&[f32]>,
    ) -> QuantizedTensor<f32> {
        self.quantize(w, rows, cols)
    }
}

/// The quantizer that `q` sets for a model's weight matrix (`recurrent`: the ORNN's `W`,
/// rounded as `q.rounding` says; the others by their range's quantizer).
pub fn for_tensor(q: &Quantizer, recurrent: bool) -> Box<dyn WeightQuantizer> {
    if recurrent {
        q.rounding.quantizer(*q)
    } else {
        q.range.quantizer(*q)
    }
}

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
    #[serde(default)]
    pub range: RangeRule,
    /// `RangeRule::Lsq`: how the learned step starts.
    #[serde(default)]
    pub lsq_init: lsq::LsqInit,
    /// How the recurrent matrix's codes are rounded (the other matrices: to nearest).
    #[serde(default)]
    pub rounding: Rounding,
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
        Self::paper(bits, granularity)
    }

    /// The paper's quantizer (max range, nearest rounding) at `bits`, unchecked.
    fn paper(bits: u32, granularity: Granularity) -> Self {
        Self {
            bits,
            granularity,
            range: RangeRule::Max,
            lsq_init: crate::quant::lsq::LsqInit::Max,
            rounding: Rounding::Nearest,
        }
    }

    /// The same quantizer with its range chosen by `range`.
    pub fn with_range(self, range: RangeRule) -> Self {
        Self { range, ..self }
    }

    /// The widest post-training quantizer: an integer read-out at up to A = 16 bits.
    pub const MAX_POST_TRAINING_BITS: u32 = 16;

    /// The same quantizer for post-training use, where up to 16 bits are allowed.
    pub fn post_training(bits: u32, granularity: Granularity) -> Self {
        assert!(
            (Self::MIN_BITS..=Self::MAX_POST_TRAINING_BITS).contains(&bits),
            "post-training quantizer bits must be in 2..=16, got {bits}"
        );
        Self::paper(bits, granularity)
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
        let range_of = |w: &[T]| match self.range {
            RangeRule::Mse => mse_range(w, s),
            // The max range, and the start of any range that is learned.
            _ => max_abs(w),
        };
        let ranges: Vec<T> = match self.granularity {
            Granularity::PerTensor => vec![range_of(w)],
            Granularity::PerRow => w.chunks(cols.max(1)).map(range_of).collect(),
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
            for (c, &x) in code_row.iter_mut().zip(w_row) {
                *c = code_of(x, s, range) as i32;
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

    /// Codes and steps of `w` with given (learned) steps, one or one per row (LSQ).
    pub fn quantize_with_steps<T: Real>(
        &self,
        w: &[T],
        rows: usize,
        cols: usize,
        steps: &[T],
    ) -> QuantizedTensor<T> {
        QuantizedTensor {
            rows,
            cols,
            bits: self.bits,
            granularity: self.granularity,
            codes: crate::quant::lsq::codes(w, cols, steps, self.bits),
            steps: steps.to_vec(),
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

/// The code of `x` for the range `a` with `s` positive levels, as in `quantize`.
fn code_of<T: Real>(x: T, s: i32, a: T) -> i64 {
    let v = (x * T::of(s as f64) / a).round_even();
    (v.to_f64().unwrap_or(0.0) as i64).clamp(-(s as i64), s as i64 - 1)
}

/// [`RangeRule::Mse`]: the candidate range with the smallest squared error.
fn mse_range<T: Real>(w: &[T], s: i32) -> T {
    let top = max_abs(w);
    if top == T::zero() {
        return top;
    }
    let error = |a: T| -> f64 {
        let step = a.to_f64().unwrap_or(1.0) / s as f64;
        w.iter()
            .map(|&x| {
                let e = x.to_f64().unwrap_or(0.0) - code_of(x, s, a) as f64 * step;
                e * e
            })
            .sum()
    };
    let mut best = (error(top), top);
    for i in (16..64).rev() {
        let a = top * T::of(i as f64 / 64.0);
        let e = error(a);
        if e < best.0 {
            best = (e, a);
        }
    }
    best.1
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

    /// The MSE range never does worse than max |w| (it is a candidate) and does better on
    /// a heavy-tailed tensor at 3 bits; with `Max` nothing is clipped.
    #[test]
    fn mse_range_lowers_the_error() {
        let mut w: Vec<f64> = (0..400)
            .map(|i| ((i * 7919) % 401) as f64 / 400.0 - 0.5)
            .collect();
        w[17] = 4.0; // one outlier
        let error = |q: &Quantizer| {
            let mut out = vec![0.0; w.len()];
            q.fake_quantize_into(&w, 20, 20, &mut out);
            w.iter()
                .zip(&out)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        };
        for granularity in [Granularity::PerTensor, Granularity::PerRow] {
            let max = Quantizer::new(3, granularity);
            let mse = max.with_range(RangeRule::Mse);
            // Per tensor the outlier coarsens every step; per row only its own row's.
            let factor = match granularity {
                Granularity::PerTensor => 0.5,
                Granularity::PerRow => 1.0,
            };
            assert!(error(&mse) < factor * error(&max), "{granularity:?}");
            let t = mse.quantize(&w, 20, 20);
            assert!(t.steps.iter().all(|&st| st * 4.0 <= 4.0 + 1e-12));
        }
        let t = Quantizer::new(3, Granularity::PerTensor).quantize(&w, 20, 20);
        assert_eq!(t.steps, vec![4.0 / 4.0]);
        // A tensor without outliers: the MSE range is never worse.
        let flat: Vec<f64> = (0..64).map(|i| (i as f64 - 31.5) / 32.0).collect();
        let e = |q: Quantizer| {
            let mut out = vec![0.0; 64];
            q.fake_quantize_into(&flat, 8, 8, &mut out);
            flat.iter()
                .zip(&out)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        };
        let max = Quantizer::new(4, Granularity::PerTensor);
        assert!(e(max.with_range(RangeRule::Mse)) <= e(max));
    }

    #[test]
    fn zero_tensor_uses_unit_range() {
        let q = Quantizer::new(4, Granularity::PerRow);
        let t = q.quantize(&[0.0f32; 6], 2, 3);
        assert!(t.codes.iter().all(|&c| c == 0));
        assert_eq!(t.steps, vec![1.0 / 8.0; 2]);
    }
}

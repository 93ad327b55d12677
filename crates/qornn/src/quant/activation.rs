//! The integer engine's activation quantizer in training (`--act-bits A`): the hidden state
//! of an ORNN or RNN is fake-quantized at every step with the rules of `qornn-infer`
//! (`docs/format.md`), and its input is quantized as the engine quantizes it, so that the
//! integer model computes what training saw.
//!
//! With the step `s = 2^-f_h`, a power of two, and `u = z / s` (z the pre-activation, bias
//! included):
//!
//! ```text
//! Z = floor(u + 1/2)                                  (the engine's (num + 2^(S-1)) >> S)
//! a = max(Z, 0)                                       (ReLU)
//! a = sign(Z) max(|Z| + BM, 0),  BM = round(bm / s)   (modReLU)
//! h = clamp(a, lo, hi) s
//! ```
//!
//! with `lo..=hi` = `0..=2^A - 1` (ReLU) or `-2^(A-1)..=2^(A-1) - 1` (modReLU).
//!
//! The step is learned as LSQ learns an activation step (Esser et al. 2020), through its
//! base-2 logarithm `l`: `s = 2^round(l)` in the forward pass, so that the engine can
//! rescale by shifts, or `s = 2^l` (`ActRange::Continuous`), whose mantissa `qornn
//! quantize` folds into the weights. The backward is the straight-through estimator
//! written out: each rounding passes its gradient as the identity, the clamps and ReLU's
//! zero cut it. Where `lo < a < hi` holds before the clamp ("inside"):
//!
//! ```text
//! dh/dz = 1,  dh/dbm = sign(Z),  dh/ds = (Z - u) + sign(Z) (BM - bm / s)
//! ```
//!
//! where the clamp holds, `dh/dz = dh/dbm = 0` and `dh/ds` = the clamped code; elsewhere
//! (`a = 0`) all three are 0. Then `dL/dl = g s ln 2 sum dL/dh dh/ds`, with LSQ's gradient
//! scale `g = 1 / sqrt(N Q_P)`, N the activations the step quantizes in the batch. The
//! straight-through gradient is the exact gradient of the same recurrence with each
//! rounding's residual and each clamp held at its value: the finite-difference test in
//! `tests/activation_quant.rs` checks it so, in `f64`.
//!
//! With `act_train_rounding = "stochastic"` training rounds `Z = floor(u + r)` instead, `r`
//! uniform in `[0, 1)` and drawn per unit, time step, sequence and training step from a
//! counter-based hash (`quant::dither`), so the backward pass and a resumed run draw the
//! same `r`. `E[Z] = u`: the straight-through `dZ/du = 1` is then the exact derivative of
//! the expected code (Gupta et al. 2015 train fixed-point networks so), where nearest
//! rounding's is 0 almost everywhere. Evaluation, `qornn quantize` and the engine round to
//! nearest.

use super::dither::dither_offset;
use crate::Real;
use serde::{Deserialize, Serialize};

/// How training sets the hidden state's step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActRange {
    /// Learned (LSQ on `log2 s`) from its calibrated start. On the copy task its power of
    /// two jumped after about 1,300 steps and the recall collapsed at each jump.
    Learned,
    /// Calibrated when quantization starts, then held: steadier where measured.
    #[default]
    Calibrated,
    /// Learned (LSQ on `log2 s`) without rounding: any step `s = m 2^-f`, `m` in `[1, 2)`.
    /// The engine still rescales by shifts: `qornn quantize` runs the state `h / m`, whose
    /// step is `2^-f`, by dividing U, the biases and modReLU's bias by `m` and multiplying V
    /// by it (the recurrence is positively homogeneous in `h`), so training sees no jump.
    Continuous,
}

/// Where the hidden state's step starts when the activations' quantization starts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum HiddenStepStart {
    /// The power of two with the least squared error on the state
    /// (`least_squares_fraction_bits`).
    #[default]
    LeastSquares,
    /// `2^-F`: F fraction bits (`act_hidden_frac`).
    Fraction(i32),
    /// The largest power of two whose codes hold this fraction of the state's magnitudes
    /// (`covering_fraction_bits`, `act_hidden_cover`).
    Cover(f64),
    /// The power of two whose quantized forward pass has the lowest loss on the batch,
    /// among the widest step that holds every state and the `LOSS_SEARCH_SPAN` finer ones
    /// (`act_hidden_search`): the state is heavy-tailed, and the step that trains best
    /// saturates far more of it than a rule on its values alone lets saturate.
    LowestLoss,
}

/// `HiddenStepStart::LowestLoss` tries the widest step and this many finer powers of two.
pub const LOSS_SEARCH_SPAN: i32 = 8;

/// The name of the learned `log2` step of the hidden state.
pub const HIDDEN_STEP: &str = "hidden.log2_step";

/// The hidden codes' range at `bits`: unsigned for ReLU's non-negative state, signed for
/// modReLU's.
pub fn hidden_code_range(bits: u32, modrelu: bool) -> (i64, i64) {
    if modrelu {
        (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1)
    } else {
        (0, (1i64 << bits) - 1)
    }
}

/// The input codes' largest magnitude: signed `bits`.
pub fn input_code_limit(bits: u32) -> i64 {
    (1i64 << (bits - 1)) - 1
}

/// The largest fraction `f` with `max_abs 2^f <= limit`: the power-of-two scale of codes that
/// just hold `max_abs` (0 for an all-zero activation).
pub fn fraction_bits(max_abs: f32, limit: i64) -> i32 {
    if max_abs <= 0.0 || !max_abs.is_finite() {
        return 0;
    }
    (limit as f64 / max_abs as f64).log2().floor() as i32
}

/// The largest fraction bits `f` whose codes hold the `cover` quantile of `|values|` (a
/// fraction in `(0, 1]`; the larger values then saturate): for long sequences at few bits
/// the least-squares step (`least_squares_fraction_bits`) is set by a few large states and
/// leaves the rest too coarse. The quantile is taken on at most 2^20 values, evenly strided.
pub fn covering_fraction_bits(values: &[f32], bits: u32, modrelu: bool, cover: f64) -> i32 {
    let hi = hidden_code_range(bits, modrelu).1;
    let stride = values.len() / (1 << 20) + 1;
    let mut magnitudes: Vec<f32> = values.iter().step_by(stride).map(|v| v.abs()).collect();
    if magnitudes.is_empty() {
        return 0;
    }
    let rank = ((cover * magnitudes.len() as f64).ceil() as usize).clamp(1, magnitudes.len());
    let (_, quantile, _) = magnitudes.select_nth_unstable_by(rank - 1, f32::total_cmp);
    fraction_bits(*quantile, hi)
}

/// The fraction bits `f` whose codes represent `values` with the least squared error,
/// clamping included: from the largest `f` that holds every value (`fraction_bits` of the
/// largest `|v|`) to 6 bits finer, where clipping the largest values starts to cost more
/// than the finer step saves.
pub fn least_squares_fraction_bits(values: &[f32], bits: u32, modrelu: bool) -> i32 {
    let (lo, hi) = hidden_code_range(bits, modrelu);
    let widest = widest_fraction_bits(values, bits, modrelu);
    let error = |frac: i32| -> f64 {
        let (scale, unit) = (2f64.powi(frac), 2f64.powi(-frac));
        values
            .iter()
            .map(|&v| {
                let q = (v as f64 * scale + 0.5).floor().clamp(lo as f64, hi as f64) * unit;
                (q - v as f64).powi(2)
            })
            .sum()
    };
    (widest..=widest + 6)
        .map(|f| (error(f), f))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(widest, |(_, f)| f)
}

/// The largest fraction bits whose codes hold every one of `values` (the coarsest step
/// that saturates nothing).
pub fn widest_fraction_bits(values: &[f32], bits: u32, modrelu: bool) -> i32 {
    let max_abs = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    fraction_bits(max_abs, hidden_code_range(bits, modrelu).1)
}

/// The engine's input quantization in float: `round(x 2^f_x)` saturated to signed `bits`,
/// times `2^-f_x`, with `f_x` from the largest `|x|` (the rule `qornn quantize` calibrates
/// with). Returns `f_x`.
pub fn quantize_inputs(x: &[f32], bits: u32, out: &mut [f32]) -> i32 {
    let limit = input_code_limit(bits) as f32;
    let max_abs = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let frac = fraction_bits(max_abs, limit as i64);
    let (scale, unit) = (2f32.powi(frac), 2f32.powi(-frac));
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v * scale).round().clamp(-limit - 1.0, limit) * unit;
    }
    frac
}

/// How training rounds the quantized hidden state (`act_train_rounding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActRounding {
    /// To nearest, as the integer engine rounds.
    #[default]
    Nearest,
    /// Stochastic (`floor(u + r)`, `r` uniform in `[0, 1)`): unbiased, so the
    /// straight-through gradient is the expected code's.
    Stochastic,
}

/// The fake quantizer of the hidden state at one step `s = 2^-f_h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HiddenQuantizer<T> {
    /// `s`, a power of two.
    pub step: T,
    /// The codes' range `lo..=hi`.
    pub lo: T,
    pub hi: T,
    /// modReLU (signed codes, the bias `BM`), else ReLU.
    pub modrelu: bool,
    /// Stochastic rounding's key (one per training step), else round to nearest.
    pub dither: Option<u32>,
}

/// One unit's quantized activation.
#[derive(Clone, Copy)]
struct Code<T> {
    /// The clamped code `clamp(a, lo, hi)`.
    value: T,
    /// Where the code fell, as weights of its gradient's cases (each 0 or 1, at most one
    /// of them 1; `a = 0` has neither): strictly inside the codes' range, or saturated at
    /// `lo` or `hi`. Weights rather than branches, so that the loops vectorise.
    inside: T,
    clamped: T,
    sign: T,
    /// `dh/ds` inside the range: `(Z - u) + sign(Z) (BM - bm / s)`.
    residual: T,
}

impl<T: Real> HiddenQuantizer<T> {
    /// The quantizer of `bits`-bit codes with the step `2^round(log2_step)`.
    pub fn new(bits: u32, log2_step: f32, modrelu: bool) -> Self {
        Self::with_step(bits, 2f64.powi(log2_step.round() as i32), modrelu)
    }

    /// The quantizer of `bits`-bit codes with the step `step` (`ActRange::Continuous`).
    pub fn with_step(bits: u32, step: f64, modrelu: bool) -> Self {
        let (lo, hi) = hidden_code_range(bits, modrelu);
        Self {
            step: T::of(step),
            lo: T::of(lo as f64),
            hi: T::of(hi as f64),
            modrelu,
            dither: None,
        }
    }

    /// The fraction bits `f_h` of this step, `s = m 2^-f_h` with `m` in `[1, 2)` (1 for a
    /// power of two).
    pub fn fraction_bits(&self) -> i32 {
        -self.step.to_f64().expect("a finite step").log2().floor() as i32
    }

    /// The step's mantissa `m = s 2^f_h`, in `[1, 2)`.
    pub fn mantissa(&self) -> f64 {
        self.step.to_f64().expect("a finite step") * 2f64.powi(self.fraction_bits())
    }

    /// modReLU's bias in codes, `BM = round(bm / s)` (half away from zero, as the integer
    /// model's conversion rounds it), and its residual `BM - bm / s`.
    #[inline(always)]
    pub fn bias_code(&self, bm: T) -> (T, T) {
        let bm_scaled = bm * self.step.recip();
        let bm_code = floor(bm_scaled.abs() + T::of(0.5)).copysign(bm_scaled);
        (bm_code, bm_code - bm_scaled)
    }

    /// The code of `z`, rounded as `floor(u + offset)`: `offset` 1/2 to nearest, `r` for
    /// stochastic rounding.
    #[inline(always)]
    fn code(&self, z: T, bm: T, offset: T) -> Code<T> {
        // z / s: exact for a power of two; otherwise the same product in every path.
        let u = z * self.step.recip();
        let rounded = floor(u + offset);
        let sign = if rounded > T::zero() {
            T::one()
        } else if rounded < T::zero() {
            -T::one()
        } else {
            T::zero()
        };
        let (a, bias_residual) = if self.modrelu {
            let (bm_code, bias_residual) = self.bias_code(bm);
            let magnitude = rounded.abs() + bm_code;
            let a = if magnitude > T::zero() {
                sign * magnitude
            } else {
                T::zero()
            };
            (a, bias_residual)
        } else {
            (rounded.max(T::zero()), T::zero())
        };
        let nonzero = if a == T::zero() { T::zero() } else { T::one() };
        let outside = if a > self.hi || a < self.lo {
            T::one()
        } else {
            T::zero()
        };
        Code {
            value: a.max(self.lo).min(self.hi),
            inside: nonzero * (T::one() - outside),
            clamped: nonzero * outside,
            sign,
            residual: (rounded - u) + sign * bias_residual,
        }
    }

    /// `z += b`, then `h = q(act(z))`, over rows of `z, h: (rows, n)`; `first_row` is the
    /// index of `z`'s first row among the batch's `(T, B)` rows (stochastic rounding draws
    /// by it).
    pub fn forward_rows(&self, z: &mut [T], h: &mut [T], b: &[T], bm: &[T], first_row: usize) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.forward_rows_avx2(z, h, b, bm, first_row) };
        }
        self.forward_rows_any(z, h, b, bm, first_row)
    }

    /// `forward_rows` compiled for AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_rows_avx2(
        &self,
        z: &mut [T],
        h: &mut [T],
        b: &[T],
        bm: &[T],
        first_row: usize,
    ) {
        self.forward_rows_any(z, h, b, bm, first_row)
    }

    #[inline(always)]
    fn forward_rows_any(&self, z: &mut [T], h: &mut [T], b: &[T], bm: &[T], first_row: usize) {
        match self.dither {
            None => self.forward_rows_by(z, h, b, bm, nearest),
            Some(key) => self.forward_rows_by(z, h, b, bm, stochastic(key, first_row, b.len())),
        }
    }

    /// `forward_rows` with the rounding offset of each (row, unit) from `offset`.
    #[inline(always)]
    fn forward_rows_by(
        &self,
        z: &mut [T],
        h: &mut [T],
        b: &[T],
        bm: &[T],
        offset: impl Fn(usize, usize) -> T,
    ) {
        let n = b.len();
        for (r, (row_h, row_z)) in h.chunks_mut(n).zip(z.chunks_mut(n)).enumerate() {
            let units = row_h.iter_mut().zip(row_z).zip(b).zip(bm).enumerate();
            for (j, (((hi, zi), &bi), &bmi)) in units {
                *zi += bi;
                *hi = self.code(*zi, bmi, offset(r, j)).value * self.step;
            }
        }
    }

    /// The straight-through backward over rows of `(rows, n)`: `dz = (dz + dh) dh/dz`, adding
    /// into `db` and (modReLU) `dbm`; returns `sum (dz + dh) dh/ds`. `first_row` as in
    /// `forward_rows`.
    pub fn backward_rows(
        &self,
        dz: &mut [T],
        z: &[T],
        dh: &[T],
        bm: &[T],
        (db, dbm): (&mut [T], &mut [T]),
        first_row: usize,
    ) -> T {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.backward_rows_avx2(dz, z, dh, bm, (db, dbm), first_row) };
        }
        self.backward_rows_any(dz, z, dh, bm, (db, dbm), first_row)
    }

    /// `backward_rows` compiled for AVX2: 8 lanes where the baseline has 4.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn backward_rows_avx2(
        &self,
        dz: &mut [T],
        z: &[T],
        dh: &[T],
        bm: &[T],
        grads: (&mut [T], &mut [T]),
        first_row: usize,
    ) -> T {
        self.backward_rows_any(dz, z, dh, bm, grads, first_row)
    }

    #[inline(always)]
    fn backward_rows_any(
        &self,
        dz: &mut [T],
        z: &[T],
        dh: &[T],
        bm: &[T],
        grads: (&mut [T], &mut [T]),
        first_row: usize,
    ) -> T {
        let n = bm.len();
        match (self.modrelu, self.dither) {
            (true, None) => self.backward_rows_with::<true>(dz, z, dh, bm, grads, nearest),
            (false, None) => self.backward_rows_with::<false>(dz, z, dh, bm, grads, nearest),
            (true, Some(key)) => {
                let offset = stochastic(key, first_row, n);
                self.backward_rows_with::<true>(dz, z, dh, bm, grads, offset)
            }
            (false, Some(key)) => {
                let offset = stochastic(key, first_row, n);
                self.backward_rows_with::<false>(dz, z, dh, bm, grads, offset)
            }
        }
    }

    #[inline(always)]
    fn backward_rows_with<const MODRELU: bool>(
        &self,
        dz: &mut [T],
        z: &[T],
        dh: &[T],
        bm: &[T],
        (db, dbm): (&mut [T], &mut [T]),
        offset: impl Fn(usize, usize) -> T,
    ) -> T {
        let n = bm.len();
        // `dh/ds` terms summed per unit, then over units: n independent sums vectorise.
        let mut d_step = vec![T::zero(); n];
        let rows = dz.chunks_mut(n).zip(z.chunks(n)).zip(dh.chunks(n));
        for (r, ((row_dz, row_z), row_dh)) in rows.enumerate() {
            for j in 0..n {
                let upstream = row_dz[j] + row_dh[j];
                let code = self.code(row_z[j], bm[j], offset(r, j));
                let through = upstream * code.inside;
                row_dz[j] = through;
                db[j] += through;
                if MODRELU {
                    dbm[j] += through * code.sign;
                }
                d_step[j] += through * code.residual + upstream * code.clamped * code.value;
            }
        }
        d_step.into_iter().fold(T::zero(), |sum, v| sum + v)
    }
}

/// Rounding to nearest's offset, 1/2 for every (row, unit).
#[inline(always)]
fn nearest<T: Real>(_row: usize, _unit: usize) -> T {
    T::of(0.5)
}

/// Stochastic rounding's offsets `r` for rows that start at `first_row` of the batch's
/// `(T, B)` rows of `n` units, by (row, unit) within them.
#[inline(always)]
fn stochastic<T: Real>(key: u32, first_row: usize, n: usize) -> impl Fn(usize, usize) -> T {
    // A batch's (T, B, n) activations are indexed modulo 2^32.
    move |row, unit| T::of(dither_offset(key, ((first_row + row) * n + unit) as u32))
}

/// `floor(x)` without a library call (`floor` is one on baseline x86-64, which stops the
/// activation loops from vectorising): `x` rounded to an integer by adding and subtracting
/// `1.5 2^p` (p the mantissa's bits), then one down where that rounded up. Exact for
/// `|x| < 2^(p-1)`; larger values (codes far past any clamp) are returned as they are.
#[inline(always)]
fn floor<T: Real>(x: T) -> T {
    let magic = T::of(1.5) / T::epsilon();
    let nearest = (x + magic) - magic;
    let below = if nearest > x {
        nearest - T::one()
    } else {
        nearest
    };
    if x.abs() < magic * T::of(1.0 / 3.0) {
        below
    } else {
        x
    }
}

/// LSQ's gradient scale `g = 1 / sqrt(N Q_P)` for `count` activations at `bits`.
pub fn step_gradient_scale(count: usize, bits: u32, modrelu: bool) -> f64 {
    let q_p = hidden_code_range(bits, modrelu).1 as f64;
    1.0 / (count as f64 * q_p).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dither::dither_key;

    /// The forward follows the engine's rules: round half up, modReLU's integer bias, the
    /// clamps; the input rule rounds and saturates.
    #[test]
    fn codes_follow_the_integer_engine() {
        let relu = HiddenQuantizer::<f64>::new(4, -2.0, false); // s = 1/4, codes 0..=15
        let mut z = vec![0.125, -0.3, 1.1, 9.0, 0.374];
        let mut h = vec![0.0; 5];
        relu.forward_rows(&mut z, &mut h, &[0.0; 5], &[0.0; 5], 0);
        // 0.5 rounds up to 1; -1.2 to 0 (ReLU); 4.4 to 4; 36 saturates at 15; 1.496 to 1.
        assert_eq!(h, vec![0.25, 0.0, 1.0, 3.75, 0.25]);
        let modrelu = HiddenQuantizer::<f64>::new(4, -2.0, true); // codes -8..=7
        let mut z = vec![-0.9, 0.9, -5.0, 0.1];
        let mut h = vec![0.0; 4];
        // BM = round(-0.3 / 0.25) = -1: |Z| - 1; -20 saturates at -8.
        modrelu.forward_rows(&mut z, &mut h, &[0.0; 4], &[-0.3; 4], 0);
        assert_eq!(h, vec![-0.75, 0.75, -2.0, 0.0]);
        assert_eq!(relu.fraction_bits(), 2);
        let mut x = vec![0.0f32; 4];
        assert_eq!(quantize_inputs(&[1.0, 0.5, 0.3, -1.0], 8, &mut x), 6);
        assert_eq!(x, vec![1.0, 0.5, 19.0 / 64.0, -1.0]);
    }

    /// Stochastic rounding: each code is floor(u) or floor(u) + 1, the same for the same key
    /// and index, and their mean over keys is u (unbiased), where rounding to nearest is
    /// off by up to 1/2 for every draw.
    #[test]
    fn stochastic_rounding_is_unbiased_and_reproducible() {
        let mut q = HiddenQuantizer::<f64>::new(8, -4.0, true); // s = 1/16
        let u_values = [0.3, -2.71, 5.5, 17.05];
        let draws = 20_000;
        for &u in &u_values {
            let z = u / 16.0;
            let mut sum = 0.0;
            for step in 0..draws {
                q.dither = Some(dither_key(7, step));
                let (mut zz, mut h) = ([z], [0.0]);
                q.forward_rows(&mut zz, &mut h, &[0.0], &[0.0], 3);
                let code = h[0] * 16.0;
                assert!(
                    code == u.floor() || code == u.floor() + 1.0,
                    "{u}: code {code}"
                );
                let (mut again, mut h_again) = ([z], [0.0]);
                q.forward_rows(&mut again, &mut h_again, &[0.0], &[0.0], 3);
                assert_eq!(h, h_again, "the same key draws the same code");
                sum += code;
            }
            let mean = sum / draws as f64;
            assert!((mean - u).abs() < 0.02, "{u}: mean code {mean}");
        }
    }

    /// The library-free floor equals `f32::floor` and `f64::floor` wherever it is exact,
    /// halves, negatives and the edges of its range included.
    #[test]
    fn floor_without_a_library_call_is_floor() {
        let mut values = vec![0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -2.5, 1e-30, -1e-30];
        values.extend((-2000..2000).map(|i| i as f64 * 0.37));
        values.extend([
            4_194_303.5,
            -4_194_303.5,
            4_194_304.0,
            -4_194_304.0,
            1e9,
            -1e9,
        ]);
        for v in values {
            assert_eq!(floor(v as f32), (v as f32).floor(), "{v} as f32");
            assert_eq!(floor(v), v.floor(), "{v}");
        }
    }

    /// The starting step clips a lone outlier when the finer step saves more error than the
    /// clipping costs, and keeps every value when it does not.
    #[test]
    fn the_starting_step_trades_clipping_for_resolution() {
        let mut values: Vec<f32> = (0..10_000).map(|i| (i as f32 / 5_000.0) - 1.0).collect();
        // Largest |h| 1.2: 127 codes hold it at f = 6; f = 7 clips it at 0.99 for a
        // quarter of the rounding error on every other value.
        values.push(1.2);
        assert_eq!(fraction_bits(1.2, 127), 6);
        assert_eq!(least_squares_fraction_bits(&values, 8, true), 7);
        // An outlier of 100 costs more clipped than the coarse step does.
        values.push(100.0);
        assert_eq!(least_squares_fraction_bits(&values, 8, true), 0);
        // Covering 99 % of the magnitudes (up to 0.99) lets the outliers saturate: the
        // largest f with 0.99 2^f <= 127 is 7; covering all of them is the widest step.
        assert_eq!(covering_fraction_bits(&values, 8, true, 0.99), 7);
        assert_eq!(
            covering_fraction_bits(&values, 8, true, 1.0),
            fraction_bits(100.0, 127)
        );
    }
}

//! Learned step size quantization (LSQ, Esser et al., ICLR 2020), signed k bits:
//! `Q_N = 2^(k-1)`, `Q_P = 2^(k-1) - 1`, `v_hat = round(clamp(v / s, -Q_N, Q_P)) s`.
//!
//! The step `s` (one per tensor, or one per row) is a trainable parameter. The backward
//! pass writes the straight-through estimator out (Esser et al., eq. 3):
//! - `d v_hat / d v = 1` inside `[-Q_N s, Q_P s]`, `0` outside;
//! - `d v_hat / d s = round(v / s) - v / s` inside, `-Q_N` below, `Q_P` above,
//!   and the step's gradient is scaled by `g = 1 / sqrt(N Q_P)`, `N` the entries per step.
//!
//! The initial step is the paper's max step `max|v| / 2^(k-1)` (the forward pass then
//! equals the paper's quantizer at step 0), the MSE-optimal one, or LSQ's own
//! `2 mean|v| / sqrt(Q_P)`, which suits dense weights but clips nearly every entry of a
//! sparse orthogonal initialisation (Henaff's 2 x 2 rotations).

use crate::params::{Kind, Tensor};
use crate::quant::{Granularity, Quantizer, RangeRule};
use crate::Real;
use serde::{Deserialize, Serialize};

/// How the learned step starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LsqInit {
    /// `max|v| / 2^(k-1)`: the paper's quantizer.
    #[default]
    Max,
    /// The MSE-optimal range's step (`--range mse`).
    Mse,
    /// LSQ's `2 mean|v| / sqrt(Q_P)`.
    Lsq,
}

/// LSQ's quantizer: codes from the learned steps (the max range before they exist), and
/// the backward of eq. 3.
pub struct Lsq(pub Quantizer);

impl crate::quant::WeightQuantizer for Lsq {
    fn codes(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        steps: Option<&[f32]>,
    ) -> crate::quant::QuantizedTensor<f32> {
        match steps {
            Some(steps) => self.0.quantize_with_steps(w, rows, cols, steps),
            None => self.0.quantize(w, rows, cols),
        }
    }

    fn backward(
        &self,
        w: &[f32],
        cols: usize,
        steps: &[f32],
        grad: &mut [f32],
        grad_steps: &mut [f32],
    ) {
        backward(w, cols, steps, self.0.bits, grad, grad_steps);
    }
}

/// The learned steps of a model with quantizer `q`: one tensor `NAME.step` (one value, or
/// one per row) for each of the core's quantized weight matrices that LSQ covers, the
/// recurrent one unless it is exact (Hadamard); none unless `q` learns its steps.
pub fn step_tensors(core: &[Tensor], q: &Quantizer, exact_recurrence: bool) -> Vec<Tensor> {
    if q.range != RangeRule::Lsq {
        return Vec::new();
    }
    core.iter()
        .filter(|t| !(exact_recurrence && t.kind == Kind::Recurrent))
        .filter_map(|t| {
            let name = step_name(t.name)?;
            let rows = match q.granularity {
                Granularity::PerTensor => 1,
                Granularity::PerRow => t.rows,
            };
            Some(Tensor::zeros(name, rows, 1, Kind::Step))
        })
        .collect()
}

/// The name of the step of the ORNN's and RNN's `W` and `U` (the tensors LSQ covers).
fn step_name(tensor: &str) -> Option<&'static str> {
    match tensor {
        "weight_hh" => Some("weight_hh.step"),
        "weight_ih" => Some("weight_ih.step"),
        _ => None,
    }
}

/// The smallest learned step: a step stays positive through the optimiser's updates.
const MIN_STEP: f32 = 1e-8;

/// Adds the optimiser's `delta` to the steps, keeping them positive.
pub fn apply_step(steps: &mut [f32], delta: &[f32]) {
    steps
        .iter_mut()
        .zip(delta)
        .for_each(|(s, d)| *s = (*s + d).max(MIN_STEP));
}

/// `(Q_N, Q_P)` for signed k-bit codes.
pub fn code_limits(bits: u32) -> (f64, f64) {
    let half = (1u64 << (bits - 1)) as f64;
    (half, half - 1.0)
}

/// The initial steps of a `rows x cols` tensor: one, or one per row.
pub fn initial_steps(
    w: &[f32],
    rows: usize,
    cols: usize,
    bits: u32,
    granularity: Granularity,
    init: LsqInit,
) -> Vec<f32> {
    let groups: Vec<&[f32]> = match granularity {
        Granularity::PerTensor => vec![w],
        Granularity::PerRow => w.chunks(cols.max(1)).take(rows).collect(),
    };
    let (_, q_p) = code_limits(bits);
    groups
        .into_iter()
        .map(|g| {
            let step = match init {
                LsqInit::Max | LsqInit::Mse => {
                    let range = if init == LsqInit::Max {
                        RangeRule::Max
                    } else {
                        RangeRule::Mse
                    };
                    let q = Quantizer::new(bits, Granularity::PerTensor).with_range(range);
                    q.quantize(g, 1, g.len()).steps[0]
                }
                LsqInit::Lsq => {
                    let mean = g.iter().map(|v| v.abs() as f64).sum::<f64>() / g.len() as f64;
                    (2.0 * mean / q_p.sqrt()) as f32
                }
            };
            if step > 0.0 {
                step
            } else {
                1.0
            }
        })
        .collect()
}

/// The step that scales row `row`.
#[inline]
fn step_of<T: Copy>(steps: &[T], row: usize) -> T {
    if steps.len() == 1 {
        steps[0]
    } else {
        steps[row]
    }
}

/// The codes `round(clamp(v / s, -Q_N, Q_P))` (ties to even, as PyTorch's `round`).
pub fn codes<T: Real>(w: &[T], cols: usize, steps: &[T], bits: u32) -> Vec<i32> {
    let (q_n, q_p) = code_limits(bits);
    w.chunks(cols)
        .enumerate()
        .flat_map(|(r, row)| {
            let s = step_of(steps, r);
            row.iter().map(move |&v| {
                let x = (v / s).to_f64().unwrap_or(0.0).clamp(-q_n, q_p);
                T::of(x).round_even().to_f64().unwrap_or(0.0) as i32
            })
        })
        .collect()
}

/// Backward of `v_hat = codes * s` (the forward: [`codes`], or
/// `Quantizer::quantize_with_steps` then `dequantize_into`): `grad` holds `dL/d v_hat` and becomes `dL/dv` (zero where
/// `v` was clipped); `dL/ds`, scaled by `1 / sqrt(N Q_P)`, is added to `grad_steps`.
pub fn backward<T: Real>(
    w: &[T],
    cols: usize,
    steps: &[T],
    bits: u32,
    grad: &mut [T],
    grad_steps: &mut [T],
) {
    let (q_n, q_p) = code_limits(bits);
    let per_step = if steps.len() == 1 { w.len() } else { cols };
    let scale = T::of(1.0 / (per_step as f64 * q_p).sqrt());
    for (r, (w_row, g_row)) in w.chunks(cols).zip(grad.chunks_mut(cols)).enumerate() {
        let s = step_of(steps, r);
        let mut sum = T::zero();
        for (&v, g) in w_row.iter().zip(g_row.iter_mut()) {
            let x = v / s;
            let d_step = if x < T::of(-q_n) {
                T::of(-q_n)
            } else if x > T::of(q_p) {
                T::of(q_p)
            } else {
                x.round_even() - x
            };
            sum += *g * d_step;
            if x < T::of(-q_n) || x > T::of(q_p) {
                *g = T::zero();
            }
        }
        let index = if steps.len() == 1 { 0 } else { r };
        grad_steps[index] += sum * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Away from rounding boundaries `v_hat(s)` is piecewise linear in `s` with slope
    /// `code` per entry, so the finite difference of `L = sum r v_hat` is `sum r code`:
    /// LSQ's gradient (unscaled) plus the straight-through term `sum_inside r v / s`.
    #[test]
    fn step_gradient_matches_finite_differences_plus_the_straight_through_term() {
        let (rows, cols, bits) = (6, 5, 3);
        let w: Vec<f64> = (0..rows * cols)
            .map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.173)
            .collect();
        let r: Vec<f64> = (0..rows * cols)
            .map(|i| ((i * 11 % 7) as f64 - 3.0) * 0.5)
            .collect();
        let s = [0.61];
        let loss = |s: f64| {
            let mut out = vec![0.0; w.len()];
            let q = Quantizer::new(bits, Granularity::PerTensor);
            q.quantize_with_steps(&w, w.len() / cols, cols, &[s])
                .dequantize_into(&mut out);
            out.iter().zip(&r).map(|(a, b)| a * b).sum::<f64>()
        };
        let eps = 1e-7;
        let numeric = (loss(s[0] + eps) - loss(s[0] - eps)) / (2.0 * eps);
        let mut grad = r.clone();
        let mut grad_s = [0.0];
        backward(&w, cols, &s, bits, &mut grad, &mut grad_s);
        let (q_n, q_p) = code_limits(bits);
        let unscaled = grad_s[0] * ((w.len() as f64) * q_p).sqrt();
        let straight_through: f64 = w
            .iter()
            .zip(&r)
            .filter(|(&v, _)| (-q_n..=q_p).contains(&(v / s[0])))
            .map(|(&v, &g)| g * v / s[0])
            .sum();
        assert!((numeric - (unscaled + straight_through)).abs() < 1e-6);
        // dL/dv is r inside the range and 0 where v was clipped.
        for ((&v, &g), &g0) in w.iter().zip(&grad).zip(&r) {
            let inside = (-q_n..=q_p).contains(&(v / s[0]));
            assert_eq!(g, if inside { g0 } else { 0.0 });
        }
        assert!(w.iter().any(|&v| !(-q_n..=q_p).contains(&(v / s[0]))));
    }

    #[test]
    fn initial_steps_follow_their_rule() {
        let w = [0.5f32, -1.0, 0.25, 0.0];
        assert_eq!(
            initial_steps(&w, 1, 4, 4, Granularity::PerTensor, LsqInit::Max),
            [0.125]
        );
        let per_row = initial_steps(&w, 2, 2, 4, Granularity::PerRow, LsqInit::Max);
        assert_eq!(per_row, [0.125, 0.25 / 8.0]);
        let lsq = initial_steps(&w, 1, 4, 4, Granularity::PerTensor, LsqInit::Lsq);
        assert!((lsq[0] as f64 - 2.0 * 0.4375 / 7f64.sqrt()).abs() < 1e-7);
    }
}

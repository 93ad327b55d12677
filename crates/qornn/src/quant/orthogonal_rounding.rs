//! Orthogonality-aware rounding of the recurrent matrix (`--rounding orthogonal`): each
//! code of `q(W)` is rounded down or up (AdaRound's choice, so `|q(W) - W|` stays below one
//! step) to make `q(W)` close to orthogonal, instead of to the nearest level.
//!
//! The objective is `f(Q) = ||Q Q^T - I||_F^2`. With `E = Q Q^T - I` and `P = E Q`, moving
//! one entry `Q_ij` by `d` changes it by exactly
//! `Δf = 4 d (P_ij - E_ii Q_ij) + 2 d^2 (||Q_:j||^2 - Q_ij^2) + (E_ii + 2 d Q_ij + d^2)^2 - E_ii^2`
//! (the rows and columns `i` of the Gram matrix change by `d Q_kj`, its diagonal entry by
//! `2 d Q_ij + d^2`). A sweep visits every row once and takes its best move when it lowers
//! `f`, updating `E` and `P` in `O(n^2)` per move: `O(n^3)` per sweep, starting from the
//! nearest rounding. The straight-through gradient is unchanged (`dL/dW = dL/dq(W)`).

use crate::linalg::{frobenius, gemm, gram_minus_identity, mat, mat_mut};
use faer::{Accum, Par};

/// The paper's quantizer with the recurrent matrix's codes rounded towards orthogonality
/// (the range's step kept); the straight-through gradient is unchanged.
pub struct TowardsOrthogonal(pub crate::quant::Quantizer);

impl crate::quant::WeightQuantizer for TowardsOrthogonal {
    fn codes(
        &self,
        w: &[f32],
        rows: usize,
        cols: usize,
        _: Option<&[f32]>,
    ) -> crate::quant::QuantizedTensor<f32> {
        debug_assert_eq!(rows, cols, "a recurrent matrix is square");
        let mut t = self.0.quantize(w, rows, cols);
        round_towards_orthogonal(w, rows, t.steps[0], self.0.bits, &mut t.codes);
        t
    }
}

/// Sweeps over the rows; each takes at most one move per row.
pub const SWEEPS: usize = 16;

/// Improves `codes` (`n x n`, row-major, nearest rounding of `w / step`) in place so that
/// `codes * step` is closer to orthogonal; every code stays `floor` or `ceil` of `w / step`
/// and inside `[-s, s - 1]`, `s = 2^(bits-1)`. Returns `||Q Q^T - I||_F` before and after.
pub fn round_towards_orthogonal(
    w: &[f32],
    n: usize,
    step: f32,
    bits: u32,
    codes: &mut [i32],
) -> (f64, f64) {
    let s = 1i32 << (bits - 1);
    let step = step as f64;
    let mut q: Vec<f64> = codes.iter().map(|&c| c as f64 * step).collect();
    let mut e = gram_minus_identity(&q, n);
    let mut p = vec![0.0f64; n * n];
    gemm(
        mat_mut(&mut p, n, n),
        Accum::Replace,
        mat(&e, n, n),
        mat(&q, n, n),
        1.0,
        Par::Seq,
    );
    let mut column_norms: Vec<f64> = (0..n)
        .map(|j| (0..n).map(|k| q[k * n + j] * q[k * n + j]).sum())
        .collect();
    let before = frobenius(&e);
    let mut delta_e = vec![0.0f64; n];
    for _ in 0..SWEEPS {
        let mut moved = false;
        for i in 0..n {
            // The best move of row i: each code to its other rounding neighbour.
            let mut best = (0.0f64, usize::MAX, 0i32);
            let e_ii = e[i * n + i];
            for j in 0..n {
                let code = codes[i * n + j];
                let target = w[i * n + j] as f64 / step;
                let other = if (code as f64) <= target {
                    code + 1
                } else {
                    code - 1
                };
                if other < -s || other > s - 1 || (other as f64 - target).abs() >= 1.0 {
                    continue;
                }
                let d = (other - code) as f64 * step;
                let qij = q[i * n + j];
                let change = 4.0 * d * (p[i * n + j] - e_ii * qij)
                    + 2.0 * d * d * (column_norms[j] - qij * qij)
                    + (e_ii + 2.0 * d * qij + d * d).powi(2)
                    - e_ii * e_ii;
                if change < best.0 - 1e-12 {
                    best = (change, j, other);
                }
            }
            let (_, j, other) = best;
            if j == usize::MAX {
                continue;
            }
            moved = true;
            let d = (other - codes[i * n + j]) as f64 * step;
            let qij = q[i * n + j];
            // ΔE: row and column i by d Q_kj, the diagonal entry by 2 d Q_ij + d^2.
            for k in 0..n {
                delta_e[k] = if k == i {
                    2.0 * d * qij + d * d
                } else {
                    d * q[k * n + j]
                };
            }
            // P = E Q: row i gains ΔE_i: Q; rows a != i gain ΔE_ai Q_i:; column j gains E_:i d.
            for b in 0..n {
                let sum: f64 = (0..n).map(|c| delta_e[c] * q[c * n + b]).sum();
                p[i * n + b] += sum;
            }
            for a in (0..n).filter(|&a| a != i) {
                for b in 0..n {
                    p[a * n + b] += delta_e[a] * q[i * n + b];
                }
            }
            for k in 0..n {
                if k == i {
                    e[i * n + i] += delta_e[i];
                } else {
                    e[i * n + k] += delta_e[k];
                    e[k * n + i] += delta_e[k];
                }
            }
            for a in 0..n {
                p[a * n + j] += e[a * n + i] * d;
            }
            column_norms[j] += (qij + d).powi(2) - qij * qij;
            q[i * n + j] = qij + d;
            codes[i * n + j] = other;
        }
        if !moved {
            break;
        }
    }
    (before, frobenius(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Init;
    use crate::quant::{Granularity, Quantizer};
    use rand::SeedableRng;

    #[test]
    fn rounding_lowers_the_defect_and_keeps_each_code_within_one_step() {
        let n = 64;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let w = Init::Orthogonal.sample(n, &mut rng);
        let q = Quantizer::new(4, Granularity::PerTensor);
        let t = q.quantize(&w, n, n);
        let mut codes = t.codes.clone();
        let (before, after) = round_towards_orthogonal(&w, n, t.steps[0], 4, &mut codes);
        let measured = {
            let dq: Vec<f32> = codes.iter().map(|&c| c as f32 * t.steps[0]).collect();
            crate::linalg::orthogonality_defect(&dq, n)
        };
        assert!(
            (measured - after).abs() < 1e-4 * before,
            "{measured} vs {after}"
        );
        assert!(after < 0.6 * before, "{before} -> {after}");
        for ((&c, &c0), &x) in codes.iter().zip(&t.codes).zip(&w) {
            // Within one step of w (the clipped maximum sits exactly one step away).
            assert!((c as f32 - x / t.steps[0]).abs() <= 1.0 + 1e-5 && (-8..8).contains(&c));
            assert!((c - c0).abs() <= 1);
        }
    }
}

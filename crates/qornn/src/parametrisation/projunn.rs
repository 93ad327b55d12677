//! projUNN (Kiani et al. 2022): keep `W` exactly orthogonal while taking optimiser steps.
//!
//! The Euclidean step `D` is cut to rank r by a randomised range sketch, `D ~ a b^T`
//! (`a`, `b`: n x r), and applied in O(r n^2):
//! - projUNN-D: `W <- polar(W + a b^T)`, the orthogonal matrix nearest to the step;
//! - projUNN-T: `W <- W expm(skew(W^T a b^T))`, a geodesic step, `skew(M) = (M - M^T) / 2`.
//!
//! Both act on the span of `[W^T a, b]` only (dimension m <= 2r). With `Q` an orthonormal
//! basis of that span, `W^T a b^T = Q S Q^T` for a small `S`, and
//! `polar(I + Q S Q^T) = I + Q (polar(I + S) - I) Q^T`,
//! `expm(Q K Q^T) = I + Q (expm(K) - I) Q^T`, so `W_new = W + (W Q) (F - I) Q^T` with
//! `F` the m x m polar factor or exponential. Derivation: `docs/projunn.md`.

use crate::registry::{ModelEntry, ParametrisationContext};
use crate::linalg::{gemm, mat, mat_mut, orthogonality_defect, to_f64_vec};
use crate::parametrisation::bjorck::{Bjorck, BjorckConfig};
use crate::Real;
use faer::{Accum, Par};
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Which retraction applies the low-rank step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjUnnKind {
    /// Nearest orthogonal matrix (projUNN-D).
    Direct,
    /// Geodesic (exponential-map) step (projUNN-T).
    Tangent,
}

/// Columns of a row-major `n x m` matrix made orthonormal by modified Gram-Schmidt, run
/// twice for stability; columns that vanish (rank deficiency) are dropped.
/// Returns the row-major `n x m'` basis and `m'`.
pub fn orthonormal_columns(y: &[f64], n: usize, m: usize) -> (Vec<f64>, usize) {
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(m);
    for j in 0..m {
        let mut v: Vec<f64> = (0..n).map(|i| y[i * m + j]).collect();
        let original = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for _pass in 0..2 {
            for q in &cols {
                let proj: f64 = q.iter().zip(&v).map(|(a, b)| a * b).sum();
                for (vi, qi) in v.iter_mut().zip(q) {
                    *vi -= proj * qi;
                }
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-10 * original.max(f64::MIN_POSITIVE) && norm > 1e-300 {
            v.iter_mut().for_each(|x| *x /= norm);
            cols.push(v);
        }
    }
    let k = cols.len();
    let mut q = vec![0.0; n * k];
    for (j, c) in cols.iter().enumerate() {
        for i in 0..n {
            q[i * k + j] = c[i];
        }
    }
    (q, k)
}

/// Randomised rank-r range sketch of the n x n step `d`: `Q = orth(d Omega)`, `a = Q`,
/// `b = d^T Q`, so that `a b^T = Q Q^T d` (exact when `rank(d) <= r`).
/// Returns row-major `a`, `b` (`n x r'`, r' <= r) and `r'`.
pub fn low_rank_sketch<T: Real>(
    d: &[T],
    n: usize,
    rank: usize,
    rng: &mut impl Rng,
) -> (Vec<f64>, Vec<f64>, usize) {
    let d64 = to_f64_vec(d);
    let omega: Vec<f64> = (0..n * rank).map(|_| rng.sample(StandardNormal)).collect();
    let mut y = vec![0.0; n * rank];
    gemm(
        mat_mut(&mut y, n, rank),
        Accum::Replace,
        mat(&d64, n, n),
        mat(&omega, n, rank),
        1.0,
        Par::Seq,
    );
    let (q, r) = orthonormal_columns(&y, n, rank);
    let mut b = vec![0.0; n * r];
    gemm(
        mat_mut(&mut b, n, r),
        Accum::Replace,
        mat(&d64, n, n).transpose(),
        mat(&q, n, r),
        1.0,
        Par::Seq,
    );
    (q, b, r)
}

/// Applies the rank-r step `a b^T` (row-major n x r each) to the orthogonal `w` in place.
pub fn apply_low_rank_step<T: Real>(
    kind: ProjUnnKind,
    w: &mut [T],
    n: usize,
    a: &[f64],
    b: &[f64],
    r: usize,
) {
    let w64 = to_f64_vec(w);
    // a' = W^T a; the step in W's frame is W^T (a b^T) = a' b^T.
    let mut a_frame = vec![0.0; n * r];
    gemm(
        mat_mut(&mut a_frame, n, r),
        Accum::Replace,
        mat(&w64, n, n).transpose(),
        mat(a, n, r),
        1.0,
        Par::Seq,
    );
    // Q spans [a', b].
    let mut stacked = vec![0.0; n * 2 * r];
    for i in 0..n {
        stacked[i * 2 * r..i * 2 * r + r].copy_from_slice(&a_frame[i * r..(i + 1) * r]);
        stacked[i * 2 * r + r..(i + 1) * 2 * r].copy_from_slice(&b[i * r..(i + 1) * r]);
    }
    let (q, m) = orthonormal_columns(&stacked, n, 2 * r);
    if m == 0 {
        return;
    }
    // Small coordinates: qa = Q^T a', qb = Q^T b (m x r); S = qa qb^T (m x m).
    let mut qa = vec![0.0; m * r];
    let mut qb = vec![0.0; m * r];
    gemm(
        mat_mut(&mut qa, m, r),
        Accum::Replace,
        mat(&q, n, m).transpose(),
        mat(&a_frame, n, r),
        1.0,
        Par::Seq,
    );
    gemm(
        mat_mut(&mut qb, m, r),
        Accum::Replace,
        mat(&q, n, m).transpose(),
        mat(b, n, r),
        1.0,
        Par::Seq,
    );
    let mut s = vec![0.0; m * m];
    gemm(
        mat_mut(&mut s, m, m),
        Accum::Replace,
        mat(&qa, m, r),
        mat(&qb, m, r).transpose(),
        1.0,
        Par::Seq,
    );
    let mut f = match kind {
        ProjUnnKind::Direct => {
            for i in 0..m {
                s[i * m + i] += 1.0;
            }
            polar_factor(&s, m)
        }
        ProjUnnKind::Tangent => {
            let skew: Vec<f64> = (0..m * m)
                .map(|k| 0.5 * (s[k] - s[(k % m) * m + k / m]))
                .collect();
            expm(&skew, m)
        }
    };
    for i in 0..m {
        f[i * m + i] -= 1.0;
    }
    // W += (W Q) (F - I) Q^T
    let mut wq = vec![0.0; n * m];
    gemm(
        mat_mut(&mut wq, n, m),
        Accum::Replace,
        mat(&w64, n, n),
        mat(&q, n, m),
        1.0,
        Par::Seq,
    );
    let mut wqf = vec![0.0; n * m];
    gemm(
        mat_mut(&mut wqf, n, m),
        Accum::Replace,
        mat(&wq, n, m),
        mat(&f, m, m),
        1.0,
        Par::Seq,
    );
    let mut update = vec![0.0; n * n];
    gemm(
        mat_mut(&mut update, n, n),
        Accum::Replace,
        mat(&wqf, n, m),
        mat(&q, n, m).transpose(),
        1.0,
        Par::Seq,
    );
    for ((wi, &w0), &du) in w.iter_mut().zip(&w64).zip(&update) {
        *wi = T::of(w0 + du);
    }
}

/// The orthogonal polar factor `U V^T` of a small square matrix (SVD `U S V^T`).
fn polar_factor(m: &[f64], n: usize) -> Vec<f64> {
    let svd = mat(m, n, n)
        .svd()
        .expect("SVD of a small finite matrix converges");
    let mut out = vec![0.0; n * n];
    gemm(
        mat_mut(&mut out, n, n),
        Accum::Replace,
        svd.U(),
        svd.V().transpose(),
        1.0,
        Par::Seq,
    );
    out
}

/// Matrix exponential of a small square matrix: scaling and squaring with a Taylor
/// series of degree 18 on a matrix of norm below 1/2 (error far below f64 rounding).
fn expm(m: &[f64], n: usize) -> Vec<f64> {
    let norm = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    let squarings = if norm > 0.5 {
        (norm / 0.5).log2().ceil() as u32
    } else {
        0
    };
    let scale = 0.5f64.powi(squarings as i32);
    let a: Vec<f64> = m.iter().map(|x| x * scale).collect();
    let mut result = crate::linalg::identity::<f64>(n);
    let mut term = crate::linalg::identity::<f64>(n);
    let mut next = vec![0.0; n * n];
    for k in 1..=18 {
        gemm(
            mat_mut(&mut next, n, n),
            Accum::Replace,
            mat(&term, n, n),
            mat(&a, n, n),
            1.0 / k as f64,
            Par::Seq,
        );
        std::mem::swap(&mut term, &mut next);
        result.iter_mut().zip(&term).for_each(|(r, t)| *r += t);
    }
    for _ in 0..squarings {
        gemm(
            mat_mut(&mut next, n, n),
            Accum::Replace,
            mat(&result, n, n),
            mat(&result, n, n),
            1.0,
            Par::Seq,
        );
        std::mem::swap(&mut result, &mut next);
    }
    result
}

/// Steps between two orthogonality checks of [`retract`].
pub const ORTHOGONALITY_CHECK_EVERY: u64 = 100;

/// One projUNN update of the orthogonal `w` by the Euclidean step `delta`: sketch at
/// `rank`, retract, and every [`ORTHOGONALITY_CHECK_EVERY`] steps re-orthonormalise if
/// rounding has let `||W W^T - I||_F` drift above `tolerance`.
#[allow(clippy::too_many_arguments)]
pub fn retract<T: Real>(
    kind: ProjUnnKind,
    w: &mut [T],
    n: usize,
    delta: &[T],
    rank: usize,
    rng: &mut impl Rng,
    step: u64,
    tolerance: f64,
) {
    let (a, b, r) = low_rank_sketch(delta, n, rank, rng);
    apply_low_rank_step(kind, w, n, &a, &b, r);
    if (step + 1).is_multiple_of(ORTHOGONALITY_CHECK_EVERY) && orthogonality_defect(w, n) > tolerance {
        reorthonormalize(w, n);
    }
}

/// Björck iterations of [`reorthonormalize`]: from a defect of 1e-2 or less, quadratic
/// convergence reaches f64 rounding in 4; 6 leave a margin.
const REORTHONORMALIZE_ITERATIONS: usize = 6;

/// Pulls a nearly orthogonal `w` back onto the orthogonal group with Björck iterations in
/// f64 (quadratic convergence to the polar factor); returns the defect it started from.
pub fn reorthonormalize<T: Real>(w: &mut [T], n: usize) -> f64 {
    let before = orthogonality_defect(w, n);
    let config = BjorckConfig {
        iterations: REORTHONORMALIZE_ITERATIONS,
        ..BjorckConfig::default()
    };
    let mut bjorck = Bjorck::<f64>::new(config, n);
    let polar = bjorck.forward(&to_f64_vec(w), Par::Seq);
    w.iter_mut().zip(polar).for_each(|(o, &x)| *o = T::of(x));
    before
}

/// Salt of the generator behind the sketches (distinct from the data's): the stream of
/// step `s` is `(seed ^ SKETCH_SALT, s)`.
const SKETCH_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// STE-projUNN (the paper): the parameter is `W` itself, orthogonal from its
/// initialisation on, and every optimiser step is retracted onto the orthogonal group.
pub struct ProjUnnParametrisation {
    pub n: usize,
    pub kind: ProjUnnKind,
}

/// The paper's QORNNs, STE-projUNN-D and -T (8 bits unless `--bits`), and their
/// full-precision twins.
pub const QORNN_PROJUNN_D: ModelEntry =
    ModelEntry::elman("qornn-projunn-d", Some(build_direct)).quantized(crate::registry::QORNN_BITS);
pub const QORNN_PROJUNN_T: ModelEntry =
    ModelEntry::elman("qornn-projunn-t", Some(build_tangent)).quantized(crate::registry::QORNN_BITS);
pub const ORNN_PROJUNN_D: ModelEntry =
    ModelEntry::elman("ornn-projunn-d", Some(build_direct)).float_only();
pub const ORNN_PROJUNN_T: ModelEntry =
    ModelEntry::elman("ornn-projunn-t", Some(build_tangent)).float_only();

fn build_direct(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(ProjUnnParametrisation {
        n: context.n,
        kind: ProjUnnKind::Direct,
    })
}

fn build_tangent(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(ProjUnnParametrisation {
        n: context.n,
        kind: ProjUnnKind::Tangent,
    })
}

impl super::RecurrentParametrisation for ProjUnnParametrisation {
    fn tensor(&self) -> crate::Tensor {
        crate::Tensor::zeros("weight_hh", self.n, self.n, crate::Kind::Recurrent)
    }

    fn init(&self, param: &mut crate::Tensor, init: crate::Init, rng: &mut dyn rand::RngCore) {
        param.data = init.sample(self.n, &mut &mut *rng);
    }

    fn forward(&mut self, param: &[f32], _training: bool, w: &mut [f32], _par: Par) {
        w.copy_from_slice(param);
    }

    /// `dL/dW = dL/dq(W)`: the retraction in `apply_step` does the rest.
    fn backward(&mut self, _param: &[f32], grad_applied: &[f32], grad: &mut [f32], _par: Par) {
        grad.iter_mut()
            .zip(grad_applied)
            .for_each(|(g, &d)| *g += d);
    }

    fn apply_step(&self, param: &mut [f32], delta: &[f32], c: &super::StepContext) {
        let mut rng = crate::tasks::rng_for(c.seed ^ SKETCH_SALT, c.step);
        retract(
            self.kind,
            param,
            self.n,
            delta,
            c.rank,
            &mut rng,
            c.step,
            c.tolerance,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// 10,000 rank-1 steps in f32 keep W orthogonal to 1e-4 (the drift is caught).
    #[test]
    fn ten_thousand_f32_steps_stay_orthogonal() {
        let n = 24;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for kind in [ProjUnnKind::Direct, ProjUnnKind::Tangent] {
            let mut w = crate::init::Init::Orthogonal.sample(n, &mut rng);
            let mut worst = 0.0f64;
            for step in 0..10_000u64 {
                let delta: Vec<f32> = (0..n * n).map(|_| rng.gen_range(-1e-2..1e-2)).collect();
                retract(kind, &mut w, n, &delta, 1, &mut rng, step, 1e-5);
                if step % 50 == 0 {
                    worst = worst.max(orthogonality_defect(&w, n));
                }
            }
            worst = worst.max(orthogonality_defect(&w, n));
            assert!(
                worst < 1e-4,
                "{kind:?}: ||W^T W - I||_F reached {worst:.2e}"
            );
        }
    }

    #[test]
    fn reorthonormalize_reaches_the_polar_factor() {
        let n = 10;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut w: Vec<f64> = crate::init::Init::Orthogonal
            .sample(n, &mut rng)
            .iter()
            .map(|&x| x as f64 * 1.01)
            .collect();
        w[3] += 0.02;
        let before = reorthonormalize(&mut w, n);
        assert!(before > 1e-2);
        assert!(orthogonality_defect(&w, n) < 1e-12);
    }
}

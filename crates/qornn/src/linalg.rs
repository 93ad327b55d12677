//! Thin views of row-major `Vec`s as faer matrices, and the few dense helpers the
//! parametrisations share. Every matrix in qornn is row-major: `w[i * cols + j]`.

use crate::Real;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// A row-major slice seen as a `rows x cols` matrix.
#[track_caller]
pub fn mat<T: Real>(s: &[T], rows: usize, cols: usize) -> MatRef<'_, T> {
    debug_assert_eq!(s.len(), rows * cols, "slice length vs {rows}x{cols}");
    MatRef::from_row_major_slice(s, rows, cols)
}

/// A mutable row-major slice seen as a `rows x cols` matrix.
#[track_caller]
pub fn mat_mut<T: Real>(s: &mut [T], rows: usize, cols: usize) -> MatMut<'_, T> {
    debug_assert_eq!(s.len(), rows * cols, "slice length vs {rows}x{cols}");
    MatMut::from_row_major_slice_mut(s, rows, cols)
}

/// `dst (+)= alpha * lhs * rhs` on faer views (destination first, as faer does).
///
/// With `Par::Rayon(k)` the rows of `dst` are cut into `k` blocks, each a sequential
/// product in its own rayon task. faer's own parallel product synchronises its threads in
/// spin barriers, which crawl (ten times slower and worse) when another process shares the
/// cores; the blocks give bit-for-bit the same result, since every output row is summed in
/// the same order either way.
#[track_caller]
pub fn gemm<T: Real>(
    dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: T,
    par: Par,
) {
    let parts = match par {
        Par::Seq => 1,
        Par::Rayon(threads) => threads.get(),
    };
    gemm_in_row_blocks(dst, accum, lhs, rhs, alpha, parts);
}

fn gemm_in_row_blocks<T: Real>(
    dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: T,
    parts: usize,
) {
    if parts <= 1 || dst.nrows() < 2 {
        matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
        return clear_upper_vector_state();
    }
    let left = parts / 2;
    let mid = dst.nrows() * left / parts;
    let (dst_top, dst_bottom) = dst.split_at_row_mut(mid);
    let (lhs_top, lhs_bottom) = lhs.split_at_row(mid);
    rayon::join(
        || gemm_in_row_blocks(dst_top, accum, lhs_top, rhs, alpha, left),
        || gemm_in_row_blocks(dst_bottom, accum, lhs_bottom, rhs, alpha, parts - left),
    );
}

/// Zeroes the upper halves of the vector registers (`vzeroupper`) where the CPU has AVX.
/// faer's x86 product kernels can return with them dirty, and every legacy-SSE
/// instruction afterwards then pays a transition penalty: the cross-entropy after the
/// read-out's product (130,560 rows of 9 classes on the copy task) took 175 ms instead of
/// 5.5 ms on an AVX-512 Xeon, two thirds of a training step. Changes no value. Not
/// inlined: no caller's value can then be live in the registers' upper halves (the
/// System V ABI has every vector register caller-saved).
#[inline(never)]
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX; VZEROUPPER only zeroes bits 128 and above of the vector
        // registers, which no Rust value lives in across this call.
        unsafe { std::arch::asm!("vzeroupper", options(nomem, nostack, preserves_flags)) };
    }
}

/// The n x n identity, row-major.
pub fn identity<T: Real>(n: usize) -> Vec<T> {
    let mut m = vec![T::zero(); n * n];
    for i in 0..n {
        m[i * n + i] = T::one();
    }
    m
}

/// Frobenius norm of a slice.
pub fn frobenius<T: Real>(x: &[T]) -> T {
    x.iter().map(|&v| v * v).sum::<T>().sqrt()
}

/// Sum of elementwise products `<a, b>`.
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

/// A copy in f64 (for small dense work done in double precision).
pub fn to_f64_vec<T: Real>(x: &[T]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).collect()
}

/// `||M M^T - I||_F` for a row-major n x n matrix (computed in f64).
pub fn orthogonality_defect<T: Real>(m: &[T], n: usize) -> f64 {
    frobenius(&gram_minus_identity(&to_f64_vec(m), n))
}

/// `M M^T - I` for a row-major n x n matrix in f64.
pub fn gram_minus_identity(m: &[f64], n: usize) -> Vec<f64> {
    let mut g = vec![0.0f64; n * n];
    gemm(
        mat_mut(&mut g, n, n),
        Accum::Replace,
        mat(m, n, n),
        mat(m, n, n).transpose(),
        1.0,
        Par::Seq,
    );
    for i in 0..n {
        g[i * n + i] -= 1.0;
    }
    g
}

/// Smallest and largest singular values of a row-major `rows x cols` matrix (in f64).
pub fn extreme_singular_values<T: Real>(m: &[T], rows: usize, cols: usize) -> (f64, f64) {
    let m64 = to_f64_vec(m);
    match mat(&m64, rows, cols).singular_values() {
        Ok(s) if !s.is_empty() => {
            let max = s.iter().cloned().fold(f64::MIN, f64::max);
            let min = s.iter().cloned().fold(f64::MAX, f64::min);
            (min, max)
        }
        _ => (f64::NAN, f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    /// The row blocks of a parallel product give exactly the sequential product.
    #[test]
    fn row_blocks_equal_the_sequential_product() {
        let (m, k, n) = (37, 1000, 29);
        let lhs: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1013) as f32 / 997.0 - 0.5)
            .collect();
        let rhs: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 1009) as f32 / 1009.0 - 0.5)
            .collect();
        let product = |par: Par| {
            let mut out: Vec<f32> = (0..m * n).map(|i| i as f32 * 1e-3).collect();
            gemm(
                mat_mut(&mut out, m, n),
                Accum::Add,
                mat(&lhs, m, k),
                mat(&rhs, k, n),
                0.5,
                par,
            );
            out
        };
        let sequential = product(Par::Seq);
        for threads in 2..=5 {
            let par = Par::Rayon(NonZeroUsize::new(threads).unwrap());
            assert_eq!(product(par), sequential, "{threads} threads");
        }
    }
}

//! The recurrent matrix as a cell applies it, in one place: a dense `W` (one product per
//! step, fused with `U`'s), a Hadamard `W = diag(row_scale) (I ⊗ H_m)` (the fast
//! Walsh-Hadamard transform) or 2 x 2 rotation blocks (4 multiply-adds per pair of units),
//! forward, the backward carry `dz_{t+1} W`, and the gradient of the structured forms. A new
//! structured `W` is one variant here. Also the sizes every cell shares (`CellShape`).

pub use crate::cells::fused::{FusedBackward, FusedForward, FusedKernel, FusedQuant, InputShare};
use crate::cells::{backprop_step, project_input, project_step};
use crate::Real;
use faer::Accum;

/// `out += R h` on each 2 x 2 block, `R = [[c, -s], [s, c]]` from `cos_sin` (`transpose`:
/// `out += R^T h`, the rotation by `-θ`).
fn rotate_add<T: Real>(out: &mut [T], h: &[T], cos_sin: &[T], transpose: bool) {
    let blocks = out.chunks_exact_mut(2).zip(h.chunks_exact(2));
    for ((o, h), cs) in blocks.zip(cos_sin.chunks_exact(2)) {
        let (c, s) = (cs[0], if transpose { -cs[1] } else { cs[1] });
        o[0] += c * h[0] - s * h[1];
        o[1] += s * h[0] + c * h[1];
    }
}

/// Sizes of one forward pass: hidden `n`, input `d`, steps `t`, batch `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellShape {
    pub hidden: usize,
    pub input: usize,
    pub steps: usize,
    pub batch: usize,
}

/// The recurrent matrix as the cell applies it.
#[derive(Clone, Copy)]
pub enum Recurrence<'a, T> {
    /// A dense `(n, n)` matrix: one product per step.
    Dense(&'a [T]),
    /// `W = diag(row_scale) (I ⊗ H_m)`, applied with the fast Walsh-Hadamard transform
    /// (`n log2 m` additions per row); `row_scale: (n)`, `sign(v_i) / sqrt(m)` for HadamRNN.
    Hadamard { row_scale: &'a [T], block: usize },
    /// `W = ⊕ [[c_k, -s_k], [s_k, c_k]]`, 2 x 2 rotation blocks on units `(2k, 2k + 1)`;
    /// `cos_sin: (n)`, `(c_k, s_k)` in entries `2k, 2k + 1`. Four multiply-adds per pair of
    /// units.
    Rotations { cos_sin: &'a [T] },
}

impl<T: Real> Recurrence<'_, T> {
    pub fn is_dense(&self) -> bool {
        matches!(self, Recurrence::Dense(_))
    }

    /// `z = x U^T + h W^T` for a block of rows (`z`, `h`: `(rows, n)`; `x`: `(rows, d)`).
    /// A Hadamard `W` transforms the rows `(I ⊗ H_m) h` through `transformed` (`(rows, n)`),
    /// which holds them afterwards when `keep_transformed` (for `accumulate_gradient`); the
    /// other forms do not touch it.
    pub fn project(
        &self,
        z: &mut [T],
        n: usize,
        (x, u): (&[T], &[T]),
        h: &[T],
        (transformed, keep_transformed): (&mut [T], bool),
    ) {
        match *self {
            Recurrence::Dense(w) => project_step(z, n, (x, u), (h, w)),
            Recurrence::Hadamard { row_scale, block } => {
                project_input(z, n, x, u);
                let transformed = &mut transformed[..h.len()];
                add_scaled_transform(z, h, row_scale, block, transformed, keep_transformed);
            }
            Recurrence::Rotations { cos_sin } => {
                project_input(z, n, x, u);
                for (z_row, h_row) in z.chunks_mut(n).zip(h.chunks(n)) {
                    rotate_add(z_row, h_row, cos_sin, false);
                }
            }
        }
    }

    /// The backward carry `out = dz W` for a block of `rows` rows (`dz`: `dz_{t+1}`).
    pub fn carry(&self, out: &mut [T], dz: &[T], n: usize, rows: usize) {
        match *self {
            Recurrence::Dense(w) => backprop_step(out, Accum::Replace, dz, w, rows),
            // dz W = (H (row_scale * dz)^T)^T: H is symmetric.
            Recurrence::Hadamard { row_scale, block } => {
                #[cfg(target_arch = "x86_64")]
                if let (Some(out32), Some(width)) = (as_f32_mut(out), register_block(block)) {
                    // SAFETY: `register_block` found AVX2; T is f32.
                    return unsafe {
                        scaled_fwht_f32_avx2(out32, as_f32(dz), as_f32(row_scale), width)
                    };
                }
                for (out, d) in out.chunks_mut(n).zip(dz.chunks(n)) {
                    for ((o, &di), &si) in out.iter_mut().zip(d).zip(row_scale) {
                        *o = di * si;
                    }
                    fwht_blocks(out, block);
                }
            }
            // dz W = (W^T dz^T)^T: the blocks rotated by -θ.
            Recurrence::Rotations { cos_sin } => {
                for (out, d) in out.chunks_mut(n).zip(dz.chunks(n)) {
                    out.fill(T::zero());
                    rotate_add(out, d, cos_sin, true);
                }
            }
        }
    }

    /// Values a structured form sums its gradient in (per thread): `2 n`.
    pub fn gradient_sums_len(n: usize) -> usize {
        2 * n
    }

    /// Adds a block of rows' share of the structured gradient into `sums`: Hadamard,
    /// `dL/d row_scale_i = sum_t dz_t,i (H h_{t-1})_i` in `sums[..n]`, from the rows
    /// `transformed` that `project` left for `h_{t-1}`; rotations, the 2 x 2 blocks of
    /// `dL/dW = sum_t dz_t^T h_{t-1}`, `(dW_ii, dW_ij, dW_ji, dW_jj)` at `4k`.
    /// A dense `W`'s gradient is one product after the time loop instead (nothing here).
    pub fn accumulate_gradient(
        &self,
        sums: &mut [T],
        dz: &[T],
        (h, transformed): (&[T], &[T]),
        n: usize,
    ) {
        match *self {
            Recurrence::Hadamard { .. } => {
                for (d_row, t_row) in dz.chunks(n).zip(transformed.chunks(n)) {
                    for ((g, &di), &ti) in sums.iter_mut().zip(d_row).zip(t_row) {
                        *g += di * ti;
                    }
                }
            }
            Recurrence::Rotations { .. } => {
                for (d_row, h_row) in dz.chunks(n).zip(h.chunks(n)) {
                    let pairs = d_row.chunks_exact(2).zip(h_row.chunks_exact(2));
                    for (g, (d, h)) in sums.chunks_exact_mut(4).zip(pairs) {
                        g[0] += d[0] * h[0];
                        g[1] += d[0] * h[1];
                        g[2] += d[1] * h[0];
                        g[3] += d[1] * h[1];
                    }
                }
            }
            Recurrence::Dense(_) => {}
        }
    }

    /// Adds one thread's `sums` (of `accumulate_gradient`) into `dL/dW` as the
    /// parametrisation reads it: the Hadamard row scales in `grad_w[..n]`, the rotation
    /// blocks at their places in `(n, n)`.
    pub fn add_gradient(&self, sums: &[T], n: usize, grad_w: &mut [T]) {
        match *self {
            Recurrence::Hadamard { .. } => {
                for (g, &s) in grad_w[..n].iter_mut().zip(&sums[..n]) {
                    *g += s;
                }
            }
            Recurrence::Rotations { .. } => {
                for (k, block) in sums.chunks_exact(4).enumerate() {
                    let (i, j) = (2 * k, 2 * k + 1);
                    grad_w[i * n + i] += block[0];
                    grad_w[i * n + j] += block[1];
                    grad_w[j * n + i] += block[2];
                    grad_w[j * n + j] += block[3];
                }
            }
            Recurrence::Dense(_) => {}
        }
    }
}

/// `z += row_scale * ((I ⊗ H_m) h)` on rows of `row_scale.len()` units, the transformed
/// rows left in `transformed` when `keep`, else used as scratch. The transform, then
/// `z_i += s_i t_i` (a product, then a sum), as [`fwht_blocks_into`] and a loop would
/// compute it; for blocks of 8 or 16 in f32 with AVX2 the rows stay in registers between
/// the two.
fn add_scaled_transform<T: Real>(
    z: &mut [T],
    h: &[T],
    row_scale: &[T],
    block: usize,
    transformed: &mut [T],
    keep: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(z32), Some(width)) = (as_f32_mut(z), register_block(block)) {
        let transformed = as_f32_mut(transformed).filter(|_| keep);
        // SAFETY: `register_block` found AVX2; T is f32.
        return unsafe {
            add_scaled_fwht_f32_avx2(z32, as_f32(h), as_f32(row_scale), width, transformed)
        };
    }
    fwht_blocks_into(h, transformed, block);
    let n = row_scale.len();
    for (z_row, t_row) in z.chunks_mut(n).zip(transformed.chunks(n)) {
        for ((zi, &ti), &si) in z_row.iter_mut().zip(t_row).zip(row_scale) {
            *zi += si * ti;
        }
    }
}

/// The block size when it is one the f32 register kernels transform whole (8 or 16) and the
/// CPU has AVX2.
#[cfg(target_arch = "x86_64")]
pub(super) fn register_block(block: usize) -> Option<usize> {
    (matches!(block, 8 | 16) && std::arch::is_x86_feature_detected!("avx2")).then_some(block)
}

/// The 8 values of `v` (`width` 8) or the 16 of `v` then `w` (`width` 16) transformed in
/// registers (`fwht`'s stages, the same sums and differences): `(low, high)`, `high`
/// unused for 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn fwht_registers(
    v: std::arch::x86_64::__m256,
    w: std::arch::x86_64::__m256,
    width: usize,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let v = fwht8_avx2(v);
    if width == 8 {
        return (v, v);
    }
    let w = fwht8_avx2(w);
    (_mm256_add_ps(v, w), _mm256_sub_ps(v, w))
}

/// [`add_scaled_transform`] for f32 blocks of `width` = 8 or 16, AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_scaled_fwht_f32_avx2(
    z: &mut [f32],
    h: &[f32],
    row_scale: &[f32],
    width: usize,
    mut transformed: Option<&mut [f32]>,
) {
    use std::arch::x86_64::*;
    let n = row_scale.len();
    assert!(z.len() == h.len() && n.is_multiple_of(width) && h.len().is_multiple_of(n));
    assert!(transformed.as_ref().is_none_or(|t| t.len() >= h.len()));
    for i in (0..h.len()).step_by(width) {
        let (h, z, s) = (
            h.as_ptr().add(i),
            z.as_mut_ptr().add(i),
            row_scale.as_ptr().add(i % n),
        );
        let high = if width == 16 { 8 } else { 0 };
        let (t0, t1) = fwht_registers(_mm256_loadu_ps(h), _mm256_loadu_ps(h.add(high)), width);
        if let Some(t) = transformed.as_deref_mut() {
            _mm256_storeu_ps(t.as_mut_ptr().add(i), t0);
            if width == 16 {
                _mm256_storeu_ps(t.as_mut_ptr().add(i + 8), t1);
            }
        }
        _mm256_storeu_ps(
            z,
            _mm256_add_ps(_mm256_loadu_ps(z), _mm256_mul_ps(_mm256_loadu_ps(s), t0)),
        );
        if width == 16 {
            let (z, s) = (z.add(8), s.add(8));
            _mm256_storeu_ps(
                z,
                _mm256_add_ps(_mm256_loadu_ps(z), _mm256_mul_ps(_mm256_loadu_ps(s), t1)),
            );
        }
    }
}

/// `out = (I ⊗ H_m) (row_scale * dz)` row by row for f32 blocks of `width` = 8 or 16, AVX2:
/// each product rounded, then transformed, as the portable carry computes it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scaled_fwht_f32_avx2(out: &mut [f32], dz: &[f32], row_scale: &[f32], width: usize) {
    use std::arch::x86_64::*;
    let n = row_scale.len();
    assert!(out.len() == dz.len() && n.is_multiple_of(width) && dz.len().is_multiple_of(n));
    for i in (0..dz.len()).step_by(width) {
        let (d, s, o) = (
            dz.as_ptr().add(i),
            row_scale.as_ptr().add(i % n),
            out.as_mut_ptr().add(i),
        );
        let high = if width == 16 { 8 } else { 0 };
        let v = _mm256_mul_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(s));
        let w = _mm256_mul_ps(_mm256_loadu_ps(d.add(high)), _mm256_loadu_ps(s.add(high)));
        let (t0, t1) = fwht_registers(v, w, width);
        _mm256_storeu_ps(o, t0);
        if width == 16 {
            _mm256_storeu_ps(o.add(8), t1);
        }
    }
}

/// The unnormalised fast Walsh-Hadamard transform of each block of `m` entries of `x`
/// in place: `x <- (I ⊗ H_m) x`, `len(x) log2(m)` additions and subtractions.
pub fn fwht_blocks<T: Real>(x: &mut [T], block: usize) {
    debug_assert!(block.is_power_of_two() && x.len().is_multiple_of(block));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        if let Some(x32) = as_f32_mut(x).filter(|_| block >= 8) {
            // SAFETY: the CPU has AVX2.
            return unsafe { fwht_blocks_f32_avx2(None, x32, block) };
        }
        // SAFETY: the CPU has AVX2.
        return unsafe { fwht_blocks_avx2(x, block) };
    }
    for chunk in x.chunks_mut(block) {
        fwht(chunk);
    }
}

/// `dst = (I ⊗ H_m) src`: [`fwht_blocks`] without a copy first (the f32 AVX2 kernel reads
/// `src` in its first stages), the same result.
pub fn fwht_blocks_into<T: Real>(src: &[T], dst: &mut [T], block: usize) {
    assert_eq!(
        src.len(),
        dst.len(),
        "fwht_blocks_into: src and dst differ in length"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && block >= 8 {
        if let Some(dst32) = as_f32_mut(dst) {
            // SAFETY: the CPU has AVX2.
            return unsafe { fwht_blocks_f32_avx2(Some(as_f32(src)), dst32, block) };
        }
    }
    dst.copy_from_slice(src);
    fwht_blocks(dst, block);
}

/// `x` as `&[f32]`, for a `T` known to be `f32`.
#[cfg(target_arch = "x86_64")]
pub(super) fn as_f32<T: Real>(x: &[T]) -> &[f32] {
    assert_eq!(std::any::TypeId::of::<T>(), std::any::TypeId::of::<f32>());
    // SAFETY: T is f32 (the same type, so the same layout).
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) }
}

/// Whether `T` is `f32`.
pub(super) fn is_f32<T: Real>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
}

/// `x` as `&mut [f32]` when `T` is `f32`.
pub(super) fn as_f32_mut<T: Real>(x: &mut [T]) -> Option<&mut [f32]> {
    is_f32::<T>().then(|| {
        // SAFETY: T is f32 (the same type, so the same layout).
        unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast(), x.len()) }
    })
}

/// `fwht_blocks` compiled for AVX2 (its wide stages 8 lanes at a time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fwht_blocks_avx2<T: Real>(x: &mut [T], block: usize) {
    for chunk in x.chunks_mut(block) {
        fwht(chunk);
    }
}

/// `fwht_blocks` on f32 with the first three stages inside one AVX register: each stage
/// adds a permutation of the 8 values to them (lanes that take `a + b`) or subtracts them
/// from it (lanes that take `a - b`), so each output is the same sum or difference of the
/// same two values as in `fwht`'s unrolled 8-point transform: the same result. Blocks of 16
/// or more take their fourth stage between two registers before the first store. The first
/// stages read `src` (as long as `x`; `None`: `x` itself, the transform in place) and
/// write `x`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fwht_blocks_f32_avx2(src: Option<&[f32]>, x: &mut [f32], block: usize) {
    use std::arch::x86_64::*;
    let width = if block >= 16 { 16 } else { 8 };
    for (i, c) in x.chunks_exact_mut(width).enumerate() {
        let from = src.map_or(c.as_ptr(), |s| s[width * i..width * (i + 1)].as_ptr());
        let v = fwht8_avx2(_mm256_loadu_ps(from));
        if width == 8 {
            _mm256_storeu_ps(c.as_mut_ptr(), v);
        } else {
            // Stage 4: pairs (i, i + 8).
            let w = fwht8_avx2(_mm256_loadu_ps(from.add(8)));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_add_ps(v, w));
            _mm256_storeu_ps(c.as_mut_ptr().add(8), _mm256_sub_ps(v, w));
        }
    }
    for chunk in x.chunks_mut(block) {
        butterflies_from(chunk, width);
    }
}

/// The 8-point transform of one register's lanes (stages 1 to 3 of `fwht`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn fwht8_avx2(mut v: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // Stage 1: pairs (0, 1), (2, 3), …; lanes 1, 3, 5, 7 take the difference.
    let w = _mm256_permute_ps::<0b10_11_00_01>(v);
    v = _mm256_blend_ps::<0b1010_1010>(_mm256_add_ps(v, w), _mm256_sub_ps(w, v));
    // Stage 2: pairs (0, 2), (1, 3), …; lanes 2, 3, 6, 7 take the difference.
    let w = _mm256_permute_ps::<0b01_00_11_10>(v);
    v = _mm256_blend_ps::<0b1100_1100>(_mm256_add_ps(v, w), _mm256_sub_ps(w, v));
    // Stage 3: pairs (i, i + 4); lanes 4..8 take the difference.
    let w = _mm256_permute2f128_ps::<1>(v, v);
    _mm256_blend_ps::<0b1111_0000>(_mm256_add_ps(v, w), _mm256_sub_ps(w, v))
}

/// One block: the first three butterfly stages as an unrolled 8-point transform, then one
/// pass per stage over halves of 8 or more, whose loops vectorise.
#[inline(always)]
fn fwht<T: Real>(x: &mut [T]) {
    let n = x.len();
    let mut half = 1;
    if n >= 8 {
        for c in x.chunks_exact_mut(8) {
            let (a0, a1) = (c[0] + c[1], c[0] - c[1]);
            let (a2, a3) = (c[2] + c[3], c[2] - c[3]);
            let (a4, a5) = (c[4] + c[5], c[4] - c[5]);
            let (a6, a7) = (c[6] + c[7], c[6] - c[7]);
            let (b0, b2) = (a0 + a2, a0 - a2);
            let (b1, b3) = (a1 + a3, a1 - a3);
            let (b4, b6) = (a4 + a6, a4 - a6);
            let (b5, b7) = (a5 + a7, a5 - a7);
            c[0] = b0 + b4;
            c[4] = b0 - b4;
            c[1] = b1 + b5;
            c[5] = b1 - b5;
            c[2] = b2 + b6;
            c[6] = b2 - b6;
            c[3] = b3 + b7;
            c[7] = b3 - b7;
        }
        half = 8;
    }
    butterflies_from(x, half);
}

/// The butterfly stages of halves `half`, `2 half`, … below `x.len()`: two stages a pass
/// while two remain (stage `h` on `(a, b)` and `(c, d)` at `i + (0, h, 2h, 3h)`, then stage
/// `2h` on `(a, c)` and `(b, d)`: the same sums and differences in the same order, so the
/// same result as a pass per stage, with half the loads and stores).
#[inline(always)]
fn butterflies_from<T: Real>(x: &mut [T], mut half: usize) {
    let n = x.len();
    while 4 * half <= n {
        for quad in x.chunks_exact_mut(4 * half) {
            let (ab, cd) = quad.split_at_mut(2 * half);
            let (a, b) = ab.split_at_mut(half);
            let (c, d) = cd.split_at_mut(half);
            for (((a, b), c), d) in a.iter_mut().zip(b).zip(c).zip(d) {
                let (s0, d0) = (*a + *b, *a - *b);
                let (s1, d1) = (*c + *d, *c - *d);
                (*a, *c) = (s0 + s1, s0 - s1);
                (*b, *d) = (d0 + d1, d0 - d1);
            }
        }
        half *= 4;
    }
    while half < n {
        for pair in x.chunks_exact_mut(2 * half) {
            let (a, b) = pair.split_at_mut(half);
            for (p, q) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*p + *q, *p - *q);
                *p = s;
                *q = d;
            }
        }
        half *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatched transform (AVX2 where the CPU has it, with the f32 register stages),
    /// in place and into another buffer, equals the portable one bit for bit, in f32 and
    /// f64, for every block size.
    #[test]
    fn fwht_blocks_is_the_portable_transform_exactly() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: this CPU has no AVX2, the dispatched and portable paths are one");
            return;
        }
        fn check<T: Real>() {
            for block in [2, 4, 8, 16, 64, 256] {
                let len = 4 * block;
                let x: Vec<T> = (0..len)
                    .map(|i| T::of(((i * 7919) % 1000) as f64 / 37.0 - 13.0))
                    .collect();
                let mut fast = x.clone();
                fwht_blocks(&mut fast, block);
                let mut into = vec![T::zero(); len];
                fwht_blocks_into(&x, &mut into, block);
                let mut portable = x;
                portable.chunks_mut(block).for_each(fwht);
                assert_eq!(fast, portable, "block {block}");
                assert_eq!(into, portable, "block {block}, into another buffer");
            }
        }
        check::<f32>();
        check::<f64>();
    }

    /// A Hadamard `W`'s projection (`z += row_scale * H h`, the transformed rows kept or
    /// not, as `project` adds it to `x U^T`) and carry (`H (row_scale * dz)`), dispatched
    /// (the f32 register kernels for blocks of 8 and 16 where the CPU has AVX2), equal the
    /// portable arithmetic bit for bit: the transform, then each product rounded, then each
    /// sum.
    #[test]
    fn hadamard_projection_and_carry_are_the_portable_arithmetic_exactly() {
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: this CPU has no AVX2, the dispatched and portable paths are one");
            return;
        }
        let value = |i: usize, k: usize| ((i * k) % 1000) as f32 / 37.0 - 13.0;
        for block in [2, 8, 16, 64] {
            let (n, rows) = (4 * block, 3);
            let h: Vec<f32> = (0..rows * n).map(|i| value(i, 7919)).collect();
            let z0: Vec<f32> = (0..rows * n).map(|i| value(i, 104_729)).collect();
            let row_scale: Vec<f32> = (0..n).map(|i| value(i, 31) / 8.0).collect();
            let mut portable_t = h.clone();
            portable_t.chunks_mut(block).for_each(fwht);
            let portable_z: Vec<f32> = (0..rows * n)
                .map(|i| z0[i] + row_scale[i % n] * portable_t[i])
                .collect();
            let w = Recurrence::Hadamard {
                row_scale: &row_scale,
                block,
            };
            for keep in [false, true] {
                let (mut z, mut t) = (z0.clone(), vec![0.0; rows * n]);
                add_scaled_transform(&mut z, &h, &row_scale, block, &mut t, keep);
                assert_eq!(z, portable_z, "block {block}, projection");
                if keep {
                    assert_eq!(t, portable_t, "block {block}, transformed rows");
                }
            }
            let mut portable_carry: Vec<f32> =
                (0..rows * n).map(|i| z0[i] * row_scale[i % n]).collect();
            portable_carry.chunks_mut(block).for_each(fwht);
            let mut carry = vec![0.0; rows * n];
            w.carry(&mut carry, &z0, n, rows);
            assert_eq!(carry, portable_carry, "block {block}, carry");
        }
    }
}

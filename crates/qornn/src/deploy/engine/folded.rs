//! The block kernel's folded forms (`blocks.rs`): where a model finishes in int32, W's and
//! U's scales are folded into their codes once, so that each row's numerator is a few
//! products in int32 lanes and a block's rows stay in registers from load to store.

use super::finish::RowValues;
#[cfg(target_arch = "x86_64")]
use super::finish::{Narrow256, RowConstants512};
use super::layout::sixteen_row_columns;

/// A Hadamard recurrence's numerators with the scales folded into the codes: row i's
/// `s_i M_w,i 2^a_w (H h)_i + sum_j (U_ij M_u,i 2^a_u) x_j + b_i + round`, one product per
/// row and one per input instead of two and d + 1. Exact in int32 when the finisher is
/// (its bound is on these very terms: `|s_i| m max|h| |M_w,i 2^a_w|` and
/// `max|x| sum_j |U_ij| |M_u,i 2^a_u|`).
pub(super) struct FoldedScales {
    /// `s_i M_w,i 2^a_w` per row.
    pub(super) w: Vec<i32>,
    /// `U_ij M_u,i 2^a_u`, `n x d`.
    pub(super) u: Vec<i32>,
    /// The same by groups of 16 rows (`sixteen_row_columns`) for `step_one_avx512`, where
    /// the layout has them.
    pub(super) u_columns: Vec<i32>,
    /// `b_i + round` and modReLU's `b_mod,i` (0 for ReLU) per row.
    pub(super) bias: Vec<i32>,
    pub(super) bias_mod: Vec<i32>,
}

impl FoldedScales {
    /// From a Hadamard layout's codes (blocks of m, d inputs; W's code on each block's first
    /// column is the row's sign) and its rows' finishing constants (a finisher that fits
    /// int32: every value below is bounded by its bound); `groups`: the layout has its
    /// groups of 16 rows.
    pub(super) fn new(
        (m, d): (usize, usize),
        w_rows: &[i32],
        u_codes: &[i32],
        rows: &[RowValues],
        groups: bool,
    ) -> Self {
        let u: Vec<i32> = (0..rows.len() * d)
            .map(|k| (u_codes[k] as i64 * rows[k / d].u_scale) as i32)
            .collect();
        let u_columns = match groups {
            true => sixteen_row_columns(&u, d, rows.len() / 16),
            false => Vec::new(),
        };
        Self {
            w: rows
                .iter()
                .enumerate()
                .map(|(i, r)| (w_rows[i * m] as i64 * r.w_scale) as i32)
                .collect(),
            u,
            u_columns,
            bias: rows.iter().map(|r| r.bias as i32).collect(),
            bias_mod: rows.iter().map(|r| r.bias_mod as i32).collect(),
        }
    }
}

/// Blocks of m <= 16 other than Hadamard ones (rotation pairs) with W's scales folded into
/// its codes and U's codes as int16 pairs: row i's numerator is
/// `sum_k (W_ik M_w,i 2^a_w) h_k + (sum_j U_ij x_j) M_u,i 2^a_u + b_i + round`, m products
/// for W, one pair multiply-add (`vpmaddwd`) per two inputs and one product for U's scale.
/// Exact in int32 when the finisher is (its bound is on these very terms), and the pairs'
/// products with input codes within A <= 16 bits fit int16 operands.
pub(super) struct FoldedBlocks {
    /// Row i's m codes on its block times `M_w,i 2^a_w`, `n x m`.
    pub(super) w: Vec<i32>,
    /// `(U_i,2q, U_i,2q+1)` as the low and high int16 halves of a word, `n x ceil(d / 2)`
    /// (the last high half 0 for an odd d).
    pub(super) u_pairs: Vec<i32>,
    /// `M_u,i 2^a_u`, `b_i + round` and modReLU's `b_mod,i` (0 for ReLU) per row.
    pub(super) u_scale: Vec<i32>,
    pub(super) bias: Vec<i32>,
    pub(super) bias_mod: Vec<i32>,
}

impl FoldedBlocks {
    /// From a layout's codes (blocks of m, d inputs) and its rows' finishing constants (a
    /// finisher that fits int32: every value below is bounded by its bound).
    pub(super) fn new(
        (m, d): (usize, usize),
        w_rows: &[i32],
        u_codes: &[i32],
        rows: &[RowValues],
    ) -> Self {
        let pairs = d.div_ceil(2);
        let half = |c: i32| c as u16 as i32;
        let u_pairs = (0..rows.len() * pairs)
            .map(|k| {
                let (i, q) = (k / pairs, k % pairs);
                let code = |j: usize| if j < d { u_codes[i * d + j] } else { 0 };
                half(code(2 * q)) | half(code(2 * q + 1)) << 16
            })
            .collect();
        Self {
            w: (0..rows.len() * m)
                .map(|k| (w_rows[k] as i64 * rows[k / m].w_scale) as i32)
                .collect(),
            u_pairs,
            u_scale: rows.iter().map(|r| r.u_scale as i32).collect(),
            bias: rows.iter().map(|r| r.bias as i32).collect(),
            bias_mod: rows.iter().map(|r| r.bias_mod as i32).collect(),
        }
    }
}

/// The unnormalised fast Walsh-Hadamard transform of M rows held in registers, in place
/// (`H_M[r][k] = (-1)^popcount(r & k)`): log2 M stages, in each of which rows r and
/// r + stride (bit `stride` of r clear) become their sum and their difference. `add` and
/// `sub` are the vector width's lane-wise int32 addition and subtraction.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn transform_rows<V: Copy, const M: usize>(
    v: &mut [V; M],
    add: impl Fn(V, V) -> V,
    sub: impl Fn(V, V) -> V,
) {
    // One call per stage with a constant stride and a constant trip count, so that the
    // compiler unrolls every stage and keeps the M rows in registers.
    #[inline(always)]
    fn stage<V: Copy, const M: usize>(
        v: &mut [V; M],
        stride: usize,
        add: &impl Fn(V, V) -> V,
        sub: &impl Fn(V, V) -> V,
    ) {
        for r in 0..M {
            if r & stride == 0 && r + stride < M {
                let (a, b) = (v[r], v[r + stride]);
                v[r] = add(a, b);
                v[r + stride] = sub(a, b);
            }
        }
    }
    debug_assert!(M <= 16, "blocks of at most 16");
    // Written out (not a loop over the strides) so that each stride is a constant.
    stage(v, 1, &add, &sub);
    stage(v, 2, &add, &sub);
    stage(v, 4, &add, &sub);
    stage(v, 8, &add, &sub);
}

/// `step_avx2` for a Hadamard recurrence with blocks of M whose scales are folded into its
/// codes (`FoldedScales`): for 8 lanes, the fast Walsh-Hadamard transform of a block's M
/// hidden rows (as `hadamard_step_avx512`), then each row's numerator from one product per
/// row and one per input, and the activation (`shared`: the shift and the range).
///
/// # Safety
/// The CPU has AVX2; `h`, `next` hold `n x lanes` codes and `x` `d x lanes`, `lanes` a
/// multiple of 8 and n of M; `folded` is a Hadamard layout's with blocks of M, for n rows
/// and d inputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn hadamard_step_avx2<const M: usize>(
    folded: &FoldedScales,
    shared: &Narrow256,
    (n, d): (usize, usize),
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::activate_8_narrow_avx2;
    use std::arch::x86_64::*;
    assert!(n.is_multiple_of(M) && lanes.is_multiple_of(8));
    assert!(h.len() >= n * lanes && next.len() >= n * lanes && x.len() >= d * lanes);
    assert!(folded.w.len() == n && folded.u.len() == n * d);
    let at = |rows: &[i32], row: usize, lane0: usize| {
        _mm256_loadu_si256(rows.as_ptr().add(row * lanes + lane0) as *const __m256i)
    };
    for first in (0..n).step_by(M) {
        for lane0 in (0..lanes).step_by(8) {
            let mut v: [__m256i; M] = std::array::from_fn(|r| at(h, first + r, lane0));
            transform_rows(
                &mut v,
                |a, b| _mm256_add_epi32(a, b),
                |a, b| _mm256_sub_epi32(a, b),
            );
            for (r, &transformed) in v.iter().enumerate() {
                let i = first + r;
                let mut numerator = _mm256_add_epi32(
                    _mm256_mullo_epi32(transformed, _mm256_set1_epi32(folded.w[i])),
                    _mm256_set1_epi32(folded.bias[i]),
                );
                for (j, &scaled) in folded.u[i * d..(i + 1) * d].iter().enumerate() {
                    let product = _mm256_mullo_epi32(_mm256_set1_epi32(scaled), at(x, j, lane0));
                    numerator = _mm256_add_epi32(numerator, product);
                }
                let bias_mod = _mm256_set1_epi32(folded.bias_mod[i]);
                let codes = activate_8_narrow_avx2(shared, bias_mod, numerator);
                _mm256_storeu_si256(
                    next.as_mut_ptr().add(i * lanes + lane0) as *mut __m256i,
                    codes,
                );
            }
        }
    }
}

/// `hadamard_step_avx512` with the scales folded into the codes (`FoldedScales`): for 16
/// lanes, a block's M rows stay in registers through the transform, the numerators
/// `w_i (H h)_i + b_i + sum_j u_ij x_j` and the activation (`shared`: the shift and the
/// range), read from and written to memory once.
///
/// # Safety
/// The CPU has AVX-512F; `h`, `next` hold `n x lanes` codes and `x` `d x lanes`, `lanes` a
/// multiple of 16 and n of M; `folded` is the layout's, for n rows and d inputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn folded_hadamard_step_avx512<const M: usize>(
    folded: &FoldedScales,
    shared: &RowConstants512,
    (n, d): (usize, usize),
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::activate_16_narrow_avx512;
    use std::arch::x86_64::*;
    assert!(n.is_multiple_of(M) && lanes.is_multiple_of(16));
    assert!(h.len() >= n * lanes && next.len() >= n * lanes && x.len() >= d * lanes);
    assert!(folded.w.len() == n && folded.bias.len() == n && folded.bias_mod.len() == n);
    assert!(folded.u.len() == n * d);
    let (h, x, out) = (h.as_ptr(), x.as_ptr(), next.as_mut_ptr());
    let (w, bias, bias_mod, u) = (
        folded.w.as_ptr(),
        folded.bias.as_ptr(),
        folded.bias_mod.as_ptr(),
        folded.u.as_ptr(),
    );
    let broadcast = |p: *const i32| _mm512_set1_epi32(*p);
    for first in (0..n).step_by(M) {
        for lane0 in (0..lanes).step_by(16) {
            let at = |row: usize| h.add(row * lanes + lane0) as *const __m512i;
            let mut v: [__m512i; M] = std::array::from_fn(|r| _mm512_loadu_si512(at(first + r)));
            transform_rows(
                &mut v,
                |a, b| _mm512_add_epi32(a, b),
                |a, b| _mm512_sub_epi32(a, b),
            );
            for (r, row) in v.iter_mut().enumerate() {
                let i = first + r;
                *row = _mm512_add_epi32(
                    _mm512_mullo_epi32(*row, broadcast(w.add(i))),
                    broadcast(bias.add(i)),
                );
            }
            for j in 0..d {
                let x_j = _mm512_loadu_si512(x.add(j * lanes + lane0) as *const __m512i);
                for (r, row) in v.iter_mut().enumerate() {
                    let product = _mm512_mullo_epi32(broadcast(u.add((first + r) * d + j)), x_j);
                    *row = _mm512_add_epi32(*row, product);
                }
            }
            for (r, &numerator) in v.iter().enumerate() {
                let i = first + r;
                let codes =
                    activate_16_narrow_avx512(shared, broadcast(bias_mod.add(i)), numerator);
                _mm512_storeu_si512(out.add(i * lanes + lane0) as *mut __m512i, codes);
            }
        }
    }
}

/// `step_avx512` for blocks of M other than Hadamard ones (`FoldedBlocks`), for 16 lanes: a
/// block's M hidden rows loaded once into registers, each row's W term from M products,
/// U's from one `vpmaddwd` per two inputs (the input codes packed as int16 pairs once per
/// 16 lanes) times the row's scale, then the activation (`shared`: the shift and the range).
///
/// # Safety
/// The CPU has AVX-512F and BW; `h`, `next` hold `n x lanes` codes and `x` `d x lanes`,
/// input codes within int16, `lanes` a multiple of 16 and n of M; `folded` is the layout's,
/// for n rows and d inputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn folded_blocks_step_avx512<const M: usize>(
    folded: &FoldedBlocks,
    shared: &RowConstants512,
    (n, d): (usize, usize),
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::activate_16_narrow_avx512;
    use std::arch::x86_64::*;
    let pairs = d.div_ceil(2);
    assert!(n.is_multiple_of(M) && lanes.is_multiple_of(16));
    assert!(h.len() >= n * lanes && next.len() >= n * lanes && x.len() >= d * lanes);
    assert!(folded.w.len() == n * M && folded.u_pairs.len() == n * pairs);
    assert!(folded.u_scale.len() == n && folded.bias.len() == n && folded.bias_mod.len() == n);
    let (h, x, out) = (h.as_ptr(), x.as_ptr(), next.as_mut_ptr());
    let broadcast = |p: *const i32| _mm512_set1_epi32(*p);
    let low_half = _mm512_set1_epi32(0xffff);
    let mut x_pairs = vec![_mm512_setzero_si512(); pairs];
    for lane0 in (0..lanes).step_by(16) {
        let x_row = |j: usize| _mm512_loadu_si512(x.add(j * lanes + lane0) as *const __m512i);
        for (q, pair) in x_pairs.iter_mut().enumerate() {
            let high = match 2 * q + 1 < d {
                true => _mm512_slli_epi32(x_row(2 * q + 1), 16),
                false => _mm512_setzero_si512(),
            };
            *pair = _mm512_or_si512(_mm512_and_si512(x_row(2 * q), low_half), high);
        }
        for first in (0..n).step_by(M) {
            let at = |row: usize| h.add(row * lanes + lane0) as *const __m512i;
            let v: [__m512i; M] = std::array::from_fn(|r| _mm512_loadu_si512(at(first + r)));
            for r in 0..M {
                let i = first + r;
                let w = folded.w.as_ptr().add(i * M);
                let u = folded.u_pairs.as_ptr().add(i * pairs);
                let mut sum_u = _mm512_setzero_si512();
                for (q, &pair) in x_pairs.iter().enumerate() {
                    sum_u = _mm512_add_epi32(sum_u, _mm512_madd_epi16(pair, broadcast(u.add(q))));
                }
                let mut numerator = _mm512_add_epi32(
                    _mm512_mullo_epi32(sum_u, broadcast(folded.u_scale.as_ptr().add(i))),
                    broadcast(folded.bias.as_ptr().add(i)),
                );
                for (k, &code) in v.iter().enumerate() {
                    numerator =
                        _mm512_add_epi32(numerator, _mm512_mullo_epi32(code, broadcast(w.add(k))));
                }
                let bias_mod = broadcast(folded.bias_mod.as_ptr().add(i));
                let codes = activate_16_narrow_avx512(shared, bias_mod, numerator);
                _mm512_storeu_si512(out.add(i * lanes + lane0) as *mut __m512i, codes);
            }
        }
    }
}

/// `folded_blocks_step_avx512` for 8 lanes at a time in AVX2.
///
/// # Safety
/// The CPU has AVX2; otherwise as `folded_blocks_step_avx512`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn folded_blocks_step_avx2<const M: usize>(
    folded: &FoldedBlocks,
    shared: &Narrow256,
    (n, d): (usize, usize),
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::activate_8_narrow_avx2;
    use std::arch::x86_64::*;
    let pairs = d.div_ceil(2);
    assert!(n.is_multiple_of(M) && lanes.is_multiple_of(8));
    assert!(h.len() >= n * lanes && next.len() >= n * lanes && x.len() >= d * lanes);
    assert!(folded.w.len() == n * M && folded.u_pairs.len() == n * pairs);
    assert!(folded.u_scale.len() == n && folded.bias.len() == n && folded.bias_mod.len() == n);
    let (h, x, out) = (h.as_ptr(), x.as_ptr(), next.as_mut_ptr());
    let broadcast = |p: *const i32| _mm256_set1_epi32(*p);
    let low_half = _mm256_set1_epi32(0xffff);
    let mut x_pairs = vec![_mm256_setzero_si256(); pairs];
    for lane0 in (0..lanes).step_by(8) {
        let x_row = |j: usize| _mm256_loadu_si256(x.add(j * lanes + lane0) as *const __m256i);
        for (q, pair) in x_pairs.iter_mut().enumerate() {
            let high = match 2 * q + 1 < d {
                true => _mm256_slli_epi32(x_row(2 * q + 1), 16),
                false => _mm256_setzero_si256(),
            };
            *pair = _mm256_or_si256(_mm256_and_si256(x_row(2 * q), low_half), high);
        }
        for first in (0..n).step_by(M) {
            let at = |row: usize| h.add(row * lanes + lane0) as *const __m256i;
            let v: [__m256i; M] = std::array::from_fn(|r| _mm256_loadu_si256(at(first + r)));
            for r in 0..M {
                let i = first + r;
                let w = folded.w.as_ptr().add(i * M);
                let u = folded.u_pairs.as_ptr().add(i * pairs);
                let mut sum_u = _mm256_setzero_si256();
                for (q, &pair) in x_pairs.iter().enumerate() {
                    sum_u = _mm256_add_epi32(sum_u, _mm256_madd_epi16(pair, broadcast(u.add(q))));
                }
                let mut numerator = _mm256_add_epi32(
                    _mm256_mullo_epi32(sum_u, broadcast(folded.u_scale.as_ptr().add(i))),
                    broadcast(folded.bias.as_ptr().add(i)),
                );
                for (k, &code) in v.iter().enumerate() {
                    numerator =
                        _mm256_add_epi32(numerator, _mm256_mullo_epi32(code, broadcast(w.add(k))));
                }
                let bias_mod = broadcast(folded.bias_mod.as_ptr().add(i));
                let codes = activate_8_narrow_avx2(shared, bias_mod, numerator);
                _mm256_storeu_si256(out.add(i * lanes + lane0) as *mut __m256i, codes);
            }
        }
    }
}

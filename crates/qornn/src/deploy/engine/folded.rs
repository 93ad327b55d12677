//! The block kernel's folded forms (`blocks.rs`): where a model finishes in int32, W's and
//! U's scales are folded into their codes once, so that each row's numerator is a few
//! products in int32 lanes and a block's rows stay in registers from load to store.

use super::finish::RowValues;
#[cfg(target_arch = "x86_64")]
use super::finish::{Narrow256, RowConstants512};
use super::layout::sixteen_row_columns;

/// A block-diagonal layout's codes with its scales folded in, for blocks of 2, 4, 8 or 16
/// and a finisher that fits int32: a Hadamard recurrence's (`FoldedScales`) or any other
/// blocks' (rotation pairs, `FoldedBlocks`).
pub(super) enum Folded {
    Hadamard(FoldedScales),
    Blocks(FoldedBlocks),
}

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

/// The int32 lane operations of the folded kernels at one vector width (`__m256i`: AVX2,
/// `__m512i`: AVX-512), so that each kernel is written once. Every method is inlined into
/// the kernel's entry point, which enables the width's instructions.
#[cfg(target_arch = "x86_64")]
trait Lanes: Copy {
    /// int32 lanes per vector.
    const WIDTH: usize;
    /// The finishing constants every row shares (the shift and the range).
    type Shared;
    unsafe fn load(p: *const i32) -> Self;
    unsafe fn store(self, p: *mut i32);
    unsafe fn splat(v: i32) -> Self;
    unsafe fn add(self, other: Self) -> Self;
    unsafe fn sub(self, other: Self) -> Self;
    unsafe fn mullo(self, other: Self) -> Self;
    /// `lo(self) lo(other) + hi(self) hi(other)` per lane, lo and hi its int16 halves.
    unsafe fn madd_pairs(self, other: Self) -> Self;
    /// `self`'s low 16 bits below `high`'s low 16 bits, per lane.
    unsafe fn pair_with(self, high: Self) -> Self;
    /// The shift, modReLU's biases `bias_mod` (or ReLU), the clamp to the range.
    unsafe fn activate(shared: &Self::Shared, bias_mod: Self, numerator: Self) -> Self;
}

#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m256i {
    const WIDTH: usize = 8;
    type Shared = Narrow256;
    #[inline(always)]
    unsafe fn load(p: *const i32) -> Self {
        std::arch::x86_64::_mm256_loadu_si256(p as *const Self)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut i32) {
        std::arch::x86_64::_mm256_storeu_si256(p as *mut Self, self)
    }
    #[inline(always)]
    unsafe fn splat(v: i32) -> Self {
        std::arch::x86_64::_mm256_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        std::arch::x86_64::_mm256_add_epi32(self, other)
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        std::arch::x86_64::_mm256_sub_epi32(self, other)
    }
    #[inline(always)]
    unsafe fn mullo(self, other: Self) -> Self {
        std::arch::x86_64::_mm256_mullo_epi32(self, other)
    }
    #[inline(always)]
    unsafe fn madd_pairs(self, other: Self) -> Self {
        std::arch::x86_64::_mm256_madd_epi16(self, other)
    }
    #[inline(always)]
    unsafe fn pair_with(self, high: Self) -> Self {
        use std::arch::x86_64::*;
        let low = _mm256_and_si256(self, _mm256_set1_epi32(0xffff));
        _mm256_or_si256(low, _mm256_slli_epi32::<16>(high))
    }
    #[inline(always)]
    unsafe fn activate(shared: &Narrow256, bias_mod: Self, numerator: Self) -> Self {
        super::finish::activate_8_narrow_avx2(shared, bias_mod, numerator)
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m512i {
    const WIDTH: usize = 16;
    type Shared = RowConstants512;
    #[inline(always)]
    unsafe fn load(p: *const i32) -> Self {
        std::arch::x86_64::_mm512_loadu_si512(p as *const Self)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut i32) {
        std::arch::x86_64::_mm512_storeu_si512(p as *mut Self, self)
    }
    #[inline(always)]
    unsafe fn splat(v: i32) -> Self {
        std::arch::x86_64::_mm512_set1_epi32(v)
    }
    #[inline(always)]
    unsafe fn add(self, other: Self) -> Self {
        std::arch::x86_64::_mm512_add_epi32(self, other)
    }
    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        std::arch::x86_64::_mm512_sub_epi32(self, other)
    }
    #[inline(always)]
    unsafe fn mullo(self, other: Self) -> Self {
        std::arch::x86_64::_mm512_mullo_epi32(self, other)
    }
    #[inline(always)]
    unsafe fn madd_pairs(self, other: Self) -> Self {
        std::arch::x86_64::_mm512_madd_epi16(self, other)
    }
    #[inline(always)]
    unsafe fn pair_with(self, high: Self) -> Self {
        use std::arch::x86_64::*;
        let low = _mm512_and_si512(self, _mm512_set1_epi32(0xffff));
        _mm512_or_si512(low, _mm512_slli_epi32::<16>(high))
    }
    #[inline(always)]
    unsafe fn activate(shared: &RowConstants512, bias_mod: Self, numerator: Self) -> Self {
        super::finish::activate_16_narrow_avx512(shared, bias_mod, numerator)
    }
}

/// One step of every sequence for a Hadamard recurrence with blocks of M whose scales are
/// folded into its codes (`FoldedScales`), `V::WIDTH` lanes at a time: a block's M hidden
/// rows stay in registers through the fast Walsh-Hadamard transform, the numerators
/// `w_i (H h)_i + b_i + sum_j u_ij x_j` (one product per row and one per input) and the
/// activation, read from and written to memory once.
///
/// # Safety
/// The CPU has `V`'s instructions; `h`, `next` hold `n x lanes` codes and `x` `d x lanes`,
/// `lanes` a multiple of `V::WIDTH` and n of M; `folded` is a Hadamard layout's with blocks
/// of M, for n rows and d inputs.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn folded_hadamard_step<V: Lanes, const M: usize>(
    folded: &FoldedScales,
    shared: &V::Shared,
    (n, d): (usize, usize),
    (h, x): (&[i32], &[i32]),
    next: &mut [i32],
    lanes: usize,
) {
    assert!(n.is_multiple_of(M) && lanes.is_multiple_of(V::WIDTH));
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
    for first in (0..n).step_by(M) {
        for lane0 in (0..lanes).step_by(V::WIDTH) {
            let mut v: [V; M] =
                std::array::from_fn(|r| V::load(h.add((first + r) * lanes + lane0)));
            transform_rows(&mut v, |a, b| a.add(b), |a, b| a.sub(b));
            for (r, row) in v.iter_mut().enumerate() {
                let i = first + r;
                *row = row.mullo(V::splat(*w.add(i))).add(V::splat(*bias.add(i)));
            }
            for j in 0..d {
                let x_j = V::load(x.add(j * lanes + lane0));
                for (r, row) in v.iter_mut().enumerate() {
                    *row = row.add(V::splat(*u.add((first + r) * d + j)).mullo(x_j));
                }
            }
            for (r, &numerator) in v.iter().enumerate() {
                let i = first + r;
                let codes = V::activate(shared, V::splat(*bias_mod.add(i)), numerator);
                codes.store(out.add(i * lanes + lane0));
            }
        }
    }
}

/// One step of every sequence for blocks of M other than Hadamard ones (`FoldedBlocks`),
/// `V::WIDTH` lanes at a time: a block's M hidden rows loaded once into registers, each
/// row's W term from M products, U's from one pair multiply-add (`vpmaddwd`) per two inputs
/// (the input codes packed as int16 pairs once per `V::WIDTH` lanes) times the row's
/// scale, then the activation.
///
/// # Safety
/// The CPU has `V`'s instructions (with AVX-512, BW too); `h`, `next` hold `n x lanes`
/// codes and `x` `d x lanes`, input codes within int16, `lanes` a multiple of `V::WIDTH`
/// and n of M; `folded` is the layout's, for n rows and d inputs.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn folded_blocks_step<V: Lanes, const M: usize>(
    folded: &FoldedBlocks,
    shared: &V::Shared,
    (n, d): (usize, usize),
    (h, x): (&[i32], &[i32]),
    next: &mut [i32],
    lanes: usize,
) {
    let pairs = d.div_ceil(2);
    assert!(n.is_multiple_of(M) && lanes.is_multiple_of(V::WIDTH));
    assert!(h.len() >= n * lanes && next.len() >= n * lanes && x.len() >= d * lanes);
    assert!(folded.w.len() == n * M && folded.u_pairs.len() == n * pairs);
    assert!(folded.u_scale.len() == n && folded.bias.len() == n && folded.bias_mod.len() == n);
    let (h, x, out) = (h.as_ptr(), x.as_ptr(), next.as_mut_ptr());
    let mut x_pairs = vec![V::splat(0); pairs];
    for lane0 in (0..lanes).step_by(V::WIDTH) {
        let x_row = |j: usize| V::load(x.add(j * lanes + lane0));
        for (q, pair) in x_pairs.iter_mut().enumerate() {
            let high = match 2 * q + 1 < d {
                true => x_row(2 * q + 1),
                false => V::splat(0),
            };
            *pair = x_row(2 * q).pair_with(high);
        }
        for first in (0..n).step_by(M) {
            let v: [V; M] = std::array::from_fn(|r| V::load(h.add((first + r) * lanes + lane0)));
            for r in 0..M {
                let i = first + r;
                let (w, u) = (
                    folded.w.as_ptr().add(i * M),
                    folded.u_pairs.as_ptr().add(i * pairs),
                );
                let mut sum_u = V::splat(0);
                for (q, &pair) in x_pairs.iter().enumerate() {
                    sum_u = sum_u.add(pair.madd_pairs(V::splat(*u.add(q))));
                }
                let mut numerator = sum_u
                    .mullo(V::splat(folded.u_scale[i]))
                    .add(V::splat(folded.bias[i]));
                for (k, &code) in v.iter().enumerate() {
                    numerator = numerator.add(code.mullo(V::splat(*w.add(k))));
                }
                let codes = V::activate(shared, V::splat(folded.bias_mod[i]), numerator);
                codes.store(out.add(i * lanes + lane0));
            }
        }
    }
}

/// One step of every sequence by the folded kernel of `folded`'s form and block size m,
/// `V::WIDTH` lanes at a time.
///
/// # Safety
/// As `folded_hadamard_step` or `folded_blocks_step`; m is the layout's block size.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn folded_step<V: Lanes>(
    folded: &Folded,
    m: usize,
    shared: &V::Shared,
    shape: (usize, usize),
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    let hx = (h, x);
    match (folded, m) {
        (Folded::Hadamard(f), 2) => folded_hadamard_step::<V, 2>(f, shared, shape, hx, next, lanes),
        (Folded::Hadamard(f), 4) => folded_hadamard_step::<V, 4>(f, shared, shape, hx, next, lanes),
        (Folded::Hadamard(f), 8) => folded_hadamard_step::<V, 8>(f, shared, shape, hx, next, lanes),
        (Folded::Hadamard(f), 16) => {
            folded_hadamard_step::<V, 16>(f, shared, shape, hx, next, lanes)
        }
        (Folded::Blocks(f), 2) => folded_blocks_step::<V, 2>(f, shared, shape, hx, next, lanes),
        (Folded::Blocks(f), 4) => folded_blocks_step::<V, 4>(f, shared, shape, hx, next, lanes),
        (Folded::Blocks(f), 8) => folded_blocks_step::<V, 8>(f, shared, shape, hx, next, lanes),
        (Folded::Blocks(f), 16) => folded_blocks_step::<V, 16>(f, shared, shape, hx, next, lanes),
        (_, m) => unreachable!("folded layouts have blocks of 2 to 16, not {m}"),
    }
}

/// `folded_step` 8 lanes at a time.
///
/// # Safety
/// The CPU has AVX2; otherwise as `folded_step`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn step_avx2(
    folded: &Folded,
    m: usize,
    shared: &Narrow256,
    shape: (usize, usize),
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    folded_step::<std::arch::x86_64::__m256i>(folded, m, shared, shape, h, x, next, lanes)
}

/// `folded_step` 16 lanes at a time; false, with nothing done, for `Folded::Blocks` on a
/// CPU without AVX-512BW (its pair multiply-adds need it).
///
/// # Safety
/// The CPU has AVX-512F; otherwise as `folded_step`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn step_avx512(
    folded: &Folded,
    m: usize,
    shared: &RowConstants512,
    shape: (usize, usize),
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) -> bool {
    /// `folded_step` with BW enabled, for `Folded::Blocks`.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn with_bw(
        folded: &Folded,
        m: usize,
        shared: &RowConstants512,
        shape: (usize, usize),
        h: &[i32],
        x: &[i32],
        next: &mut [i32],
        lanes: usize,
    ) {
        folded_step::<std::arch::x86_64::__m512i>(folded, m, shared, shape, h, x, next, lanes)
    }
    match folded {
        Folded::Hadamard(_) => {
            folded_step::<std::arch::x86_64::__m512i>(folded, m, shared, shape, h, x, next, lanes)
        }
        Folded::Blocks(_) if std::arch::is_x86_feature_detected!("avx512bw") => {
            with_bw(folded, m, shared, shape, h, x, next, lanes)
        }
        Folded::Blocks(_) => return false,
    }
    true
}

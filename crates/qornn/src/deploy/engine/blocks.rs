//! The batched engine's kernel for a block-diagonal W (a Hadamard recurrence's blocks of m,
//! block rotations' pairs): row i of W is non-zero only on its block, so a step costs
//! `n (m + d)` multiply-adds per sequence instead of `n (n + d)`. Codes are kept one per
//! int32, unit-major (`h[i * lanes + s]`), and each row's products run across 32 sequences
//! at once. Sums stay in int32 lanes under the bound `BlockLayout::new` checks; the
//! rescaling, rounding and activation are `IntRecurrence::finish`'s (`Finisher`). Where
//! the model finishes in int32 and its blocks are of 2 to 16, the vector steps run the
//! folded kernels of `folded.rs` instead.

use super::finish::Finisher;
#[cfg(target_arch = "x86_64")]
use super::finish::{finish_16_avx512, finish_8_avx2, RowConstants, RowConstants512};
#[cfg(target_arch = "x86_64")]
use super::folded::transform_rows;
use super::folded::{self, Folded, FoldedBlocks, FoldedScales};
use super::layout::{SixteenRowGroups, LANES};
use qornn_infer::IntRecurrence;

/// W's diagonal blocks and U, one code per int32.
pub(super) struct BlockLayout {
    /// m, the size of W's diagonal blocks.
    block: usize,
    /// d, U's columns.
    input: usize,
    /// Row i's m codes on its block, `n x m`.
    w_rows: Vec<i32>,
    /// U's codes, `n x d`.
    u: Vec<i32>,
    /// The codes by groups of 16 rows for one sequence at a time (`step_one_avx512`), where
    /// 16 divides n and m divides 16 or 16 divides m.
    one_sequence: Option<SixteenRowGroups>,
    /// A Hadamard recurrence with blocks of at most 16 (`W_ij = s_i (I ⊗ H_m)_ij`, s_i = W's
    /// code on its block's first column): `step_avx512` and `step_one_avx512` transform the
    /// blocks instead of multiplying them.
    hadamard: bool,
    /// Where the finisher fits int32 and the blocks are of 2 to 16, the codes with the
    /// scales folded in (`with_folded_scales`): a Hadamard recurrence's, or other blocks'
    /// (rotation pairs) with U's codes as pairs.
    folded: Option<Folded>,
}

impl BlockLayout {
    /// The layout for a recurrence whose W is block-diagonal with blocks smaller than n;
    /// `None` for a dense W, or when a row's sum could leave int32: `m max|W| max|H|` and
    /// `d max|U| max|X|` must stay below 2^31 (hidden codes in `lo..=hi`, input codes
    /// within A bits).
    pub(super) fn new(rec: &IntRecurrence<'_>, w_codes: &[i8], u_codes: &[i8]) -> Option<Self> {
        let (n, d, m) = (rec.hidden, rec.input, rec.w_block());
        if m >= n {
            return None;
        }
        let (lo, hi) = rec.hidden_range();
        let h_max = (lo.unsigned_abs() as u64).max(hi.unsigned_abs() as u64);
        let x_max = 1u64 << (rec.act_bits - 1);
        let largest = |codes: &[i8]| codes.iter().map(|c| c.unsigned_abs() as u64).max();
        let w_rows: Vec<i32> = (0..n * m)
            .map(|k| {
                let (i, j) = (k / m, k % m);
                w_codes[i * n + i / m * m + j] as i32
            })
            .collect();
        let w_bound = m as u64 * largest(w_codes).unwrap_or(0) * h_max;
        let u_bound = d as u64 * largest(u_codes).unwrap_or(0) * x_max;
        (w_bound <= i32::MAX as u64 && u_bound <= i32::MAX as u64).then(|| Self {
            block: m,
            input: d,
            w_rows,
            u: u_codes.iter().map(|&c| c as i32).collect(),
            one_sequence: None,
            hadamard: rec.hadamard_block > 0 && m <= 16,
            folded: None,
        })
    }

    /// The layout with its scales folded into its codes where the finisher finishes in
    /// int32: `FoldedScales` for a Hadamard one, `FoldedBlocks` for other blocks of 2 to 16.
    pub(super) fn with_folded_scales(mut self, finisher: &Finisher<'_>) -> Self {
        let (m, d) = (self.block, self.input);
        // The folded kernels take blocks of 2, 4, 8 and 16.
        if !finisher.fits_int32() || !matches!(m, 2 | 4 | 8 | 16) {
            return self;
        }
        let rows: Vec<_> = (0..self.w_rows.len() / m)
            .map(|i| finisher.row(i))
            .collect();
        self.folded = Some(match self.hadamard {
            true => {
                let groups = self.one_sequence.is_some();
                Folded::Hadamard(FoldedScales::new(
                    (m, d),
                    &self.w_rows,
                    &self.u,
                    &rows,
                    groups,
                ))
            }
            false => Folded::Blocks(FoldedBlocks::new((m, d), &self.w_rows, &self.u, &rows)),
        });
        self
    }

    /// Whether the vector steps run this layout with the folded kernel of blocks other
    /// than Hadamard ones.
    #[cfg(test)]
    pub(super) fn has_folded_blocks(&self) -> bool {
        matches!(self.folded, Some(Folded::Blocks(_)))
    }

    /// The layout with its groups of 16 rows for `step_one_avx512`, where their shape
    /// allows (16 divides n; m divides 16 or 16 divides m).
    pub(super) fn with_sixteen_row_groups(mut self, finisher: &Finisher<'_>) -> Self {
        let (m, d) = (self.block, self.input);
        let n = self.w_rows.len() / m;
        if !n.is_multiple_of(16) || !(m.is_multiple_of(16) || 16 % m == 0) {
            return self;
        }
        // m + d vector multiply-adds and one 16-lane finishing per 16 units.
        self.one_sequence = Some(SixteenRowGroups::new(
            finisher,
            n / 16,
            (&self.w_rows, m),
            (&self.u, d),
        ));
        self
    }

    /// Whether `step_one_avx512` runs this layout.
    pub(super) fn has_sixteen_row_groups(&self) -> bool {
        self.one_sequence.is_some()
    }

    /// Row i's sums over W's block and over U for the 32 sequences from `lane0`.
    #[inline(always)]
    fn sums(
        &self,
        i: usize,
        h: &[i32],
        x: &[i32],
        lanes: usize,
        lane0: usize,
    ) -> ([i32; LANES], [i32; LANES]) {
        let (m, d) = (self.block, self.input);
        let start = i / m * m;
        let (mut acc_w, mut acc_u) = ([0i32; LANES], [0i32; LANES]);
        // Inlined into each caller, so that it is compiled for the caller's instructions.
        #[inline(always)]
        fn add(acc: &mut [i32; LANES], codes: &[i32], values: &[i32], first: usize, lanes: usize) {
            for (k, &c) in codes.iter().enumerate() {
                let row = &values[(first + k) * lanes..][..LANES];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += c * v;
                }
            }
        }
        add(
            &mut acc_w,
            &self.w_rows[i * m..(i + 1) * m],
            &h[lane0..],
            start,
            lanes,
        );
        add(
            &mut acc_u,
            &self.u[i * d..(i + 1) * d],
            &x[lane0..],
            0,
            lanes,
        );
        (acc_w, acc_u)
    }

    /// One step of one sequence (`h`, `out`: n codes, `x`: d codes), for batches too small
    /// to fill the lanes.
    pub(super) fn step_one(&self, finisher: &Finisher<'_>, h: &[i32], x: &[i32], out: &mut [i32]) {
        let (m, d) = (self.block, self.input);
        let dot = |codes: &[i32], values: &[i32]| -> i64 {
            codes
                .iter()
                .zip(values)
                .map(|(&c, &v)| c as i64 * v as i64)
                .sum()
        };
        for (i, o) in out.iter_mut().enumerate() {
            let start = i / m * m;
            let acc_w = dot(&self.w_rows[i * m..(i + 1) * m], &h[start..start + m]);
            let acc_u = dot(&self.u[i * d..(i + 1) * d], x);
            *o = finisher.finish(i, acc_w, acc_u);
        }
    }
}

/// `BlockLayout::step_one` 16 rows at a time in AVX-512: row 16 g + r's sums in lane r,
/// from W's block columns times the hidden codes they meet (one code broadcast when the
/// 16 rows share a block, else the group's codes permuted to each row's block) and U's
/// columns times the broadcast input codes; then 16 units finished together.
///
/// # Safety
/// The CPU has AVX-512F; the layout has its groups of 16 rows
/// (`BlockLayout::has_sixteen_row_groups`); `h` and `out` hold n codes, `x` d.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn step_one_avx512(
    layout: &BlockLayout,
    finisher: &Finisher<'_>,
    h: &[i32],
    x: &[i32],
    out: &mut [i32],
) {
    use super::finish::{activate_16_narrow_avx512, finish_16_avx512, RowConstants512};
    use std::arch::x86_64::*;
    let (m, d) = (layout.block, layout.input);
    let groups = layout
        .one_sequence
        .as_ref()
        .expect("the layout has its groups of 16 rows");
    let n = out.len();
    assert!(h.len() == n && x.len() == d && groups.sixteen_rows.len() * 16 == n);
    let load = |p: *const i32| _mm512_loadu_si512(p as *const __m512i);
    // Lane r holds r: the permutations below are computed from it.
    let lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    // The shift, activation and range, the same for every row.
    let shared = RowConstants512::new(finisher, 0);
    for (g, constants) in groups.sixteen_rows.iter().enumerate() {
        let w = groups.w_columns.as_ptr().add(g * m * 16);
        let mut sum_w = _mm512_setzero_si512();
        if layout.hadamard {
            // A Hadamard W (blocks of m <= 16, inside the group): the fast Walsh-Hadamard
            // transform of the group's 16 codes, lane r taking r ^ s at stage s (< m: within
            // its block; a shuffle within 128-bit lanes for s = 1, 2, of 128-bit lanes for
            // s = 4, 8), added where bit s of r is 0 and subtracted from where it is 1
            // (`upper`: the lanes whose bit s is set), then each row's sign (its code on
            // its block's first column).
            let mut codes = load(h.as_ptr().add(16 * g));
            let stage = |codes: __m512i, partner: __m512i, upper: __mmask16| {
                _mm512_mask_sub_epi32(_mm512_add_epi32(codes, partner), upper, partner, codes)
            };
            if m > 1 {
                codes = stage(codes, _mm512_shuffle_epi32::<0b10_11_00_01>(codes), 0xaaaa);
            }
            if m > 2 {
                codes = stage(codes, _mm512_shuffle_epi32::<0b01_00_11_10>(codes), 0xcccc);
            }
            if m > 4 {
                let partner = _mm512_shuffle_i32x4::<0b10_11_00_01>(codes, codes);
                codes = stage(codes, partner, 0xf0f0);
            }
            if m > 8 {
                let partner = _mm512_shuffle_i32x4::<0b01_00_11_10>(codes, codes);
                codes = stage(codes, partner, 0xff00);
            }
            if let Some(Folded::Hadamard(folded)) = &layout.folded {
                // The scales folded into the codes (`FoldedScales`): the numerators directly.
                let mut numerator = _mm512_add_epi32(
                    _mm512_mullo_epi32(codes, load(folded.w.as_ptr().add(16 * g))),
                    load(folded.bias.as_ptr().add(16 * g)),
                );
                let u = folded.u_columns.as_ptr().add(g * d * 16);
                for (j, &code) in x.iter().enumerate() {
                    let product = _mm512_mullo_epi32(_mm512_set1_epi32(code), load(u.add(16 * j)));
                    numerator = _mm512_add_epi32(numerator, product);
                }
                let bias_mod = load(folded.bias_mod.as_ptr().add(16 * g));
                let out_codes = activate_16_narrow_avx512(&shared, bias_mod, numerator);
                _mm512_storeu_si512(out.as_mut_ptr().add(16 * g) as *mut __m512i, out_codes);
                continue;
            }
            sum_w = _mm512_mullo_epi32(codes, load(w));
        } else if m >= 16 {
            // Every row of the group in one block.
            let start = 16 * g / m * m;
            for k in 0..m {
                let code = _mm512_set1_epi32(*h.get_unchecked(start + k));
                sum_w = _mm512_add_epi32(sum_w, _mm512_mullo_epi32(code, load(w.add(16 * k))));
            }
        } else {
            // m < 16 divides 16: lane r takes its block's column k, `r / m * m + k`.
            let codes = load(h.as_ptr().add(16 * g));
            let block_start = _mm512_and_si512(lane, _mm512_set1_epi32(!(m as i32 - 1)));
            for k in 0..m {
                let at = _mm512_add_epi32(block_start, _mm512_set1_epi32(k as i32));
                let met = _mm512_permutexvar_epi32(at, codes);
                sum_w = _mm512_add_epi32(sum_w, _mm512_mullo_epi32(met, load(w.add(16 * k))));
            }
        }
        let u = groups.u_columns.as_ptr().add(g * d * 16);
        let mut sum_u = _mm512_setzero_si512();
        for (j, &code) in x.iter().enumerate() {
            let code = _mm512_set1_epi32(code);
            sum_u = _mm512_add_epi32(sum_u, _mm512_mullo_epi32(code, load(u.add(16 * j))));
        }
        let row = RowConstants512::sixteen(finisher, constants);
        let codes = finish_16_avx512(&row, sum_w, sum_u);
        _mm512_storeu_si512(out.as_mut_ptr().add(16 * g) as *mut __m512i, codes);
    }
}

/// One step of every sequence: `h`, `next` are `n x lanes` codes, `x` is `d x lanes`.
pub(super) fn step_portable(
    layout: &BlockLayout,
    finisher: &Finisher<'_>,
    n: usize,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    for lane0 in (0..lanes).step_by(LANES) {
        for i in 0..n {
            let (acc_w, acc_u) = layout.sums(i, h, x, lanes, lane0);
            let out = &mut next[i * lanes + lane0..][..LANES];
            for ((o, &w), &u) in out.iter_mut().zip(&acc_w).zip(&acc_u) {
                *o = finisher.finish(i, w as i64, u as i64);
            }
        }
    }
}

/// `step_portable` with the products and the finishing in AVX2 registers.
///
/// # Safety
/// The CPU has AVX2; the slices are as `step_portable`'s, `lanes` a multiple of `LANES`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn step_avx2(
    layout: &BlockLayout,
    finisher: &Finisher<'_>,
    n: usize,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use std::arch::x86_64::*;
    assert!(lanes.is_multiple_of(LANES) && next.len() >= n * lanes);
    assert!(h.len() >= n * lanes && x.len() >= layout.input * lanes);
    if let (Some(folded), RowConstants::Narrow(shared)) =
        (&layout.folded, RowConstants::new(finisher, 0))
    {
        let shape = (n, layout.input);
        return folded::step_avx2(folded, layout.block, &shared, shape, h, x, next, lanes);
    }
    for lane0 in (0..lanes).step_by(LANES) {
        for i in 0..n {
            let (acc_w, acc_u) = layout.sums(i, h, x, lanes, lane0);
            let row = RowConstants::new(finisher, i);
            let out = next.as_mut_ptr().add(i * lanes + lane0);
            for v in 0..LANES / 8 {
                let w = _mm256_loadu_si256(acc_w.as_ptr().add(8 * v) as *const __m256i);
                let u = _mm256_loadu_si256(acc_u.as_ptr().add(8 * v) as *const __m256i);
                let codes = finish_8_avx2(&row, w, u);
                _mm256_storeu_si256(out.add(8 * v) as *mut __m256i, codes);
            }
        }
    }
}

/// `step_avx2` with each row's sums finished 16 lanes at a time in AVX-512 (its 64-bit
/// arithmetic shift, absolute value, minimum and maximum, which AVX2 emulates), and the
/// products compiled for it.
///
/// # Safety
/// The CPU has AVX-512F; the slices are as `step_portable`'s, `lanes` a multiple of `LANES`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn step_avx512(
    layout: &BlockLayout,
    finisher: &Finisher<'_>,
    n: usize,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use std::arch::x86_64::*;
    assert!(lanes.is_multiple_of(LANES) && next.len() >= n * lanes);
    assert!(h.len() >= n * lanes && x.len() >= layout.input * lanes);
    if let Some(folded) = &layout.folded {
        let shared = RowConstants512::new(finisher, 0);
        let shape = (n, layout.input);
        if folded::step_avx512(folded, layout.block, &shared, shape, h, x, next, lanes) {
            return;
        }
    }
    if layout.hadamard {
        match layout.block {
            2 => return hadamard_step_avx512::<2>(layout, finisher, n, h, x, next, lanes),
            4 => return hadamard_step_avx512::<4>(layout, finisher, n, h, x, next, lanes),
            8 => return hadamard_step_avx512::<8>(layout, finisher, n, h, x, next, lanes),
            16 => return hadamard_step_avx512::<16>(layout, finisher, n, h, x, next, lanes),
            _ => {}
        }
    }
    for lane0 in (0..lanes).step_by(LANES) {
        for i in 0..n {
            let (acc_w, acc_u) = layout.sums(i, h, x, lanes, lane0);
            let row = RowConstants512::new(finisher, i);
            let out = next.as_mut_ptr().add(i * lanes + lane0);
            for v in 0..LANES / 16 {
                let w = _mm512_loadu_si512(acc_w.as_ptr().add(16 * v) as *const __m512i);
                let u = _mm512_loadu_si512(acc_u.as_ptr().add(16 * v) as *const __m512i);
                let codes = finish_16_avx512(&row, w, u);
                _mm512_storeu_si512(out.add(16 * v) as *mut __m512i, codes);
            }
        }
    }
}

/// `step_avx512` for a Hadamard recurrence with blocks of M: a block's W sums for 16 lanes,
/// `s_i sum_k H_M[r][k] h_k` (row i = first + r, `H_M[r][k] = (-1)^popcount(r & k)`), are
/// the fast Walsh-Hadamard transform of its M hidden rows (log2 M stages of additions and
/// subtractions in registers, exact in int32 under the layout's bound) times the row's
/// sign, instead of M products per row; finished in int64 lanes (`finish_16_avx512`) where
/// the scales do not fold into int32 (`folded::step_avx512` where they do).
///
/// # Safety
/// As `step_avx512`; the layout is a Hadamard one with blocks of M.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn hadamard_step_avx512<const M: usize>(
    layout: &BlockLayout,
    finisher: &Finisher<'_>,
    n: usize,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::{finish_16_avx512, RowConstants512};
    use std::arch::x86_64::*;
    assert!(layout.hadamard && layout.block == M && n.is_multiple_of(M));
    let d = layout.input;
    let at = |rows: &[i32], row: usize, lane0: usize| {
        _mm512_loadu_si512(rows.as_ptr().add(row * lanes + lane0) as *const __m512i)
    };
    for first in (0..n).step_by(M) {
        for lane0 in (0..lanes).step_by(16) {
            let mut v: [__m512i; M] = std::array::from_fn(|r| at(h, first + r, lane0));
            transform_rows(
                &mut v,
                |a, b| _mm512_add_epi32(a, b),
                |a, b| _mm512_sub_epi32(a, b),
            );
            for (r, &transformed) in v.iter().enumerate() {
                let i = first + r;
                let out = next.as_mut_ptr().add(i * lanes + lane0) as *mut __m512i;
                let sign = _mm512_set1_epi32(layout.w_rows[i * M]);
                let sum_w = _mm512_mullo_epi32(transformed, sign);
                let mut sum_u = _mm512_setzero_si512();
                for (j, &code) in layout.u[i * d..(i + 1) * d].iter().enumerate() {
                    let product = _mm512_mullo_epi32(_mm512_set1_epi32(code), at(x, j, lane0));
                    sum_u = _mm512_add_epi32(sum_u, product);
                }
                let row = RowConstants512::new(finisher, i);
                _mm512_storeu_si512(out, finish_16_avx512(&row, sum_w, sum_u));
            }
        }
    }
}

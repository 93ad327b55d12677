//! The pair kernels' products: W's and U's codes as int16 pairs against the sequences'
//! pairs, two rows at a time for 32 lanes, with AVX2 `vpmaddwd` (16 multiply-adds per
//! instruction), AVX-512 VNNI `vpdpwssd` (32, the sum included) or in portable Rust; sums
//! exact in int32 over `PAIRS_PER_CHUNK` pairs, then widened to int64. For n, d <= 256 the
//! whole step of a block of 32 sequences, the sums kept in registers and finished there
//! (`step_in_registers_avx2`, `step_in_registers_avx512vnni`).

use super::finish::Finisher;
use super::layout::{halves, SixteenRowGroups, LANES, PAIRS_PER_CHUNK};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256i, __m512i};

/// `sum_p rows.r[p] . pairs[p][block + l]` in int32 for two rows and 32 lanes (at most
/// `PAIRS_PER_CHUNK` pairs): each load of the lanes' pairs serves both rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn pair_sums_avx2(
    rows: (&[i32], &[i32]),
    pairs: &[i32],
    lanes: usize,
    block: usize,
) -> [[__m256i; LANES / 8]; 2] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_si256(); LANES / 8]; 2];
    for (p, (&a, &b)) in rows.0.iter().zip(rows.1).enumerate() {
        let (wa, wb) = (_mm256_set1_epi32(a), _mm256_set1_epi32(b));
        let base = pairs.as_ptr().add(p * lanes + block);
        let [acc_a, acc_b] = &mut acc;
        for (v, (sa, sb)) in acc_a.iter_mut().zip(acc_b.iter_mut()).enumerate() {
            let column = _mm256_loadu_si256(base.add(8 * v) as *const __m256i);
            *sa = _mm256_add_epi32(*sa, _mm256_madd_epi16(wa, column));
            *sb = _mm256_add_epi32(*sb, _mm256_madd_epi16(wb, column));
        }
    }
    acc
}

/// `pair_sums_avx2` with AVX-512 VNNI: one `vpdpwssd` multiplies a row's pair of codes
/// with the pairs of 16 lanes and adds both products to their sums (the same int32
/// arithmetic as `vpmaddwd` then `vpaddd`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline]
pub(super) unsafe fn pair_sums_avx512vnni(
    rows: (&[i32], &[i32]),
    pairs: &[i32],
    lanes: usize,
    block: usize,
) -> [[__m512i; LANES / 16]; 2] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_si512(); LANES / 16]; 2];
    for (p, (&a, &b)) in rows.0.iter().zip(rows.1).enumerate() {
        let (wa, wb) = (_mm512_set1_epi32(a), _mm512_set1_epi32(b));
        let base = pairs.as_ptr().add(p * lanes + block);
        let [acc_a, acc_b] = &mut acc;
        for (v, (sa, sb)) in acc_a.iter_mut().zip(acc_b.iter_mut()).enumerate() {
            let column = _mm512_loadu_si512(base.add(16 * v) as *const __m512i);
            *sa = _mm512_dpwssd_epi32(*sa, wa, column);
            *sb = _mm512_dpwssd_epi32(*sb, wb, column);
        }
    }
    acc
}

pub(super) fn products_portable(
    rows: (&[i32], &[i32]),
    pairs: &[i32],
    lanes: usize,
    block: usize,
    out: &mut [[i64; LANES]; 2],
) {
    *out = [[0; LANES]; 2];
    for (r, row) in [rows.0, rows.1].into_iter().enumerate() {
        for (c, chunk) in row.chunks(PAIRS_PER_CHUNK).enumerate() {
            let mut acc = [0i32; LANES];
            for (k, &w) in chunk.iter().enumerate() {
                let (w_lo, w_hi) = halves(w);
                let p = c * PAIRS_PER_CHUNK + k;
                let column = &pairs[p * lanes + block..p * lanes + block + LANES];
                for (a, &h) in acc.iter_mut().zip(column) {
                    let (h_lo, h_hi) = halves(h);
                    *a += w_lo * h_lo + w_hi * h_hi;
                }
            }
            for (o, a) in out[r].iter_mut().zip(acc) {
                *o += a as i64;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn products_avx2(
    rows: (&[i32], &[i32]),
    pairs: &[i32],
    lanes: usize,
    block: usize,
    out: &mut [[i64; LANES]; 2],
) {
    use std::arch::x86_64::*;
    let len = rows.0.len();
    assert!(rows.1.len() == len && block + LANES <= lanes && pairs.len() >= len * lanes);
    let mut total = [[_mm256_setzero_si256(); LANES / 4]; 2];
    for start in (0..len).step_by(PAIRS_PER_CHUNK) {
        let end = (start + PAIRS_PER_CHUNK).min(len);
        let mut acc = [[_mm256_setzero_si256(); LANES / 8]; 2];
        for p in start..end {
            let (wa, wb) = (_mm256_set1_epi32(rows.0[p]), _mm256_set1_epi32(rows.1[p]));
            let base = pairs.as_ptr().add(p * lanes + block);
            let [acc_a, acc_b] = &mut acc;
            for (v, (a, b)) in acc_a.iter_mut().zip(acc_b.iter_mut()).enumerate() {
                let h = _mm256_loadu_si256(base.add(8 * v) as *const __m256i);
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(wa, h));
                *b = _mm256_add_epi32(*b, _mm256_madd_epi16(wb, h));
            }
        }
        for (acc_r, total_r) in acc.iter().zip(total.iter_mut()) {
            for (v, a) in acc_r.iter().enumerate() {
                let lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(*a));
                let hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(*a));
                total_r[2 * v] = _mm256_add_epi64(total_r[2 * v], lo);
                total_r[2 * v + 1] = _mm256_add_epi64(total_r[2 * v + 1], hi);
            }
        }
    }
    for (total_r, out_r) in total.iter().zip(out.iter_mut()) {
        for (v, t) in total_r.iter().enumerate() {
            _mm256_storeu_si256(out_r.as_mut_ptr().add(4 * v) as *mut __m256i, *t);
        }
    }
}

/// One step of one sequence with AVX-512 VNNI, 16 rows at a time: `h` and `next` hold its
/// n codes, `x` its input as int16 pairs (`input_pairs` words), `pairs` (`hidden_pairs`
/// words) takes its hidden codes as pairs; `groups` holds W's and U's rows of pairs by
/// groups of 16, so that one `vpdpwssd` adds a broadcast pair of hidden codes times 16 rows'
/// pairs to their sums; each group's sums are finished 16 units at once.
///
/// # Safety
/// The CPU has AVX-512F and VNNI; the slices are as stated.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn step_one_avx512vnni(
    groups: &SixteenRowGroups,
    finisher: &Finisher<'_>,
    h: &[i32],
    x: &[i32],
    pairs: &mut [i32],
    next: &mut [i32],
) {
    use super::finish::{finish_16_avx512, RowConstants512};
    use super::layout::pack_pairs;
    use std::arch::x86_64::*;
    let (n, pn, pd) = (h.len(), pairs.len(), x.len());
    assert!(next.len() == n && pn == n.div_ceil(2) && groups.sixteen_rows.len() == n.div_ceil(16));
    assert!(groups.w_columns.len() == groups.sixteen_rows.len() * pn * 16);
    assert!(groups.u_columns.len() == groups.sixteen_rows.len() * pd * 16);
    pack_pairs(h, pairs);
    let load = |p: *const i32| _mm512_loadu_si512(p as *const __m512i);
    let sums = |columns: *const i32, words: &[i32]| {
        // Two accumulators, so that consecutive vpdpwssd do not wait on each other.
        let mut acc = [_mm512_setzero_si512(); 2];
        for (p, &word) in words.iter().enumerate() {
            let a = &mut acc[p % 2];
            *a = _mm512_dpwssd_epi32(*a, _mm512_set1_epi32(word), load(columns.add(16 * p)));
        }
        _mm512_add_epi32(acc[0], acc[1])
    };
    for (g, constants) in groups.sixteen_rows.iter().enumerate() {
        let sum_w = sums(groups.w_columns.as_ptr().add(g * pn * 16), pairs);
        let sum_u = sums(groups.u_columns.as_ptr().add(g * pd * 16), x);
        let row = RowConstants512::sixteen(finisher, constants);
        let codes = finish_16_avx512(&row, sum_w, sum_u);
        let left = (n - 16 * g).min(16);
        _mm512_mask_storeu_epi32(
            next.as_mut_ptr().add(16 * g),
            (1u32 << left).wrapping_sub(1) as u16,
            codes,
        );
    }
}

/// One step of every block of `LANES` sequences with the sums kept in registers: for
/// n, d <= 256 (at most `PAIRS_PER_CHUNK` pairs) a row's sums fit int32 (256 products below
/// 2^23), so two rows' 32 lanes take eight accumulators, and their rescaling, activation
/// and packing into pairs happen before the next two rows, without a round trip through
/// memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn step_in_registers_avx2(
    e: &super::BatchedEngine<'_>,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::{finish_8_avx2, RowConstants};
    use std::arch::x86_64::*;
    let (pn, pd, n) = (e.hidden_pairs, e.input_pairs, e.rec.hidden);
    assert!(h.len() >= pn * lanes && next.len() >= pn * lanes && x.len() >= pd * lanes);
    assert!(lanes.is_multiple_of(LANES) && pn <= PAIRS_PER_CHUNK && pd <= PAIRS_PER_CHUNK);
    let low_half = _mm256_set1_epi32(0xffff);
    for block in (0..lanes).step_by(LANES) {
        for q in 0..pn {
            let w_rows = e.w_pairs[2 * q * pn..(2 * q + 2) * pn].split_at(pn);
            let u_rows = e.u_pairs[2 * q * pd..(2 * q + 2) * pd].split_at(pd);
            let [u_lo, u_hi] = pair_sums_avx2(u_rows, x, lanes, block);
            let [w_lo, w_hi] = pair_sums_avx2(w_rows, h, lanes, block);
            let lo_row = RowConstants::new(&e.finisher, 2 * q);
            // An odd n pads with a zero row whose codes are never read.
            let hi_row = (2 * q + 1 < n).then(|| RowConstants::new(&e.finisher, 2 * q + 1));
            let out = next.as_mut_ptr().add(q * lanes + block);
            for v in 0..LANES / 8 {
                let lo = finish_8_avx2(&lo_row, w_lo[v], u_lo[v]);
                let hi = hi_row.as_ref().map_or(_mm256_setzero_si256(), |r| {
                    finish_8_avx2(r, w_hi[v], u_hi[v])
                });
                // `pair(lo, hi)` on 8 lanes.
                let words =
                    _mm256_or_si256(_mm256_and_si256(lo, low_half), _mm256_slli_epi32::<16>(hi));
                _mm256_storeu_si256(out.add(8 * v) as *mut __m256i, words);
            }
        }
    }
}

/// `step_in_registers_avx2` with AVX-512 VNNI: `vpdpwssd` (32 multiply-adds and the sum
/// per instruction), W's rows eight at a time (four pairs of units: sixteen independent
/// sums hide the instruction's latency, and each load of hidden pairs serves eight rows;
/// `pair_sums_avx512vnni` for the last pairs and for U), and each pair of units' 32 lanes
/// finished 16 at a time (`finish_16_avx512`) and packed into pairs there.
///
/// # Safety
/// The CPU has AVX-512F and VNNI; as `step_in_registers_avx2` otherwise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn step_in_registers_avx512vnni(
    e: &super::BatchedEngine<'_>,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::{finish_16_avx512, RowConstants512};
    use std::arch::x86_64::*;
    let (pn, pd, n) = (e.hidden_pairs, e.input_pairs, e.rec.hidden);
    assert!(h.len() >= pn * lanes && next.len() >= pn * lanes && x.len() >= pd * lanes);
    assert!(lanes.is_multiple_of(LANES) && pn <= PAIRS_PER_CHUNK && pd <= PAIRS_PER_CHUNK);
    let low_half = _mm512_set1_epi32(0xffff);
    // Pair q's two rows' sums over W (lanes 0..16 and 16..32), then its finished codes.
    let finish_pair = |q: usize, w: [[__m512i; 2]; 2], next: &mut [i32], block: usize| {
        let u_rows = e.u_pairs[2 * q * pd..(2 * q + 2) * pd].split_at(pd);
        let [u_lo, u_hi] = pair_sums_avx512vnni(u_rows, x, lanes, block);
        let lo_row = RowConstants512::new(&e.finisher, 2 * q);
        // An odd n pads with a zero row whose codes are never read.
        let hi_row = (2 * q + 1 < n).then(|| RowConstants512::new(&e.finisher, 2 * q + 1));
        let out = next.as_mut_ptr().add(q * lanes + block);
        for v in 0..LANES / 16 {
            let lo = finish_16_avx512(&lo_row, w[0][v], u_lo[v]);
            let hi = hi_row.as_ref().map_or(_mm512_setzero_si512(), |r| {
                finish_16_avx512(r, w[1][v], u_hi[v])
            });
            // `pair(lo, hi)` on 16 lanes.
            let words =
                _mm512_or_si512(_mm512_and_si512(lo, low_half), _mm512_slli_epi32::<16>(hi));
            _mm512_storeu_si512(out.add(16 * v) as *mut __m512i, words);
        }
    };
    for block in (0..lanes).step_by(LANES) {
        let mut q = 0;
        while q + 4 <= pn {
            let rows: [&[i32]; 8] =
                std::array::from_fn(|r| &e.w_pairs[(2 * q + r) * pn..(2 * q + r + 1) * pn]);
            let mut acc = [[_mm512_setzero_si512(); LANES / 16]; 8];
            for p in 0..pn {
                let base = h.as_ptr().add(p * lanes + block);
                let columns: [__m512i; LANES / 16] =
                    std::array::from_fn(|v| _mm512_loadu_si512(base.add(16 * v) as *const __m512i));
                for (a, row) in acc.iter_mut().zip(&rows) {
                    let w = _mm512_set1_epi32(*row.get_unchecked(p));
                    for (a, &c) in a.iter_mut().zip(&columns) {
                        *a = _mm512_dpwssd_epi32(*a, w, c);
                    }
                }
            }
            for k in 0..4 {
                finish_pair(q + k, [acc[2 * k], acc[2 * k + 1]], next, block);
            }
            q += 4;
        }
        for q in q..pn {
            let w_rows = e.w_pairs[2 * q * pn..(2 * q + 2) * pn].split_at(pn);
            finish_pair(
                q,
                pair_sums_avx512vnni(w_rows, h, lanes, block),
                next,
                block,
            );
        }
    }
}

//! The batched engine's kernel for models whose hidden codes fit a byte: AVX2 `vpmaddubsw`
//! multiplies unsigned bytes by signed bytes, 32 products per instruction against
//! `vpmaddwd`'s 16 on int16 pairs.
//!
//! Hidden codes are kept offset, `h'_j = h_j - lo` in `0..=R` with `R = hi - lo <= 255`,
//! the four units `4q..4q+4` of one sequence in one 32-bit word (`quads x lanes` words);
//! W's codes likewise four to a word. Then
//!
//! `sum_j w_ij h_j = sum_j w_ij h'_j + lo sum_j w_ij`                                (1)
//!
//! where the second term is a constant per row. Per sequence, `vpmaddubsw` gives two int16
//! sums of two products, each at most `2 R max|w|` in magnitude; `run` of them add exactly
//! in int16 while `2 R max|w| run <= 32767`, and `vpmaddwd` by ones then widens them to
//! int32. The kernel therefore applies when `R <= 255` (A <= 8) and `2 R max|w| <= 32767`
//! (k <= 7); the rescaling, rounding and activation are the pair kernel's
//! (`IntRecurrence::finish`), so the codes are the scalar engine's.

use super::finish::Finisher;
use super::layout::{padded_code, pairs_of, SixteenRowGroups};

/// Int16 sums may not exceed this.
const INT16_LIMIT: i64 = i16::MAX as i64;
/// The widest hidden layer the kernel takes: the int32 sums of (1) stay below 2^31
/// (`n max|w| 255 <= 8192 * 64 * 255 < 2^27`).
const MAX_HIDDEN: usize = 8192;
/// Inputs are int16 pairs summed in int32 in one pass (as the pair kernel's registers).
const MAX_INPUT_PAIRS: usize = 128;

/// The byte layout of one model: W four codes to a word, the per-row constants of (1).
pub(super) struct ByteLayout {
    /// `ceil(n / 4)`: words per sequence, and groups of four rows.
    pub quads: usize,
    /// `(4 quads) x quads` words; zero past the last row and column.
    w_quads: Vec<i32>,
    /// U's rows as int16 pairs, `(4 quads) x ceil(d / 2)`.
    u_pairs: Vec<i32>,
    input_pairs: usize,
    /// `lo sum_j w_ij`, the second term of (1).
    row_offset: Vec<i32>,
    /// Products of `vpmaddubsw` summed in int16 before widening.
    run: usize,
    /// The smallest hidden code.
    pub lo: i32,
    /// The layout for one sequence at a time, where the engine runs it
    /// ([`ByteLayout::with_row_blocks`]): `ceil(n / 16)` groups of 16 rows, W as
    /// `groups x quads x 16` words (row `16 g + l`, codes `4q..4q+4`), U as
    /// `groups x ceil(d / 2) x 16` int16 pairs.
    pub one_sequence: Option<SixteenRowGroups>,
}

/// The words `step_one_avx512vnni` takes the hidden codes of one sequence into: four bytes
/// per row of a group.
pub(super) fn hidden_words(groups: &SixteenRowGroups) -> usize {
    4 * groups.count()
}

impl ByteLayout {
    /// The layout of W's and U's codes (`n x n`, `n x d`, one byte each) with hidden codes in
    /// `lo..=hi`, or `None` when the kernel does not apply (see the module's bounds).
    pub fn new(
        w_codes: &[i8],
        u_codes: &[i8],
        n: usize,
        d: usize,
        (lo, hi): (i32, i32),
    ) -> Option<Self> {
        let range = (hi - lo) as i64;
        let w_max = w_codes
            .iter()
            .map(|&c| (c as i64).abs())
            .max()
            .unwrap_or(0)
            .max(1);
        let pair_bound = 2 * range * w_max;
        if range > 255
            || pair_bound > INT16_LIMIT
            || n > MAX_HIDDEN
            || d.div_ceil(2) > MAX_INPUT_PAIRS
        {
            return None;
        }
        let quads = n.div_ceil(4);
        // W padded with zeros past its last row and, up to whole words, its last column.
        let code = |i: usize, j: usize| -> i32 {
            if j < n {
                padded_code(w_codes, n, i, j)
            } else {
                0
            }
        };
        let mut w_quads = vec![0i32; 4 * quads * quads];
        for i in 0..4 * quads {
            for q in 0..quads {
                let bytes = [0, 1, 2, 3].map(|b| code(i, 4 * q + b) as i8 as u8);
                w_quads[i * quads + q] = i32::from_le_bytes(bytes);
            }
        }
        // Padded to whole blocks of 16 rows (`4 quads <= 16 ceil(n / 16)`) for
        // `step_one_avx512vnni`'s loads.
        let row_offset = (0..16 * n.div_ceil(16))
            .map(|i| lo * (0..n).map(|j| code(i, j)).sum::<i32>())
            .collect();
        Some(Self {
            quads,
            w_quads,
            u_pairs: pairs_of(|i, j| padded_code(u_codes, d, i, j), 4 * quads, d),
            input_pairs: d.div_ceil(2),
            row_offset,
            run: (INT16_LIMIT / pair_bound) as usize,
            lo,
            one_sequence: None,
        })
    }

    /// The layout with its groups of 16 rows too, for the kernels that run one sequence at a
    /// time.
    pub fn with_row_blocks(mut self, finisher: &Finisher<'_>) -> Self {
        // The 4 quads rows (zero past the last) in groups of 16: as many groups as
        // `ceil(n / 16)`.
        let count = (4 * self.quads).div_ceil(16);
        self.one_sequence = Some(SixteenRowGroups::new(
            finisher,
            count,
            (&self.w_quads, self.quads),
            (&self.u_pairs, self.input_pairs),
        ));
        self
    }

    /// The word of four zero hidden codes (a sequence's start).
    pub fn zero_word(&self) -> i32 {
        i32::from_le_bytes([(-self.lo) as u8; 4])
    }

    /// Unit `i`'s code in its sequence's word of units `4 (i / 4)..`.
    pub fn code(&self, word: i32, i: usize) -> i32 {
        word.to_le_bytes()[i % 4] as i32 + self.lo
    }
}

/// Sequences per block: two vectors of 8 words.
const BLOCK: usize = 16;

/// One step of every block of 16 sequences: `h` and `next` hold `quads x lanes` words, `x`
/// the input pairs (`ceil(d / 2) x lanes`). Each broadcast of a row's four codes serves 16
/// sequences and each load of 8 sequences' words four rows; the four rows' codes are
/// packed into the sequences' next words in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn step_avx2(
    layout: &ByteLayout,
    finisher: &Finisher<'_>,
    n: usize,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::finish::{finish_8_avx2, RowConstants};
    use std::arch::x86_64::*;
    let (quads, pd) = (layout.quads, layout.input_pairs);
    assert!(h.len() >= quads * lanes && next.len() >= quads * lanes && x.len() >= pd * lanes);
    assert!(lanes.is_multiple_of(BLOCK) && layout.run >= 1);
    let ones = _mm256_set1_epi16(1);
    let lo = _mm256_set1_epi32(layout.lo);
    for block in (0..lanes).step_by(BLOCK) {
        for r4 in 0..quads {
            let w_rows: [&[i32]; 4] = [0, 1, 2, 3]
                .map(|r| &layout.w_quads[(4 * r4 + r) * quads..(4 * r4 + r + 1) * quads]);
            let mut acc_w = [[_mm256_setzero_si256(); 2]; 4];
            let mut start = 0;
            while start < quads {
                let end = (start + layout.run).min(quads);
                let mut part = [[_mm256_setzero_si256(); 2]; 4];
                for q in start..end {
                    let base = h.as_ptr().add(q * lanes + block);
                    let columns = [
                        _mm256_loadu_si256(base as *const __m256i),
                        _mm256_loadu_si256(base.add(8) as *const __m256i),
                    ];
                    for (p, row) in part.iter_mut().zip(&w_rows) {
                        let w = _mm256_set1_epi32(*row.get_unchecked(q));
                        for (p, &c) in p.iter_mut().zip(&columns) {
                            *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(c, w));
                        }
                    }
                }
                for (a, p) in acc_w.iter_mut().zip(&part) {
                    for (a, &p) in a.iter_mut().zip(p) {
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, ones));
                    }
                }
                start = end;
            }
            let mut acc_u = [[_mm256_setzero_si256(); 2]; 4];
            for p in 0..pd {
                let base = x.as_ptr().add(p * lanes + block);
                let columns = [
                    _mm256_loadu_si256(base as *const __m256i),
                    _mm256_loadu_si256(base.add(8) as *const __m256i),
                ];
                for (r, a) in acc_u.iter_mut().enumerate() {
                    let u = _mm256_set1_epi32(layout.u_pairs[(4 * r4 + r) * pd + p]);
                    for (a, &c) in a.iter_mut().zip(&columns) {
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(u, c));
                    }
                }
            }
            let mut words = [_mm256_setzero_si256(); 2];
            for r in 0..4 {
                let i = 4 * r4 + r;
                if i >= n {
                    break;
                }
                let row = RowConstants::new(finisher, i);
                let offset = _mm256_set1_epi32(layout.row_offset[i]);
                let shift = _mm_cvtsi32_si128(8 * r as i32);
                for (v, word) in words.iter_mut().enumerate() {
                    let sum_w = _mm256_add_epi32(acc_w[r][v], offset);
                    let codes = finish_8_avx2(&row, sum_w, acc_u[r][v]);
                    let bytes = _mm256_sll_epi32(_mm256_sub_epi32(codes, lo), shift);
                    *word = _mm256_or_si256(*word, bytes);
                }
            }
            let out = next.as_mut_ptr().add(r4 * lanes + block);
            _mm256_storeu_si256(out as *mut __m256i, words[0]);
            _mm256_storeu_si256(out.add(8) as *mut __m256i, words[1]);
        }
    }
}

/// `step_avx2` with AVX-512 VNNI: `vpdpbusd` multiplies four unsigned hidden bytes by four
/// signed code bytes and adds the four products to an int32 lane, 64 multiply-adds per
/// instruction with no int16 sums to widen (the int32 sums of (1) are bounded as stated at
/// `MAX_HIDDEN`). One block is `LANES` = 32 sequences, two vectors of 16 words; rows go
/// eight at a time (two words of four bytes), so that sixteen independent sums hide the
/// instruction's latency and each load of hidden bytes serves eight rows; the rescaling,
/// activation and packing run 16 lanes at a time (`finish_16_avx512`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn step_avx512vnni(
    layout: &ByteLayout,
    finisher: &Finisher<'_>,
    n: usize,
    h: &[i32],
    x: &[i32],
    next: &mut [i32],
    lanes: usize,
) {
    use super::layout::LANES;
    let (quads, pd) = (layout.quads, layout.input_pairs);
    assert!(h.len() >= quads * lanes && next.len() >= quads * lanes && x.len() >= pd * lanes);
    assert!(lanes.is_multiple_of(LANES));
    for block in (0..lanes).step_by(LANES) {
        let mut r4 = 0;
        while r4 + 2 <= quads {
            vnni_rows::<8>(layout, finisher, n, (h, x), next, (lanes, block, r4));
            r4 += 2;
        }
        if r4 < quads {
            vnni_rows::<4>(layout, finisher, n, (h, x), next, (lanes, block, r4));
        }
    }
}

/// Rows `4 r4 .. 4 r4 + R` (R = 4 or 8: one or two words of four bytes) of `step_avx512vnni`
/// for the 32 sequences from `block`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn vnni_rows<const R: usize>(
    layout: &ByteLayout,
    finisher: &Finisher<'_>,
    n: usize,
    (h, x): (&[i32], &[i32]),
    next: &mut [i32],
    (lanes, block, r4): (usize, usize, usize),
) {
    use super::finish::{finish_16_avx512, RowConstants512};
    use std::arch::x86_64::*;
    let (quads, pd) = (layout.quads, layout.input_pairs);
    let load = |p: *const i32| _mm512_loadu_si512(p as *const __m512i);
    let w_rows: [&[i32]; R] =
        std::array::from_fn(|r| &layout.w_quads[(4 * r4 + r) * quads..(4 * r4 + r + 1) * quads]);
    let mut acc_w = [[_mm512_setzero_si512(); 2]; R];
    for q in 0..quads {
        let base = h.as_ptr().add(q * lanes + block);
        let columns = [load(base), load(base.add(16))];
        for (a, row) in acc_w.iter_mut().zip(&w_rows) {
            let w = _mm512_set1_epi32(*row.get_unchecked(q));
            for (a, &c) in a.iter_mut().zip(&columns) {
                *a = _mm512_dpbusd_epi32(*a, c, w);
            }
        }
    }
    let mut acc_u = [[_mm512_setzero_si512(); 2]; R];
    for p in 0..pd {
        let base = x.as_ptr().add(p * lanes + block);
        let columns = [load(base), load(base.add(16))];
        for (r, a) in acc_u.iter_mut().enumerate() {
            let u = _mm512_set1_epi32(layout.u_pairs[(4 * r4 + r) * pd + p]);
            for (a, &c) in a.iter_mut().zip(&columns) {
                *a = _mm512_add_epi32(*a, _mm512_madd_epi16(u, c));
            }
        }
    }
    let lo = _mm512_set1_epi32(layout.lo);
    for g in 0..R / 4 {
        let mut words = [_mm512_setzero_si512(); 2];
        for r in 0..4 {
            let i = 4 * (r4 + g) + r;
            if i >= n {
                break;
            }
            let row = RowConstants512::new(finisher, i);
            let offset = _mm512_set1_epi32(layout.row_offset[i]);
            let shift = _mm_cvtsi32_si128(8 * r as i32);
            for (v, word) in words.iter_mut().enumerate() {
                let sum_w = _mm512_add_epi32(acc_w[4 * g + r][v], offset);
                let codes = finish_16_avx512(&row, sum_w, acc_u[4 * g + r][v]);
                let bytes = _mm512_sll_epi32(_mm512_sub_epi32(codes, lo), shift);
                *word = _mm512_or_si512(*word, bytes);
            }
        }
        let out = next.as_mut_ptr().add((r4 + g) * lanes + block);
        _mm512_storeu_si512(out as *mut __m512i, words[0]);
        _mm512_storeu_si512(out.add(16) as *mut __m512i, words[1]);
    }
}

/// One step of one sequence with AVX-512 VNNI, 16 rows at a time: each `vpdpbusd` multiplies
/// one word of four hidden bytes, broadcast, by the codes of 16 rows in those four columns,
/// so no sum crosses lanes; 16 units are finished together. `h` and `next` hold the
/// sequence's `n` codes; `x` its input as int16 pairs (`ceil(d / 2)` words); `words`, of
/// `hidden_words` words, takes the hidden codes as bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn step_one_avx512vnni(
    layout: &ByteLayout,
    finisher: &Finisher<'_>,
    n: usize,
    h: &[i32],
    x: &[i32],
    words: &mut [i32],
    next: &mut [i32],
) {
    use super::finish::{finish_16_avx512, RowConstants512};
    use std::arch::x86_64::*;
    let (quads, pd) = (layout.quads, layout.input_pairs);
    let blocks = layout
        .one_sequence
        .as_ref()
        .expect("the layout has its groups of 16 rows");
    assert!(h.len() >= n && next.len() >= n && x.len() >= pd);
    assert!(blocks.count() * 16 >= n && 4 * quads >= n);
    assert!(words.len() == hidden_words(blocks));
    // The hidden codes as offset bytes, four to a word; past n, any byte (W's columns
    // there are zero).
    let lo = _mm512_set1_epi32(layout.lo);
    for (c, chunk) in words.chunks_mut(4).enumerate() {
        let left = n.saturating_sub(16 * c).min(16);
        let codes = _mm512_maskz_loadu_epi32(
            (1u32 << left).wrapping_sub(1) as u16,
            h.as_ptr().add(16 * c),
        );
        let bytes = _mm512_cvtepi32_epi8(_mm512_sub_epi32(codes, lo));
        _mm_storeu_si128(chunk.as_mut_ptr() as *mut __m128i, bytes);
    }
    let load = |p: *const i32| _mm512_loadu_si512(p as *const __m512i);
    for b in 0..blocks.count() {
        let w = blocks.w_columns.as_ptr().add(b * quads * 16);
        // Four accumulators, so that consecutive vpdpbusd do not wait on each other.
        let mut acc = [_mm512_setzero_si512(); 4];
        let mut q = 0;
        while q + 4 <= quads {
            for (k, a) in acc.iter_mut().enumerate() {
                let word = _mm512_set1_epi32(*words.get_unchecked(q + k));
                *a = _mm512_dpbusd_epi32(*a, word, load(w.add((q + k) * 16)));
            }
            q += 4;
        }
        for (k, q) in (q..quads).enumerate() {
            let word = _mm512_set1_epi32(*words.get_unchecked(q));
            acc[k] = _mm512_dpbusd_epi32(acc[k], word, load(w.add(q * 16)));
        }
        let sum_w = _mm512_add_epi32(
            _mm512_add_epi32(
                _mm512_add_epi32(acc[0], acc[1]),
                _mm512_add_epi32(acc[2], acc[3]),
            ),
            load(layout.row_offset.as_ptr().add(16 * b)),
        );
        let u = blocks.u_columns.as_ptr().add(b * pd * 16);
        let mut sum_u = _mm512_setzero_si512();
        for p in 0..pd {
            let pair = _mm512_set1_epi32(*x.get_unchecked(p));
            sum_u = _mm512_add_epi32(sum_u, _mm512_madd_epi16(pair, load(u.add(p * 16))));
        }
        let row = RowConstants512::sixteen(finisher, &blocks.sixteen_rows[b]);
        let codes = finish_16_avx512(&row, sum_w, sum_u);
        let left = (n - 16 * b).min(16);
        _mm512_mask_storeu_epi32(
            next.as_mut_ptr().add(16 * b),
            (1u32 << left).wrapping_sub(1) as u16,
            codes,
        );
    }
}

//! What every kernel of the batched engine shares: the lanes, and the codes as int16 pairs
//! or as groups of 16 rows side by side.

use super::finish::{Finisher, SixteenRows};

/// Sequences per block: four 8-lane AVX2 accumulators.
pub(super) const LANES: usize = 32;

/// Pairs summed in int32 before widening (2 * 128 products below 2^23 each).
pub(super) const PAIRS_PER_CHUNK: usize = 128;

/// Two int16 codes in one word, `lo` in the low half.
#[inline(always)]
pub(super) fn pair(lo: i32, hi: i32) -> i32 {
    ((lo as u16 as u32) | ((hi as u16 as u32) << 16)) as i32
}

#[inline(always)]
pub(super) fn halves(word: i32) -> (i32, i32) {
    (word as i16 as i32, (word >> 16) as i16 as i32)
}

/// Code (i, j) of a row-major matrix with `cols` columns, 0 past its last row.
pub(super) fn padded_code(codes: &[i8], cols: usize, i: usize, j: usize) -> i32 {
    codes.get(i * cols + j).map_or(0, |&c| c as i32)
}

/// Row-major rows of `per_row` words as groups of 16 rows side by side, for the kernels that
/// run one sequence at a time with one row per lane: word q of row 16 g + r at
/// `(g per_row + q) 16 + r`; rows past the last, up to `groups` groups, are zero.
pub(super) fn sixteen_row_columns(rows: &[i32], per_row: usize, groups: usize) -> Vec<i32> {
    let mut out = vec![0i32; groups * per_row * 16];
    for (i, row) in rows.chunks(per_row).enumerate() {
        for (q, &word) in row.iter().enumerate() {
            out[((i / 16) * per_row + q) * 16 + i % 16] = word;
        }
    }
    out
}

/// W's and U's rows (of words: codes, pairs or quads of codes) as groups of 16 side by side
/// (`sixteen_row_columns`: lane r of a group's vector k is row 16 g + r's word k, zero past
/// the last row), with each group's finishing constants: what the kernels that run one
/// sequence at a time, 16 units per vector, read.
pub(super) struct SixteenRowGroups {
    pub w_columns: Vec<i32>,
    pub u_columns: Vec<i32>,
    pub sixteen_rows: Vec<SixteenRows>,
}

impl SixteenRowGroups {
    /// `groups` groups of W's rows of `w_words` words and U's of `u_words`.
    pub(super) fn new(
        finisher: &Finisher<'_>,
        groups: usize,
        (w_rows, w_words): (&[i32], usize),
        (u_rows, u_words): (&[i32], usize),
    ) -> Self {
        Self {
            w_columns: sixteen_row_columns(w_rows, w_words, groups),
            u_columns: sixteen_row_columns(u_rows, u_words, groups),
            sixteen_rows: (0..groups).map(|g| finisher.sixteen_rows(16 * g)).collect(),
        }
    }

    /// The number of groups.
    pub(super) fn count(&self) -> usize {
        self.sixteen_rows.len()
    }
}

/// Codes as int16 pairs, word q `pair(codes[2q], codes[2q + 1])` (a zero pads an odd count).
pub(super) fn pack_pairs(codes: &[i32], words: &mut [i32]) {
    for (q, word) in words.iter_mut().enumerate() {
        *word = pair(codes[2 * q], codes.get(2 * q + 1).copied().unwrap_or(0));
    }
}

/// `rows x cols` codes as rows of pairs (a zero pads an odd row).
pub(super) fn pairs_of(code: impl Fn(usize, usize) -> i32, rows: usize, cols: usize) -> Vec<i32> {
    let p = cols.div_ceil(2);
    let mut out = vec![0; rows * p];
    for r in 0..rows {
        for q in 0..p {
            let hi = if 2 * q + 1 < cols {
                code(r, 2 * q + 1)
            } else {
                0
            };
            out[r * p + q] = pair(code(r, 2 * q), hi);
        }
    }
    out
}

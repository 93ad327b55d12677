//! The integer recurrence for many sequences at once, bit-exact with
//! `IntRecurrence::step` (the scalar engine).
//!
//! Hidden and input codes are kept as int16 pairs, `(H[2p], H[2p+1])` in one 32-bit word,
//! for 32 sequences side by side; W's and U's codes likewise as pairs. One AVX2 `vpmaddwd`
//! then multiplies a pair of codes of row i with the pairs of 8 sequences and adds the two
//! products: 16 multiply-adds per instruction. Products are below 2^23 in magnitude
//! (|code| <= 2^7, |H| <= 2^15), so 128 pairs (256 products) sum exactly in int32 lanes
//! (below 2^31); each such chunk is widened to int64. For n, d <= 256 (one chunk) the AVX2
//! kernel keeps two units' sums for 32 sequences in registers and rescales, activates and
//! packs them there (`pairs::step_in_registers_avx2`); the rescaling, rounding and activation are
//! the scalar engine's own (`IntRecurrence::finish`). Models whose hidden codes fit a byte
//! (A <= 8) take `engine/bytes.rs` instead: `vpmaddubsw`, 32 multiply-adds per instruction,
//! under the bounds stated there, or AVX-512 VNNI `vpdpbusd` (64 per instruction) where
//! the CPU has it; there, the others take the pair layout with `vpdpwssd` (32 multiply-adds
//! and their sum per instruction, 16 lanes per register) for n, d <= 256. A block-diagonal W (Hadamard blocks, rotation pairs)
//! takes `engine/blocks.rs`, which multiplies only W's blocks (below 8 sequences, one
//! sequence at a time with 16 units per AVX-512 vector where the CPU has it). Without AVX2 a
//! portable loop does the same arithmetic; models whose hidden codes do not fit int16
//! (ReLU with A = 16) run one sequence at a time on the scalar engine.

mod blocks;
mod bytes;
mod finish;
mod folded;
mod layout;
mod pairs;

use blocks::BlockLayout;
use bytes::ByteLayout;
use finish::Finisher;
#[cfg(target_arch = "x86_64")]
use layout::pack_pairs;
use layout::{halves, padded_code, pair, pairs_of, SixteenRowGroups, LANES, PAIRS_PER_CHUNK};
use pairs::products_portable;
#[cfg(target_arch = "x86_64")]
use pairs::{products_avx2, step_in_registers_avx2, step_in_registers_avx512vnni};
use qornn_infer::IntRecurrence;

/// Whether the CPU runs the AVX-512 VNNI byte kernel.
fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Below this many sequences a call runs them one at a time.
const SMALL_BATCH: usize = 8;

/// Which kernel runs the products (named in kebab case, `avx512-vnni-bytes`, by
/// `qornn bench --kernel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kernel {
    /// A block-diagonal W (`blocks.rs`): only W's diagonal blocks are multiplied, with
    /// AVX-512 or AVX2 where the CPU has it; a dense W takes the byte kernel's place in the
    /// order below.
    Blocks,
    /// AVX-512 VNNI `vpdpbusd` over the byte kernel's layout (`bytes.rs`), on the models
    /// `Avx2Bytes` takes, where the CPU has AVX-512 VNNI (and BW).
    Avx512VnniBytes,
    /// AVX2 `vpmaddubsw` over hidden codes as unsigned bytes (`bytes.rs`): hidden
    /// codes spanning at most 256 values (A <= 8) and `2 (hi - lo) max|w| <= 32767`
    /// (every model with k <= 7).
    Avx2Bytes,
    /// AVX-512 VNNI `vpdpwssd` over int16 pairs, the sums kept in registers, for n and d up
    /// to 256 where the CPU has AVX-512 VNNI: the models `Avx2` takes there. Below 8
    /// sequences, one at a time with 16 rows per instruction.
    Avx512VnniPairs,
    /// AVX2 `vpmaddwd` over int16 pairs.
    Avx2,
    /// The same pair layout in portable Rust.
    Portable,
    /// One sequence at a time (`IntRecurrence::step_unpacked`): hidden codes wider than
    /// int16.
    PerSequence,
}

pub struct BatchedEngine<'a> {
    rec: IntRecurrence<'a>,
    finisher: Finisher<'a>,
    kernel: Kernel,
    /// Rows of W (n) and U (n), each as pairs of codes.
    w_pairs: Vec<i32>,
    u_pairs: Vec<i32>,
    /// `ceil(n / 2)`, `ceil(d / 2)`.
    hidden_pairs: usize,
    input_pairs: usize,
    /// The codes one byte each, for one sequence at a time.
    w_codes: Vec<i8>,
    u_codes: Vec<i8>,
    /// The byte kernels: W and U in their layout.
    bytes: Option<ByteLayout>,
    /// `Kernel::Blocks`: W's blocks and U.
    blocks: Option<BlockLayout>,
    /// `Kernel::Avx512VnniPairs`: W's and U's pairs by groups of 16 rows, for one sequence
    /// at a time.
    pair_groups: Option<SixteenRowGroups>,
}

/// The hidden codes of a batch of sequences.
pub struct BatchedState {
    batch: usize,
    /// One sequence at a time: `Kernel::PerSequence`, or fewer sequences than
    /// `SMALL_BATCH`, for which a block of 32 lanes would be mostly padding.
    per_sequence: bool,
    /// `batch` rounded up to whole blocks of `LANES`.
    lanes: usize,
    /// Pair kernels: `hidden_pairs x lanes` words; the byte kernel: `ceil(n / 4) x lanes`
    /// words; per sequence: `batch x n` codes.
    h: Vec<i32>,
    next: Vec<i32>,
    /// Pair kernels: the input codes, `input_pairs x lanes` words.
    x: Vec<i32>,
}

impl<'a> BatchedEngine<'a> {
    /// The engine for a validated recurrence, with the fastest kernel this CPU runs for it.
    pub fn new(rec: IntRecurrence<'a>) -> Self {
        Self::with_kernel(rec, Kernel::Blocks)
    }

    /// The fastest kernel without the byte layout: AVX2 where the CPU has it, unless the
    /// hidden codes need more than 16 bits.
    fn pair_kernel(rec: &IntRecurrence<'_>) -> Kernel {
        let (lo, hi) = rec.hidden_range();
        let input_fits = rec.act_bits <= 16;
        if lo < i16::MIN as i32 || hi > i16::MAX as i32 || !input_fits {
            return Kernel::PerSequence;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    /// The engine with a given kernel (tests and `qornn bench --kernel` compare them). A
    /// kernel the CPU or the model does not allow falls back: the block kernel (a dense W,
    /// or sums past its bound) to the byte kernel (VNNI where the CPU has it), VNNI to AVX2,
    /// the byte kernels to the pair kernel, AVX2 to the portable loop, and any of them to
    /// one sequence at a time for hidden codes wider than int16.
    pub fn with_kernel(rec: IntRecurrence<'a>, kernel: Kernel) -> Self {
        let (n, d) = (rec.hidden, rec.input);
        let (mut w_codes, mut u_codes) = (vec![0i8; n * n], vec![0i8; n * d]);
        rec.unpack(&mut w_codes, &mut u_codes);
        let pair_kernel = Self::pair_kernel(&rec);
        let blocks = (kernel == Kernel::Blocks && pair_kernel != Kernel::PerSequence)
            .then(|| BlockLayout::new(&rec, &w_codes, &u_codes))
            .flatten();
        // The VNNI pair kernel keeps a row's sums in int32 registers: n, d <= 256.
        let vnni_pairs = if has_avx512_vnni() && n.max(d) <= 2 * PAIRS_PER_CHUNK {
            Kernel::Avx512VnniPairs
        } else {
            Kernel::Avx2
        };
        let kernel = match (kernel, pair_kernel, &blocks) {
            (_, _, Some(_)) => Kernel::Blocks,
            (_, Kernel::PerSequence, _) => Kernel::PerSequence,
            (
                Kernel::Avx2
                | Kernel::Avx2Bytes
                | Kernel::Avx512VnniBytes
                | Kernel::Avx512VnniPairs
                | Kernel::Blocks,
                Kernel::Portable,
                _,
            ) => Kernel::Portable,
            (Kernel::Avx512VnniPairs, _, _) => vnni_pairs,
            (Kernel::Blocks | Kernel::Avx512VnniBytes, _, None) if has_avx512_vnni() => {
                Kernel::Avx512VnniBytes
            }
            (Kernel::Blocks | Kernel::Avx512VnniBytes, _, None) => Kernel::Avx2Bytes,
            (k, _, _) => k,
        };
        let (lo, hi) = rec.hidden_range();
        let finisher = Finisher::new(&rec, &w_codes, &u_codes);
        let blocks = blocks.map(|layout| {
            layout
                .with_sixteen_row_groups(&finisher)
                .with_folded_scales(&finisher)
        });
        let bytes = matches!(kernel, Kernel::Avx2Bytes | Kernel::Avx512VnniBytes)
            .then(|| ByteLayout::new(&w_codes, &u_codes, n, d, (lo, hi)))
            .flatten()
            .map(|layout| match kernel {
                Kernel::Avx512VnniBytes => layout.with_row_blocks(&finisher),
                _ => layout,
            });
        let kernel = match (kernel, &bytes) {
            (Kernel::Avx512VnniBytes, None) => vnni_pairs,
            (Kernel::Avx2Bytes, None) => Kernel::Avx2,
            (k, _) => k,
        };
        // Rows come in twos (units 2q and 2q+1 share a pass); a zero row pads an odd n. The
        // byte kernel keeps W and U in its own layout and needs no pairs.
        let rows = n.div_ceil(2) * 2;
        let (w_pairs, u_pairs) = if bytes.is_some() || blocks.is_some() {
            (Vec::new(), Vec::new())
        } else {
            (
                pairs_of(|i, j| padded_code(&w_codes, n, i, j), rows, n),
                pairs_of(|i, j| padded_code(&u_codes, d, i, j), rows, d),
            )
        };
        let pair_groups = (kernel == Kernel::Avx512VnniPairs).then(|| {
            // The rows of pairs past n (an odd n's padding row) are zero.
            let (hidden_pairs, input_pairs) = (n.div_ceil(2), d.div_ceil(2));
            SixteenRowGroups::new(
                &finisher,
                n.div_ceil(16),
                (&w_pairs, hidden_pairs),
                (&u_pairs, input_pairs),
            )
        });
        Self {
            finisher,
            rec,
            kernel,
            pair_groups,
            w_pairs,
            u_pairs,
            hidden_pairs: n.div_ceil(2),
            input_pairs: d.div_ceil(2),
            w_codes,
            u_codes,
            bytes,
            blocks,
        }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Whether the vector kernels rescale, round and activate in int32 lanes (the model's
    /// every intermediate fits there) rather than int64.
    pub fn finishes_in_int32(&self) -> bool {
        self.finisher.fits_int32()
    }

    /// A zero state for `batch` sequences.
    pub fn state(&self, batch: usize) -> BatchedState {
        let lanes = batch.div_ceil(LANES) * LANES;
        let per_sequence = self.kernel == Kernel::PerSequence || batch < SMALL_BATCH;
        let (n, d) = (self.rec.hidden, self.rec.input);
        let (h_len, x_len, zero) = match &self.bytes {
            // The VNNI kernel's input pairs and hidden bytes for one sequence.
            Some(ByteLayout {
                one_sequence: Some(blocks),
                ..
            }) if per_sequence => (batch * n, self.input_pairs + bytes::hidden_words(blocks), 0),
            // The VNNI pair kernel's input and hidden pairs for one sequence.
            _ if per_sequence && self.pair_groups.is_some() => {
                (batch * n, self.input_pairs + self.hidden_pairs, 0)
            }
            _ if per_sequence => (batch * n, 0, 0),
            _ if self.blocks.is_some() => (n * lanes, d * lanes, 0),
            Some(bytes) => (
                bytes.quads * lanes,
                self.input_pairs * lanes,
                bytes.zero_word(),
            ),
            None => (self.hidden_pairs * lanes, self.input_pairs * lanes, 0),
        };
        BatchedState {
            batch,
            per_sequence,
            lanes,
            h: vec![zero; h_len],
            next: vec![zero; h_len],
            x: vec![0; x_len],
        }
    }

    /// Sequence `b`'s hidden codes.
    pub fn hidden(&self, state: &BatchedState, b: usize, out: &mut [i32]) {
        let n = self.rec.hidden;
        if state.per_sequence {
            out[..n].copy_from_slice(&state.h[b * n..(b + 1) * n]);
            return;
        }
        if self.blocks.is_some() {
            for (i, o) in out.iter_mut().enumerate().take(n) {
                *o = state.h[i * state.lanes + b];
            }
            return;
        }
        if let Some(bytes) = &self.bytes {
            for (i, o) in out.iter_mut().enumerate().take(n) {
                *o = bytes.code(state.h[(i / 4) * state.lanes + b], i);
            }
            return;
        }
        for (i, o) in out.iter_mut().enumerate().take(n) {
            let (lo, hi) = halves(state.h[(i / 2) * state.lanes + b]);
            *o = if i % 2 == 0 { lo } else { hi };
        }
    }

    /// One step of every sequence: `x_codes` holds `batch x input` input codes, each within
    /// A bits (`-2^(A-1) ..= 2^(A-1) - 1`, as `QuantizedRecurrence::quantize_input` clamps
    /// them): the kernels' int32 bounds assume it.
    pub fn step(&self, state: &mut BatchedState, x_codes: &[i32]) {
        let (n, d) = (self.rec.hidden, self.rec.input);
        assert_eq!(x_codes.len(), state.batch * d, "input codes: batch x input");
        let x_max = 1i32 << (self.rec.act_bits - 1);
        debug_assert!(
            x_codes.iter().all(|c| (-x_max..x_max).contains(c)),
            "input codes within A bits"
        );
        // The VNNI kernels' groups of 16 rows run a small batch one sequence at a time, the
        // input as pairs in `state.x`, then the hidden codes' scratch (bytes or pairs).
        #[cfg(target_arch = "x86_64")]
        let byte_rows = self.bytes.as_ref().filter(|b| b.one_sequence.is_some());
        #[cfg(target_arch = "x86_64")]
        if state.per_sequence && (byte_rows.is_some() || self.pair_groups.is_some()) {
            let (x_pairs, scratch) = state.x.split_at_mut(self.input_pairs);
            let f = &self.finisher;
            for b in 0..state.batch {
                pack_pairs(&x_codes[b * d..(b + 1) * d], x_pairs);
                let (h, next) = (
                    &state.h[b * n..(b + 1) * n],
                    &mut state.next[b * n..(b + 1) * n],
                );
                // SAFETY: the byte and pair groups of 16 rows are built only for
                // `Kernel::Avx512VnniBytes` and `Kernel::Avx512VnniPairs`, chosen only on a
                // CPU with AVX-512 VNNI (and BW); `state` sized `x_pairs` and `scratch` for
                // the one built.
                unsafe {
                    if let Some(bytes) = byte_rows {
                        bytes::step_one_avx512vnni(bytes, f, n, h, x_pairs, scratch, next);
                    } else if let Some(groups) = &self.pair_groups {
                        pairs::step_one_avx512vnni(groups, f, h, x_pairs, scratch, next);
                    }
                }
            }
            std::mem::swap(&mut state.h, &mut state.next);
            return;
        }
        if state.per_sequence {
            for b in 0..state.batch {
                let (h, x) = (&state.h[b * n..(b + 1) * n], &x_codes[b * d..(b + 1) * d]);
                if let Some(blocks) = &self.blocks {
                    let next = &mut state.next[b * n..(b + 1) * n];
                    #[cfg(target_arch = "x86_64")]
                    if blocks.has_sixteen_row_groups()
                        && std::arch::is_x86_feature_detected!("avx512f")
                    {
                        // SAFETY: the CPU has AVX-512F and the layout its groups of 16
                        // rows; `h`, `next` hold n codes, `x` d.
                        unsafe { blocks::step_one_avx512(blocks, &self.finisher, h, x, next) };
                        continue;
                    }
                    blocks.step_one(&self.finisher, h, x, next);
                    continue;
                }
                scalar_step(
                    &self.rec,
                    &self.w_codes,
                    &self.u_codes,
                    &state.h[b * n..(b + 1) * n],
                    &x_codes[b * d..(b + 1) * d],
                    &mut state.next[b * n..(b + 1) * n],
                );
            }
            std::mem::swap(&mut state.h, &mut state.next);
            return;
        }
        let lanes = state.lanes;
        if let Some(blocks) = &self.blocks {
            for b in 0..state.batch {
                for j in 0..d {
                    state.x[j * lanes + b] = x_codes[b * d + j];
                }
            }
            let (h, x, next) = (&state.h, &state.x, &mut state.next);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F; the state holds `n x lanes` and `d x lanes`
                // codes, `lanes` a multiple of `LANES`.
                unsafe { blocks::step_avx512(blocks, &self.finisher, n, h, x, next, lanes) };
                std::mem::swap(&mut state.h, &mut state.next);
                return;
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2; the state holds `n x lanes` and `d x lanes`
                // codes, `lanes` a multiple of `LANES`.
                unsafe { blocks::step_avx2(blocks, &self.finisher, n, h, x, next, lanes) };
                std::mem::swap(&mut state.h, &mut state.next);
                return;
            }
            blocks::step_portable(blocks, &self.finisher, n, h, x, next, lanes);
            std::mem::swap(&mut state.h, &mut state.next);
            return;
        }
        for b in 0..state.batch {
            for q in 0..self.input_pairs {
                let hi = if 2 * q + 1 < d {
                    x_codes[b * d + 2 * q + 1]
                } else {
                    0
                };
                state.x[q * lanes + b] = pair(x_codes[b * d + 2 * q], hi);
            }
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(bytes) = &self.bytes {
            let (h, x, next) = (&state.h, &state.x, &mut state.next);
            // SAFETY: the byte kernels (the only ones with a byte layout) are chosen only on
            // a CPU with AVX2, `Kernel::Avx512VnniBytes` only on one with AVX-512 VNNI and
            // BW; the state holds `quads x lanes` and `input_pairs x lanes` words, `lanes`
            // a multiple of `LANES`.
            unsafe {
                if self.kernel == Kernel::Avx512VnniBytes {
                    bytes::step_avx512vnni(bytes, &self.finisher, n, h, x, next, lanes);
                } else {
                    bytes::step_avx2(bytes, &self.finisher, n, h, x, next, lanes);
                }
            }
            std::mem::swap(&mut state.h, &mut state.next);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx512VnniPairs {
            // SAFETY: `Kernel::Avx512VnniPairs` is chosen only on a CPU with AVX-512 VNNI
            // and only for n, d <= 256; the state holds `hidden_pairs x lanes` and
            // `input_pairs x lanes` words, `lanes` a multiple of `LANES`.
            unsafe {
                step_in_registers_avx512vnni(self, &state.h, &state.x, &mut state.next, lanes)
            };
            std::mem::swap(&mut state.h, &mut state.next);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx2
            && self.hidden_pairs <= PAIRS_PER_CHUNK
            && self.input_pairs <= PAIRS_PER_CHUNK
        {
            // SAFETY: `Kernel::Avx2` is chosen only on a CPU with AVX2; the state holds
            // `hidden_pairs x lanes` and `input_pairs x lanes` words, `lanes` a multiple
            // of `LANES`.
            unsafe { step_in_registers_avx2(self, &state.h, &state.x, &mut state.next, lanes) };
            std::mem::swap(&mut state.h, &mut state.next);
            return;
        }
        let (mut acc_w, mut acc_u) = ([[0i64; LANES]; 2], [[0i64; LANES]; 2]);
        for block in (0..lanes).step_by(LANES) {
            for q in 0..self.hidden_pairs {
                let (pn, pd) = (self.hidden_pairs, self.input_pairs);
                let w_rows = &self.w_pairs[2 * q * pn..(2 * q + 2) * pn];
                let u_rows = &self.u_pairs[2 * q * pd..(2 * q + 2) * pd];
                self.products(w_rows.split_at(pn), &state.h, lanes, block, &mut acc_w);
                self.products(u_rows.split_at(pd), &state.x, lanes, block, &mut acc_u);
                let mut codes = [[0i32; LANES]; 2];
                for (half, codes) in codes.iter_mut().enumerate() {
                    let i = 2 * q + half;
                    if i < n {
                        self.finish_lanes(i, &acc_w[half], &acc_u[half], codes);
                    }
                }
                let row = &mut state.next[q * lanes + block..q * lanes + block + LANES];
                for ((word, &lo), &hi) in row.iter_mut().zip(&codes[0]).zip(&codes[1]) {
                    *word = pair(lo, hi);
                }
            }
        }
        std::mem::swap(&mut state.h, &mut state.next);
    }

    /// Unit i's codes for 32 lanes from their sums.
    #[inline(always)]
    fn finish_lanes(
        &self,
        i: usize,
        acc_w: &[i64; LANES],
        acc_u: &[i64; LANES],
        codes: &mut [i32; LANES],
    ) {
        for ((code, &w), &u) in codes.iter_mut().zip(acc_w).zip(acc_u) {
            *code = self.finisher.finish(i, w, u);
        }
    }

    /// `out[r][l] = sum_p rows.r[p] . pairs[p][block + l]` (pairs of products) for two rows
    /// and 32 lanes: each load of the lanes' pairs serves both rows.
    #[inline(always)]
    fn products(
        &self,
        rows: (&[i32], &[i32]),
        pairs: &[i32],
        lanes: usize,
        block: usize,
        out: &mut [[i64; LANES]; 2],
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx2 {
            // SAFETY: `Kernel::Avx2` is chosen only on a CPU with AVX2; the slices hold
            // `rows.0.len()` rows of `lanes` words and `block + LANES <= lanes`.
            unsafe { products_avx2(rows, pairs, lanes, block, out) };
            return;
        }
        products_portable(rows, pairs, lanes, block, out);
    }
}

/// The scalar engine's `step_unpacked` (one sequence), compiled for AVX2 where the CPU has
/// it: SSE2, the x86-64 baseline, has no 32-bit vector multiply, so its dot products would
/// run one element at a time. The arithmetic, and so the result, is the same.
pub fn scalar_step(
    rec: &IntRecurrence<'_>,
    w_codes: &[i8],
    u_codes: &[i8],
    h: &[i32],
    x: &[i32],
    out: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { scalar_step_avx2(rec, w_codes, u_codes, h, x, out) };
    }
    rec.step_unpacked(w_codes, u_codes, h, x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scalar_step_avx2(
    rec: &IntRecurrence<'_>,
    w_codes: &[i8],
    u_codes: &[i8],
    h: &[i32],
    x: &[i32],
    out: &mut [i32],
) {
    rec.step_unpacked(w_codes, u_codes, h, x, out)
}

#[cfg(test)]
mod tests;

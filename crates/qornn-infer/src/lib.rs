//! Integer-only inference of a quantized orthogonal RNN: `no_std`, no allocation, no
//! dependencies. Weights are k-bit codes with a per-tensor step `M 2^-S` (an integer
//! mantissa and a shift), activations are A-bit codes with power-of-two scales `2^-f`.
//! A weight step may also be one per row, `M_i 2^-S` (a mantissa per row, the shift
//! shared): per-row quantizers and block rotations, whose 2 x 2 blocks each have their own
//! step. One step of the recurrence, for one sequence, is integer multiply-adds into
//! 64-bit accumulators, shifts, saturation and an integer ReLU or modReLU:
//!
//! ```text
//! num_i = sum_j W_ij H_j M_w,i 2^(S - S_w) + sum_j U_ij X_j M_u,i 2^(S + f_h - S_u - f_x) + B_i
//! Z_i   = (num_i + 2^(S - 1)) >> S                        (round half up)
//! H'_i  = clamp(act(Z_i), range(A))
//! ```
//!
//! so that `h = H 2^-f_h` follows `h' = act(q(W) h + q(U) x + b)` with every product and
//! sum exact. Overflow bound: with k <= 8, A <= 16, a 12-bit mantissa and n, d <= 2^12
//! (checked by `validate`), an accumulator `sum_j W_ij H_j` is below 2^(12 + 7 + 16) =
//! 2^35 in magnitude, its product with the mantissa below 2^47, and after its left shift
//! (`S - S_w` or `S + f_h - S_u - f_x`, at most `MAX_ALIGN` = 14) below 2^61: the two
//! terms and the bias (`|B| < 2^61`, checked) stay inside `i64`. Every premise of this
//! bound (bit widths, sizes, mantissas of at most 12 bits, shifts, bias) is checked by
//! `validate`, so a model it accepts cannot overflow, whatever file it came from. Block
//! rotations' W may have 16-bit mantissas: its sums are below 2^24, so the products stay
//! below 2^54.
#![no_std]

pub mod format;

/// The hidden nonlinearity, in integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntActivation {
    /// `max(Z, 0)`; hidden codes are unsigned, `0 ..= 2^A - 1`.
    Relu,
    /// `sign(Z) max(|Z| + BM, 0)`; hidden codes are signed, `-2^(A-1) ..= 2^(A-1) - 1`.
    Modrelu,
}

/// A matrix of k-bit two's-complement codes (k = 2..=16), row-major, packed
/// little-endian (code `i` occupies bits `i k .. i k + k` of the byte string), and its
/// step `mantissa 2^-shift`, or one step per row `M_i 2^-shift`.
#[derive(Clone, Copy, Debug)]
pub struct IntMatrix<'a> {
    pub rows: usize,
    pub cols: usize,
    pub bits: u32,
    pub packed: &'a [u8],
    pub mantissa: i32,
    pub shift: u32,
    /// Empty: one step for the whole matrix (`mantissa`). Else `2 rows` bytes, row i's
    /// mantissa `M_i` as a little-endian u16 (bytes, so that no alignment is needed), and
    /// `mantissa` is unused.
    pub row_mantissas: &'a [u8],
}

impl IntMatrix<'_> {
    /// Bytes that `rows x cols` codes of `bits` bits occupy.
    pub const fn packed_len(rows: usize, cols: usize, bits: u32) -> usize {
        (rows * cols * bits as usize).div_ceil(8)
    }

    /// The mantissa of row `row`'s step.
    #[inline(always)]
    pub fn mantissa_of(&self, row: usize) -> i32 {
        if self.row_mantissas.is_empty() {
            self.mantissa
        } else {
            u16::from_le_bytes([self.row_mantissas[2 * row], self.row_mantissas[2 * row + 1]])
                as i32
        }
    }

    /// Whether every step mantissa is in `1..=max`.
    fn mantissas_within(&self, max: i32) -> bool {
        (0..self.rows).all(|i| (1..=max).contains(&self.mantissa_of(i)))
    }

    /// Code `index` (row-major), sign-extended.
    #[inline(always)]
    pub fn code(&self, index: usize) -> i32 {
        let bit = index * self.bits as usize;
        let (byte, offset) = (bit / 8, bit % 8);
        // A code of up to 16 bits spans at most three bytes.
        let mut word = 0u32;
        for k in 0..(offset + self.bits as usize).div_ceil(8) {
            word |= (self.packed[byte + k] as u32) << (8 * k);
        }
        let raw = (word >> offset) & ((1 << self.bits) - 1);
        // Sign-extend the k-bit two's-complement value.
        ((raw << (32 - self.bits)) as i32) >> (32 - self.bits)
    }
}

/// Packs k-bit codes (k = 2..=16, each in `-2^(k-1) ..= 2^(k-1) - 1`) into `out`
/// (`IntMatrix::packed_len` bytes, zeroed by the caller).
pub fn pack_codes(codes: impl Iterator<Item = i32>, bits: u32, out: &mut [u8]) {
    for (index, code) in codes.enumerate() {
        let raw = ((code as u32) & ((1 << bits) - 1)) << ((index * bits as usize) % 8);
        let byte = index * bits as usize / 8;
        for k in 0..((index * bits as usize) % 8 + bits as usize).div_ceil(8) {
            out[byte + k] |= (raw >> (8 * k)) as u8;
        }
    }
}

/// Why a model was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A slice's length disagrees with the sizes (which slice, expected, found).
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A shift or bit width outside what the overflow bound covers.
    Range { what: &'static str },
}

/// The recurrence `h' = act(W h + U x + b)` in integers.
#[derive(Clone, Copy, Debug)]
pub struct IntRecurrence<'a> {
    pub hidden: usize,
    pub input: usize,
    pub w: IntMatrix<'a>,
    pub u: IntMatrix<'a>,
    /// `b` in units of `2^-(S + f_h)`, one per unit.
    pub bias: &'a [i64],
    /// modReLU: `bm` in units of `2^-f_h` (empty for ReLU).
    pub bias_mod: &'a [i32],
    pub activation: IntActivation,
    /// A, the activation bits.
    pub act_bits: u32,
    /// `f_h`, `f_x`: hidden and input codes are `h 2^f_h`, `x 2^f_x`.
    pub hidden_frac: i32,
    pub input_frac: i32,
    /// S, the accumulator's extra fraction bits.
    pub shift: u32,
    /// 0: `w` holds W's k-bit codes. m > 0: W is a Hadamard recurrence,
    /// `W_ij = s_i (I ⊗ H_m)_ij` with its step `1 / sqrt(m)` in `w`'s mantissa and shift, and
    /// `w.packed` holds the `n` signs as bits (bit i set: `s_i = -1`), `ceil(n / 8)` bytes.
    /// Its step is multiplier-free: `sum_j W_ij H_j` is a sum of `±H_j` over i's block.
    pub hadamard_block: u32,
    /// W is block rotations, `W = R_0 ⊕ R_1 ⊕ …` with `R_p = [[a_p, -b_p], [b_p, a_p]]`
    /// times its rows' step: `w.packed` holds the `n` codes `a_0, b_0, a_1, b_1, …`
    /// (`packed_len(1, n, k)` bytes), 4 multiply-adds per pair of units. `n` is even and
    /// `hadamard_block` 0.
    pub rotations: bool,
}

/// The entry `(i, j)` of `I ⊗ H_m` (0 or ±1; `H_m[a][b] = (-1)^popcount(a & b)`).
#[inline(always)]
pub fn hadamard_entry(i: usize, j: usize, block: usize) -> i32 {
    if i / block != j / block {
        0
    } else if ((i % block) & (j % block)).count_ones().is_multiple_of(2) {
        1
    } else {
        -1
    }
}

impl<'a> IntRecurrence<'a> {
    /// Largest left shift that aligns a product to the accumulator's unit.
    pub const MAX_ALIGN: u32 = 14;
    /// Largest rounding shift S, and largest weight step shift `S_w`, `S_u`, `S_v`.
    pub const MAX_SHIFT: u32 = 62;
    /// Largest `|f_h|`, `|f_x|`: every sum of shifts and fractions stays far inside `i32`
    /// (the C library computes them in `int32_t` fields).
    pub const MAX_FRAC: i32 = 62;
    /// Largest weight step mantissa (12 bits, `dyadic` rounds up to 2^12 at most).
    pub const MAX_MANTISSA: i32 = 1 << 12;
    /// Largest step mantissa of block rotations' W (16 bits): a rotation's sum
    /// `a h_2p - b h_2p+1` is below 2^(k + A) <= 2^24, its product with the mantissa below
    /// 2^40 and after the left shift below 2^54, inside the bound of the module's header.
    pub const MAX_ROTATION_MANTISSA: i32 = u16::MAX as i32;
    /// Bound on `|B|`: with both product terms below 2^61 the sum stays below 2^63.
    pub const BIAS_LIMIT: u64 = 1 << 61;

    /// Checks every length and range.
    pub fn validate(&self) -> Result<(), Error> {
        let (n, d) = (self.hidden, self.input);
        let check = |what, expected, found| {
            if expected == found {
                Ok(())
            } else {
                Err(Error::Length {
                    what,
                    expected,
                    found,
                })
            }
        };
        if !(2..=8).contains(&self.w.bits) || !(2..=8).contains(&self.u.bits) {
            return Err(Error::Range {
                what: "weight bits",
            });
        }
        let m = self.hadamard_block as usize;
        if m > 0 && (!m.is_power_of_two() || m < 2 || n % m != 0) {
            return Err(Error::Range {
                what: "Hadamard block size",
            });
        }
        if self.rotations && (m > 0 || n % 2 != 0) {
            return Err(Error::Range {
                what: "rotations need an even hidden size and no Hadamard block",
            });
        }
        let w_len = if m > 0 {
            n.div_ceil(8)
        } else if self.rotations {
            IntMatrix::packed_len(1, n, self.w.bits)
        } else {
            IntMatrix::packed_len(n, n, self.w.bits)
        };
        check("w codes", w_len, self.w.packed.len())?;
        // -b of a rotation must be a code too (and fit the unpacked bytes): no -2^(k-1).
        if self.rotations && (0..n).any(|j| self.w.code(j) == -(1 << (self.w.bits - 1))) {
            return Err(Error::Range {
                what: "a rotation code of -2^(k-1), whose negation is not a code",
            });
        }
        for (what, matrix) in [("w row mantissas", &self.w), ("u row mantissas", &self.u)] {
            if !matrix.row_mantissas.is_empty() {
                check(what, 2 * n, matrix.row_mantissas.len())?;
            }
        }
        check(
            "u codes",
            IntMatrix::packed_len(n, d, self.u.bits),
            self.u.packed.len(),
        )?;
        check("w rows", n, self.w.rows)?;
        check("u cols", d, self.u.cols)?;
        check("bias", n, self.bias.len())?;
        if self.activation == IntActivation::Modrelu {
            check("bias_mod", n, self.bias_mod.len())?;
        }
        if n > 1 << 12 || d > 1 << 12 {
            return Err(Error::Range {
                what: "hidden or input size above 4096",
            });
        }
        if !(2..=16).contains(&self.act_bits) {
            return Err(Error::Range { what: "act_bits" });
        }
        let frac_ok = |f: i32| (-Self::MAX_FRAC..=Self::MAX_FRAC).contains(&f);
        if !frac_ok(self.hidden_frac) || !frac_ok(self.input_frac) {
            return Err(Error::Range {
                what: "fraction bits f_h or f_x outside -62..=62",
            });
        }
        let shifts = [self.shift, self.w.shift, self.u.shift];
        if shifts.iter().any(|&s| s > Self::MAX_SHIFT)
            || self.w_shift().is_none()
            || self.u_shift().is_none()
        {
            return Err(Error::Range { what: "shift" });
        }
        let w_max = if self.rotations {
            Self::MAX_ROTATION_MANTISSA
        } else {
            Self::MAX_MANTISSA
        };
        if !self.w.mantissas_within(w_max) || !self.u.mantissas_within(Self::MAX_MANTISSA) {
            return Err(Error::Range {
                what: "weight step mantissa outside 1..=4096 (W of rotations: 1..=65535)",
            });
        }
        if self
            .bias
            .iter()
            .any(|b| b.unsigned_abs() >= Self::BIAS_LIMIT)
        {
            return Err(Error::Range {
                what: "bias of 2^61 or more",
            });
        }
        Ok(())
    }

    /// `S - S_w`, the left shift of the recurrent products (`None` outside `0..=14`, which
    /// `validate` refuses).
    pub fn w_shift(&self) -> Option<u32> {
        let s = self.shift as i64 - self.w.shift as i64;
        (0..=Self::MAX_ALIGN as i64)
            .contains(&s)
            .then_some(s as u32)
    }

    /// `S + f_h - S_u - f_x`, the left shift of the input products (`None` outside
    /// `0..=14`, which `validate` refuses).
    pub fn u_shift(&self) -> Option<u32> {
        let s = self.shift as i64 + self.hidden_frac as i64
            - self.u.shift as i64
            - self.input_frac as i64;
        (0..=Self::MAX_ALIGN as i64)
            .contains(&s)
            .then_some(s as u32)
    }

    /// The size of W's diagonal blocks, outside which W is zero: a Hadamard recurrence's
    /// m, 2 for block rotations, n for a dense W.
    pub fn w_block(&self) -> usize {
        match self.hadamard_block as usize {
            0 if self.rotations => 2,
            0 => self.hidden,
            m => m,
        }
    }

    /// The range of hidden codes.
    pub fn hidden_range(&self) -> (i32, i32) {
        match self.activation {
            IntActivation::Relu => (0, (1 << self.act_bits) - 1),
            IntActivation::Modrelu => (-(1 << (self.act_bits - 1)), (1 << (self.act_bits - 1)) - 1),
        }
    }

    /// One step for one sequence: `h` and `x` in, `out` the next hidden codes.
    /// Call `validate` once first; lengths are then `hidden`, `input`, `hidden`.
    /// Reads the packed codes directly (no memory beyond the model's bytes).
    pub fn step(&self, h: &[i32], x: &[i32], out: &mut [i32]) {
        let (n, d) = (self.hidden, self.input);
        let m = self.hadamard_block as usize;
        for (i, out_i) in out.iter_mut().enumerate().take(n) {
            // m = 0 (a dense W) has no block: checked_div gives None.
            let acc_w: i64 = if self.rotations {
                self.rotation_sum(i, h)
            } else if let Some(block_index) = i.checked_div(m) {
                // Additions and subtractions only: s_i sum_j (I ⊗ H_m)_ij H_j.
                let start = block_index * m;
                let sum: i64 = (start..start + m)
                    .map(|j| {
                        if hadamard_entry(i, j, m) > 0 {
                            h[j] as i64
                        } else {
                            -(h[j] as i64)
                        }
                    })
                    .sum();
                if self.hadamard_sign_negative(i) {
                    -sum
                } else {
                    sum
                }
            } else {
                h.iter()
                    .enumerate()
                    .map(|(j, &v)| self.w.code(i * n + j) as i64 * v as i64)
                    .sum()
            };
            let acc_u: i64 = x
                .iter()
                .enumerate()
                .map(|(j, &v)| self.u.code(i * d + j) as i64 * v as i64)
                .sum();
            *out_i = self.finish(i, acc_w, acc_u);
        }
    }

    /// Writes the codes of `W` and `U`, one byte each, into `w_codes: (hidden * hidden)`
    /// and `u_codes: (hidden * input)`, for [`IntRecurrence::step_unpacked`].
    pub fn unpack(&self, w_codes: &mut [i8], u_codes: &mut [i8]) {
        for (k, c) in w_codes.iter_mut().enumerate() {
            *c = self.w_code(k / self.hidden, k % self.hidden) as i8;
        }
        for (i, c) in u_codes.iter_mut().enumerate() {
            *c = self.u.code(i) as i8;
        }
    }

    /// [`IntRecurrence::step`] on codes unpacked once by [`IntRecurrence::unpack`] (a byte
    /// per weight instead of k bits): the same result, several times faster.
    #[inline(always)]
    pub fn step_unpacked(
        &self,
        w_codes: &[i8],
        u_codes: &[i8],
        h: &[i32],
        x: &[i32],
        out: &mut [i32],
    ) {
        let (n, d) = (self.hidden, self.input);
        for (i, out_i) in out.iter_mut().enumerate().take(n) {
            let acc_w = dot_codes(&w_codes[i * n..(i + 1) * n], h);
            let acc_u = dot_codes(&u_codes[i * d..(i + 1) * d], x);
            *out_i = self.finish(i, acc_w, acc_u);
        }
    }

    /// Row `i` of block rotations times `h`: `a h_2p - b h_2p+1` (i = 2p) or
    /// `b h_2p + a h_2p+1` (i = 2p + 1), two of the pair's 4 multiply-adds.
    #[inline(always)]
    fn rotation_sum(&self, i: usize, h: &[i32]) -> i64 {
        let p = i / 2;
        let (a, b) = (self.w.code(2 * p) as i64, self.w.code(2 * p + 1) as i64);
        let (x, y) = (h[2 * p] as i64, h[2 * p + 1] as i64);
        if i.is_multiple_of(2) {
            a * x - b * y
        } else {
            b * x + a * y
        }
    }

    /// W's code `(i, j)`: the packed code, a Hadamard recurrence's `s_i (I ⊗ H_m)_ij`, or
    /// a rotation block's entry.
    pub fn w_code(&self, i: usize, j: usize) -> i32 {
        if self.rotations {
            if i / 2 != j / 2 {
                return 0;
            }
            let (a, b) = (self.w.code(i / 2 * 2), self.w.code(i / 2 * 2 + 1));
            return match (i % 2, j % 2) {
                (0, 0) | (1, 1) => a,
                (0, _) => -b,
                _ => b,
            };
        }
        match self.hadamard_block as usize {
            0 => self.w.code(i * self.hidden + j),
            m => {
                let entry = hadamard_entry(i, j, m);
                if self.hadamard_sign_negative(i) {
                    -entry
                } else {
                    entry
                }
            }
        }
    }

    /// Hadamard recurrence: whether `s_i = -1` (bit i of `w.packed`).
    #[inline(always)]
    fn hadamard_sign_negative(&self, i: usize) -> bool {
        self.w.packed[i / 8] >> (i % 8) & 1 == 1
    }

    /// Rescales unit `i`'s two accumulators, adds the bias, rounds, applies the
    /// activation and saturates to A bits.
    #[inline(always)]
    fn finish(&self, i: usize, acc_w: i64, acc_u: i64) -> i32 {
        let (w_shift, u_shift) = (self.w_shift().unwrap_or(0), self.u_shift().unwrap_or(0));
        let (lo, hi) = self.hidden_range();
        let num = ((acc_w * self.w.mantissa_of(i) as i64) << w_shift)
            + ((acc_u * self.u.mantissa_of(i) as i64) << u_shift)
            + self.bias[i];
        let z = if self.shift == 0 {
            num
        } else {
            (num + (1i64 << (self.shift - 1))) >> self.shift
        };
        let a = match self.activation {
            IntActivation::Relu => z.max(0),
            IntActivation::Modrelu => {
                let m = (z.abs() + self.bias_mod[i] as i64).max(0);
                z.signum() * m
            }
        };
        a.clamp(lo as i64, hi as i64) as i32
    }
}

/// `sum_j codes_j values_j` exactly, in 32-bit partial sums of 256 terms: a code is at
/// most 2^7 in magnitude and an activation code below 2^16, so 256 products stay below
/// 2^31 (and the loop vectorises), then widen to 64 bits.
#[inline(always)]
fn dot_codes(codes: &[i8], values: &[i32]) -> i64 {
    codes
        .chunks(256)
        .zip(values.chunks(256))
        .map(|(c, v)| {
            c.iter()
                .zip(v)
                .map(|(&c, &v)| c as i32 * v)
                .fold(0i32, i32::wrapping_add) as i64
        })
        .sum()
}

#[cfg(test)]
mod tests;

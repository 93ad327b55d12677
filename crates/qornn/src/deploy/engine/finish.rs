//! `IntRecurrence::finish` (the rescaling, rounding, activation and clamping of a unit's
//! sums) with its constants hoisted (`Finisher`), in scalar, in AVX2 registers
//! (`RowConstants`, `finish_8_avx2`) and in AVX-512 (`finish_16_avx512`): in int32 lanes
//! where the model's bound allows it (`Finisher::fits_int32`), in int64 ones otherwise.

use qornn_infer::IntRecurrence;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m128i, __m256i, __m512i};

/// `IntRecurrence::finish` with its constants hoisted: `(acc M_i) << a` is
/// `acc (M_i << a)` in int64, as neither overflows for a validated model; one scale per
/// row (the same on every row for a per-tensor step).
pub(super) struct Finisher<'a> {
    w_scales: Vec<i64>,
    u_scales: Vec<i64>,
    shift: u32,
    round: i64,
    lo: i64,
    hi: i64,
    modrelu: bool,
    bias: &'a [i64],
    bias_mod: &'a [i32],
    /// Whether every intermediate of `finish` fits int32 for any codes the model meets
    /// (`fits_int32`): the vector kernels then finish 16 (AVX-512) or 8 (AVX2) lanes in
    /// int32 at once instead of two int64 halves, with the same result.
    narrow: bool,
}

impl<'a> Finisher<'a> {
    /// For `rec`, whose codes the engine has unpacked into `w_codes` (n x n) and `u_codes`
    /// (n x d).
    pub(super) fn new(rec: &IntRecurrence<'a>, w_codes: &[i8], u_codes: &[i8]) -> Self {
        // As `IntRecurrence::finish`: a validated model has both shifts.
        let (w_align, u_align) = (rec.w_shift().unwrap_or(0), rec.u_shift().unwrap_or(0));
        let (lo, hi) = rec.hidden_range();
        Self {
            w_scales: (0..rec.hidden)
                .map(|i| (rec.w.mantissa_of(i) as i64) << w_align)
                .collect(),
            u_scales: (0..rec.hidden)
                .map(|i| (rec.u.mantissa_of(i) as i64) << u_align)
                .collect(),
            shift: rec.shift,
            round: if rec.shift == 0 {
                0
            } else {
                1 << (rec.shift - 1)
            },
            lo: lo as i64,
            hi: hi as i64,
            modrelu: rec.activation == qornn_infer::IntActivation::Modrelu,
            bias: rec.bias,
            bias_mod: rec.bias_mod,
            narrow: false,
        }
        .with_narrow(rec, w_codes, u_codes)
    }

    /// Sets `narrow` from the bound on row i's numerator, with hidden codes within
    /// `lo..=hi` and input codes within A bits (`|x| <= 2^(A-1)`):
    /// `|num_i| <= max|h| sum_j |W_ij| |s_w,i| + max|x| sum_j |U_ij| |s_u,i| + |b_i + round|`,
    /// which bounds every partial sum too; it and modReLU's `|z_i| + |b_mod,i|`
    /// (`|z_i| <= |num_i| >> shift` rounded up) must stay within int32.
    fn with_narrow(mut self, rec: &IntRecurrence<'_>, w_codes: &[i8], u_codes: &[i8]) -> Self {
        let (n, d) = (rec.hidden, rec.input);
        let h_max = self.lo.unsigned_abs().max(self.hi.unsigned_abs()) as u128;
        let x_max = 1u128 << (rec.act_bits - 1);
        let l1 = |codes: &[i8]| {
            codes
                .iter()
                .map(|&c| c.unsigned_abs() as u128)
                .sum::<u128>()
        };
        let limit = i32::MAX as u128;
        self.narrow = (0..n).all(|i| {
            let row = self.row(i);
            let num = h_max * l1(&w_codes[i * n..(i + 1) * n]) * row.w_scale.unsigned_abs() as u128
                + x_max * l1(&u_codes[i * d..(i + 1) * d]) * row.u_scale.unsigned_abs() as u128
                + row.bias.unsigned_abs() as u128;
            let z = (num >> self.shift) + 1;
            num <= limit && z + row.bias_mod.unsigned_abs() as u128 <= limit
        });
        self
    }

    /// Whether the vector kernels finish in int32 (`narrow`).
    pub(super) fn fits_int32(&self) -> bool {
        self.narrow
    }

    /// Row `i`'s constants as the vector kernels take them.
    pub(super) fn row(&self, i: usize) -> RowValues {
        RowValues {
            w_scale: self.w_scales[i],
            u_scale: self.u_scales[i],
            bias: self.bias[i] + self.round,
            bias_mod: if self.modrelu {
                self.bias_mod[i] as i64
            } else {
                0
            },
        }
    }

    #[inline(always)]
    pub(super) fn finish(&self, i: usize, acc_w: i64, acc_u: i64) -> i32 {
        let num = acc_w * self.w_scales[i] + acc_u * self.u_scales[i] + self.bias[i];
        let z = (num + self.round) >> self.shift;
        let a = if self.modrelu {
            (z.abs() + self.bias_mod[i] as i64).max(0) * z.signum()
        } else {
            z.max(0)
        };
        a.clamp(self.lo, self.hi) as i32
    }
}

/// One row's `Finisher` constants: W's and U's scales, the bias with the rounding term
/// added, and modReLU's bias (0 for ReLU).
#[derive(Clone, Copy, Default)]
pub(super) struct RowValues {
    pub w_scale: i64,
    pub u_scale: i64,
    pub bias: i64,
    pub bias_mod: i64,
}

/// One unit's `Finisher` constants, broadcast to 8 int32 lanes where the model finishes in
/// int32 (`Finisher::fits_int32`), to 4 int64 lanes otherwise.
#[cfg(target_arch = "x86_64")]
pub(super) enum RowConstants {
    Narrow(Narrow256),
    Wide(Wide256),
}

#[cfg(target_arch = "x86_64")]
pub(super) struct Narrow256 {
    w_scale: __m256i,
    u_scale: __m256i,
    bias: __m256i,
    bias_mod: __m256i,
    lo: __m256i,
    hi: __m256i,
    shift: __m128i,
}

#[cfg(target_arch = "x86_64")]
pub(super) struct Wide256 {
    w_scale: __m256i,
    u_scale: __m256i,
    bias: __m256i,
    bias_mod: Option<__m256i>,
    lo: __m256i,
    hi: __m256i,
    shift: __m128i,
    fill: __m128i,
}

#[cfg(target_arch = "x86_64")]
impl RowConstants {
    #[inline(always)]
    pub(super) fn new(f: &Finisher<'_>, i: usize) -> Self {
        use std::arch::x86_64::*;
        let row = f.row(i);
        // SAFETY: SSE2 and AVX set/broadcast only, called from AVX2 code.
        unsafe {
            let shift = _mm_cvtsi32_si128(f.shift as i32);
            if f.narrow {
                // Every value fits int32 when the finisher is narrow.
                return Self::Narrow(Narrow256 {
                    w_scale: _mm256_set1_epi32(row.w_scale as i32),
                    u_scale: _mm256_set1_epi32(row.u_scale as i32),
                    bias: _mm256_set1_epi32(row.bias as i32),
                    bias_mod: _mm256_set1_epi32(row.bias_mod as i32),
                    lo: _mm256_set1_epi32(f.lo as i32),
                    hi: _mm256_set1_epi32(f.hi as i32),
                    shift,
                });
            }
            Self::Wide(Wide256 {
                w_scale: _mm256_set1_epi64x(row.w_scale),
                u_scale: _mm256_set1_epi64x(row.u_scale),
                bias: _mm256_set1_epi64x(row.bias),
                bias_mod: f.modrelu.then(|| _mm256_set1_epi64x(row.bias_mod)),
                lo: _mm256_set1_epi64x(f.lo),
                hi: _mm256_set1_epi64x(f.hi),
                shift,
                fill: _mm_cvtsi32_si128(64 - f.shift as i32),
            })
        }
    }
}

/// `Finisher::finish` on 8 int32 sums: the even lanes, then the odd ones moved down, each
/// as 4 int64 lanes, and the codes put back in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn finish_8_avx2(row: &RowConstants, acc_w: __m256i, acc_u: __m256i) -> __m256i {
    use std::arch::x86_64::*;
    let row = match row {
        RowConstants::Narrow(narrow) => return finish_8_narrow_avx2(narrow, acc_w, acc_u),
        RowConstants::Wide(wide) => wide,
    };
    let even = finish_4_avx2(row, acc_w, acc_u);
    let odd = finish_4_avx2(
        row,
        _mm256_srli_epi64::<32>(acc_w),
        _mm256_srli_epi64::<32>(acc_u),
    );
    _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd))
}

/// `Finisher::finish` on 8 int32 sums in int32 lanes, for a model whose every
/// intermediate fits there (`Finisher::fits_int32`): `vpmulld` is then exact, and modReLU's
/// `sign(z) max(|z| + b_mod, 0)` is one `vpsignd`, which also gives 0 where z is 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn finish_8_narrow_avx2(row: &Narrow256, acc_w: __m256i, acc_u: __m256i) -> __m256i {
    use std::arch::x86_64::*;
    let numerator = _mm256_add_epi32(
        _mm256_add_epi32(
            _mm256_mullo_epi32(acc_w, row.w_scale),
            _mm256_mullo_epi32(acc_u, row.u_scale),
        ),
        row.bias,
    );
    activate_8_narrow_avx2(row, row.bias_mod, numerator)
}

/// The end of `Finisher::finish` on 8 numerators in int32 lanes (as
/// `activate_16_narrow_avx512`): the shift, the activation with modReLU's biases
/// `bias_mod`, the clamp. Only `row`'s shift and range are read.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn activate_8_narrow_avx2(
    row: &Narrow256,
    bias_mod: __m256i,
    numerator: __m256i,
) -> __m256i {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_si256();
    let z = _mm256_sra_epi32(numerator, row.shift);
    let magnitude = _mm256_max_epi32(_mm256_add_epi32(_mm256_abs_epi32(z), bias_mod), zero);
    // For ReLU (b_mod 0, lo 0) this is z, which the clamp below makes max(z, 0).
    let a = _mm256_sign_epi32(magnitude, z);
    _mm256_max_epi32(_mm256_min_epi32(a, row.hi), row.lo)
}

/// `Finisher::finish` on the low 32 bits (signed) of 4 int64 lanes; the code in each lane's
/// low 32 bits. The scales fit int32 (a 12-bit mantissa shifted by at most 14), so
/// `vpmuldq` is exact; the arithmetic right shift, which AVX2 lacks for 64-bit lanes, is a
/// logical one with the sign filled in.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn finish_4_avx2(row: &Wide256, acc_w: __m256i, acc_u: __m256i) -> __m256i {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_si256();
    let t = _mm256_add_epi64(
        _mm256_add_epi64(
            _mm256_mul_epi32(acc_w, row.w_scale),
            _mm256_mul_epi32(acc_u, row.u_scale),
        ),
        row.bias,
    );
    let negative = _mm256_cmpgt_epi64(zero, t);
    let z = _mm256_or_si256(
        _mm256_srl_epi64(t, row.shift),
        _mm256_sll_epi64(negative, row.fill),
    );
    let a = match row.bias_mod {
        Some(bias_mod) => {
            let sign = _mm256_cmpgt_epi64(zero, z);
            let magnitude = _mm256_sub_epi64(_mm256_xor_si256(z, sign), sign);
            let m = _mm256_add_epi64(magnitude, bias_mod);
            let m = _mm256_andnot_si256(_mm256_cmpgt_epi64(zero, m), m);
            let signed = _mm256_sub_epi64(_mm256_xor_si256(m, sign), sign);
            _mm256_andnot_si256(_mm256_cmpeq_epi64(z, zero), signed)
        }
        None => _mm256_andnot_si256(_mm256_cmpgt_epi64(zero, z), z),
    };
    let a = _mm256_blendv_epi8(a, row.hi, _mm256_cmpgt_epi64(a, row.hi));
    _mm256_blendv_epi8(a, row.lo, _mm256_cmpgt_epi64(row.lo, a))
}

/// `Finisher` constants of 16 consecutive rows as AVX-512 int64 lanes: the even rows
/// (`first + 2k` in lane k) and the odd ones (`first + 2k + 1`), which is how
/// `finish_16_avx512` splits 16 int32 sums. Rows past the last have zero constants.
#[derive(Clone, Copy)]
pub(super) struct SixteenRows {
    /// `[even, odd]` each.
    w_scale: [[i64; 8]; 2],
    u_scale: [[i64; 8]; 2],
    bias: [[i64; 8]; 2],
    bias_mod: [[i64; 8]; 2],
    /// The 16 rows in order as int32 (`w_scale`, `u_scale`, `bias`, `bias_mod`), where the
    /// model finishes in int32.
    narrow: Option<[[i32; 16]; 4]>,
}

impl Finisher<'_> {
    /// The constants of rows `first .. first + 16`.
    pub(super) fn sixteen_rows(&self, first: usize) -> SixteenRows {
        let rows: [[RowValues; 8]; 2] = [0, 1].map(|odd| {
            std::array::from_fn(|k| {
                let i = first + 2 * k + odd;
                if i < self.w_scales.len() {
                    self.row(i)
                } else {
                    RowValues::default()
                }
            })
        });
        let lanes = |value: fn(&RowValues) -> i64| rows.map(|half| half.map(|r| value(&r)));
        // Row first + r is lane r / 2 of half r % 2; every value fits int32 when narrow.
        let in_order = |value: fn(&RowValues) -> i64| {
            std::array::from_fn(|r| value(&rows[r % 2][r / 2]) as i32)
        };
        SixteenRows {
            w_scale: lanes(|r| r.w_scale),
            u_scale: lanes(|r| r.u_scale),
            bias: lanes(|r| r.bias),
            bias_mod: lanes(|r| r.bias_mod),
            narrow: self.narrow.then(|| {
                [
                    in_order(|r| r.w_scale),
                    in_order(|r| r.u_scale),
                    in_order(|r| r.bias),
                    in_order(|r| r.bias_mod),
                ]
            }),
        }
    }
}

/// The constants of 8 rows, one per int64 lane.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Lanes512 {
    w_scale: __m512i,
    u_scale: __m512i,
    bias: __m512i,
    bias_mod: __m512i,
}

/// `Finisher` constants for 16 int32 sums (AVX-512): one row broadcast to every lane (the
/// batched kernel: 16 sequences of one unit) or 16 rows (one sequence: 16 units).
#[cfg(target_arch = "x86_64")]
pub(super) struct RowConstants512 {
    modrelu: bool,
    shift: __m128i,
    /// The range `lo..=hi`, in int32 lanes for `Width512::Narrow`, int64 ones otherwise.
    lo: __m512i,
    hi: __m512i,
    width: Width512,
}

/// The rows' constants as 16 int32 lanes where the model finishes in int32
/// (`Finisher::fits_int32`), else those of the even and of the odd int32 lanes as 8 int64
/// lanes each.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
// Built in registers inside the kernels' loops: a box would put it in memory.
#[allow(clippy::large_enum_variant)]
enum Width512 {
    Narrow(Lanes512),
    Wide { even: Lanes512, odd: Lanes512 },
}

#[cfg(target_arch = "x86_64")]
impl RowConstants512 {
    /// Row `i` in every lane.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn new(f: &Finisher<'_>, i: usize) -> Self {
        use std::arch::x86_64::*;
        let row = f.row(i);
        let width = if f.narrow {
            // Every value fits int32 when the finisher is narrow.
            Width512::Narrow(Lanes512 {
                w_scale: _mm512_set1_epi32(row.w_scale as i32),
                u_scale: _mm512_set1_epi32(row.u_scale as i32),
                bias: _mm512_set1_epi32(row.bias as i32),
                bias_mod: _mm512_set1_epi32(row.bias_mod as i32),
            })
        } else {
            let lanes = Lanes512 {
                w_scale: _mm512_set1_epi64(row.w_scale),
                u_scale: _mm512_set1_epi64(row.u_scale),
                bias: _mm512_set1_epi64(row.bias),
                bias_mod: _mm512_set1_epi64(row.bias_mod),
            };
            Width512::Wide {
                even: lanes,
                odd: lanes,
            }
        };
        Self::with_width(f, width)
    }

    /// The 16 rows of `rows`, one per int32 lane.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn sixteen(f: &Finisher<'_>, rows: &SixteenRows) -> Self {
        use std::arch::x86_64::*;
        let width = match &rows.narrow {
            Some([w_scale, u_scale, bias, bias_mod]) => {
                let load = |v: &[i32; 16]| _mm512_loadu_si512(v.as_ptr() as *const __m512i);
                Width512::Narrow(Lanes512 {
                    w_scale: load(w_scale),
                    u_scale: load(u_scale),
                    bias: load(bias),
                    bias_mod: load(bias_mod),
                })
            }
            None => {
                let load = |v: &[i64; 8]| _mm512_loadu_si512(v.as_ptr() as *const __m512i);
                let lanes = |half: usize| Lanes512 {
                    w_scale: load(&rows.w_scale[half]),
                    u_scale: load(&rows.u_scale[half]),
                    bias: load(&rows.bias[half]),
                    bias_mod: load(&rows.bias_mod[half]),
                };
                Width512::Wide {
                    even: lanes(0),
                    odd: lanes(1),
                }
            }
        };
        Self::with_width(f, width)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn with_width(f: &Finisher<'_>, width: Width512) -> Self {
        use std::arch::x86_64::*;
        let (lo, hi) = match width {
            Width512::Narrow(_) => (
                _mm512_set1_epi32(f.lo as i32),
                _mm512_set1_epi32(f.hi as i32),
            ),
            Width512::Wide { .. } => (_mm512_set1_epi64(f.lo), _mm512_set1_epi64(f.hi)),
        };
        Self {
            modrelu: f.modrelu,
            shift: _mm_cvtsi32_si128(f.shift as i32),
            lo,
            hi,
            width,
        }
    }
}

/// `Finisher::finish` on 16 int32 sums, as `finish_8_avx2` does on 8: the even lanes, then
/// the odd ones moved down, each as 8 int64 lanes, and the codes put back in order.
/// AVX-512 has the 64-bit arithmetic shift, absolute value, minimum and maximum that AVX2
/// builds from comparisons.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn finish_16_avx512(
    row: &RowConstants512,
    acc_w: __m512i,
    acc_u: __m512i,
) -> __m512i {
    use std::arch::x86_64::*;
    let (even, odd) = match &row.width {
        Width512::Narrow(lanes) => return finish_16_narrow_avx512(row, lanes, acc_w, acc_u),
        Width512::Wide { even, odd } => (even, odd),
    };
    let even = finish_8_avx512(row, even, acc_w, acc_u);
    let odd = finish_8_avx512(
        row,
        odd,
        _mm512_srli_epi64::<32>(acc_w),
        _mm512_srli_epi64::<32>(acc_u),
    );
    _mm512_mask_blend_epi32(0b1010_1010_1010_1010, even, _mm512_slli_epi64::<32>(odd))
}

/// `Finisher::finish` on 16 int32 sums in int32 lanes, for a model whose every
/// intermediate fits there (`Finisher::fits_int32`, `vpmulld` exact): as `finish_8_avx512`
/// on twice the lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn finish_16_narrow_avx512(
    row: &RowConstants512,
    lanes: &Lanes512,
    acc_w: __m512i,
    acc_u: __m512i,
) -> __m512i {
    use std::arch::x86_64::*;
    let numerator = _mm512_add_epi32(
        _mm512_add_epi32(
            _mm512_mullo_epi32(acc_w, lanes.w_scale),
            _mm512_mullo_epi32(acc_u, lanes.u_scale),
        ),
        lanes.bias,
    );
    activate_16_narrow_avx512(row, lanes.bias_mod, numerator)
}

/// The end of `Finisher::finish` on 16 numerators (the scaled sums plus the bias and the
/// rounding term) in int32 lanes: the shift, the activation with modReLU's biases
/// `bias_mod`, the clamp to the range. Only `row`'s shift, activation and range are read.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn activate_16_narrow_avx512(
    row: &RowConstants512,
    bias_mod: __m512i,
    numerator: __m512i,
) -> __m512i {
    use std::arch::x86_64::*;
    debug_assert!(matches!(row.width, Width512::Narrow(_)));
    let zero = _mm512_setzero_si512();
    let z = _mm512_sra_epi32(numerator, row.shift);
    let a = if row.modrelu {
        // sign(z) max(|z| + b_mod, 0): 0 where z is 0.
        let m = _mm512_max_epi32(_mm512_add_epi32(_mm512_abs_epi32(z), bias_mod), zero);
        let negative = _mm512_cmplt_epi32_mask(z, zero);
        let signed = _mm512_mask_sub_epi32(m, negative, zero, m);
        _mm512_maskz_mov_epi32(_mm512_cmpneq_epi32_mask(z, zero), signed)
    } else {
        _mm512_max_epi32(z, zero)
    };
    _mm512_max_epi32(_mm512_min_epi32(a, row.hi), row.lo)
}

/// `Finisher::finish` on the low 32 bits (signed) of 8 int64 lanes; the code in each lane's
/// low 32 bits (`vpmuldq` is exact: the scales fit int32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn finish_8_avx512(
    row: &RowConstants512,
    lanes: &Lanes512,
    acc_w: __m512i,
    acc_u: __m512i,
) -> __m512i {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_si512();
    let t = _mm512_add_epi64(
        _mm512_add_epi64(
            _mm512_mul_epi32(acc_w, lanes.w_scale),
            _mm512_mul_epi32(acc_u, lanes.u_scale),
        ),
        lanes.bias,
    );
    let z = _mm512_sra_epi64(t, row.shift);
    let a = if row.modrelu {
        // sign(z) max(|z| + b_mod, 0): 0 where z is 0.
        let m = _mm512_max_epi64(_mm512_add_epi64(_mm512_abs_epi64(z), lanes.bias_mod), zero);
        let negative = _mm512_cmplt_epi64_mask(z, zero);
        let signed = _mm512_mask_sub_epi64(m, negative, zero, m);
        _mm512_maskz_mov_epi64(_mm512_cmpneq_epi64_mask(z, zero), signed)
    } else {
        _mm512_max_epi64(z, zero)
    };
    _mm512_max_epi64(_mm512_min_epi64(a, row.hi), row.lo)
}

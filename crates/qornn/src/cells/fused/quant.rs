//! The hidden state's fake quantizer (`quant::activation::HiddenQuantizer`, `--act-bits`) in
//! the fused steps' AVX2 and AVX-512F lanes: the same operations as its `code`, element by
//! element, so the same bits (stochastic rounding's offsets included).

use crate::quant::activation::HiddenQuantizer;
use crate::Real;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// A fused step's quantizer and the index of the step's first row among the batch's
/// `(T, B)` rows (stochastic rounding's offsets are drawn by it).
#[derive(Clone, Copy, Debug)]
pub struct FusedQuant {
    pub q: HiddenQuantizer<f32>,
    pub first_row: usize,
}

impl FusedQuant {
    /// `q` for the rows from `first_row` on.
    pub fn new<T: Real>(q: &HiddenQuantizer<T>, first_row: usize) -> Self {
        let f = |v: T| v.to_f64().expect("a finite quantizer") as f32;
        let q = HiddenQuantizer {
            step: f(q.step),
            lo: f(q.lo),
            hi: f(q.hi),
            modrelu: q.modrelu,
            dither: q.dither,
        };
        Self { q, first_row }
    }
}

/// modReLU's bias codes and their residuals by unit (`HiddenQuantizer::bias_code`:
/// `BM_i`, `BM_i - bm_i / s`), the same for every row of a step, so taken once a step;
/// empty for ReLU or float activations.
#[cfg(target_arch = "x86_64")]
pub(super) struct BiasCodes {
    codes: Vec<f32>,
    residuals: Vec<f32>,
}

#[cfg(target_arch = "x86_64")]
impl BiasCodes {
    /// The codes of `bm` where the step quantizes (`quant`) a modReLU state.
    pub(super) fn new(quant: Option<&FusedQuant>, modrelu: bool, bm: &[f32]) -> Self {
        let (codes, residuals) = match quant {
            Some(fq) if modrelu => bm.iter().map(|&b| fq.q.bias_code(b)).unzip(),
            _ => (Vec::new(), Vec::new()),
        };
        Self { codes, residuals }
    }

    /// The codes and residuals from `unit` on, as `code_lanes` reads them; `None` where
    /// there are none (ReLU).
    pub(super) fn at(&self, unit: usize) -> Option<(*const f32, *const f32)> {
        (!self.codes.is_empty())
            .then(|| (self.codes[unit..].as_ptr(), self.residuals[unit..].as_ptr()))
    }
}

/// One vector of units' codes (`HiddenQuantizer::code`'s `Code`).
#[cfg(target_arch = "x86_64")]
pub(super) struct CodeLanes {
    pub value: __m256,
    pub inside: __m256,
    pub clamped: __m256,
    pub sign: __m256,
    pub residual: __m256,
}

/// `quant::activation::floor` in lanes: `(x + 1.5 2^23) - 1.5 2^23`, one down where that
/// rounded up, and `x` itself from `|x| >= 2^22` on.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn floor_lanes(x: __m256) -> __m256 {
    let magic = _mm256_set1_ps(1.5 / f32::EPSILON);
    let nearest = _mm256_sub_ps(_mm256_add_ps(x, magic), magic);
    let above = _mm256_cmp_ps::<_CMP_GT_OQ>(nearest, x);
    let below = _mm256_sub_ps(nearest, _mm256_and_ps(above, _mm256_set1_ps(1.0)));
    let abs = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)));
    let exact = _mm256_cmp_ps::<_CMP_LT_OQ>(abs, _mm256_mul_ps(magic, _mm256_set1_ps(1.0 / 3.0)));
    _mm256_blendv_ps(x, below, exact)
}

/// The rounding offsets of units `unit..unit + 8` of row `row` (counted from the step's
/// first row) of `n` units: 1/2, or `quant::dither::dither_offset` in 32-bit lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn offsets(fq: &FusedQuant, row: usize, unit: usize, n: usize) -> __m256 {
    let Some(key) = fq.q.dither else {
        return _mm256_set1_ps(0.5);
    };
    let first = ((fq.first_row + row) * n + unit) as u32;
    let index = _mm256_add_epi32(
        _mm256_set1_epi32(first as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let golden = _mm256_set1_epi32(0x9E37_79B9_u32 as i32);
    let mut x = _mm256_xor_si256(
        _mm256_set1_epi32(key as i32),
        _mm256_mullo_epi32(index, golden),
    );
    x = _mm256_xor_si256(x, _mm256_srli_epi32::<16>(x));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7FEB_352D));
    x = _mm256_xor_si256(x, _mm256_srli_epi32::<15>(x));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x846C_A68B_u32 as i32));
    x = _mm256_xor_si256(x, _mm256_srli_epi32::<16>(x));
    let top = _mm256_cvtepi32_ps(_mm256_srli_epi32::<8>(x));
    _mm256_mul_ps(top, _mm256_set1_ps(1.0 / (1u32 << 24) as f32))
}

/// `HiddenQuantizer::code` of `z` (bias added) in lanes: modReLU with the units' bias codes
/// and residuals `bias` (`BiasCodes::at` these units), else ReLU, rounded
/// with `offset`.
///
/// # Safety
/// `bias`, where given, has 8 values to read at each pointer.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn code_lanes(
    fq: &FusedQuant,
    z: __m256,
    bias: Option<(*const f32, *const f32)>,
    offset: __m256,
) -> CodeLanes {
    let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
    let magnitude_bits = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let u = _mm256_mul_ps(z, _mm256_set1_ps(fq.q.step.recip()));
    let rounded = floor_lanes(_mm256_add_ps(u, offset));
    let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(rounded, zero);
    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(rounded, zero);
    let sign = _mm256_or_ps(
        _mm256_and_ps(positive, one),
        _mm256_and_ps(negative, _mm256_set1_ps(-1.0)),
    );
    let (a, bias_residual) = match bias {
        Some((codes, residuals)) => {
            let bm_code = _mm256_loadu_ps(codes);
            let m = _mm256_add_ps(_mm256_and_ps(rounded, magnitude_bits), bm_code);
            let alive = _mm256_cmp_ps::<_CMP_GT_OQ>(m, zero);
            let a = _mm256_and_ps(alive, _mm256_mul_ps(sign, m));
            (a, _mm256_loadu_ps(residuals))
        }
        // `rounded.max(0)`: `rounded` is never NaN or -0 here.
        None => (_mm256_max_ps(rounded, zero), zero),
    };
    let (lo, hi) = (_mm256_set1_ps(fq.q.lo), _mm256_set1_ps(fq.q.hi));
    let nonzero = _mm256_and_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(a, zero), one);
    let outside = _mm256_and_ps(
        _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(a, hi),
            _mm256_cmp_ps::<_CMP_LT_OQ>(a, lo),
        ),
        one,
    );
    CodeLanes {
        value: _mm256_min_ps(_mm256_max_ps(a, lo), hi),
        inside: _mm256_mul_ps(nonzero, _mm256_sub_ps(one, outside)),
        clamped: _mm256_mul_ps(nonzero, outside),
        sign,
        residual: _mm256_add_ps(
            _mm256_sub_ps(rounded, u),
            _mm256_mul_ps(sign, bias_residual),
        ),
    }
}

/// One vector of 16 units' codes, as [`CodeLanes`].
#[cfg(target_arch = "x86_64")]
pub(super) struct CodeLanes16 {
    pub value: __m512,
    pub inside: __m512,
    pub clamped: __m512,
    pub sign: __m512,
    pub residual: __m512,
}

/// [`floor_lanes`] with 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn floor_lanes16(x: __m512) -> __m512 {
    let magic = _mm512_set1_ps(1.5 / f32::EPSILON);
    let nearest = _mm512_sub_ps(_mm512_add_ps(x, magic), magic);
    let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(nearest, x);
    let below = _mm512_mask_sub_ps(nearest, above, nearest, _mm512_set1_ps(1.0));
    let bound = _mm512_mul_ps(magic, _mm512_set1_ps(1.0 / 3.0));
    let exact = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(x), bound);
    _mm512_mask_mov_ps(x, exact, below)
}

/// [`offsets`] for units `unit..unit + 16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn offsets16(fq: &FusedQuant, row: usize, unit: usize, n: usize) -> __m512 {
    let Some(key) = fq.q.dither else {
        return _mm512_set1_ps(0.5);
    };
    let first = ((fq.first_row + row) * n + unit) as u32;
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let index = _mm512_add_epi32(_mm512_set1_epi32(first as i32), lanes);
    let golden = _mm512_set1_epi32(0x9E37_79B9_u32 as i32);
    let mut x = _mm512_xor_si512(
        _mm512_set1_epi32(key as i32),
        _mm512_mullo_epi32(index, golden),
    );
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7FEB_352D));
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<15>(x));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x846C_A68B_u32 as i32));
    x = _mm512_xor_si512(x, _mm512_srli_epi32::<16>(x));
    let top = _mm512_cvtepi32_ps(_mm512_srli_epi32::<8>(x));
    _mm512_mul_ps(top, _mm512_set1_ps(1.0 / (1u32 << 24) as f32))
}

/// [`code_lanes`] with 16 lanes.
///
/// # Safety
/// `bias`, where given, has 16 values to read at each pointer.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn code_lanes16(
    fq: &FusedQuant,
    z: __m512,
    bias: Option<(*const f32, *const f32)>,
    offset: __m512,
) -> CodeLanes16 {
    let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
    let u = _mm512_mul_ps(z, _mm512_set1_ps(fq.q.step.recip()));
    let rounded = floor_lanes16(_mm512_add_ps(u, offset));
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(rounded, zero);
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(rounded, zero);
    let sign = _mm512_mask_mov_ps(
        _mm512_maskz_mov_ps(negative, _mm512_set1_ps(-1.0)),
        positive,
        one,
    );
    let (a, bias_residual) = match bias {
        Some((codes, residuals)) => {
            let m = _mm512_add_ps(_mm512_abs_ps(rounded), _mm512_loadu_ps(codes));
            let alive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, zero);
            let a = _mm512_maskz_mov_ps(alive, _mm512_mul_ps(sign, m));
            (a, _mm512_loadu_ps(residuals))
        }
        None => (_mm512_max_ps(rounded, zero), zero),
    };
    let (lo, hi) = (_mm512_set1_ps(fq.q.lo), _mm512_set1_ps(fq.q.hi));
    let nonzero = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, zero), one);
    let beyond = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, hi) | _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, lo);
    let outside = _mm512_maskz_mov_ps(beyond, one);
    CodeLanes16 {
        value: _mm512_min_ps(_mm512_max_ps(a, lo), hi),
        inside: _mm512_mul_ps(nonzero, _mm512_sub_ps(one, outside)),
        clamped: _mm512_mul_ps(nonzero, outside),
        sign,
        residual: _mm512_add_ps(
            _mm512_sub_ps(rounded, u),
            _mm512_mul_ps(sign, bias_residual),
        ),
    }
}

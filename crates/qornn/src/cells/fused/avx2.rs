//! The fused steps with AVX2: 8 lanes a vector, a Hadamard block of 8 units in one
//! register and one of 16 in two (larger blocks: the row's transform read from scratch),
//! or 4 rotation pairs.

use super::quant::{self, BiasCodes};
use super::{fwht_blocks_into, prefetch_ahead, streams, transform_rows};
use super::{FusedBackward, FusedForward, FusedW};

/// `sign(z)` (1, -1 or 0), modReLU's `m = |z| + bm` and the lanes where `m > 0` (all
/// ones): the lanes of `Activation::eval`'s branches.
#[target_feature(enable = "avx2")]
#[inline]
fn modrelu_lanes_avx2(
    z: std::arch::x86_64::__m256,
    bm: std::arch::x86_64::__m256,
) -> (
    std::arch::x86_64::__m256,
    std::arch::x86_64::__m256,
    std::arch::x86_64::__m256,
) {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(z, zero);
    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(z, zero);
    let sign = _mm256_or_ps(
        _mm256_and_ps(positive, _mm256_set1_ps(1.0)),
        _mm256_and_ps(negative, _mm256_set1_ps(-1.0)),
    );
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let m = _mm256_add_ps(_mm256_and_ps(z, magnitude), bm);
    (sign, m, _mm256_cmp_ps::<_CMP_GT_OQ>(m, zero))
}

/// `R v` on the 4 pairs of lanes of `v`, as the AVX-512 kernels' `rotate16`.
#[target_feature(enable = "avx2")]
#[inline]
fn rotate8(
    cs: std::arch::x86_64::__m256,
    v: std::arch::x86_64::__m256,
    transpose: bool,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let c = _mm256_permute_ps::<0b10_10_00_00>(cs);
    let s = _mm256_permute_ps::<0b11_11_01_01>(cs);
    let (p, q) = (
        _mm256_mul_ps(c, v),
        _mm256_mul_ps(s, _mm256_permute_ps::<0b10_11_00_01>(v)),
    );
    match transpose {
        // Lanes 2k: p - q; lanes 2k + 1: q + p.
        false => _mm256_blend_ps::<0b0101_0101>(_mm256_add_ps(q, p), _mm256_sub_ps(p, q)),
        // Lanes 2k: p + q; lanes 2k + 1: p - q.
        true => _mm256_blend_ps::<0b1010_1010>(_mm256_add_ps(p, q), _mm256_sub_ps(p, q)),
    }
}

/// Adds units `unit..unit + 8`'s share of `dL/dW`'s sums, as the AVX-512 kernels'
/// `add_w_gradient`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn add_w_gradient(
    w: &FusedW<'_>,
    sums: *mut f32,
    unit: usize,
    dz: std::arch::x86_64::__m256,
    source: std::arch::x86_64::__m256,
) {
    use std::arch::x86_64::*;
    let add_into = |p: *mut f32, v| _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v));
    match w {
        FusedW::Hadamard { .. } => add_into(sums.add(unit), _mm256_mul_ps(dz, source)),
        FusedW::Rotations { .. } => {
            // Lane j of a vector of sums: pair j / 4, d at (j % 4) / 2, h at j % 2.
            let d_lanes = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
            let h_lanes = _mm256_setr_epi32(0, 1, 0, 1, 2, 3, 2, 3);
            for half in 0..2 {
                let offset = _mm256_set1_epi32(4 * half);
                let d = _mm256_permutevar8x32_ps(dz, _mm256_add_epi32(d_lanes, offset));
                let h = _mm256_permutevar8x32_ps(source, _mm256_add_epi32(h_lanes, offset));
                add_into(sums.add(2 * unit + 8 * half as usize), _mm256_mul_ps(d, h));
            }
        }
    }
}

/// Runs the backward step of `w`: 8 units a vector, Hadamard blocks of 8, 16 or a larger
/// power of two, or rotations.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn backward_step_avx2(step: FusedBackward<'_, f32>, w: FusedW<'_>) {
    use super::super::recurrence::fwht_registers;
    use std::arch::x86_64::*;
    let (n, width, len) = (w.units(), w.width(), step.dz.len());
    step.check(n, width, 8);
    let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
    let rows_transformed = width > 16;
    let chunk = width.min(16);
    let halves = if chunk == 16 { 2 } else { 1 };
    let bias_codes = BiasCodes::new(step.quant.as_ref(), step.modrelu, step.bm);
    for row in (0..len).step_by(n) {
        if let (true, FusedW::Hadamard { row_scale, .. }) = (rows_transformed, w) {
            let later = step.later.map(|l| &l[row..row + n]);
            let h_prev = &step.h_prev[row..row + n];
            transform_rows(
                step.transformed.split_at_mut(n),
                h_prev,
                later,
                row_scale,
                width,
            );
        }
        for block in (0..n).step_by(chunk) {
            let (at, unit) = (row + block, block);
            let load = |p: *const f32, k: usize| _mm256_loadu_ps(p.add(8 * k));
            let high = halves - 1;
            prefetch_ahead(step.h_prev, at);
            // Per half: W's term of z, what dL/dW's sums take with dz (t = H h_{t-1}, or
            // h_{t-1}) and the carry dz_{t+1} W (or zero), as `Recurrence::project`,
            // `accumulate_gradient` and `carry` compute them: for Hadamard blocks in
            // registers or from the row's scratch, H (s dz_{t+1}); for rotations R^T
            // dz_{t+1} added to zeros.
            let terms = match w {
                FusedW::Hadamard { row_scale, .. } => {
                    let s = row_scale.as_ptr().add(unit);
                    let (t, carry) = if rows_transformed {
                        let (t, c) = (
                            step.transformed.as_ptr().add(unit),
                            step.transformed.as_ptr().add(n + unit),
                        );
                        let carry = step
                            .later
                            .map_or((zero, zero), |_| (load(c, 0), load(c, 1)));
                        ((load(t, 0), load(t, 1)), carry)
                    } else {
                        let h = step.h_prev.as_ptr().add(at);
                        let t = fwht_registers(load(h, 0), load(h, high), width);
                        let carry = match step.later {
                            Some(later) => {
                                let l = later.as_ptr().add(at);
                                fwht_registers(
                                    _mm256_mul_ps(load(l, 0), load(s, 0)),
                                    _mm256_mul_ps(load(l, high), load(s, high)),
                                    width,
                                )
                            }
                            None => (zero, zero),
                        };
                        (t, carry)
                    };
                    [
                        (_mm256_mul_ps(load(s, 0), t.0), t.0, carry.0),
                        (_mm256_mul_ps(load(s, high), t.1), t.1, carry.1),
                    ]
                }
                FusedW::Rotations { cos_sin } => {
                    let cs = load(cos_sin.as_ptr().add(unit), 0);
                    let h = load(step.h_prev.as_ptr().add(at), 0);
                    let carry = step.later.map_or(zero, |later| {
                        let l = load(later.as_ptr().add(at), 0);
                        _mm256_add_ps(zero, rotate8(cs, l, true))
                    });
                    [(rotate8(cs, h, false), h, carry); 2]
                }
            };
            for (k, &(recurrent, source, carry_k)) in terms.iter().take(halves).enumerate() {
                let (at, unit) = (at + 8 * k, unit + 8 * k);
                // z = (x U^T + W's term) + b: two sums.
                let z = _mm256_add_ps(step.input.load_avx2(at, row / n, unit), recurrent);
                let z = _mm256_add_ps(z, _mm256_loadu_ps(step.b.as_ptr().add(unit)));
                let dh = match step.dh {
                    Some(dh) => _mm256_loadu_ps(dh.as_ptr().add(at)),
                    None => zero,
                };
                let upstream = _mm256_add_ps(carry_k, dh);
                // The quantizer's straight-through backward (`HiddenQuantizer::backward_rows`).
                if let Some(q) = &step.quant {
                    let code = quant::code_lanes(
                        q,
                        z,
                        bias_codes.at(unit),
                        quant::offsets(q, row / n, unit, n),
                    );
                    let through = _mm256_mul_ps(upstream, code.inside);
                    _mm256_storeu_ps(step.dz.as_mut_ptr().add(at), through);
                    let db_p = step.db.as_mut_ptr().add(unit);
                    _mm256_storeu_ps(db_p, _mm256_add_ps(_mm256_loadu_ps(db_p), through));
                    if step.modrelu {
                        let dbm_p = step.dbm.as_mut_ptr().add(unit);
                        let d_bm = _mm256_mul_ps(through, code.sign);
                        _mm256_storeu_ps(dbm_p, _mm256_add_ps(_mm256_loadu_ps(dbm_p), d_bm));
                    }
                    let d_step_p = step.d_step.as_mut_ptr().add(unit);
                    let term = _mm256_add_ps(
                        _mm256_mul_ps(through, code.residual),
                        _mm256_mul_ps(_mm256_mul_ps(upstream, code.clamped), code.value),
                    );
                    _mm256_storeu_ps(d_step_p, _mm256_add_ps(_mm256_loadu_ps(d_step_p), term));
                    add_w_gradient(&w, step.d_scale.as_mut_ptr(), unit, through, source);
                    continue;
                }
                // `Activation::eval`'s derivatives: ReLU 1 where z > 0; modReLU, where
                // |z| + bm > 0, sign(z)^2 and (for bm) sign(z); 0 elsewhere.
                let dact = if step.modrelu {
                    let bm = _mm256_loadu_ps(step.bm.as_ptr().add(unit));
                    let (sign, _, alive) = modrelu_lanes_avx2(z, bm);
                    let dbm_p = step.dbm.as_mut_ptr().add(unit);
                    let d_bm = _mm256_mul_ps(upstream, _mm256_and_ps(alive, sign));
                    _mm256_storeu_ps(dbm_p, _mm256_add_ps(_mm256_loadu_ps(dbm_p), d_bm));
                    _mm256_and_ps(alive, _mm256_mul_ps(sign, sign))
                } else {
                    _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(z, zero), one)
                };
                let dz = _mm256_mul_ps(upstream, dact);
                _mm256_storeu_ps(step.dz.as_mut_ptr().add(at), dz);
                let db_p = step.db.as_mut_ptr().add(unit);
                _mm256_storeu_ps(db_p, _mm256_add_ps(_mm256_loadu_ps(db_p), dz));
                add_w_gradient(&w, step.d_scale.as_mut_ptr(), unit, dz, source);
            }
        }
    }
}

/// Runs the forward step of `w`, as [`backward_step_avx2`]. The non-temporal stores, if
/// any, are ordered before the function returns (`sfence`).
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn forward_step_avx2(step: FusedForward<'_, f32>, w: FusedW<'_>) {
    use super::super::recurrence::fwht_registers;
    use std::arch::x86_64::*;
    let (n, width, len) = (w.units(), w.width(), step.h_next.len());
    step.check(n, width, 8);
    let stream = streams(step.h_kept);
    let rows_transformed = width > 16;
    let chunk = width.min(16);
    let halves = if chunk == 16 { 2 } else { 1 };
    let bias_codes = BiasCodes::new(step.quant.as_ref(), step.modrelu, step.bm);
    for (r, row) in (0..len).step_by(n).enumerate() {
        if rows_transformed {
            fwht_blocks_into(
                &step.h_prev[row..row + n],
                &mut step.transformed[..n],
                width,
            );
        }
        for block in (0..n).step_by(chunk) {
            let at = row + block;
            let load = |p: *const f32, k: usize| _mm256_loadu_ps(p.add(8 * k));
            let high = halves - 1;
            // Per half, W's term of z: s t (t = H h_{t-1}, in registers or from the row's
            // scratch), or R h_{t-1}.
            let terms = match w {
                FusedW::Hadamard { row_scale, .. } => {
                    let (h, transformed) = match rows_transformed {
                        true => (step.transformed.as_ptr().add(block), true),
                        false => (step.h_prev.as_ptr().add(at), false),
                    };
                    let (low, high_half) = (load(h, 0), load(h, high));
                    let t = match transformed {
                        true => (low, high_half),
                        false => fwht_registers(low, high_half, width),
                    };
                    let s = row_scale.as_ptr().add(block);
                    [
                        _mm256_mul_ps(load(s, 0), t.0),
                        _mm256_mul_ps(load(s, high), t.1),
                    ]
                }
                FusedW::Rotations { cos_sin } => {
                    let cs = load(cos_sin.as_ptr().add(block), 0);
                    [rotate8(cs, load(step.h_prev.as_ptr().add(at), 0), false); 2]
                }
            };
            for (k, &recurrent) in terms.iter().take(halves).enumerate() {
                let (at, unit) = (at + 8 * k, block + 8 * k);
                // z = (x U^T + W's term) + b: two sums.
                let z = _mm256_add_ps(step.input.load_avx2(at, r, unit), recurrent);
                let z = _mm256_add_ps(z, _mm256_loadu_ps(step.b.as_ptr().add(unit)));
                // `Activation::eval`: ReLU z where z > 0; modReLU sign(z) (|z| + bm) where
                // |z| + bm > 0; 0 elsewhere. Quantized: the code times the step.
                let h = if let Some(q) = &step.quant {
                    let code =
                        quant::code_lanes(q, z, bias_codes.at(unit), quant::offsets(q, r, unit, n));
                    _mm256_mul_ps(code.value, _mm256_set1_ps(q.q.step))
                } else if step.modrelu {
                    let bm = _mm256_loadu_ps(step.bm.as_ptr().add(unit));
                    let (sign, m, alive) = modrelu_lanes_avx2(z, bm);
                    _mm256_and_ps(alive, _mm256_mul_ps(sign, m))
                } else {
                    _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps()), z)
                };
                _mm256_storeu_ps(step.h_next.as_mut_ptr().add(at), h);
                let kept = step.h_kept.as_mut_ptr().add(at);
                if stream {
                    _mm_stream_ps(kept, _mm256_castps256_ps128(h));
                    _mm_stream_ps(kept.add(4), _mm256_extractf128_ps::<1>(h));
                } else {
                    _mm256_storeu_ps(kept, h);
                }
            }
        }
    }
    if stream {
        _mm_sfence();
    }
}

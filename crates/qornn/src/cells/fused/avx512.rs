//! The fused steps with AVX-512F: 16 lanes a vector, one Hadamard block of 16 units or two
//! of 8, the transform's four stages inside one register (larger blocks: the row's
//! transform read from scratch), or 8 rotation pairs; the same arithmetic as the AVX2
//! kernels (`avx2.rs`), so the same results.

use super::quant::{code_lanes16, offsets16, BiasCodes};
use super::{fwht_blocks_into, prefetch_ahead, streams, transform_rows};
use super::{FusedBackward, FusedForward, FusedW};

/// The transform of each block of `m` = 8 (`stages` 3) or 16 (`stages` 4) values of `v`:
/// stage `k` adds a permutation of the lanes to them (lanes that take `a + b`) or
/// subtracts them from it (lanes that take `a - b`), the same sums and differences as
/// `fwht_registers`'s, so the same result.
#[target_feature(enable = "avx512f")]
#[inline]
fn fwht_avx512(v: std::arch::x86_64::__m512, stages: usize) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // Stage 1: pairs (0, 1), (2, 3), …; stage 2: (0, 2), (1, 3), …, within 128 bits.
    let w = _mm512_permute_ps::<0b10_11_00_01>(v);
    let v = _mm512_mask_sub_ps(_mm512_add_ps(v, w), 0xaaaa, w, v);
    let w = _mm512_permute_ps::<0b01_00_11_10>(v);
    let v = _mm512_mask_sub_ps(_mm512_add_ps(v, w), 0xcccc, w, v);
    // Stage 3: pairs (i, i + 4), 128-bit lanes swapped two by two.
    let w = _mm512_shuffle_f32x4::<0b10_11_00_01>(v, v);
    let v = _mm512_mask_sub_ps(_mm512_add_ps(v, w), 0xf0f0, w, v);
    if stages == 3 {
        return v;
    }
    // Stage 4: pairs (i, i + 8), the 256-bit halves swapped.
    let w = _mm512_shuffle_f32x4::<0b01_00_11_10>(v, v);
    _mm512_mask_sub_ps(_mm512_add_ps(v, w), 0xff00, w, v)
}

/// [`super::avx2::modrelu_lanes_avx2`] with 16 lanes, the lanes where `m > 0` as a mask.
#[target_feature(enable = "avx512f")]
#[inline]
fn modrelu_lanes_avx512(
    z: std::arch::x86_64::__m512,
    bm: std::arch::x86_64::__m512,
) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512, u16) {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_ps();
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, zero);
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(z, zero);
    let sign = _mm512_mask_mov_ps(
        _mm512_maskz_mov_ps(negative, _mm512_set1_ps(-1.0)),
        positive,
        _mm512_set1_ps(1.0),
    );
    let m = _mm512_add_ps(_mm512_abs_ps(z), bm);
    (sign, m, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, zero))
}

/// Stores `v` at `p` (16-byte aligned) by non-temporal stores.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn stream_avx512(p: *mut f32, v: std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    if (p as usize).is_multiple_of(64) {
        _mm512_stream_ps(p, v);
    } else {
        _mm_stream_ps(p, _mm512_castps512_ps128(v));
        _mm_stream_ps(p.add(4), _mm512_extractf32x4_ps::<1>(v));
        _mm_stream_ps(p.add(8), _mm512_extractf32x4_ps::<2>(v));
        _mm_stream_ps(p.add(12), _mm512_extractf32x4_ps::<3>(v));
    }
}

/// `R v` on the 8 pairs of lanes of `v`, `R = [[c, -s], [s, c]]` from the pairs' `(c, s)`
/// in `cs` (`transpose`: `R^T v`): `rotate_add`'s products, difference and sum, so the same
/// values (`c v0 - (-s) v1` is `c v0 + s v1` and `(-s) v0 + c v1` is `c v1 - s v0` exactly).
#[target_feature(enable = "avx512f")]
#[inline]
fn rotate16(
    cs: std::arch::x86_64::__m512,
    v: std::arch::x86_64::__m512,
    transpose: bool,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let c = _mm512_permute_ps::<0b10_10_00_00>(cs);
    let s = _mm512_permute_ps::<0b11_11_01_01>(cs);
    let (p, q) = (
        _mm512_mul_ps(c, v),
        _mm512_mul_ps(s, _mm512_permute_ps::<0b10_11_00_01>(v)),
    );
    match transpose {
        // Lanes 2k: p - q; lanes 2k + 1: q + p.
        false => _mm512_mask_sub_ps(_mm512_add_ps(q, p), 0x5555, p, q),
        // Lanes 2k: p + q; lanes 2k + 1: p - q.
        true => _mm512_mask_sub_ps(_mm512_add_ps(p, q), 0xaaaa, p, q),
    }
}

/// Adds units `unit..unit + 16`'s share of `dL/dW`'s sums (`Recurrence::accumulate_gradient`):
/// Hadamard `dz t` at `unit`; rotations, each pair's `(d0 h0, d0 h1, d1 h0, d1 h1)` at
/// `2 unit`, `source` being `t` or `h_{t-1}`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn add_w_gradient(
    w: &FusedW<'_>,
    sums: *mut f32,
    unit: usize,
    dz: std::arch::x86_64::__m512,
    source: std::arch::x86_64::__m512,
) {
    use std::arch::x86_64::*;
    let add_into = |p: *mut f32, v| _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), v));
    match w {
        FusedW::Hadamard { .. } => add_into(sums.add(unit), _mm512_mul_ps(dz, source)),
        FusedW::Rotations { .. } => {
            // Lane j of a vector of sums: pair j / 4, d at (j % 4) / 2, h at j % 2.
            let d_lanes = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
            let h_lanes = _mm512_setr_epi32(0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7);
            for half in 0..2 {
                let offset = _mm512_set1_epi32(8 * half);
                let d = _mm512_permutexvar_ps(_mm512_add_epi32(d_lanes, offset), dz);
                let h = _mm512_permutexvar_ps(_mm512_add_epi32(h_lanes, offset), source);
                add_into(sums.add(2 * unit + 16 * half as usize), _mm512_mul_ps(d, h));
            }
        }
    }
}

/// [`super::avx2::forward_step_avx2`] with 16 lanes a vector (one block of 16, two of 8 or 8
/// rotation pairs; `n` a multiple of 16), the same result.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn forward_step_avx512(step: FusedForward<'_, f32>, w: FusedW<'_>) {
    use std::arch::x86_64::*;
    let (n, width, len) = (w.units(), w.width(), step.h_next.len());
    step.check(n, width, 16);
    let stream = streams(step.h_kept);
    let stages = if width == 16 { 4 } else { 3 };
    let rows_transformed = width > 16;
    let bias_codes = BiasCodes::new(step.quant.as_ref(), step.modrelu, step.bm);
    for row in 0..len / n {
        if rows_transformed {
            let h_prev = &step.h_prev[row * n..(row + 1) * n];
            fwht_blocks_into(h_prev, &mut step.transformed[..n], width);
        }
        for unit in (0..n).step_by(16) {
            let at = row * n + unit;
            let load = |p: &[f32], i: usize| _mm512_loadu_ps(p.as_ptr().add(i));
            // W's term of z: s t (t = H h_{t-1}, in registers or from the row's scratch),
            // or R h_{t-1}.
            let recurrent = match w {
                FusedW::Hadamard { row_scale, .. } => {
                    let t = match rows_transformed {
                        true => load(step.transformed, unit),
                        false => fwht_avx512(load(step.h_prev, at), stages),
                    };
                    _mm512_mul_ps(load(row_scale, unit), t)
                }
                FusedW::Rotations { cos_sin } => {
                    rotate16(load(cos_sin, unit), load(step.h_prev, at), false)
                }
            };
            // z = (x U^T + W's term) + b: two sums.
            let z = _mm512_add_ps(step.input.load_avx512(at, row, unit), recurrent);
            let z = _mm512_add_ps(z, load(step.b, unit));
            let h = if let Some(q) = &step.quant {
                // The hidden state's quantizer: the code times the step.
                let code = code_lanes16(q, z, bias_codes.at(unit), offsets16(q, row, unit, n));
                _mm512_mul_ps(code.value, _mm512_set1_ps(q.q.step))
            } else if step.modrelu {
                let (sign, m, alive) = modrelu_lanes_avx512(z, load(step.bm, unit));
                _mm512_maskz_mov_ps(alive, _mm512_mul_ps(sign, m))
            } else {
                _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, _mm512_setzero_ps()), z)
            };
            _mm512_storeu_ps(step.h_next.as_mut_ptr().add(at), h);
            let kept = step.h_kept.as_mut_ptr().add(at);
            match stream {
                true => stream_avx512(kept, h),
                false => _mm512_storeu_ps(kept, h),
            }
        }
    }
    if stream {
        _mm_sfence();
    }
}

/// [`super::avx2::backward_step_avx2`] with 16 lanes a vector (one block of 16, two of 8 or
/// 8 rotation pairs; `n` a multiple of 16), the same result.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn backward_step_avx512(step: FusedBackward<'_, f32>, w: FusedW<'_>) {
    use std::arch::x86_64::*;
    let (n, width, len) = (w.units(), w.width(), step.dz.len());
    step.check(n, width, 16);
    let stages = if width == 16 { 4 } else { 3 };
    let rows_transformed = width > 16;
    let zero = _mm512_setzero_ps();
    let bias_codes = BiasCodes::new(step.quant.as_ref(), step.modrelu, step.bm);
    for row in 0..len / n {
        if let (true, FusedW::Hadamard { row_scale, .. }) = (rows_transformed, w) {
            let rows = row * n..(row + 1) * n;
            let later = step.later.map(|l| &l[rows.clone()]);
            let h_prev = &step.h_prev[rows];
            let scratch = step.transformed.split_at_mut(n);
            transform_rows(scratch, h_prev, later, row_scale, width);
        }
        for unit in (0..n).step_by(16) {
            let at = row * n + unit;
            let load = |p: &[f32], i: usize| _mm512_loadu_ps(p.as_ptr().add(i));
            prefetch_ahead(step.h_prev, at);
            // W's term of z, what dL/dW's sums take with dz (t = H h_{t-1}, or h_{t-1}) and
            // the carry dz_{t+1} W (or zero), as `Recurrence::project`, `accumulate_gradient`
            // and `carry` compute them: for Hadamard blocks in registers or from the row's
            // scratch, H (s dz_{t+1}); for rotations R^T dz_{t+1} added to zeros.
            let (recurrent, source, carry) = match w {
                FusedW::Hadamard { row_scale, .. } => {
                    let s = load(row_scale, unit);
                    let (t, carry) = match rows_transformed {
                        true => (
                            load(step.transformed, unit),
                            step.later
                                .map_or(zero, |_| load(step.transformed, n + unit)),
                        ),
                        false => (
                            fwht_avx512(load(step.h_prev, at), stages),
                            step.later.map_or(zero, |later| {
                                fwht_avx512(_mm512_mul_ps(load(later, at), s), stages)
                            }),
                        ),
                    };
                    (_mm512_mul_ps(s, t), t, carry)
                }
                FusedW::Rotations { cos_sin } => {
                    let (cs, h) = (load(cos_sin, unit), load(step.h_prev, at));
                    let carry = step.later.map_or(zero, |later| {
                        _mm512_add_ps(zero, rotate16(cs, load(later, at), true))
                    });
                    (rotate16(cs, h, false), h, carry)
                }
            };
            let z = _mm512_add_ps(step.input.load_avx512(at, row, unit), recurrent);
            let z = _mm512_add_ps(z, load(step.b, unit));
            let dh = step.dh.map_or(zero, |dh| load(dh, at));
            let upstream = _mm512_add_ps(carry, dh);
            let add_into =
                |p: *mut f32, v| _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), v));
            // The quantizer's straight-through backward, as the AVX2 kernel's.
            if let Some(q) = &step.quant {
                let code = code_lanes16(q, z, bias_codes.at(unit), offsets16(q, row, unit, n));
                let through = _mm512_mul_ps(upstream, code.inside);
                _mm512_storeu_ps(step.dz.as_mut_ptr().add(at), through);
                add_into(step.db.as_mut_ptr().add(unit), through);
                if step.modrelu {
                    add_into(
                        step.dbm.as_mut_ptr().add(unit),
                        _mm512_mul_ps(through, code.sign),
                    );
                }
                let term = _mm512_add_ps(
                    _mm512_mul_ps(through, code.residual),
                    _mm512_mul_ps(_mm512_mul_ps(upstream, code.clamped), code.value),
                );
                add_into(step.d_step.as_mut_ptr().add(unit), term);
                add_w_gradient(&w, step.d_scale.as_mut_ptr(), unit, through, source);
                continue;
            }
            let dact = if step.modrelu {
                let (sign, _, alive) = modrelu_lanes_avx512(z, load(step.bm, unit));
                let d_bm = _mm512_mul_ps(upstream, _mm512_maskz_mov_ps(alive, sign));
                add_into(step.dbm.as_mut_ptr().add(unit), d_bm);
                _mm512_maskz_mov_ps(alive, _mm512_mul_ps(sign, sign))
            } else {
                _mm512_maskz_mov_ps(
                    _mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, zero),
                    _mm512_set1_ps(1.0),
                )
            };
            let dz = _mm512_mul_ps(upstream, dact);
            _mm512_storeu_ps(step.dz.as_mut_ptr().add(at), dz);
            add_into(step.db.as_mut_ptr().add(unit), dz);
            add_w_gradient(&w, step.d_scale.as_mut_ptr(), unit, dz, source);
        }
    }
}

//! The fused Hadamard steps with AVX2: 8 lanes a vector, a block of 8 units in one
//! register and one of 16 in two (larger blocks: the row's transform read from scratch).

use super::quant::{self, BiasCodes};
use super::{fwht_blocks_into, prefetch_ahead, streams, transform_rows};
use super::{HadamardBackward, HadamardForward};

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

/// Runs the backward step with `width`, the Hadamard block: 8, 16 or a larger power of two.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn backward_step_avx2(
    step: HadamardBackward<'_, f32>,
    row_scale: &[f32],
    width: usize,
) {
    use super::super::recurrence::fwht_registers;
    use std::arch::x86_64::*;
    let (n, len) = (row_scale.len(), step.dz.len());
    step.check(n, width, 8);
    let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
    let rows_transformed = width > 16;
    let chunk = width.min(16);
    let halves = if chunk == 16 { 2 } else { 1 };
    let bias_codes = BiasCodes::new(step.quant.as_ref(), step.modrelu, step.bm);
    for row in (0..len).step_by(n) {
        if rows_transformed {
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
            let s = row_scale.as_ptr().add(unit);
            let high = halves - 1;
            prefetch_ahead(step.h_prev, at);
            // t = H h_{t-1} and the carry dz_{t+1} W = H (s dz_{t+1}) (as
            // `Recurrence::project` and `Recurrence::carry` compute them), or zero: in
            // registers, or read from the row's scratch.
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
            for k in 0..halves {
                let (t_k, carry_k) = if k == 0 {
                    (t.0, carry.0)
                } else {
                    (t.1, carry.1)
                };
                let (at, unit) = (at + 8 * k, unit + 8 * k);
                // z = (x U^T + s t) + b: a product, then two sums.
                let z = _mm256_add_ps(
                    step.input.load_avx2(at, row / n, unit),
                    _mm256_mul_ps(_mm256_loadu_ps(s.add(8 * k)), t_k),
                );
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
                    let ds_p = step.d_scale.as_mut_ptr().add(unit);
                    let ds = _mm256_add_ps(_mm256_loadu_ps(ds_p), _mm256_mul_ps(through, t_k));
                    _mm256_storeu_ps(ds_p, ds);
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
                // dL/ds_i += dz_i t_i (as `Recurrence::accumulate_gradient`).
                let ds_p = step.d_scale.as_mut_ptr().add(unit);
                let ds = _mm256_add_ps(_mm256_loadu_ps(ds_p), _mm256_mul_ps(dz, t_k));
                _mm256_storeu_ps(ds_p, ds);
            }
        }
    }
}

/// Runs the forward step with `width`, the Hadamard block: 8, 16 or a larger power of two. The non-temporal
/// stores, if any, are ordered before the function returns (`sfence`).
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn forward_step_avx2(
    step: HadamardForward<'_, f32>,
    row_scale: &[f32],
    width: usize,
) {
    use super::super::recurrence::fwht_registers;
    use std::arch::x86_64::*;
    let (n, len) = (row_scale.len(), step.h_next.len());
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
            let (h, transformed) = match rows_transformed {
                true => (step.transformed.as_ptr().add(block), true),
                false => (step.h_prev.as_ptr().add(at), false),
            };
            let (low, high) = (_mm256_loadu_ps(h), _mm256_loadu_ps(h.add(8 * (halves - 1))));
            let t = match transformed {
                true => (low, high),
                false => fwht_registers(low, high, width),
            };
            for k in 0..halves {
                let t_k = if k == 0 { t.0 } else { t.1 };
                let (at, unit) = (at + 8 * k, block + 8 * k);
                // z = (x U^T + s t) + b: a product, then two sums.
                let z = _mm256_add_ps(
                    step.input.load_avx2(at, r, unit),
                    _mm256_mul_ps(_mm256_loadu_ps(row_scale.as_ptr().add(unit)), t_k),
                );
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

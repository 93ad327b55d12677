//! A Hadamard recurrence's training steps in one pass over each row's blocks (f32, AVX2,
//! blocks of 8 or 16 units, ReLU or modReLU), each block in registers throughout:
//! - forward: `t = (I ⊗ H_m) h_{t-1}`, `z = x U^T + s t + b`, `h_t = act(z)`, written to
//!   the row block the next step reads and, by non-temporal stores that do not first read
//!   the line they write, to the `(T, B, n)` states kept for the backward pass;
//! - backward: `z_t` recomputed from `h_{t-1}` as above, the carry
//!   `dz_{t+1} W = (I ⊗ H_m)(s dz_{t+1})`, the activation's derivative, and the block's
//!   share of `dL/ds`, `db` and `dbm`.
//!
//! The unfused path (`Recurrence::project`, `Activation::forward_rows`,
//! `Recurrence::carry`, `Activation::backward_rows`, `Recurrence::accumulate_gradient`)
//! makes one pass over the rows for each; these kernels do the same arithmetic, element by
//! element in the same order, so their results are the same bit for bit (tested against
//! that path).

use crate::Real;

/// One backward step of a block of rows (`(rows, n)` each unless said).
pub struct HadamardBackward<'a, T> {
    /// Out: `dL/dz_t`.
    pub dz: &'a mut [T],
    /// `dL/dz_{t+1}`; `None` at the last step (no carry).
    pub later: Option<&'a [T]>,
    /// `x_t U^T`, the input's share of `z_t` (`project_input`).
    pub input_projection: &'a [T],
    pub h_prev: &'a [T],
    /// The read-out's `dL/dh_t`; `None`: zero (a many-to-one read-out before the last step).
    pub dh: Option<&'a [T]>,
    /// `b`, `bm`: `(n)` each (the row scales are the recurrence's).
    pub b: &'a [T],
    pub bm: &'a [T],
    pub modrelu: bool,
    /// This thread's sums, added into: `dL/ds`, `db`, `dbm` (`(n)` each).
    pub d_scale: &'a mut [T],
    pub db: &'a mut [T],
    pub dbm: &'a mut [T],
}

impl<'a, T: Real> HadamardBackward<'a, T> {
    /// The same step on `f32` slices; `None` when `T` is not `f32`.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn into_f32(self) -> Option<HadamardBackward<'a, f32>> {
        use super::recurrence::{as_f32, as_f32_mut};
        Some(HadamardBackward {
            dz: as_f32_mut(self.dz)?,
            later: self.later.map(as_f32),
            input_projection: as_f32(self.input_projection),
            h_prev: as_f32(self.h_prev),
            dh: self.dh.map(as_f32),
            b: as_f32(self.b),
            bm: as_f32(self.bm),
            modrelu: self.modrelu,
            d_scale: as_f32_mut(self.d_scale)?,
            db: as_f32_mut(self.db)?,
            dbm: as_f32_mut(self.dbm)?,
        })
    }
}

/// Runs the step with `width` = 8 or 16 (the Hadamard block).
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn backward_step_avx2(
    step: HadamardBackward<'_, f32>,
    row_scale: &[f32],
    width: usize,
) {
    use super::recurrence::fwht_registers;
    use std::arch::x86_64::*;
    let n = row_scale.len();
    let len = step.dz.len();
    assert!(n.is_multiple_of(width) && len.is_multiple_of(n) && (width == 8 || width == 16));
    assert!(step.input_projection.len() == len && step.h_prev.len() == len);
    assert!(step.later.is_none_or(|l| l.len() == len) && step.dh.is_none_or(|d| d.len() == len));
    assert!(step.b.len() == n && step.bm.len() == n);
    assert!(step.d_scale.len() >= n && step.db.len() == n && step.dbm.len() == n);
    let (zero, one, minus_one) = (
        _mm256_setzero_ps(),
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(-1.0),
    );
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let halves = if width == 16 { 2 } else { 1 };
    for row in (0..len).step_by(n) {
        for block in (0..n).step_by(width) {
            let (at, unit) = (row + block, block);
            let load = |p: *const f32, k: usize| _mm256_loadu_ps(p.add(8 * k));
            let s = row_scale.as_ptr().add(unit);
            let high = halves - 1;
            // t = H h_{t-1}, in registers (as `Recurrence::project` computes it).
            let h = step.h_prev.as_ptr().add(at);
            let t = fwht_registers(load(h, 0), load(h, high), width);
            // dz_{t+1} W = H (s dz_{t+1}) (as `Recurrence::carry`), or zero.
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
            for k in 0..halves {
                let (t_k, carry_k) = if k == 0 {
                    (t.0, carry.0)
                } else {
                    (t.1, carry.1)
                };
                let (at, unit) = (at + 8 * k, unit + 8 * k);
                // z = (x U^T + s t) + b: a product, then two sums.
                let z = _mm256_add_ps(
                    _mm256_loadu_ps(step.input_projection.as_ptr().add(at)),
                    _mm256_mul_ps(_mm256_loadu_ps(s.add(8 * k)), t_k),
                );
                let z = _mm256_add_ps(z, _mm256_loadu_ps(step.b.as_ptr().add(unit)));
                let dh = match step.dh {
                    Some(dh) => _mm256_loadu_ps(dh.as_ptr().add(at)),
                    None => zero,
                };
                let upstream = _mm256_add_ps(carry_k, dh);
                // `Activation::eval`'s derivatives: ReLU 1 where z > 0; modReLU, where
                // |z| + bm > 0, sign(z)^2 and (for bm) sign(z); 0 elsewhere.
                let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(z, zero);
                let dact = if step.modrelu {
                    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(z, zero);
                    let sign = _mm256_or_ps(
                        _mm256_and_ps(positive, one),
                        _mm256_and_ps(negative, minus_one),
                    );
                    let bm = _mm256_loadu_ps(step.bm.as_ptr().add(unit));
                    let m = _mm256_add_ps(_mm256_and_ps(z, magnitude), bm);
                    let alive = _mm256_cmp_ps::<_CMP_GT_OQ>(m, zero);
                    let dbm_p = step.dbm.as_mut_ptr().add(unit);
                    let d_bm = _mm256_mul_ps(upstream, _mm256_and_ps(alive, sign));
                    _mm256_storeu_ps(dbm_p, _mm256_add_ps(_mm256_loadu_ps(dbm_p), d_bm));
                    _mm256_and_ps(alive, _mm256_mul_ps(sign, sign))
                } else {
                    _mm256_and_ps(positive, one)
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

/// One forward step of a block of rows (`(rows, n)` each unless said).
pub struct HadamardForward<'a, T> {
    /// `x_t U^T`, the input's share of `z_t` (`project_input`).
    pub input_projection: &'a [T],
    pub h_prev: &'a [T],
    /// Out: `h_t`, for the next step.
    pub h_next: &'a mut [T],
    /// Out: `h_t` again, into the states kept for the backward pass (non-temporal stores
    /// where it is 16-byte aligned).
    pub h_kept: &'a mut [T],
    /// `b`, `bm`: `(n)` each.
    pub b: &'a [T],
    pub bm: &'a [T],
    pub modrelu: bool,
}

impl<'a, T: Real> HadamardForward<'a, T> {
    /// The same step on `f32` slices; `None` when `T` is not `f32`.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn into_f32(self) -> Option<HadamardForward<'a, f32>> {
        use super::recurrence::{as_f32, as_f32_mut};
        Some(HadamardForward {
            h_next: as_f32_mut(self.h_next)?,
            h_kept: as_f32_mut(self.h_kept)?,
            input_projection: as_f32(self.input_projection),
            h_prev: as_f32(self.h_prev),
            b: as_f32(self.b),
            bm: as_f32(self.bm),
            modrelu: self.modrelu,
        })
    }
}

/// Runs the forward step with `width` = 8 or 16 (the Hadamard block). The non-temporal
/// stores are ordered before the function returns (`sfence`).
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn forward_step_avx2(
    step: HadamardForward<'_, f32>,
    row_scale: &[f32],
    width: usize,
) {
    use super::recurrence::fwht_registers;
    use std::arch::x86_64::*;
    let n = row_scale.len();
    let len = step.h_next.len();
    assert!(n.is_multiple_of(width) && len.is_multiple_of(n) && (width == 8 || width == 16));
    assert!(step.input_projection.len() == len && step.h_prev.len() == len);
    assert!(step.h_kept.len() == len && step.b.len() == n && step.bm.len() == n);
    // Every store into `h_kept` is at a multiple of 8 floats from its start.
    let stream = (step.h_kept.as_ptr() as usize).is_multiple_of(16);
    let (zero, one, minus_one) = (
        _mm256_setzero_ps(),
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(-1.0),
    );
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let halves = if width == 16 { 2 } else { 1 };
    for row in (0..len).step_by(n) {
        for block in (0..n).step_by(width) {
            let at = row + block;
            let h = step.h_prev.as_ptr().add(at);
            let t = fwht_registers(
                _mm256_loadu_ps(h),
                _mm256_loadu_ps(h.add(8 * (halves - 1))),
                width,
            );
            for k in 0..halves {
                let t_k = if k == 0 { t.0 } else { t.1 };
                let (at, unit) = (at + 8 * k, block + 8 * k);
                // z = (x U^T + s t) + b: a product, then two sums.
                let z = _mm256_add_ps(
                    _mm256_loadu_ps(step.input_projection.as_ptr().add(at)),
                    _mm256_mul_ps(_mm256_loadu_ps(row_scale.as_ptr().add(unit)), t_k),
                );
                let z = _mm256_add_ps(z, _mm256_loadu_ps(step.b.as_ptr().add(unit)));
                // `Activation::eval`: ReLU z where z > 0; modReLU sign(z) (|z| + bm) where
                // |z| + bm > 0; 0 elsewhere.
                let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(z, zero);
                let h = if step.modrelu {
                    let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(z, zero);
                    let sign = _mm256_or_ps(
                        _mm256_and_ps(positive, one),
                        _mm256_and_ps(negative, minus_one),
                    );
                    let bm = _mm256_loadu_ps(step.bm.as_ptr().add(unit));
                    let m = _mm256_add_ps(_mm256_and_ps(z, magnitude), bm);
                    let alive = _mm256_cmp_ps::<_CMP_GT_OQ>(m, zero);
                    _mm256_and_ps(alive, _mm256_mul_ps(sign, m))
                } else {
                    _mm256_and_ps(positive, z)
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
    _mm_sfence();
}

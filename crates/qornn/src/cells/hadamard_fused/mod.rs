//! A Hadamard recurrence's training steps in one pass over each row's blocks (f32, AVX2 or
//! AVX-512F, blocks of 8 or 16 units, ReLU or modReLU), each block in registers throughout:
//! - forward: `t = (I ⊗ H_m) h_{t-1}`, `z = x U^T + s t + b`, `h_t = act(z)`, written to
//!   the row block the next step reads and, by non-temporal stores that do not first read
//!   the line they write, to the `(T, B, n)` states kept for the backward pass;
//! - backward: `z_t` recomputed from `h_{t-1}` as above, the carry
//!   `dz_{t+1} W = (I ⊗ H_m)(s dz_{t+1})`, the activation's derivative, and the block's
//!   share of `dL/ds`, `db` and `dbm`.
//!
//! With the activations fake-quantized (`--act-bits`) the kernels apply the hidden state's
//! quantizer instead of the float activation (`quant.rs`).
//!
//! The unfused path (`Recurrence::project`, `Activation::forward_rows` or
//! `HiddenQuantizer::forward_rows`, `Recurrence::carry`, their `backward_rows`,
//! `Recurrence::accumulate_gradient`) makes one pass over the rows for each; these kernels
//! do the same arithmetic, element by element in the same order, so their results are the
//! same bit for bit (tested against that path).

use super::recurrence::Recurrence;
#[cfg(target_arch = "x86_64")]
use super::recurrence::{as_f32, is_f32, register_block};
use crate::Real;
#[cfg(target_arch = "x86_64")]
use avx512::{backward_step_avx512, forward_step_avx512};
#[cfg(target_arch = "x86_64")]
use quant::BiasCodes;

#[cfg(target_arch = "x86_64")]
mod avx512;
mod quant;

pub use quant::FusedQuant;

/// Which kernels run a Hadamard recurrence's fused steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusedKernel {
    /// None: the pass per operation.
    Unfused,
    /// AVX2, 8 lanes a vector.
    Avx2,
    /// AVX-512F, 16 lanes, where the CPU has it and `n` is a multiple of 16; else AVX2. The
    /// default.
    Fastest,
}

impl<T: Real> Recurrence<'_, T> {
    /// Whether the fused steps ([`Self::forward_fused`], [`Self::backward_fused`]) run
    /// here: a Hadamard `W` in f32 with blocks of 8 or 16, on a CPU with AVX2.
    pub fn has_fused_steps(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Recurrence::Hadamard { block, .. } = *self {
            return is_f32::<T>() && register_block(block).is_some();
        }
        false
    }

    /// What a fused step by `kernel` (not `Unfused`) runs with, where
    /// [`Self::has_fused_steps`] (else it panics): the row scales as f32, the block, and
    /// whether the kernel is the AVX-512 one (the CPU has it, `n` is a multiple of 16).
    #[cfg(target_arch = "x86_64")]
    fn fused_setup(&self, kernel: FusedKernel) -> (&[f32], usize, bool) {
        assert!(self.has_fused_steps() && kernel != FusedKernel::Unfused);
        let Recurrence::Hadamard { row_scale, block } = *self else {
            unreachable!("has_fused_steps: a Hadamard W")
        };
        let avx512 = kernel == FusedKernel::Fastest
            && row_scale.len().is_multiple_of(16)
            && std::arch::is_x86_feature_detected!("avx512f");
        (as_f32(row_scale), block, avx512)
    }

    /// A Hadamard `W`'s whole forward step for a block of rows in one pass
    /// ([`HadamardForward`]: `project` and the activation fused, the same result) by
    /// `kernel` (not `Unfused`), where [`Self::has_fused_steps`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub fn forward_fused(&self, step: HadamardForward<'_, T>, kernel: FusedKernel) {
        #[cfg(target_arch = "x86_64")]
        {
            let (scale, block, avx512) = self.fused_setup(kernel);
            let step = step.into_f32().expect("T is f32");
            // SAFETY: `has_fused_steps` found AVX2 (`register_block`), `fused_setup`
            // AVX-512F for the AVX-512 kernel.
            unsafe {
                match avx512 {
                    true => forward_step_avx512(step, scale, block),
                    false => forward_step_avx2(step, scale, block),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no fused steps off x86-64 (has_fused_steps)");
    }

    /// A Hadamard `W`'s whole backward step for a block of rows in one pass
    /// ([`HadamardBackward`]: `project`, `carry`, the activation's derivative and
    /// `accumulate_gradient` fused, the same result) by `kernel`, as
    /// [`Self::forward_fused`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub fn backward_fused(&self, step: HadamardBackward<'_, T>, kernel: FusedKernel) {
        #[cfg(target_arch = "x86_64")]
        {
            let (scale, block, avx512) = self.fused_setup(kernel);
            let step = step.into_f32().expect("T is f32");
            // SAFETY: as in `forward_fused`.
            unsafe {
                match avx512 {
                    true => backward_step_avx512(step, scale, block),
                    false => backward_step_avx2(step, scale, block),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no fused steps off x86-64 (has_fused_steps)");
    }
}

/// The input's share of `z_t`, `x_t U^T`, for a block of rows of a forward step.
#[derive(Clone, Copy)]
pub enum InputShare<'a, T> {
    /// Computed for the block (`project_input`), `(rows, n)`.
    Projected(&'a [T]),
    /// One input per row (`d = 1`, `x: (rows)`, `u: (n)`): `x_r u_i`, one product per
    /// unit, read in the kernel instead of a product call per step.
    Single { x: &'a [T], u: &'a [T] },
}

impl<'a, T: Real> InputShare<'a, T> {
    #[cfg(target_arch = "x86_64")]
    fn check(&self, len: usize, n: usize) {
        match self {
            InputShare::Projected(p) => assert_eq!(p.len(), len),
            InputShare::Single { x, u } => assert!(x.len() * n == len && u.len() == n),
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn into_f32(self) -> InputShare<'a, f32> {
        match self {
            InputShare::Projected(p) => InputShare::Projected(as_f32(p)),
            InputShare::Single { x, u } => InputShare::Single {
                x: as_f32(x),
                u: as_f32(u),
            },
        }
    }
}

impl InputShare<'_, f32> {
    /// The 8 values of the share at `at`: row `row`, units `unit..` (`at = row n + unit`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load_avx2(&self, at: usize, row: usize, unit: usize) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        match *self {
            InputShare::Projected(p) => _mm256_loadu_ps(p.as_ptr().add(at)),
            InputShare::Single { x, u } => _mm256_mul_ps(
                _mm256_set1_ps(*x.get_unchecked(row)),
                _mm256_loadu_ps(u.as_ptr().add(unit)),
            ),
        }
    }

    /// The 16 values of the share at `at`, as [`Self::load_avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_avx512(&self, at: usize, row: usize, unit: usize) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        match *self {
            InputShare::Projected(p) => _mm512_loadu_ps(p.as_ptr().add(at)),
            InputShare::Single { x, u } => _mm512_mul_ps(
                _mm512_set1_ps(*x.get_unchecked(row)),
                _mm512_loadu_ps(u.as_ptr().add(unit)),
            ),
        }
    }
}

/// One backward step of a block of rows (`(rows, n)` each unless said).
pub struct HadamardBackward<'a, T> {
    /// Out: `dL/dz_t`.
    pub dz: &'a mut [T],
    /// `dL/dz_{t+1}`; `None` at the last step (no carry).
    pub later: Option<&'a [T]>,
    /// `x_t U^T`, the input's share of `z_t` (`project_input`: in the backward pass a
    /// product per step measured faster than reading a single input's share in the
    /// kernel).
    pub input_projection: &'a [T],
    pub h_prev: &'a [T],
    /// The read-out's `dL/dh_t`; `None`: zero (a many-to-one read-out before the last step).
    pub dh: Option<&'a [T]>,
    /// `b`, `bm`: `(n)` each (the row scales are the recurrence's).
    pub b: &'a [T],
    pub bm: &'a [T],
    pub modrelu: bool,
    /// The hidden state's quantizer, else the float activation.
    pub quant: Option<FusedQuant>,
    /// This thread's sums, added into: `dL/ds`, `db`, `dbm` (`(n)` each), and with `quant`
    /// the `dh/ds` terms of the quantizer's step by unit (`(n)`; else empty).
    pub d_scale: &'a mut [T],
    pub db: &'a mut [T],
    pub dbm: &'a mut [T],
    pub d_step: &'a mut [T],
}

impl<'a, T: Real> HadamardBackward<'a, T> {
    /// Panics unless the slices have the step's shapes for `n` units in blocks of `width`
    /// (8 or 16; `n` a multiple of `lanes`), so that the kernels' loads stay inside them.
    #[cfg(target_arch = "x86_64")]
    fn check(&self, n: usize, width: usize, lanes: usize) {
        let len = self.dz.len();
        assert!(n.is_multiple_of(lanes.max(width)) && len.is_multiple_of(n));
        assert!(width == 8 || width == 16);
        assert!(self.input_projection.len() == len && self.h_prev.len() == len);
        assert!(
            self.later.is_none_or(|l| l.len() == len) && self.dh.is_none_or(|d| d.len() == len)
        );
        assert!(self.b.len() == n && self.bm.len() == n);
        assert!(self.d_scale.len() >= n && self.db.len() == n && self.dbm.len() == n);
        assert!(self.quant.is_none() || self.d_step.len() == n);
    }

    /// The same step on `f32` slices; `None` when `T` is not `f32`.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn into_f32(self) -> Option<HadamardBackward<'a, f32>> {
        use super::recurrence::as_f32_mut;
        Some(HadamardBackward {
            dz: as_f32_mut(self.dz)?,
            later: self.later.map(as_f32),
            input_projection: as_f32(self.input_projection),
            h_prev: as_f32(self.h_prev),
            dh: self.dh.map(as_f32),
            b: as_f32(self.b),
            bm: as_f32(self.bm),
            modrelu: self.modrelu,
            quant: self.quant,
            d_scale: as_f32_mut(self.d_scale)?,
            db: as_f32_mut(self.db)?,
            dbm: as_f32_mut(self.dbm)?,
            d_step: as_f32_mut(self.d_step)?,
        })
    }
}

/// `sign(z)` (1, -1 or 0), modReLU's `m = |z| + bm` and the lanes where `m > 0` (all
/// ones): the lanes of `Activation::eval`'s branches.
#[cfg(target_arch = "x86_64")]
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

/// How far ahead of where it reads `h_{t-1}` a backward step prefetches it, in floats
/// (4 KiB). The forward pass wrote the kept states past the cache (non-temporal stores) and
/// the backward pass reads each step's once, in order: without the hint the loads wait on
/// memory (Intel Xeon, pMNIST shape, two threads: the backward pass 0.030 s without, 0.022 s
/// with; 1 KiB ahead about the same).
#[cfg(target_arch = "x86_64")]
const PREFETCH_FLOATS: usize = 1024;

/// Asks for the cache line `PREFETCH_FLOATS` past `states[at]`: a hint, which past the
/// slice's end at most brings in a line of whatever follows it (a prefetch never faults).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_ahead(states: &[f32], at: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let ahead = states.as_ptr().wrapping_add(at + PREFETCH_FLOATS);
    // SAFETY: SSE is part of x86-64; the address is never dereferenced.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8) };
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
    let (n, len) = (row_scale.len(), step.dz.len());
    step.check(n, width, 8);
    let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
    let halves = if width == 16 { 2 } else { 1 };
    let bias_codes = BiasCodes::new(step.quant.as_ref(), step.modrelu, step.bm);
    for row in (0..len).step_by(n) {
        for block in (0..n).step_by(width) {
            let (at, unit) = (row + block, block);
            let load = |p: *const f32, k: usize| _mm256_loadu_ps(p.add(8 * k));
            let s = row_scale.as_ptr().add(unit);
            let high = halves - 1;
            // t = H h_{t-1}, in registers (as `Recurrence::project` computes it).
            prefetch_ahead(step.h_prev, at);
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

/// The smallest step (rows times units) whose kept states the forward kernels write by
/// non-temporal stores: below it (a few sequences) the states of a whole pass fit in cache
/// and the fence that orders such stores would cost more than it saves.
#[cfg(target_arch = "x86_64")]
const STREAM_MIN_VALUES: usize = 4096;

/// Whether a forward step writes its kept states `kept` by non-temporal stores: a step of
/// [`STREAM_MIN_VALUES`] or more, 16-byte aligned (every store is at a multiple of 8
/// floats from the start).
#[cfg(target_arch = "x86_64")]
fn streams(kept: &[f32]) -> bool {
    kept.len() >= STREAM_MIN_VALUES && (kept.as_ptr() as usize).is_multiple_of(16)
}

/// One forward step of a block of rows (`(rows, n)` each unless said).
pub struct HadamardForward<'a, T> {
    /// `x_t U^T`, the input's share of `z_t`.
    pub input: InputShare<'a, T>,
    pub h_prev: &'a [T],
    /// Out: `h_t`, for the next step.
    pub h_next: &'a mut [T],
    /// Out: `h_t` again, into the states kept for the backward pass (non-temporal stores
    /// where [`streams`]).
    pub h_kept: &'a mut [T],
    /// `b`, `bm`: `(n)` each.
    pub b: &'a [T],
    pub bm: &'a [T],
    pub modrelu: bool,
    /// The hidden state's quantizer, else the float activation.
    pub quant: Option<FusedQuant>,
}

impl<'a, T: Real> HadamardForward<'a, T> {
    /// As [`HadamardBackward::check`].
    #[cfg(target_arch = "x86_64")]
    fn check(&self, n: usize, width: usize, lanes: usize) {
        let len = self.h_next.len();
        assert!(n.is_multiple_of(lanes.max(width)) && len.is_multiple_of(n));
        assert!(width == 8 || width == 16);
        assert!(self.h_prev.len() == len);
        self.input.check(len, n);
        assert!(self.h_kept.len() == len && self.b.len() == n && self.bm.len() == n);
    }

    /// The same step on `f32` slices; `None` when `T` is not `f32`.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn into_f32(self) -> Option<HadamardForward<'a, f32>> {
        use super::recurrence::as_f32_mut;
        Some(HadamardForward {
            h_next: as_f32_mut(self.h_next)?,
            h_kept: as_f32_mut(self.h_kept)?,
            input: self.input.into_f32(),
            h_prev: as_f32(self.h_prev),
            b: as_f32(self.b),
            bm: as_f32(self.bm),
            modrelu: self.modrelu,
            quant: self.quant,
        })
    }
}

/// Runs the forward step with `width` = 8 or 16 (the Hadamard block). The non-temporal
/// stores, if any, are ordered before the function returns (`sfence`).
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
    let (n, len) = (row_scale.len(), step.h_next.len());
    step.check(n, width, 8);
    let stream = streams(step.h_kept);
    let halves = if width == 16 { 2 } else { 1 };
    let bias_codes = BiasCodes::new(step.quant.as_ref(), step.modrelu, step.bm);
    for (r, row) in (0..len).step_by(n).enumerate() {
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

//! A structured recurrence's training steps in one pass over each row (f32, AVX2 or
//! AVX-512F, ReLU or modReLU): a Hadamard `W` with blocks of 8 or 16 units in registers
//! throughout, larger blocks (HadamRNN's one block of `n`) transformed a row at a time into
//! a row of scratch that stays in the L1 cache and read from there, or 2 x 2 rotations
//! (a pair's `(c, s)` spread across lanes):
//! - forward: W's term (`s t`, `t = (I ⊗ H_m) h_{t-1}`, or `R h_{t-1}`),
//!   `z = x U^T + W's term + b`, `h_t = act(z)`, written to the row block the next step
//!   reads and, by non-temporal stores that do not first read the line they write, to the
//!   `(T, B, n)` states kept for the backward pass;
//! - backward: `z_t` recomputed from `h_{t-1}` as above, the carry `dz_{t+1} W`
//!   (`(I ⊗ H_m)(s dz_{t+1})` or `R^T dz_{t+1}`), the activation's derivative, and the
//!   units' share of `dL/dW`'s sums (`dL/ds`, or the 2 x 2 blocks), `db` and `dbm`.
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
#[cfg(target_arch = "x86_64")]
use super::recurrence::{fwht_blocks, fwht_blocks_into};
use crate::Real;
#[cfg(target_arch = "x86_64")]
use avx2::{backward_step_avx2, forward_step_avx2};
#[cfg(target_arch = "x86_64")]
use avx512::{backward_step_avx512, forward_step_avx512};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod quant;

pub use quant::FusedQuant;

/// Which kernels run a structured recurrence's fused steps.
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

/// The structured `W` a fused step applies, in f32.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum FusedW<'a> {
    /// `diag(row_scale) (I ⊗ H_m)`, `m` = `block`.
    Hadamard { row_scale: &'a [f32], block: usize },
    /// 2 x 2 rotations, `(c_k, s_k)` in entries `2k, 2k + 1`.
    Rotations { cos_sin: &'a [f32] },
}

#[cfg(target_arch = "x86_64")]
impl FusedW<'_> {
    /// The hidden units `n`.
    fn units(&self) -> usize {
        match self {
            FusedW::Hadamard { row_scale, .. } => row_scale.len(),
            FusedW::Rotations { cos_sin } => cos_sin.len(),
        }
    }

    /// The units a kernel's loop takes together: the Hadamard block (8, 16 or more), or 8
    /// for rotations (4 pairs).
    fn width(&self) -> usize {
        match self {
            FusedW::Hadamard { block, .. } => *block,
            FusedW::Rotations { .. } => 8,
        }
    }
}

impl<T: Real> Recurrence<'_, T> {
    /// Whether the fused steps ([`Self::forward_fused`], [`Self::backward_fused`]) run
    /// here, in f32 on a CPU with AVX2: a Hadamard `W` with blocks of 8, 16 or a larger
    /// power of two (a multiple of 16), or rotations on a multiple of 8 units.
    pub fn has_fused_steps(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        let fused = {
            let avx2 = || std::arch::is_x86_feature_detected!("avx2");
            is_f32::<T>()
                && match *self {
                    Recurrence::Hadamard { block, .. } => {
                        let rows_block = block >= 32 && block.is_power_of_two();
                        register_block(block).is_some() || (rows_block && avx2())
                    }
                    Recurrence::Rotations { cos_sin } => cos_sin.len().is_multiple_of(8) && avx2(),
                    Recurrence::Dense(_) => false,
                }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let fused = false;
        fused
    }

    /// What a fused step by `kernel` (not `Unfused`) runs with, where
    /// [`Self::has_fused_steps`] (else it panics): `W` as f32, and whether the kernel is
    /// the AVX-512 one (the CPU has it, `n` is a multiple of 16).
    #[cfg(target_arch = "x86_64")]
    fn fused_setup(&self, kernel: FusedKernel) -> (FusedW<'_>, bool) {
        assert!(self.has_fused_steps() && kernel != FusedKernel::Unfused);
        let w = match *self {
            Recurrence::Hadamard { row_scale, block } => FusedW::Hadamard {
                row_scale: as_f32(row_scale),
                block,
            },
            Recurrence::Rotations { cos_sin } => FusedW::Rotations {
                cos_sin: as_f32(cos_sin),
            },
            Recurrence::Dense(_) => unreachable!("has_fused_steps: a structured W"),
        };
        let avx512 = kernel == FusedKernel::Fastest
            && w.units().is_multiple_of(16)
            && std::arch::is_x86_feature_detected!("avx512f");
        (w, avx512)
    }

    /// A structured `W`'s whole forward step for a block of rows in one pass
    /// ([`FusedForward`]: `project` and the activation fused, the same result) by
    /// `kernel` (not `Unfused`), where [`Self::has_fused_steps`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub fn forward_fused(&self, step: FusedForward<'_, T>, kernel: FusedKernel) {
        #[cfg(target_arch = "x86_64")]
        {
            let (w, avx512) = self.fused_setup(kernel);
            let step = step.into_f32().expect("T is f32");
            // SAFETY: `has_fused_steps` found AVX2, `fused_setup` AVX-512F for the AVX-512
            // kernel.
            unsafe {
                match avx512 {
                    true => forward_step_avx512(step, w),
                    false => forward_step_avx2(step, w),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no fused steps off x86-64 (has_fused_steps)");
    }

    /// A structured `W`'s whole backward step for a block of rows in one pass
    /// ([`FusedBackward`]: `project`, `carry`, the activation's derivative and
    /// `accumulate_gradient` fused, the same result) by `kernel`, as
    /// [`Self::forward_fused`].
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub fn backward_fused(&self, step: FusedBackward<'_, T>, kernel: FusedKernel) {
        #[cfg(target_arch = "x86_64")]
        {
            let (w, avx512) = self.fused_setup(kernel);
            let step = step.into_f32().expect("T is f32");
            // SAFETY: as in `forward_fused`.
            unsafe {
                match avx512 {
                    true => backward_step_avx512(step, w),
                    false => backward_step_avx2(step, w),
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
pub struct FusedBackward<'a, T> {
    /// Out: `dL/dz_t`.
    pub dz: &'a mut [T],
    /// `dL/dz_{t+1}`; `None` at the last step (no carry).
    pub later: Option<&'a [T]>,
    /// `x_t U^T`, the input's share of `z_t`.
    pub input: InputShare<'a, T>,
    pub h_prev: &'a [T],
    /// The read-out's `dL/dh_t`; `None`: zero (a many-to-one read-out before the last step).
    pub dh: Option<&'a [T]>,
    /// `b`, `bm`: `(n)` each (W is the recurrence's).
    pub b: &'a [T],
    pub bm: &'a [T],
    pub modrelu: bool,
    /// The hidden state's quantizer, else the float activation.
    pub quant: Option<FusedQuant>,
    /// Scratch for Hadamard blocks larger than 16: a row's transform and its carry, `(2 n)` (else
    /// unused).
    pub transformed: &'a mut [T],
    /// This thread's sums, added into: `dL/dW`'s (`Recurrence::accumulate_gradient`'s
    /// `2 n`), `db`, `dbm` (`(n)` each), and with `quant` the `dh/ds` terms of the
    /// quantizer's step by unit (`(n)`; else empty).
    pub d_scale: &'a mut [T],
    pub db: &'a mut [T],
    pub dbm: &'a mut [T],
    pub d_step: &'a mut [T],
}

impl<'a, T: Real> FusedBackward<'a, T> {
    /// Panics unless the slices have the step's shapes for `n` units in blocks of `width`
    /// (a power of two from 8; `n` a multiple of it and of `lanes`), so that the kernels'
    /// loads stay inside them.
    #[cfg(target_arch = "x86_64")]
    fn check(&self, n: usize, width: usize, lanes: usize) {
        let len = self.dz.len();
        assert!(n.is_multiple_of(lanes.max(width)) && len.is_multiple_of(n));
        assert!(width.is_power_of_two() && width >= 8);
        assert!(width <= 16 || self.transformed.len() >= 2 * n);
        assert!(self.h_prev.len() == len);
        self.input.check(len, n);
        assert!(
            self.later.is_none_or(|l| l.len() == len) && self.dh.is_none_or(|d| d.len() == len)
        );
        assert!(self.b.len() == n && self.bm.len() == n);
        assert!(self.d_scale.len() >= 2 * n && self.db.len() == n && self.dbm.len() == n);
        assert!(self.quant.is_none() || self.d_step.len() == n);
    }

    /// The same step on `f32` slices; `None` when `T` is not `f32`.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn into_f32(self) -> Option<FusedBackward<'a, f32>> {
        use super::recurrence::as_f32_mut;
        Some(FusedBackward {
            dz: as_f32_mut(self.dz)?,
            later: self.later.map(as_f32),
            input: self.input.into_f32(),
            h_prev: as_f32(self.h_prev),
            dh: self.dh.map(as_f32),
            b: as_f32(self.b),
            bm: as_f32(self.bm),
            modrelu: self.modrelu,
            quant: self.quant,
            transformed: as_f32_mut(self.transformed)?,
            d_scale: as_f32_mut(self.d_scale)?,
            db: as_f32_mut(self.db)?,
            dbm: as_f32_mut(self.dbm)?,
            d_step: as_f32_mut(self.d_step)?,
        })
    }
}

/// Blocks larger than 16, a row at a time: `t = (I ⊗ H_m) h_{t-1}` into `t_row` as
/// `Recurrence::project` transforms it, and when `later` is given (`dz_{t+1}`'s row) the
/// carry `(I ⊗ H_m)(s dz_{t+1})` into `carry_row` as `Recurrence::carry` computes it (each
/// product rounded, then transformed): the same results.
#[cfg(target_arch = "x86_64")]
fn transform_rows(
    (t_row, carry_row): (&mut [f32], &mut [f32]),
    h_prev: &[f32],
    later: Option<&[f32]>,
    row_scale: &[f32],
    block: usize,
) {
    fwht_blocks_into(h_prev, &mut t_row[..h_prev.len()], block);
    if let Some(later) = later {
        let carry_row = &mut carry_row[..h_prev.len()];
        for ((c, &l), &s) in carry_row.iter_mut().zip(later).zip(row_scale) {
            *c = l * s;
        }
        fwht_blocks(carry_row, block);
    }
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
pub struct FusedForward<'a, T> {
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
    /// Scratch for Hadamard blocks larger than 16: a row's transform, `(n)` (else unused).
    pub transformed: &'a mut [T],
}

impl<'a, T: Real> FusedForward<'a, T> {
    /// As [`FusedBackward::check`].
    #[cfg(target_arch = "x86_64")]
    fn check(&self, n: usize, width: usize, lanes: usize) {
        let len = self.h_next.len();
        assert!(n.is_multiple_of(lanes.max(width)) && len.is_multiple_of(n));
        assert!(width.is_power_of_two() && width >= 8);
        assert!(width <= 16 || self.transformed.len() >= n);
        assert!(self.h_prev.len() == len);
        self.input.check(len, n);
        assert!(self.h_kept.len() == len && self.b.len() == n && self.bm.len() == n);
    }

    /// The same step on `f32` slices; `None` when `T` is not `f32`.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn into_f32(self) -> Option<FusedForward<'a, f32>> {
        use super::recurrence::as_f32_mut;
        Some(FusedForward {
            h_next: as_f32_mut(self.h_next)?,
            h_kept: as_f32_mut(self.h_kept)?,
            input: self.input.into_f32(),
            h_prev: as_f32(self.h_prev),
            b: as_f32(self.b),
            bm: as_f32(self.bm),
            modrelu: self.modrelu,
            quant: self.quant,
            transformed: as_f32_mut(self.transformed)?,
        })
    }
}

//! The Elman cells' hidden nonlinearity (ReLU, modReLU, tanh) and its row loops, forward
//! and backward, compiled for AVX2 where the CPU has it.

use crate::Real;
use serde::{Deserialize, Serialize};

/// The hidden nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    /// `modrelu(z) = sign(z) relu(|z| + bm)` with a learned bias `bm` per unit.
    Modrelu,
    /// The Elman RNN's classic nonlinearity.
    Tanh,
}

impl Activation {
    /// `(act(z), d act / dz, d act / d bm)` for one unit.
    #[inline(always)]
    fn eval<T: Real>(self, z: T, bm: T) -> (T, T, T) {
        match self {
            Activation::Relu => {
                if z > T::zero() {
                    (z, T::one(), T::zero())
                } else {
                    (T::zero(), T::zero(), T::zero())
                }
            }
            Activation::Tanh => {
                let h = z.tanh_fast();
                (h, T::one() - h * h, T::zero())
            }
            Activation::Modrelu => {
                let sign = if z > T::zero() {
                    T::one()
                } else if z < T::zero() {
                    -T::one()
                } else {
                    T::zero()
                };
                let m = z.abs() + bm;
                if m > T::zero() {
                    // d/dz = sign(z)^2, d/dbm = sign(z)
                    (sign * m, sign * sign, sign)
                } else {
                    (T::zero(), T::zero(), T::zero())
                }
            }
        }
    }
}

impl Activation {
    /// `z += b`, then `h = act(z)`, over rows of `z, h: (rows, n)`; one loop per
    /// activation so that the compiler can vectorise each.
    pub(super) fn forward_rows<T: Real>(self, z: &mut [T], h: &mut [T], b: &[T], bm: &[T]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.forward_rows_avx2(z, h, b, bm) };
        }
        self.forward_rows_any(z, h, b, bm)
    }

    /// `forward_rows` compiled for AVX2: 8 lanes where the baseline has 4, the same
    /// arithmetic element by element (no fused multiply-add), so the same result.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_rows_avx2<T: Real>(self, z: &mut [T], h: &mut [T], b: &[T], bm: &[T]) {
        self.forward_rows_any(z, h, b, bm)
    }

    #[inline(always)]
    fn forward_rows_any<T: Real>(self, z: &mut [T], h: &mut [T], b: &[T], bm: &[T]) {
        match self {
            Activation::Relu => {
                forward_rows_with(z, h, b, bm, |z, bm| Activation::Relu.eval(z, bm).0)
            }
            Activation::Tanh => {
                forward_rows_with(z, h, b, bm, |z, bm| Activation::Tanh.eval(z, bm).0)
            }
            Activation::Modrelu => {
                forward_rows_with(z, h, b, bm, |z, bm| Activation::Modrelu.eval(z, bm).0)
            }
        }
    }

    /// `dz = (dz + dh) act'(z)` over rows of `(rows, n)`, adding `dz` into `grads.b` and
    /// `(dz + dh) d act / d bm` into `grads.bm` (modReLU only).
    pub(super) fn backward_rows<T: Real>(
        self,
        dz: &mut [T],
        z: &[T],
        dh: &[T],
        bm: &[T],
        grads: BiasGrads<'_, T>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.backward_rows_avx2(dz, z, dh, bm, grads) };
        }
        self.backward_rows_any(dz, z, dh, bm, grads)
    }

    /// `backward_rows` compiled for AVX2, as `forward_rows_avx2`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn backward_rows_avx2<T: Real>(
        self,
        dz: &mut [T],
        z: &[T],
        dh: &[T],
        bm: &[T],
        grads: BiasGrads<'_, T>,
    ) {
        self.backward_rows_any(dz, z, dh, bm, grads)
    }

    #[inline(always)]
    fn backward_rows_any<T: Real>(
        self,
        dz: &mut [T],
        z: &[T],
        dh: &[T],
        bm: &[T],
        grads: BiasGrads<'_, T>,
    ) {
        match self {
            Activation::Relu => backward_rows_with::<false, T>(dz, z, dh, bm, grads, |z, bm| {
                Activation::Relu.eval(z, bm)
            }),
            Activation::Tanh => backward_rows_with::<false, T>(dz, z, dh, bm, grads, |z, bm| {
                Activation::Tanh.eval(z, bm)
            }),
            Activation::Modrelu => backward_rows_with::<true, T>(dz, z, dh, bm, grads, |z, bm| {
                Activation::Modrelu.eval(z, bm)
            }),
        }
    }
}

/// One thread's sums of the bias gradients, `(n)` each.
pub(super) struct BiasGrads<'a, T> {
    pub(super) b: &'a mut [T],
    pub(super) bm: &'a mut [T],
}

#[inline(always)]
fn forward_rows_with<T: Real>(
    z: &mut [T],
    h: &mut [T],
    b: &[T],
    bm: &[T],
    act: impl Fn(T, T) -> T,
) {
    let n = b.len();
    for (row_h, row_z) in h.chunks_mut(n).zip(z.chunks_mut(n)) {
        for (((hi, zi), &bi), &bmi) in row_h.iter_mut().zip(row_z).zip(b).zip(bm) {
            *zi += bi;
            *hi = act(*zi, bmi);
        }
    }
}

#[inline(always)]
fn backward_rows_with<const MODULUS_BIAS: bool, T: Real>(
    dz: &mut [T],
    z: &[T],
    dh: &[T],
    bm: &[T],
    grads: BiasGrads<'_, T>,
    act: impl Fn(T, T) -> (T, T, T),
) {
    let n = bm.len();
    for ((row_dz, row_z), row_dh) in dz.chunks_mut(n).zip(z.chunks(n)).zip(dh.chunks(n)) {
        for j in 0..n {
            let (_, dact, dbm) = act(row_z[j], bm[j]);
            let upstream = row_dz[j] + row_dh[j];
            if MODULUS_BIAS {
                grads.bm[j] += upstream * dbm;
            }
            row_dz[j] = upstream * dact;
            grads.b[j] += row_dz[j];
        }
    }
}

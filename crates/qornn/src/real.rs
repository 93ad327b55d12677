//! The floating-point scalar the kernels are written over: `f32` for training, `f64` for
//! finite-difference checks against the float64 reference vectors.

use faer::traits::RealField;
use num_traits::Float;

/// A real scalar usable both by faer's matrix products and by elementwise code.
pub trait Real:
    RealField + Float + Copy + Default + Send + Sync + std::fmt::Debug + std::iter::Sum + 'static
{
    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(x: f64) -> Self;
    /// Rounds to the nearest integer, ties to even (IEEE `roundTiesToEven`).
    fn round_even(self) -> Self;
    /// The logistic function `1 / (1 + e^-x)`. For `f32` it is branch-free, so that the
    /// gate loops of the cells vectorise (libm's `expf` is a call per element).
    fn sigmoid(self) -> Self;
    /// `tanh(x)`, branch-free for `f32` like [`Real::sigmoid`].
    fn tanh_fast(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn round_even(self) -> Self {
        self.round_ties_even()
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + exp_f32(-self))
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        // Cephes `tanhf`: an odd polynomial for |x| < 0.625, else 1 - 2 / (e^{2|x|} + 1);
        // both are computed and one is selected, so there is no branch.
        let a = self.abs();
        let z = self * self;
        let small = ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z
            + 1.333_144_2e-1)
            * z
            - 3.333_328e-1)
            * z
            * self
            + self;
        let large = (1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0)).copysign(self);
        if a < 0.625 {
            small
        } else {
            large
        }
    }
}

/// `e^x` for `f32` without branches or calls (Cephes `expf`): `x = n ln 2 + r` with
/// `|r| <= ln 2 / 2`, a degree-7 polynomial for `e^r`, and `2^n` built in the exponent bits.
/// Inputs are clamped to `[-87, 88]`, where `e^x` is a normal `f32`.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest (ties to even) by adding and subtracting 1.5 * 2^23: plain SSE2
    // arithmetic, where `round_ties_even` would be a libm call that stops vectorisation.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // ln 2 in two parts, so that `n * LN2_HIGH` is exact.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5e-1)
        * r
        * r
        + r
        + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

impl Real for f64 {
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn round_even(self) -> Self {
        self.round_ties_even()
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    #[inline(always)]
    fn tanh_fast(self) -> Self {
        self.tanh()
    }
}

#[cfg(test)]
mod tests {
    use super::Real;

    /// The branch-free `f32` functions against `f64` libm over `[-100, 100]`, densely
    /// near zero where `tanh` switches formula: within two units in the last place
    /// (absolute below 1e-30, where `sigmoid`'s exponential is clamped).
    #[test]
    fn branch_free_f32_functions_are_accurate() {
        let mut worst = (0.0f64, 0.0f64);
        for i in -200_000i32..=200_000 {
            let x = if i.abs() < 100_000 {
                i as f32 * 1e-5
            } else {
                i as f32 * 5e-4
            };
            let (sig, tanh) = (x.sigmoid() as f64, x.tanh_fast() as f64);
            let (sig_ref, tanh_ref) = ((x as f64).sigmoid(), (x as f64).tanh());
            // Units in the last place, for results above 1e-30 (below, e^x is clamped).
            let ulp = |v: f64| v.abs().max(1e-30) * f32::EPSILON as f64;
            worst.0 = worst.0.max((sig - sig_ref).abs() / ulp(sig_ref));
            worst.1 = worst.1.max((tanh - tanh_ref).abs() / ulp(tanh_ref));
        }
        assert!(worst.0 <= 2.0, "sigmoid: {} ulp", worst.0);
        assert!(worst.1 <= 2.0, "tanh: {} ulp", worst.1);
    }
}

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
}

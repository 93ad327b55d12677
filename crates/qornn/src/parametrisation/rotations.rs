//! Block rotations: `W = R(θ_1) ⊕ R(θ_2) ⊕ … ⊕ R(θ_{n/2})`, with
//! `R(θ) = [[cos θ, -sin θ], [sin θ, cos θ]]`, exactly orthogonal at every bit width.
//!
//! Every orthogonal matrix is `Q^T (⊕ R(θ_k)) Q` up to a sign per unit (its real Schur
//! form); the ORNN's `U` and `V` can absorb much of `Q`, and Henaff et al. (2016) initialise
//! orthogonal RNNs for the copy task with exactly these blocks and random angles.
//!
//! At `k` bits each block is stored as two integer codes `(a, b)` with
//! `|a|, |b| <= 2^(k-1) - 1` and the block's own step `1 / sqrt(a^2 + b^2)`:
//! `R ≈ [[a, -b], [b, a]] / sqrt(a^2 + b^2)`, which is a rotation for every `(a, b)`, so
//! the quantized `W` stays exactly orthogonal (the paper's per-tensor quantizer turns an
//! orthogonal `W` into one with singular values 0.8 to 1.1 at 4 bits). `(a, b)` is the
//! lattice direction nearest to `θ` (`Lattice::nearest`); the angle `θ` is the trained
//! parameter, with a straight-through gradient: `dL/dθ` is taken from `dL/dq(W)` through
//! the float rotation, `dR/dθ = [[-sin θ, -cos θ], [cos θ, -sin θ]]`. At 32 bits `W` is the
//! float rotation itself.
//!
//! `W`'s codes come with one step per pair of rows; the integer engine stores each block
//! as its pair `(a, b)` with a step mantissa per row (`.qornn` version 4) and applies it
//! in 4 multiply-adds.

use crate::registry::{ModelEntry, ParametrisationContext};
use crate::params::{Kind, Tensor};
use crate::quant::{Granularity, QuantizedTensor};
use std::f64::consts::PI;

/// The directions `(a, b)` of `k`-bit codes, one primitive pair per angle, by angle.
#[derive(Clone, Debug)]
pub struct Lattice {
    bits: u32,
    /// `(atan2(b, a), a, b)`, sorted by angle in `(-π, π]`.
    directions: Vec<(f64, i32, i32)>,
}

impl Lattice {
    /// Every `(a, b) != (0, 0)` with `gcd(|a|, |b|) = 1` and `|a|, |b| <= 2^(k-1) - 1` (the
    /// symmetric range, so that `-b` is a code too).
    pub fn new(bits: u32) -> Self {
        assert!((2..=8).contains(&bits), "rotations: {bits} bits");
        let limit = (1i32 << (bits - 1)) - 1;
        let mut directions: Vec<(f64, i32, i32)> = (-limit..=limit)
            .flat_map(|a| (-limit..=limit).map(move |b| (a, b)))
            .filter(|&(a, b)| gcd(a.unsigned_abs(), b.unsigned_abs()) == 1)
            .map(|(a, b)| ((b as f64).atan2(a as f64), a, b))
            .collect();
        directions.sort_by(|x, y| x.0.total_cmp(&y.0));
        Self { bits, directions }
    }

    /// The codes `(a, b)` whose angle is nearest to `theta` (any real), ties to the lower
    /// angle.
    pub fn nearest(&self, theta: f64) -> (i32, i32) {
        let wrapped = (theta + PI).rem_euclid(2.0 * PI) - PI;
        let d = &self.directions;
        let above = d.partition_point(|&(angle, _, _)| angle < wrapped) % d.len();
        let below = (above + d.len() - 1) % d.len();
        let distance = |i: usize| {
            let gap = (d[i].0 - wrapped).abs();
            gap.min(2.0 * PI - gap)
        };
        let pick = if distance(below) <= distance(above) {
            below
        } else {
            above
        };
        (d[pick].1, d[pick].2)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Writes block `k`, `[[c, -s], [s, c]]`, into the row-major `(n, n)` matrix `m` (float
/// entries, or the codes `(a, b)`).
fn set_block<T: Copy + std::ops::Neg<Output = T>>(m: &mut [T], n: usize, k: usize, c: T, s: T) {
    let (i, j) = (2 * k, 2 * k + 1);
    m[i * n + i] = c;
    m[i * n + j] = -s;
    m[j * n + i] = s;
    m[j * n + j] = c;
}

/// The block-rotation parametrisation: the parameter is the `n / 2` angles, `(1, n / 2)`.
pub struct RotationParametrisation {
    n: usize,
    /// `None`: full precision (float rotations).
    lattice: Option<Lattice>,
    /// `(c_k, s_k)` of each block as used, `(n)`: what the cell applies.
    cos_sin: Vec<f32>,
}

/// Exactly orthogonal 2 x 2 rotation blocks with integer codes (4 bits unless `--bits`; 32:
/// float rotations).
pub const QORNN_ROTATIONS: ModelEntry = ModelEntry::elman("qornn-rotations", Some(build))
    .quantized(crate::registry::HADAMRNN_BITS)
    .checked(check);

fn build(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(RotationParametrisation::new(context.n, context.bits))
}

/// An even width; one bit width for the whole run.
fn check(config: &crate::registry::ModelSettings) -> crate::Result<()> {
    if !config.hidden.is_multiple_of(2) {
        return Err(crate::Error::config(
            "hidden",
            format!(
                "qornn-rotations needs an even size (2 x 2 blocks), got {}",
                config.hidden
            ),
        ));
    }
    if config.bits_schedule {
        return Err(crate::Error::config(
            "bits_schedule",
            "qornn-rotations chooses W's codes for one width; give --bits only",
        ));
    }
    Ok(())
}

impl RotationParametrisation {
    /// `n` even; `bits` in 2..=8, or `None` for float rotations.
    pub fn new(n: usize, bits: Option<u32>) -> Self {
        assert!(n.is_multiple_of(2), "rotations: odd hidden size {n}");
        Self {
            n,
            lattice: bits.map(Lattice::new),
            cos_sin: vec![0.0; n],
        }
    }

    /// Block `k`'s `(cos, sin)` as used: the lattice direction's, or the float angle's.
    fn used_cos_sin(&self, theta: f32) -> (f64, f64) {
        match &self.lattice {
            Some(l) => {
                let (a, b) = l.nearest(theta as f64);
                let r = ((a * a + b * b) as f64).sqrt();
                (a as f64 / r, b as f64 / r)
            }
            None => ((theta as f64).cos(), (theta as f64).sin()),
        }
    }
}

impl super::RecurrentParametrisation for RotationParametrisation {
    fn tensor(&self) -> Tensor {
        Tensor::zeros("weight_hh", 1, self.n / 2, Kind::Recurrent)
    }

    /// Angles uniform in `[-π, π)`: Henaff et al.'s initialisation, which is block
    /// rotations of random angles (the same for every `init`).
    fn init(&self, param: &mut Tensor, _init: crate::Init, rng: &mut dyn rand::RngCore) {
        use rand::Rng;
        let pi = PI as f32;
        param
            .data
            .iter_mut()
            .for_each(|t| *t = rng.gen_range(-pi..pi));
    }

    fn forward(&mut self, param: &[f32], _training: bool, w: &mut [f32], _par: faer::Par) {
        let n = self.n;
        w.fill(0.0);
        for (k, &theta) in param.iter().enumerate() {
            let (c, s) = self.used_cos_sin(theta);
            let (c, s) = (c as f32, s as f32);
            self.cos_sin[2 * k] = c;
            self.cos_sin[2 * k + 1] = s;
            set_block(w, n, k, c, s);
        }
    }

    fn recurrence<'a>(&'a self, _q_w: &'a [f32]) -> crate::Recurrence<'a, f32> {
        crate::Recurrence::Rotations {
            cos_sin: &self.cos_sin,
        }
    }

    fn is_exact(&self) -> bool {
        true
    }

    /// Blocks whose lattice direction changed (none for float rotations).
    fn code_changes(&self, before: &[f32], after: &[f32]) -> Option<usize> {
        let lattice = self.lattice.as_ref()?;
        let direction = |theta: f32| lattice.nearest(theta as f64);
        Some(
            before
                .iter()
                .zip(after)
                .filter(|(&a, &b)| direction(a) != direction(b))
                .count(),
        )
    }

    fn is_block_rotations(&self) -> bool {
        self.lattice.is_some()
    }

    /// `[[a, -b], [b, a]]` per block with the step `1 / sqrt(a^2 + b^2)` on both its rows.
    fn exact_codes(&self, param: &[f32], bits: u32) -> Option<QuantizedTensor<f32>> {
        let lattice = self.lattice.as_ref().filter(|l| l.bits == bits)?;
        let n = self.n;
        let mut codes = vec![0; n * n];
        let mut steps = vec![0.0; n];
        for (k, &theta) in param.iter().enumerate() {
            let (a, b) = lattice.nearest(theta as f64);
            set_block(&mut codes, n, k, a, b);
            let step = 1.0 / ((a * a + b * b) as f32).sqrt();
            steps[2 * k] = step;
            steps[2 * k + 1] = step;
        }
        Some(QuantizedTensor {
            rows: n,
            cols: n,
            bits,
            granularity: Granularity::PerRow,
            codes,
            steps,
        })
    }

    /// Straight through the lattice: `dL/dθ_k = <dL/dq(W)_block, dR(θ_k)/dθ>`.
    fn backward(&mut self, param: &[f32], grad_applied: &[f32], grad: &mut [f32], _: faer::Par) {
        let n = self.n;
        let g = |i: usize, j: usize| grad_applied[i * n + j] as f64;
        for (k, (&theta, out)) in param.iter().zip(grad.iter_mut()).enumerate() {
            let (s, c) = (theta as f64).sin_cos();
            let (i, j) = (2 * k, 2 * k + 1);
            let d = -s * g(i, i) - c * g(i, j) + c * g(j, i) - s * g(j, j);
            *out += d as f32;
        }
    }

    /// Two `k`-bit codes per block (its step follows from them), or a float angle.
    fn stored_bits(&self, param: &Tensor, _bits: Option<u32>, _per_row: bool) -> u64 {
        match &self.lattice {
            Some(l) => 2 * l.bits as u64 * param.len() as u64,
            None => 32 * param.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RecurrentParametrisation;
    use super::*;

    /// A block counts as changed when its lattice direction does, not when its angle moves
    /// inside the direction's cell; float rotations have no codes to count.
    #[test]
    fn code_changes_count_blocks_whose_direction_changed() {
        let two_bits = RotationParametrisation::new(6, Some(2));
        // 2 bits: the eight multiples of 45 degrees (0.785 rad).
        let before = [0.0, 0.1, 1.0];
        let after = [0.3, 0.9, 0.7];
        assert_eq!(two_bits.code_changes(&before, &after), Some(1));
        assert_eq!(two_bits.code_changes(&before, &before), Some(0));
        let float = RotationParametrisation::new(6, None);
        assert_eq!(float.code_changes(&before, &after), None);
    }

    #[test]
    fn every_width_gives_an_exactly_orthogonal_w_with_codes_in_range() {
        let n = 16;
        let angles: Vec<f32> = (0..n / 2).map(|k| -3.1 + 0.83 * k as f32).collect();
        for bits in [None, Some(2), Some(3), Some(4), Some(8)] {
            let mut p = RotationParametrisation::new(n, bits);
            let mut w = vec![0.0; n * n];
            p.forward(&angles, true, &mut w, faer::Par::Seq);
            let defect = crate::linalg::orthogonality_defect(&w, n);
            assert!(defect < 1e-5, "{bits:?}: defect {defect}");
            if let Some(k) = bits {
                let q = p.exact_codes(&angles, k).unwrap();
                let limit = (1 << (k - 1)) - 1;
                assert!(q.codes.iter().all(|c| c.abs() <= limit), "{k}: codes");
                let mut dequantized = vec![0.0; n * n];
                q.dequantize_into(&mut dequantized);
                for (x, y) in dequantized.iter().zip(&w) {
                    assert!((x - y).abs() < 1e-6, "{k}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn the_nearest_direction_is_never_further_than_half_the_widest_gap() {
        for bits in 2..=8 {
            let lattice = Lattice::new(bits);
            let d = &lattice.directions;
            let widest = d
                .windows(2)
                .map(|w| w[1].0 - w[0].0)
                .chain([d[0].0 + 2.0 * PI - d[d.len() - 1].0])
                .fold(0.0f64, f64::max);
            for i in -700..700 {
                let theta = i as f64 * 0.01;
                let (a, b) = lattice.nearest(theta);
                let gap = ((b as f64).atan2(a as f64) - theta).rem_euclid(2.0 * PI);
                let gap = gap.min(2.0 * PI - gap);
                assert!(gap <= widest / 2.0 + 1e-12, "{bits} bits, θ {theta}: {gap}");
            }
        }
        // 2 bits: the eight multiples of 45°; 4 bits: 144 directions (|a|, |b| <= 7).
        assert_eq!(Lattice::new(2).directions.len(), 8);
        assert_eq!(Lattice::new(2).nearest(0.3), (1, 0));
        assert_eq!(Lattice::new(2).nearest(-2.5), (-1, -1));
        assert_eq!(Lattice::new(4).directions.len(), 144);
    }

    /// The float rotation's gradient against central differences of `L = <G, W(θ)>`.
    #[test]
    fn the_angle_gradient_matches_finite_differences() {
        let n = 6;
        let angles = [0.4f32, -2.2, 1.9];
        let g: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let mut p = RotationParametrisation::new(n, None);
        let loss = |p: &mut RotationParametrisation, a: &[f32]| {
            let mut w = vec![0.0; n * n];
            p.forward(a, true, &mut w, faer::Par::Seq);
            w.iter()
                .zip(&g)
                .map(|(x, y)| *x as f64 * *y as f64)
                .sum::<f64>()
        };
        let mut grad = vec![0.0; 3];
        p.backward(&angles, &g, &mut grad, faer::Par::Seq);
        let eps = 1e-3;
        for k in 0..3 {
            let (mut up, mut down) = (angles, angles);
            up[k] += eps;
            down[k] -= eps;
            let numeric = (loss(&mut p, &up) - loss(&mut p, &down)) / (2.0 * eps as f64);
            assert!(
                (numeric - grad[k] as f64).abs() < 1e-3 * (1.0 + numeric.abs()),
                "θ_{k}: {numeric} vs {}",
                grad[k]
            );
        }
    }
}

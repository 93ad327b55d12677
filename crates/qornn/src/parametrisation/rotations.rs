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
//!
//! `lru` is the same blocks with a learned radius each, `W = ⊕ r_k R(θ_k)`: the real form
//! of a complex diagonal recurrence `λ_k = r_k e^{iθ_k}` (LRU, Orvieto et al., 2023; S5),
//! with the LRU's exponential parametrisation `r_k = exp(-exp(ν_k))`, so that `0 < r_k < 1`
//! for every `ν_k`, and its ring initialisation (`r_k^2` uniform in `[0.9^2, 0.999^2]`).
//! Quantized like the rotations: the direction's codes `(a, b)` at `k` bits and the block's
//! step `r_k / sqrt(a^2 + b^2)` (the radius lives in the step, so the integer engine runs
//! it unchanged). The parameter is `(2, n / 2)`: the angles, then the `ν_k`. The gradient of
//! `ν` is exact given the used direction: `dL/dr_k = <dL/dq(W)_block, q(R_k)>` and
//! `dr/dν = -r exp(ν)`.

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

/// `r = exp(-exp(ν))`, in `(0, 1)` for every `ν`.
fn radius(nu: f32) -> f64 {
    (-(nu as f64).exp()).exp()
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

/// The block-rotation parametrisation: the parameter is the `n / 2` angles, `(1, n / 2)`,
/// and with a learned radius the `n / 2` values `ν_k` too, `(2, n / 2)`.
pub struct RotationParametrisation {
    n: usize,
    /// `None`: full precision (float rotations).
    lattice: Option<Lattice>,
    /// Whether each block has a learned radius `exp(-exp(ν_k))` (`lru`).
    learned_radius: bool,
    /// `r_k (c_k, s_k)` of each block as used, `(n)`: what the cell applies.
    cos_sin: Vec<f32>,
}

/// The LRU's ring initialisation: `r^2` uniform in `[RING.0^2, RING.1^2]`.
const RING: (f64, f64) = (0.9, 0.999);

/// Exactly orthogonal 2 x 2 rotation blocks with integer codes (4 bits unless `--bits`; 32:
/// float rotations).
pub const QORNN_ROTATIONS: ModelEntry = ModelEntry::elman("qornn-rotations", Some(build))
    .quantized(crate::registry::HADAMRNN_BITS)
    .checked(check);

/// A quantized diagonal recurrence (LRU / S5 in real 2 x 2 form): rotation blocks with a
/// learned radius below 1 (4 bits unless `--bits`; 32: float blocks).
pub const LRU: ModelEntry = ModelEntry::elman("lru", Some(build_lru))
    .quantized(crate::registry::HADAMRNN_BITS)
    .checked(check);

fn build(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(RotationParametrisation::new(context.n, context.bits))
}

fn build_lru(context: &ParametrisationContext) -> Box<dyn super::RecurrentParametrisation> {
    Box::new(RotationParametrisation::with_radius(context.n, context.bits))
}

/// An even width; one bit width for the whole run.
fn check(config: &crate::registry::ModelSettings) -> crate::Result<()> {
    if !config.hidden.is_multiple_of(2) {
        return Err(crate::Error::config(
            "hidden",
            format!(
                "{} needs an even size (2 x 2 blocks), got {}",
                config.name, config.hidden
            ),
        ));
    }
    if config.bits_schedule {
        return Err(crate::Error::config(
            "bits_schedule",
            format!(
                "{} chooses W's codes for one width; give --bits only",
                config.name
            ),
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
            learned_radius: false,
            cos_sin: vec![0.0; n],
        }
    }

    /// The same blocks, each with a learned radius (`lru`).
    pub fn with_radius(n: usize, bits: Option<u32>) -> Self {
        Self {
            learned_radius: true,
            ..Self::new(n, bits)
        }
    }

    /// The angles and the radii of the parameter (radii 1 without a learned radius).
    fn blocks<'p>(&self, param: &'p [f32]) -> impl Iterator<Item = (f32, f64)> + 'p {
        let (angles, nu) = param.split_at(self.n / 2);
        let learned = self.learned_radius;
        angles.iter().enumerate().map(move |(k, &theta)| {
            let r = if learned { radius(nu[k]) } else { 1.0 };
            (theta, r)
        })
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
        let rows = if self.learned_radius { 2 } else { 1 };
        Tensor::zeros("weight_hh", rows, self.n / 2, Kind::Recurrent)
    }

    /// Angles uniform in `[-π, π)`: Henaff et al.'s initialisation, which is block
    /// rotations of random angles (the same for every `init`); radii on the LRU's ring.
    fn init(&self, param: &mut Tensor, _init: crate::Init, rng: &mut dyn rand::RngCore) {
        use rand::Rng;
        let pi = PI as f32;
        let (angles, nu) = param.data.split_at_mut(self.n / 2);
        angles
            .iter_mut()
            .for_each(|t| *t = rng.gen_range(-pi..pi));
        for v in nu {
            let r = rng.gen_range(RING.0 * RING.0..RING.1 * RING.1).sqrt();
            *v = (-r.ln()).ln() as f32;
        }
    }

    fn forward(&mut self, param: &[f32], _training: bool, w: &mut [f32], _par: faer::Par) {
        let n = self.n;
        w.fill(0.0);
        for (k, (theta, r)) in self.blocks(param).enumerate() {
            let (c, s) = self.used_cos_sin(theta);
            let (c, s) = ((r * c) as f32, (r * s) as f32);
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
        let blocks = self.n / 2;
        Some(
            before[..blocks]
                .iter()
                .zip(&after[..blocks])
                .filter(|(&a, &b)| direction(a) != direction(b))
                .count(),
        )
    }

    fn is_block_rotations(&self) -> bool {
        self.lattice.is_some()
    }

    /// `[[a, -b], [b, a]]` per block with the step `r / sqrt(a^2 + b^2)` on both its rows.
    fn exact_codes(&self, param: &[f32], bits: u32) -> Option<QuantizedTensor<f32>> {
        let lattice = self.lattice.as_ref().filter(|l| l.bits == bits)?;
        let n = self.n;
        let mut codes = vec![0; n * n];
        let mut steps = vec![0.0; n];
        for (k, (theta, r)) in self.blocks(param).enumerate() {
            let (a, b) = lattice.nearest(theta as f64);
            set_block(&mut codes, n, k, a, b);
            let step = (r / ((a * a + b * b) as f64).sqrt()) as f32;
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

    /// Straight through the lattice: `dL/dθ_k = r_k <dL/dq(W)_block, dR(θ_k)/dθ>`; the
    /// radius exactly, `dL/dν_k = <dL/dq(W)_block, q(R_k)> (-r_k exp(ν_k))`.
    fn backward(&mut self, param: &[f32], grad_applied: &[f32], grad: &mut [f32], _: faer::Par) {
        let (n, blocks) = (self.n, self.n / 2);
        let g = |i: usize, j: usize| grad_applied[i * n + j] as f64;
        for (k, (theta, r)) in self.blocks(param).enumerate() {
            let (s, c) = (theta as f64).sin_cos();
            let (i, j) = (2 * k, 2 * k + 1);
            let d = -s * g(i, i) - c * g(i, j) + c * g(j, i) - s * g(j, j);
            grad[k] += (r * d) as f32;
            if self.learned_radius {
                let (c, s) = self.used_cos_sin(theta);
                let d_r = c * g(i, i) - s * g(i, j) + s * g(j, i) + c * g(j, j);
                let nu = param[blocks + k] as f64;
                grad[blocks + k] += (d_r * -r * nu.exp()) as f32;
            }
        }
    }

    /// Two `k`-bit codes per block (its step follows from them), or a float angle; a learned
    /// radius is one float more per block.
    fn stored_bits(&self, param: &Tensor, _bits: Option<u32>, _per_row: bool) -> u64 {
        let blocks = self.n as u64 / 2;
        let radii = param.len() as u64 - blocks;
        let angles = match &self.lattice {
            Some(l) => 2 * l.bits as u64 * blocks,
            None => 32 * blocks,
        };
        angles + 32 * radii
    }
}

#[cfg(test)]
mod tests {
    use super::super::RecurrentParametrisation;
    use super::*;
    use std::ops::Range;

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

    /// `dL/dparam` of `L = <G, W(param)>` (a fixed `G`) from `backward` against central
    /// differences, for the parameters in `checked`.
    fn check_gradient(p: &mut RotationParametrisation, param: &[f32], checked: Range<usize>) {
        let n = p.n;
        let g: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let loss = |p: &mut RotationParametrisation, a: &[f32]| {
            let mut w = vec![0.0; n * n];
            p.forward(a, true, &mut w, faer::Par::Seq);
            w.iter()
                .zip(&g)
                .map(|(x, y)| *x as f64 * *y as f64)
                .sum::<f64>()
        };
        let mut grad = vec![0.0; param.len()];
        p.backward(param, &g, &mut grad, faer::Par::Seq);
        let eps = 1e-3;
        for k in checked {
            let (mut up, mut down) = (param.to_vec(), param.to_vec());
            up[k] += eps;
            down[k] -= eps;
            let numeric = (loss(p, &up) - loss(p, &down)) / (2.0 * eps as f64);
            assert!(
                (numeric - grad[k] as f64).abs() < 1e-3 * (1.0 + numeric.abs()),
                "parameter {k}: {numeric} vs {}",
                grad[k]
            );
        }
    }

    /// The float rotation's angle gradient.
    #[test]
    fn the_angle_gradient_matches_finite_differences() {
        let mut p = RotationParametrisation::new(6, None);
        check_gradient(&mut p, &[0.4, -2.2, 1.9], 0..3);
    }

    /// `lru`: every angle (float blocks) and every `ν` (float and 4-bit blocks: the radius'
    /// gradient is exact, not straight through); the 4-bit codes with their steps give back
    /// the `W` the cell applies.
    #[test]
    fn the_radius_gradient_matches_finite_differences_and_lives_in_the_step() {
        let n = 6;
        let param = [0.4f32, -2.2, 1.9, -2.5, 0.3, -4.0];
        let mut float = RotationParametrisation::with_radius(n, None);
        assert_eq!(float.tensor().rows, 2);
        check_gradient(&mut float, &param, 0..6);
        check_gradient(&mut RotationParametrisation::with_radius(n, Some(4)), &param, 3..6);
        let mut p = RotationParametrisation::with_radius(n, Some(4));
        let mut w = vec![0.0; n * n];
        p.forward(&param, true, &mut w, faer::Par::Seq);
        let q = p.exact_codes(&param, 4).unwrap();
        let mut dequantized = vec![0.0; n * n];
        q.dequantize_into(&mut dequantized);
        for (x, y) in dequantized.iter().zip(&w) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
        // Each block's singular values are its radius, below 1 for every ν.
        for (k, &nu) in param[3..].iter().enumerate() {
            let r = radius(nu);
            let (c, s) = (w[2 * k * n + 2 * k] as f64, w[(2 * k + 1) * n + 2 * k] as f64);
            assert!(((c * c + s * s).sqrt() - r).abs() < 1e-6 && r < 1.0, "block {k}");
        }
        assert!(radius(-30.0) < 1.0 && radius(30.0) >= 0.0);
    }

    /// The ring initialisation: radii in `[0.9, 0.999]`, angles in `[-π, π)`.
    #[test]
    fn lru_blocks_start_on_the_ring() {
        use rand::SeedableRng;
        let p = RotationParametrisation::with_radius(64, Some(4));
        let mut t = p.tensor();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        p.init(&mut t, crate::Init::Orthogonal, &mut rng);
        let (angles, nu) = t.data.split_at(32);
        assert!(angles.iter().all(|a| (-PI as f32..PI as f32).contains(a)));
        let radii: Vec<f64> = nu.iter().map(|&v| radius(v)).collect();
        assert!(radii.iter().all(|r| (0.9 - 1e-6..=0.999 + 1e-6).contains(r)), "{radii:?}");
        assert!(radii.iter().any(|&r| r < 0.95) && radii.iter().any(|&r| r > 0.99));
    }
}

//! Initialisations of the recurrent matrix.

use crate::linalg::mat;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// Haar-random orthogonal: QR of a Gaussian matrix with the signs of `diag(R)` fixed.
    Orthogonal,
    /// Henaff et al. (2016): block-diagonal 2x2 rotations, angles uniform in [-pi, pi].
    #[default]
    Henaff,
    Identity,
}

impl Init {
    /// A row-major n x n orthogonal matrix.
    pub fn sample(self, n: usize, rng: &mut impl Rng) -> Vec<f32> {
        let mut w = vec![0.0f32; n * n];
        match self {
            Init::Identity => (0..n).for_each(|i| w[i * n + i] = 1.0),
            Init::Henaff => {
                for k in 0..n / 2 {
                    let theta: f64 = rng.gen_range(-std::f64::consts::PI..std::f64::consts::PI);
                    let (s, c) = theta.sin_cos();
                    let i = 2 * k;
                    w[i * n + i] = c as f32;
                    w[i * n + i + 1] = -s as f32;
                    w[(i + 1) * n + i] = s as f32;
                    w[(i + 1) * n + i + 1] = c as f32;
                }
                if n % 2 == 1 {
                    w[n * n - 1] = 1.0;
                }
            }
            Init::Orthogonal => {
                let g: Vec<f64> = (0..n * n).map(|_| rng.sample(StandardNormal)).collect();
                let qr = mat(&g, n, n).qr();
                let q = qr.compute_Q();
                let r = qr.R();
                for i in 0..n {
                    for j in 0..n {
                        let sign = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
                        w[i * n + j] = (q[(i, j)] * sign) as f32;
                    }
                }
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::orthogonality_defect;
    use rand::SeedableRng;

    #[test]
    fn every_initialisation_is_orthogonal() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for init in [Init::Orthogonal, Init::Henaff, Init::Identity] {
            for n in [1, 2, 15, 16, 17] {
                let w = init.sample(n, &mut rng);
                let defect = orthogonality_defect(&w, n);
                assert!(
                    defect < 1e-5,
                    "{init:?} n={n}: ||W W^T - I||_F = {defect:.2e}"
                );
            }
        }
    }

    #[test]
    fn henaff_is_block_diagonal_rotations() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 6;
        let w = Init::Henaff.sample(n, &mut rng);
        for i in 0..n {
            for j in 0..n {
                if i / 2 != j / 2 {
                    assert_eq!(w[i * n + j], 0.0, "entry ({i}, {j}) outside the 2x2 blocks");
                }
            }
        }
        for k in 0..n / 2 {
            let i = 2 * k;
            assert_eq!(w[i * n + i], w[(i + 1) * n + i + 1], "cos on the diagonal");
            assert_eq!(w[i * n + i + 1], -w[(i + 1) * n + i], "antisymmetric sines");
        }
    }
}

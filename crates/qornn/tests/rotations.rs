//! Block rotations: the cell's 2 x 2 path against the same cell with the dense
//! `W = ⊕ R(θ_k)`, in f64, forward and backward, for every activation, on 1 and 3 threads.

mod common;

use common::ornn_cell_pass;
use faer::Par;
use qornn::*;
use rand::{Rng, SeedableRng};
use std::num::NonZeroUsize;

fn random(rng: &mut impl Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

#[test]
fn rotation_path_matches_the_dense_matrix() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (n, d, steps, batch) = (10, 3, 9, 5);
    for activation in [Activation::Relu, Activation::Modrelu, Activation::Tanh] {
        for par in [Par::Seq, Par::Rayon(NonZeroUsize::new(3).unwrap())] {
            let shape = CellShape {
                hidden: n,
                input: d,
                steps,
                batch,
            };
            let angles = random(&mut rng, n / 2);
            let cos_sin: Vec<f64> = angles
                .iter()
                .flat_map(|&a| [(3.0 * a).cos(), (3.0 * a).sin()])
                .collect();
            let mut w = vec![0.0; n * n];
            for k in 0..n / 2 {
                let (i, j, c, s) = (2 * k, 2 * k + 1, cos_sin[2 * k], cos_sin[2 * k + 1]);
                w[i * n + i] = c;
                w[i * n + j] = -s;
                w[j * n + i] = s;
                w[j * n + j] = c;
            }
            let u = random(&mut rng, n * d);
            let b = random(&mut rng, n);
            let bm = random(&mut rng, n);
            let x = random(&mut rng, steps * batch * d);
            let dh = random(&mut rng, steps * batch * n);
            let run = |recurrence: Recurrence<'_, f64>| {
                let pass =
                    ornn_cell_pass(shape, activation, par, recurrence, (&u, &b, &bm), &x, &dh);
                (pass.h, pass.dw, pass.du, pass.db, pass.dbm)
            };
            let dense = run(Recurrence::Dense(&w));
            let fast = run(Recurrence::Rotations { cos_sin: &cos_sin });
            let close = |a: &[f64], b: &[f64], what: &str| {
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-10 * (1.0 + x.abs()),
                        "{activation:?} {par:?} {what}: {x} vs {y}"
                    );
                }
            };
            close(&dense.0, &fast.0, "h");
            close(&dense.2, &fast.2, "dU");
            close(&dense.3, &fast.3, "db");
            close(&dense.4, &fast.4, "dbm");
            // dL/dW on the 2 x 2 diagonal blocks, zero elsewhere.
            for i in 0..n {
                for j in 0..n {
                    let (want, got) = (dense.1[i * n + j], fast.1[i * n + j]);
                    if i / 2 == j / 2 {
                        close(&[want], &[got], "dW block");
                    } else {
                        assert_eq!(got, 0.0, "dW off the blocks");
                    }
                }
            }
        }
    }
}

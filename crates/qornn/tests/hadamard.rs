//! The Hadamard recurrence (HadamRNN): the cell's fast Walsh-Hadamard path against the same
//! cell with the dense `W = diag(row_scale) (I ⊗ H_m)`, in f64, forward and backward, for
//! binary (m = n) and ternary (m < n) blocks and for every activation, on 1 and 3 threads.

mod common;

use common::{ornn_cell_pass, run_cell};
use faer::Par;
use qornn::parametrisation::hadamard::{dense_into, hadamard_entry};
use qornn::quant::activation::HiddenQuantizer;
use qornn::quant::dither::dither_key;
use qornn::*;
use rand::{Rng, SeedableRng};
use std::num::NonZeroUsize;

fn random(rng: &mut impl Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

#[test]
fn transform_path_matches_the_dense_matrix() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for (n, block) in [(16, 16), (16, 4), (32, 2)] {
        for activation in [Activation::Relu, Activation::Modrelu, Activation::Tanh] {
            for par in [Par::Seq, Par::Rayon(NonZeroUsize::new(3).unwrap())] {
                let shape = CellShape {
                    hidden: n,
                    input: 3,
                    steps: 9,
                    batch: 5,
                };
                let signs = random(&mut rng, n);
                // The f32 scale, as `dense_into` builds the dense matrix in f32.
                let scale = (1.0 / (block as f32).sqrt()) as f64;
                let row_scale: Vec<f64> = signs
                    .iter()
                    .map(|&v| if v < 0.0 { -scale } else { scale })
                    .collect();
                let mut w32 = vec![0.0f32; n * n];
                let signs32: Vec<f32> = signs.iter().map(|&v| v as f32).collect();
                dense_into(&signs32, block, &mut w32);
                let w: Vec<f64> = w32.iter().map(|&v| v as f64).collect();
                let u = random(&mut rng, n * 3);
                let b = random(&mut rng, n);
                let bm = random(&mut rng, n);
                let x = random(&mut rng, 9 * 5 * 3);
                let dh = random(&mut rng, 9 * 5 * n);
                let run = |recurrence: Recurrence<'_, f64>| {
                    let pass =
                        ornn_cell_pass(shape, activation, par, recurrence, (&u, &b, &bm), &x, &dh);
                    (pass.h, pass.dw, pass.du, pass.db, pass.dbm)
                };
                let dense = run(Recurrence::Dense(&w));
                let fast = run(Recurrence::Hadamard {
                    row_scale: &row_scale,
                    block,
                });
                let close = |a: &[f64], b: &[f64], what: &str| {
                    assert_eq!(a.len(), b.len());
                    for (x, y) in a.iter().zip(b) {
                        assert!(
                            (x - y).abs() <= 1e-10 * (1.0 + x.abs()),
                            "n {n} m {block} {activation:?} {par:?} {what}: {x} vs {y}"
                        );
                    }
                };
                close(&dense.0, &fast.0, "h");
                close(&dense.2, &fast.2, "dU");
                close(&dense.3, &fast.3, "db");
                close(&dense.4, &fast.4, "dbm");
                // dL/d row_scale_i = sum_j dL/dW_ij (I ⊗ H_m)_ij.
                let contracted: Vec<f64> = (0..n)
                    .map(|i| {
                        (0..n)
                            .map(|j| dense.1[i * n + j] * hadamard_entry(i, j, block) as f64)
                            .sum()
                    })
                    .collect();
                close(&contracted, &fast.1[..n], "d row_scale");
                assert!(fast.1[n..].iter().all(|&v| v == 0.0));
            }
        }
    }
}

/// Under a many-to-one read-out the cell reads `dh` at the last step only: with `dh` zero
/// elsewhere it gives the same gradients as the cell that reads every step, and what the
/// other steps' rows hold does not change them (for a dense W and a Hadamard one, whose
/// backward keeps `dz` in two step blocks).
#[test]
fn a_last_step_readout_reads_only_the_last_steps_gradient() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (n, d, steps, batch) = (16, 2, 6, 5);
    let shape = CellShape {
        hidden: n,
        input: d,
        steps,
        batch,
    };
    let w = random(&mut rng, n * n);
    let row_scale: Vec<f64> = random(&mut rng, n)
        .iter()
        .map(|v| v.signum() / 2.0)
        .collect();
    let (u, b, bm) = (
        random(&mut rng, n * d),
        random(&mut rng, n),
        random(&mut rng, n),
    );
    let x = random(&mut rng, steps * batch * d);
    let last = (steps - 1) * batch * n;
    let mut dh = vec![0.0; steps * batch * n];
    dh[last..].copy_from_slice(&random(&mut rng, batch * n));
    let mut garbage = random(&mut rng, steps * batch * n);
    garbage[last..].copy_from_slice(&dh[last..]);
    let grads = |recurrence: Recurrence<'_, f64>, last_only: bool, dh: &[f64]| {
        let p = CellParams {
            w: recurrence,
            u: &u,
            b: &b,
            bm: &bm,
            hidden_quant: None,
        };
        let mut cell = OrnnCell::new(shape, Activation::Modrelu).with_last_step_readout(last_only);
        let pass = run_cell(&mut cell, &p, &x, dh, Par::Seq);
        [pass.dw, pass.du, pass.db, pass.dbm]
    };
    for recurrence in [
        Recurrence::Dense(&w),
        Recurrence::Hadamard {
            row_scale: &row_scale,
            block: 4,
        },
    ] {
        let every = grads(recurrence, false, &dh);
        assert_eq!(grads(recurrence, true, &dh), every);
        assert_eq!(grads(recurrence, true, &garbage), every);
        assert_ne!(grads(recurrence, false, &garbage), every);
    }
}

/// The structured steps' fused forward and backward (f32, Hadamard blocks of 8, 16 and
/// more, rotations; ReLU and modReLU; the AVX2 kernels and the fastest, AVX-512F where the
/// CPU has it) give the
/// states and every gradient bit for bit as the pass per operation that they replace, with
/// and without an input gradient (two step blocks of `dz` or all), a many-to-one read-out
/// or one at every step, on 1 and 3 threads; with the hidden state fake-quantized
/// (`--act-bits`, to nearest and stochastically) the step's gradient too.
#[test]
fn the_fused_steps_are_the_unfused_ones_bit_for_bit() {
    let probe = [0.5f32; 16];
    let fused_here = Recurrence::Hadamard {
        row_scale: &probe,
        block: 16,
    }
    .has_fused_steps();
    if !fused_here {
        eprintln!("skipped: no fused Hadamard steps on this CPU (they need x86-64 with AVX2)");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx512f") {
        eprintln!("skipped the AVX-512F kernels: this CPU lacks AVX-512F (AVX2 ones tested)");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut random32 =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect() };
    let steps = 7;
    // (24, 8): n not a multiple of 16, so the fastest kernel is the AVX2 one there; batch
    // 80 of 64 units: a step large enough for the kept states' non-temporal stores; one
    // input (d = 1): its share read in the kernels; blocks of 32 and more (HadamRNN's one
    // block of n among them): the rows transformed into scratch; block None: rotations.
    let shapes = [
        (32, Some(8), 9, 3),
        (32, Some(16), 9, 1),
        (24, Some(8), 9, 3),
        (24, Some(8), 9, 1),
        (64, Some(16), 80, 1),
        (64, Some(32), 9, 3),
        (64, Some(64), 80, 1),
        (256, Some(256), 5, 1),
        (32, None, 9, 3),
        (24, None, 9, 1),
        (64, None, 80, 1),
    ];
    for (n, block, batch, d) in shapes {
        let shape = CellShape {
            hidden: n,
            input: d,
            steps,
            batch,
        };
        let row_scale: Vec<f32> = random32(n).iter().map(|v| v.signum() * 0.25).collect();
        // Rotations: (cos, sin) of random angles, pair by pair.
        let cos_sin: Vec<f32> = random32(n / 2)
            .iter()
            .flat_map(|&a| [(3.0 * a).cos(), (3.0 * a).sin()])
            .collect();
        let (u, b, bm) = (random32(n * d), random32(n), random32(n));
        let x = random32(steps * batch * d);
        let dh = random32(steps * batch * n);
        let w = match block {
            Some(block) => Recurrence::Hadamard {
                row_scale: &row_scale,
                block,
            },
            None => Recurrence::Rotations { cos_sin: &cos_sin },
        };
        assert!(w.has_fused_steps());
        let quantizers = |modrelu: bool| {
            // 6-bit codes of step 1/8: a range of +-4 (ReLU 0..8) that some states pass.
            let nearest = HiddenQuantizer::<f32>::new(6, -3.0, modrelu);
            let stochastic = HiddenQuantizer {
                dither: Some(dither_key(5, 3)),
                ..nearest
            };
            // A step between powers of two (`act_range = "continuous"`): z / s inexact.
            let continuous = HiddenQuantizer::<f32>::with_step(6, 0.1371, modrelu);
            [None, Some(nearest), Some(stochastic), Some(continuous)]
        };
        let cases = [Activation::Relu, Activation::Modrelu, Activation::Tanh]
            .into_iter()
            .flat_map(|a| match a {
                Activation::Tanh => vec![(a, None)],
                _ => quantizers(a == Activation::Modrelu)
                    .map(|q| (a, q))
                    .to_vec(),
            });
        for (activation, hidden_quant) in cases {
            for (last_only, with_dx) in [(false, false), (true, false), (false, true)] {
                for par in [Par::Seq, Par::Rayon(NonZeroUsize::new(3).unwrap())] {
                    let run = |kernel: FusedKernel| {
                        let p = CellParams {
                            w,
                            u: &u,
                            b: &b,
                            bm: &bm,
                            hidden_quant,
                        };
                        let mut cell = OrnnCell::new(shape, activation)
                            .with_last_step_readout(last_only)
                            .with_fused_kernel(kernel);
                        cell.forward(&p, &x, par);
                        let (mut dw, mut du) = (vec![0.0f32; n * n], vec![0.0f32; n * d]);
                        let (mut db, mut dbm, mut d_step) = (vec![0.0f32; n], vec![0.0f32; n], 0.0);
                        let mut dx = vec![0.0f32; if with_dx { x.len() } else { 0 }];
                        let mut g = CellGrads {
                            w: &mut dw,
                            u: &mut du,
                            b: &mut db,
                            bm: &mut dbm,
                            hidden_step: &mut d_step,
                        };
                        cell.backward(&p, &x, &dh, &mut g, with_dx.then_some(&mut dx[..]), par);
                        let h = cell.outputs().to_vec();
                        [h, dw, du, db, dbm, dx, vec![d_step]]
                            .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
                    };
                    let unfused = run(FusedKernel::Unfused);
                    assert!(unfused[3].iter().any(|&b| b != 0), "db is all zero");
                    if hidden_quant.is_some() {
                        assert!(unfused[6][0] != 0, "the step's gradient is zero");
                    }
                    for kernel in [FusedKernel::Avx2, FusedKernel::Fastest] {
                        assert_eq!(
                            run(kernel),
                            unfused,
                            "{kernel:?} m {block:?} {activation:?} {hidden_quant:?} last only {last_only} dx {with_dx} {par:?}"
                        );
                    }
                }
            }
        }
    }
}

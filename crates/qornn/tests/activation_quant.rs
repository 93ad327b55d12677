//! The hidden state's fake quantizer (`--act-bits`) in the ORNN cell: its straight-through
//! backward against central differences of a float64 reference.
//!
//! The straight-through gradient is the exact gradient of the recurrence in which every
//! rounding's residual and every clamp is held at the value it has at the point of
//! evaluation (`quant/activation.rs`). The reference below computes that recurrence in
//! `f64` with explicit loops, independently of the cell: its value at the point equals the
//! quantized forward, and its central differences in `W`, `U`, `b`, `bm` and the step must
//! equal the cell's backward. The same holds for stochastic rounding in training
//! (`act_train_rounding`), whose offsets the reference draws by the same key and index.

mod common;

use faer::Par;
use qornn::quant::activation::HiddenQuantizer;
use qornn::quant::dither::{dither_key, dither_offset};
use qornn::{Activation, CellParams, CellShape, OrnnCell, Recurrence};
use rand::{Rng, SeedableRng};

const N: usize = 5;
const D: usize = 3;
const T: usize = 7;
const B: usize = 2;
const BITS: u32 = 5;

/// One unit's case at the point of evaluation, held fixed by the reference.
#[derive(Clone, Copy)]
enum Frozen {
    Zero,
    /// `h = z + s r + sign (bm + s r_bm)`: the rounding residuals held.
    Inside {
        r: f64,
        r_bm: f64,
        sign: f64,
    },
    /// `h = s c`.
    Clamped {
        code: f64,
    },
}

struct Point {
    w: Vec<f64>,
    u: Vec<f64>,
    b: Vec<f64>,
    bm: Vec<f64>,
    step: f64,
}

/// The engine's rules for one unit (`docs/format.md`), written out again: the clamped
/// code and the case. `offset` is 1/2 (to nearest, the engine's) or stochastic rounding's.
fn engine_unit(z: f64, bm: f64, s: f64, modrelu: bool, offset: f64) -> (f64, Frozen) {
    let u = z / s;
    let rounded = (u + offset).floor();
    let sign = rounded.signum() * (rounded != 0.0) as i32 as f64;
    let (lo, hi) = if modrelu {
        (
            -(1i64 << (BITS - 1)) as f64,
            ((1i64 << (BITS - 1)) - 1) as f64,
        )
    } else {
        (0.0, ((1i64 << BITS) - 1) as f64)
    };
    let (a, r_bm) = if modrelu {
        let bm_code = (bm / s).round();
        let m = rounded.abs() + bm_code;
        (if m > 0.0 { sign * m } else { 0.0 }, bm_code - bm / s)
    } else {
        (rounded.max(0.0), 0.0)
    };
    let clamped = a.clamp(lo, hi);
    let case = if a == 0.0 {
        Frozen::Zero
    } else if clamped != a {
        Frozen::Clamped { code: clamped }
    } else {
        Frozen::Inside {
            r: rounded - u,
            r_bm: if modrelu { r_bm } else { 0.0 },
            sign: if modrelu { sign } else { 1.0 },
        }
    };
    (clamped * s, case)
}

/// `sum dh h` over the sequence: with `frozen` empty, the quantized recurrence (filling
/// `frozen` with each unit's case); else the recurrence with those cases held.
fn reference(
    p: &Point,
    (x, dh): (&[f64], &[f64]),
    modrelu: bool,
    dither: Option<u32>,
    frozen: &mut Vec<Frozen>,
) -> (f64, Vec<f64>) {
    let record = frozen.is_empty();
    let mut h = vec![0.0; B * N];
    let mut states = Vec::new();
    let mut loss = 0.0;
    for t in 0..T {
        let mut next = vec![0.0; B * N];
        for bi in 0..B {
            for i in 0..N {
                let mut z = p.b[i];
                for j in 0..N {
                    z += p.w[i * N + j] * h[bi * N + j];
                }
                for k in 0..D {
                    z += p.u[i * D + k] * x[(t * B + bi) * D + k];
                }
                let bm = if modrelu { p.bm[i] } else { 0.0 };
                let at = (t * B + bi) * N + i;
                let value = if record {
                    let offset = dither.map_or(0.5, |key| dither_offset(key, at as u32));
                    let (value, case) = engine_unit(z, bm, p.step, modrelu, offset);
                    frozen.push(case);
                    value
                } else {
                    match frozen[at] {
                        Frozen::Zero => 0.0,
                        Frozen::Inside { r, r_bm, sign } => {
                            z + p.step * r + sign * (bm + p.step * r_bm)
                        }
                        Frozen::Clamped { code } => p.step * code,
                    }
                };
                next[bi * N + i] = value;
                loss += dh[at] * value;
            }
        }
        states.extend_from_slice(&next);
        h = next;
    }
    (loss, states)
}

fn check(modrelu: bool, seed: u64, dither: Option<u32>) {
    check_at(1.0 / 16.0, modrelu, seed, dither);
}

/// The check at the hidden step `step`, a power of two or any other
/// (`ActRange::Continuous`).
fn check_at(step: f64, modrelu: bool, seed: u64, dither: Option<u32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |len: usize, scale: f64| -> Vec<f64> {
        (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
    };
    let point = Point {
        w: draw(N * N, 0.9),
        u: draw(N * D, 3.0),
        b: draw(N, 0.3),
        bm: draw(N, 0.2),
        step,
    };
    let x = draw(T * B * D, 1.0);
    let dh = draw(T * B * N, 1.0);
    let activation = if modrelu {
        Activation::Modrelu
    } else {
        Activation::Relu
    };
    let mut quantizer = HiddenQuantizer::<f64>::with_step(BITS, step, modrelu);
    quantizer.dither = dither;
    let shape = CellShape {
        hidden: N,
        input: D,
        steps: T,
        batch: B,
    };
    let zero_bm = vec![0.0; N];
    let params = CellParams {
        w: Recurrence::Dense(&point.w),
        u: &point.u,
        b: &point.b,
        bm: if modrelu { &point.bm } else { &zero_bm },
        hidden_quant: Some(quantizer),
    };
    let mut cell = OrnnCell::<f64>::new(shape, activation);
    let pass = common::run_cell(&mut cell, &params, &x, &dh, Par::Seq);
    let (gw, gu, gb, gbm, g_step) = (pass.dw, pass.du, pass.db, pass.dbm, pass.d_hidden_step);

    let mut frozen = Vec::new();
    let (_, states) = reference(&point, (&x, &dh), modrelu, dither, &mut frozen);
    assert_eq!(cell.outputs(), &states[..], "the forward is the engine's");
    if dither.is_some() {
        let (_, nearest) = reference(&point, (&x, &dh), modrelu, None, &mut Vec::new());
        let differ = states.iter().zip(&nearest).filter(|(a, b)| a != b).count();
        assert!(differ > 0, "stochastic rounding moves no state");
    }
    let cases = |pick: fn(&Frozen) -> bool| frozen.iter().filter(|c| pick(c)).count();
    let inside = cases(|c| matches!(c, Frozen::Inside { .. }));
    let clamped = cases(|c| matches!(c, Frozen::Clamped { .. }));
    assert!(
        inside > 10 && clamped > 3,
        "the point exercises every case ({inside} inside, {clamped} clamped)"
    );

    let eps = 1e-6;
    let loss_at = |p: &Point| reference(p, (&x, &dh), modrelu, dither, &mut frozen.clone()).0;
    let central = |set: &dyn Fn(&mut Point, f64)| {
        let (mut plus, mut minus) = (clone(&point), clone(&point));
        set(&mut plus, eps);
        set(&mut minus, -eps);
        (loss_at(&plus) - loss_at(&minus)) / (2.0 * eps)
    };
    let close = |what: String, analytic: f64, numeric: f64| {
        assert!(
            (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
            "{what}: backward {analytic}, central differences {numeric}"
        );
    };
    for (k, &g) in gw.iter().enumerate() {
        close(format!("dW[{k}]"), g, central(&|p, e| p.w[k] += e));
    }
    for (k, &g) in gu.iter().enumerate() {
        close(format!("dU[{k}]"), g, central(&|p, e| p.u[k] += e));
    }
    for k in 0..N {
        close(format!("db[{k}]"), gb[k], central(&|p, e| p.b[k] += e));
        if modrelu {
            close(format!("dbm[{k}]"), gbm[k], central(&|p, e| p.bm[k] += e));
        }
    }
    close("ds".into(), g_step, central(&|p, e| p.step += e));
    assert!(g_step.abs() > 1e-3, "the step's gradient is exercised");
}

fn clone(p: &Point) -> Point {
    Point {
        w: p.w.clone(),
        u: p.u.clone(),
        b: p.b.clone(),
        bm: p.bm.clone(),
        step: p.step,
    }
}

#[test]
fn relu_hidden_quantizer_backward_matches_central_differences() {
    for seed in 0..4 {
        check(false, seed, None);
    }
}

#[test]
fn modrelu_hidden_quantizer_backward_matches_central_differences() {
    for seed in 0..4 {
        check(true, seed, None);
    }
}

#[test]
fn stochastic_rounding_backward_matches_central_differences() {
    for seed in 0..4 {
        let key = dither_key(seed, 17);
        check(false, seed, Some(key));
        check(true, seed, Some(key));
    }
}

/// A step between two powers of two (`act_range = "continuous"`): the same
/// straight-through gradient, in particular `dh/ds` with `u = z / s` no longer exact.
#[test]
fn continuous_step_backward_matches_central_differences() {
    for seed in 0..4 {
        check_at(0.0517, false, seed, None);
        check_at(0.0517, true, seed, None);
    }
}

//! Finite-difference checks of every backward pass, in f64: each analytic gradient is
//! compared with central differences `(L(p + eps e) - L(p - eps e)) / 2 eps` on every
//! coordinate. With eps = 1e-6 the truncation error is O(eps^2) and the rounding error
//! O(1e-16 / eps), so 1e-6 relative is a safe bound for these smooth losses (ReLU kinks
//! are avoided by drawing pre-activations away from 0 with overwhelming probability).

mod common;

use common::relative_error;
use faer::Par;
use qornn::head::{Head, Readout, Targets};
use qornn::*;
use rand::{Rng, SeedableRng};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn random(rng: &mut impl Rng, len: usize, scale: f64) -> Vec<f64> {
    (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
}

/// Central differences of `loss` with respect to every coordinate of `p`.
fn numeric_grad(p: &[f64], mut loss: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut q = p.to_vec();
    (0..p.len())
        .map(|i| {
            q[i] = p[i] + EPS;
            let up = loss(&q);
            q[i] = p[i] - EPS;
            let down = loss(&q);
            q[i] = p[i];
            (up - down) / (2.0 * EPS)
        })
        .collect()
}

#[derive(Clone)]
struct Problem {
    shape: CellShape,
    classes: usize,
    x: Vec<f64>,
    w: Vec<f64>,
    u: Vec<f64>,
    b: Vec<f64>,
    bm: Vec<f64>,
    v: Vec<f64>,
    c: Vec<f64>,
    targets: Targets,
}

impl Problem {
    fn new(seed: u64, readout: Readout, regression: bool) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let shape = CellShape {
            hidden: 7,
            input: 3,
            steps: 6,
            batch: 4,
        };
        let classes = if regression { 2 } else { 5 };
        let rows = match readout {
            Readout::Last => shape.batch,
            Readout::Every => shape.steps * shape.batch,
        };
        let targets = if regression {
            Targets::Values(
                (0..rows * classes)
                    .map(|_| rng.gen_range(-1.0..1.0))
                    .collect(),
            )
        } else {
            Targets::Classes((0..rows).map(|_| rng.gen_range(0..classes)).collect())
        };
        let n = shape.hidden;
        Self {
            x: random(&mut rng, shape.steps * shape.batch * shape.input, 1.0),
            w: random(&mut rng, n * n, 0.6),
            u: random(&mut rng, n * shape.input, 0.8),
            b: random(&mut rng, n, 0.3),
            bm: random(&mut rng, n, 0.3),
            v: random(&mut rng, classes * n, 0.5),
            c: random(&mut rng, classes, 0.2),
            shape,
            classes,
            targets,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        act: Activation,
        readout: Readout,
        w: &[f64],
        u: &[f64],
        b: &[f64],
        bm: &[f64],
        v: &[f64],
        c: &[f64],
    ) -> f64 {
        let mut cell = OrnnCell::<f64>::new(self.shape, act);
        let mut head = Head::<f64>::new(readout, self.shape.steps, self.shape.batch, self.classes);
        cell.forward(
            &CellParams {
                w: Recurrence::Dense(w),
                u,
                b,
                bm,
                hidden_quant: None,
            },
            &self.x,
            Par::Seq,
        );
        head.forward(
            cell.outputs(),
            self.shape.hidden,
            v,
            c,
            &self.targets,
            Par::Seq,
        )
    }
}

fn check_cell(act: Activation, readout: Readout, regression: bool) {
    let p = Problem::new(11, readout, regression);
    let n = p.shape.hidden;
    let mut cell = OrnnCell::<f64>::new(p.shape, act);
    let mut head = Head::<f64>::new(readout, p.shape.steps, p.shape.batch, p.classes);
    let params = CellParams {
        w: Recurrence::Dense(&p.w),
        u: &p.u,
        b: &p.b,
        bm: &p.bm,
        hidden_quant: None,
    };
    cell.forward(&params, &p.x, Par::Seq);
    head.forward(cell.outputs(), n, &p.v, &p.c, &p.targets, Par::Seq);
    let (mut gv, mut gc) = (vec![0.0; p.v.len()], vec![0.0; p.c.len()]);
    let mut dh = vec![0.0; cell.outputs().len()];
    let read_out = dh.len() - head.rows * n;
    head.backward(
        cell.outputs(),
        n,
        &p.v,
        &mut gv,
        &mut gc,
        &mut dh[read_out..],
        Par::Seq,
    );
    let (mut gw, mut gu, mut gb, mut gbm) = (
        vec![0.0; n * n],
        vec![0.0; p.u.len()],
        vec![0.0; n],
        vec![0.0; n],
    );
    let mut gx = vec![0.0; p.x.len()];
    cell.backward(
        &params,
        &p.x,
        &dh,
        &mut CellGrads {
            w: &mut gw,
            u: &mut gu,
            b: &mut gb,
            bm: &mut gbm,
            hidden_step: &mut 0.0,
        },
        Some(&mut gx),
        Par::Seq,
    );

    let mut failures = Vec::new();
    let mut check = |name: &str, analytic: &[f64], numeric: Vec<f64>| {
        let err = relative_error(analytic, &numeric);
        if err.is_nan() || err >= TOL {
            failures.push(format!(
                "{act:?} {readout:?} {name}: relative error {err:.2e}"
            ));
        }
    };
    let l = |w: &[f64], u: &[f64], b: &[f64], bm: &[f64], v: &[f64], c: &[f64]| {
        p.loss(act, readout, w, u, b, bm, v, c)
    };
    check(
        "W",
        &gw,
        numeric_grad(&p.w, |w| l(w, &p.u, &p.b, &p.bm, &p.v, &p.c)),
    );
    check(
        "U",
        &gu,
        numeric_grad(&p.u, |u| l(&p.w, u, &p.b, &p.bm, &p.v, &p.c)),
    );
    let loss_of_x = |x: &[f64]| {
        let mut q = p.clone();
        q.x = x.to_vec();
        q.loss(act, readout, &p.w, &p.u, &p.b, &p.bm, &p.v, &p.c)
    };
    check("x", &gx, numeric_grad(&p.x, loss_of_x));
    check(
        "b",
        &gb,
        numeric_grad(&p.b, |b| l(&p.w, &p.u, b, &p.bm, &p.v, &p.c)),
    );
    if act == Activation::Modrelu {
        check(
            "bm",
            &gbm,
            numeric_grad(&p.bm, |bm| l(&p.w, &p.u, &p.b, bm, &p.v, &p.c)),
        );
    }
    check(
        "V",
        &gv,
        numeric_grad(&p.v, |v| l(&p.w, &p.u, &p.b, &p.bm, v, &p.c)),
    );
    check(
        "c",
        &gc,
        numeric_grad(&p.c, |c| l(&p.w, &p.u, &p.b, &p.bm, &p.v, c)),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cell_and_head_gradients_match_finite_differences() {
    for act in [Activation::Relu, Activation::Modrelu] {
        for readout in [Readout::Last, Readout::Every] {
            check_cell(act, readout, false);
        }
    }
    check_cell(Activation::Relu, Readout::Last, true);
}

/// Spectral normalisation (vectors held fixed) -> Björck -> a linear loss.
#[test]
fn spectral_norm_and_bjorck_gradients_match_finite_differences() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let n = 9;
    let a = random(&mut rng, n * n, 1.0);
    let r = random(&mut rng, n * n, 1.0);
    let mut spectral = SpectralNorm::<f64>::new(&a, n, 30);
    let mut w0 = vec![0.0; n * n];
    spectral.forward(&a, &mut w0);
    let config = BjorckConfig {
        iterations: 8,
        beta: 0.5,
    };
    let loss = |a: &[f64], spectral: &mut SpectralNorm<f64>| {
        let mut w0 = vec![0.0; n * n];
        spectral.normalize_into(a, &mut w0);
        let mut b = Bjorck::<f64>::new(config, n);
        let w = b.forward(&w0, Par::Seq);
        w.iter().zip(&r).map(|(x, y)| x * y).sum::<f64>()
    };
    loss(&a, &mut spectral);
    let mut bjorck = Bjorck::<f64>::new(config, n);
    bjorck.forward(&w0, Par::Seq);
    let grad_w0 = bjorck.backward(&r, Par::Seq).to_vec();
    let mut grad_a = vec![0.0; n * n];
    spectral.backward(&a, &grad_w0, &mut grad_a);
    let mut probe = spectral.clone();
    let numeric = numeric_grad(&a, |a| loss(a, &mut probe));
    let err = relative_error(&grad_a, &numeric);
    assert!(err < TOL, "dL/dA relative error {err:.2e}");
}

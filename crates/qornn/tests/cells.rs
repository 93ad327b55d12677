//! The baseline cells against `tests/reference/{lstm,gru,fastrnn,fastgrnn}`: hidden states
//! and every gradient of `L = sum_t <h_t, r_t>`, in f64 (1e-9: only summation order
//! differs) and f32 (1e-4, the README's bound). Shapes come from the files.

mod common;

use common::{load, Checks, Reference};
use faer::Par;
use qornn::cells::fastgrnn::{FastGrnnCell, FastGrnnGrads, FastGrnnParams};
use qornn::cells::fastrnn::{FastRnnCell, FastRnnGrads, FastRnnParams};
use qornn::cells::gru::{GruCell, GruGrads, GruParams};
use qornn::cells::lstm::{LstmCell, LstmGrads, LstmParams};
use qornn::{CellShape, Real};

fn to<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::of(x)).collect()
}

fn back<T: Real>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64().unwrap()).collect()
}

fn shape(r: &Reference, hidden: usize) -> CellShape {
    let x = r.shape("x");
    CellShape {
        hidden,
        input: x[2],
        steps: x[0],
        batch: x[1],
    }
}

const PRECISIONS: [(&str, f64); 2] = [("f64", 1e-9), ("f32", 1e-4)];

/// LSTM and GRU share PyTorch's four tensors; `gates` is 4 or 3.
fn check_pytorch_cell(name: &str, gates: usize) {
    let r = load(name);
    let hidden = r.shape("weight_hh_l0")[1];
    assert_eq!(r.shape("weight_hh_l0")[0], gates * hidden);
    let mut checks = Checks::default();
    for (label, tol) in PRECISIONS {
        let (h, grads) = if label == "f64" {
            run_pytorch_cell::<f64>(&r, hidden, gates)
        } else {
            run_pytorch_cell::<f32>(&r, hidden, gates)
        };
        checks.close(&format!("{name} {label} h"), &h, &r.f64("h"), tol);
        for (key, g) in ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
            .iter()
            .zip(grads)
        {
            checks.close(
                &format!("{name} {label} grad_{key}"),
                &g,
                &r.f64(&format!("grad_{key}")),
                tol,
            );
        }
    }
    checks.finish();
}

fn run_pytorch_cell<T: Real>(
    r: &Reference,
    hidden: usize,
    gates: usize,
) -> (Vec<f64>, [Vec<f64>; 4]) {
    let shape = shape(r, hidden);
    let (wi, wh, bi, bh) = (
        to::<T>(&r.f64("weight_ih_l0")),
        to::<T>(&r.f64("weight_hh_l0")),
        to::<T>(&r.f64("bias_ih_l0")),
        to::<T>(&r.f64("bias_hh_l0")),
    );
    let (x, dh) = (to::<T>(&r.f64("x")), to::<T>(&r.f64("r")));
    let (mut gwi, mut gwh, mut gbi, mut gbh) = (
        vec![T::zero(); wi.len()],
        vec![T::zero(); wh.len()],
        vec![T::zero(); bi.len()],
        vec![T::zero(); bh.len()],
    );
    let h = if gates == 4 {
        let p = LstmParams {
            weight_ih: &wi,
            weight_hh: &wh,
            bias_ih: &bi,
            bias_hh: &bh,
        };
        let mut cell = LstmCell::<T>::new(shape);
        cell.forward(&p, &x, Par::Seq);
        let mut g = LstmGrads {
            weight_ih: &mut gwi,
            weight_hh: &mut gwh,
            bias_ih: &mut gbi,
            bias_hh: &mut gbh,
        };
        cell.backward(&p, &x, &dh, &mut g, None, Par::Seq);
        back(cell.outputs())
    } else {
        let p = GruParams {
            weight_ih: &wi,
            weight_hh: &wh,
            bias_ih: &bi,
            bias_hh: &bh,
        };
        let mut cell = GruCell::<T>::new(shape);
        cell.forward(&p, &x, Par::Seq);
        let mut g = GruGrads {
            weight_ih: &mut gwi,
            weight_hh: &mut gwh,
            bias_ih: &mut gbi,
            bias_hh: &mut gbh,
        };
        cell.backward(&p, &x, &dh, &mut g, None, Par::Seq);
        back(cell.outputs())
    };
    (h, [back(&gwi), back(&gwh), back(&gbi), back(&gbh)])
}

#[test]
fn lstm_matches_pytorch() {
    check_pytorch_cell("lstm", 4);
}

#[test]
fn gru_matches_pytorch() {
    check_pytorch_cell("gru", 3);
}

fn fastrnn_case<T: Real>(r: &Reference, checks: &mut Checks, label: &str, tol: f64) {
    let hidden = r.shape("U")[0];
    let (w, u, b) = (
        to::<T>(&r.f64("W")),
        to::<T>(&r.f64("U")),
        to::<T>(&r.f64("b_h")),
    );
    let p = FastRnnParams {
        w: &w,
        u: &u,
        b_h: &b,
        alpha: T::of(r.f64("alpha")[0]),
        beta: T::of(r.f64("beta")[0]),
    };
    let (x, dh) = (to::<T>(&r.f64("x")), to::<T>(&r.f64("r")));
    let mut cell = FastRnnCell::<T>::new(shape(r, hidden));
    cell.forward(&p, &x, Par::Seq);
    let (mut gw, mut gu, mut gb, mut ga, mut gbeta) = (
        vec![T::zero(); w.len()],
        vec![T::zero(); u.len()],
        vec![T::zero(); b.len()],
        T::zero(),
        T::zero(),
    );
    let mut g = FastRnnGrads {
        w: &mut gw,
        u: &mut gu,
        b_h: &mut gb,
        alpha: &mut ga,
        beta: &mut gbeta,
    };
    cell.backward(&p, &x, &dh, &mut g, None, Par::Seq);
    checks.close(
        &format!("fastrnn {label} h"),
        &back(cell.outputs()),
        &r.f64("h"),
        tol,
    );
    checks.close(
        &format!("fastrnn {label} grad_W"),
        &back(&gw),
        &r.f64("grad_W"),
        tol,
    );
    checks.close(
        &format!("fastrnn {label} grad_U"),
        &back(&gu),
        &r.f64("grad_U"),
        tol,
    );
    checks.close(
        &format!("fastrnn {label} grad_b_h"),
        &back(&gb),
        &r.f64("grad_b_h"),
        tol,
    );
    checks.close(
        &format!("fastrnn {label} grad_alpha"),
        &back(&[ga]),
        &r.f64("grad_alpha"),
        tol,
    );
    checks.close(
        &format!("fastrnn {label} grad_beta"),
        &back(&[gbeta]),
        &r.f64("grad_beta"),
        tol,
    );
}

#[test]
fn fastrnn_matches_reference() {
    let r = load("fastrnn");
    let mut checks = Checks::default();
    fastrnn_case::<f64>(&r, &mut checks, "f64", 1e-9);
    fastrnn_case::<f32>(&r, &mut checks, "f32", 1e-4);
    checks.finish();
}

fn fastgrnn_case<T: Real>(r: &Reference, checks: &mut Checks, label: &str, tol: f64) {
    let hidden = r.shape("U")[0];
    let (w, u) = (to::<T>(&r.f64("W")), to::<T>(&r.f64("U")));
    let (bz, bh) = (to::<T>(&r.f64("b_z")), to::<T>(&r.f64("b_h")));
    let p = FastGrnnParams {
        w: &w,
        u: &u,
        b_z: &bz,
        b_h: &bh,
        zeta: T::of(r.f64("zeta")[0]),
        nu: T::of(r.f64("nu")[0]),
    };
    let (x, dh) = (to::<T>(&r.f64("x")), to::<T>(&r.f64("r")));
    let mut cell = FastGrnnCell::<T>::new(shape(r, hidden));
    cell.forward(&p, &x, Par::Seq);
    let (mut gw, mut gu, mut gbz, mut gbh) = (
        vec![T::zero(); w.len()],
        vec![T::zero(); u.len()],
        vec![T::zero(); bz.len()],
        vec![T::zero(); bh.len()],
    );
    let (mut gzeta, mut gnu) = (T::zero(), T::zero());
    let mut g = FastGrnnGrads {
        w: &mut gw,
        u: &mut gu,
        b_z: &mut gbz,
        b_h: &mut gbh,
        zeta: &mut gzeta,
        nu: &mut gnu,
    };
    cell.backward(&p, &x, &dh, &mut g, None, Par::Seq);
    checks.close(
        &format!("fastgrnn {label} h"),
        &back(cell.outputs()),
        &r.f64("h"),
        tol,
    );
    checks.close(
        &format!("fastgrnn {label} grad_W"),
        &back(&gw),
        &r.f64("grad_W"),
        tol,
    );
    checks.close(
        &format!("fastgrnn {label} grad_U"),
        &back(&gu),
        &r.f64("grad_U"),
        tol,
    );
    checks.close(
        &format!("fastgrnn {label} grad_b_z"),
        &back(&gbz),
        &r.f64("grad_b_z"),
        tol,
    );
    checks.close(
        &format!("fastgrnn {label} grad_b_h"),
        &back(&gbh),
        &r.f64("grad_b_h"),
        tol,
    );
    checks.close(
        &format!("fastgrnn {label} grad_zeta"),
        &back(&[gzeta]),
        &r.f64("grad_zeta"),
        tol,
    );
    checks.close(
        &format!("fastgrnn {label} grad_nu"),
        &back(&[gnu]),
        &r.f64("grad_nu"),
        tol,
    );
}

#[test]
fn fastgrnn_matches_reference() {
    let r = load("fastgrnn");
    let mut checks = Checks::default();
    fastgrnn_case::<f64>(&r, &mut checks, "f64", 1e-9);
    fastgrnn_case::<f32>(&r, &mut checks, "f32", 1e-4);
    checks.finish();
}

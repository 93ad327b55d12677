//! Every definition of `tests/reference/README.md` that the core touches, recomputed here.
//! Shapes are read from the files. Tolerances: 1e-4 relative for f32 (the README's bound),
//! 1e-9 for f64 recomputations (only summation order differs), exact for integer codes.

mod common;

use common::{load, Checks, Reference};
use faer::Par;
use qornn::*;

fn to<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::of(x)).collect()
}

fn back(v: &[impl Real]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64().unwrap()).collect()
}

#[test]
fn quant_minmax_matches_reference_exactly() {
    let r = load("quant_minmax");
    let shape = r.shape("w");
    let (rows, cols) = (shape[0], shape[1]);
    let w = r.f64("w");
    let mut checks = Checks::default();
    for bits in [2u32, 3, 4, 5, 6, 8] {
        for (granularity, suffix) in [
            (Granularity::PerTensor, ""),
            (Granularity::PerRow, "_per_row"),
        ] {
            let q = Quantizer::new(bits, granularity);
            let mut out = vec![0.0f64; w.len()];
            let t = q.fake_quantize_into(&w, rows, cols, &mut out);
            checks.exact(
                &format!("q{bits}{suffix}"),
                &out,
                &r.f64(&format!("q{bits}{suffix}")),
            );
            let s = 1i32 << (bits - 1);
            assert!(
                t.codes.iter().all(|&c| (-s..s).contains(&c)),
                "codes out of range"
            );
        }
    }
    checks.finish();
}

fn bjorck_case<T: Real>(r: &Reference, tol: f64, checks: &mut Checks, label: &str) {
    let n = r.shape("a")[0];
    let mut b = Bjorck::<T>::new(BjorckConfig::default(), n);
    let w = b.forward(&to::<T>(&r.f64("a")), Par::Seq).to_vec();
    checks.close(&format!("{label} w"), &back(&w), &r.f64("w"), tol);
    let grad = b.backward(&to::<T>(&r.f64("r")), Par::Seq).to_vec();
    checks.close(
        &format!("{label} grad_a"),
        &back(&grad),
        &r.f64("grad_a"),
        tol,
    );
}

#[test]
fn bjorck_matches_reference() {
    let r = load("bjorck");
    let mut checks = Checks::default();
    bjorck_case::<f64>(&r, 1e-9, &mut checks, "f64");
    bjorck_case::<f32>(&r, 1e-4, &mut checks, "f32");
    checks.finish();
}

struct OrnnOut {
    h: Vec<f64>,
    logits: Vec<f64>,
    loss: f64,
    grad_w: Vec<f64>,
    grad_u: Vec<f64>,
    grad_b: Vec<f64>,
    grad_bm: Vec<f64>,
    grad_v: Vec<f64>,
    grad_c: Vec<f64>,
}

/// Runs the cell and head on `x` with the given (already parametrised) W and U.
#[allow(clippy::too_many_arguments)]
fn run_ornn<T: Real>(
    r: &Reference,
    w: &[f64],
    u: &[f64],
    act: Activation,
    readout: Readout,
) -> OrnnOut {
    let x_shape = r.shape("x");
    let (steps, batch, input) = (x_shape[0], x_shape[1], x_shape[2]);
    let hidden = r.shape("U")[0];
    let classes = r.shape("V")[0];
    let shape = CellShape {
        hidden,
        input,
        steps,
        batch,
    };
    let bm = match act {
        Activation::Modrelu => to::<T>(&r.f64("bm")),
        Activation::Relu | Activation::Tanh => vec![T::zero(); hidden],
    };
    let (w, u, b) = (to::<T>(w), to::<T>(u), to::<T>(&r.f64("b")));
    let (v, c) = (to::<T>(&r.f64("V")), to::<T>(&r.f64("c")));
    let x = to::<T>(&r.f64("x"));
    let params = CellParams {
        w: Recurrence::Dense(&w),
        u: &u,
        b: &b,
        bm: &bm,
        hidden_quant: None,
    };
    let mut cell = OrnnCell::<T>::new(shape, act);
    let mut head = Head::<T>::new(readout, steps, batch, classes);
    cell.forward(&params, &x, Par::Seq);
    let targets = Targets::Classes(r.labels("y"));
    let loss = head.forward(cell.outputs(), hidden, &v, &c, &targets, Par::Seq);
    let (mut gw, mut gu, mut gb, mut gbm) = (
        vec![T::zero(); w.len()],
        vec![T::zero(); u.len()],
        vec![T::zero(); hidden],
        vec![T::zero(); hidden],
    );
    let (mut gv, mut gc) = (vec![T::zero(); v.len()], vec![T::zero(); classes]);
    let mut dh = vec![T::zero(); cell.outputs().len()];
    let read_out = dh.len() - head.rows * hidden;
    head.backward(
        cell.outputs(),
        hidden,
        &v,
        &mut gv,
        &mut gc,
        &mut dh[read_out..],
        Par::Seq,
    );
    let mut grads = CellGrads {
        w: &mut gw,
        u: &mut gu,
        b: &mut gb,
        bm: &mut gbm,
        hidden_step: &mut T::zero(),
    };
    cell.backward(&params, &x, &dh, &mut grads, None, Par::Seq);
    OrnnOut {
        h: back(cell.outputs()),
        logits: back(head.logits()),
        loss: loss.to_f64().unwrap(),
        grad_w: back(&gw),
        grad_u: back(&gu),
        grad_b: back(&gb),
        grad_bm: back(&gbm),
        grad_v: back(&gv),
        grad_c: back(&gc),
    }
}

fn check_ornn(name: &str, act: Activation, readout: Readout) {
    let r = load(name);
    let mut checks = Checks::default();
    for (label, tol) in [("f64", 1e-9), ("f32", 1e-4)] {
        let out = if label == "f64" {
            run_ornn::<f64>(&r, &r.f64("W"), &r.f64("U"), act, readout)
        } else {
            run_ornn::<f32>(&r, &r.f64("W"), &r.f64("U"), act, readout)
        };
        let l = |k: &str| format!("{name} {label} {k}");
        checks.close(&l("h"), &out.h, &r.f64("h"), tol);
        checks.close(&l("logits"), &out.logits, &r.f64("logits"), tol);
        checks.close(&l("loss"), &[out.loss], &r.f64("loss"), tol);
        checks.close(&l("grad_W"), &out.grad_w, &r.f64("grad_W"), tol);
        checks.close(&l("grad_U"), &out.grad_u, &r.f64("grad_U"), tol);
        checks.close(&l("grad_b"), &out.grad_b, &r.f64("grad_b"), tol);
        checks.close(&l("grad_V"), &out.grad_v, &r.f64("grad_V"), tol);
        checks.close(&l("grad_c"), &out.grad_c, &r.f64("grad_c"), tol);
        if act == Activation::Modrelu {
            checks.close(&l("grad_bm"), &out.grad_bm, &r.f64("grad_bm"), tol);
        }
    }
    checks.finish();
}

#[test]
fn ornn_relu_last_matches_reference() {
    check_ornn("ornn_relu_last", Activation::Relu, Readout::Last);
}

#[test]
fn ornn_relu_many_matches_reference() {
    check_ornn("ornn_relu_many", Activation::Relu, Readout::Every);
}

#[test]
fn ornn_modrelu_last_matches_reference() {
    check_ornn("ornn_modrelu_last", Activation::Modrelu, Readout::Last);
}

#[test]
fn ornn_modrelu_many_matches_reference() {
    check_ornn("ornn_modrelu_many", Activation::Modrelu, Readout::Every);
}

/// Free A -> Björck -> per-tensor quantizer (STE) -> ReLU ORNN, last-step loss.
#[test]
fn qornn_bjorck_matches_reference() {
    let mut checks = Checks::default();
    for bits in [3u32, 4, 8] {
        let name = format!("qornn_bjorck_k{bits}");
        let r = load(&name);
        let n = r.shape("A")[0];
        let (u_rows, u_cols) = (r.shape("U")[0], r.shape("U")[1]);
        let q = Quantizer::new(bits, Granularity::PerTensor);
        let mut bjorck = Bjorck::<f64>::new(BjorckConfig::default(), n);
        let w_bjorck = bjorck.forward(&r.f64("A"), Par::Seq).to_vec();
        checks.close(
            &format!("{name} W_bjorck"),
            &w_bjorck,
            &r.f64("W_bjorck"),
            1e-12,
        );
        // Integer codes exactly; dequantized values to 1e-12 (another valid reference may
        // differ from ours in the last ulp of max|W|, hence of the step).
        let mut w_q = vec![0.0; n * n];
        let w_codes = q.fake_quantize_into(&w_bjorck, n, n, &mut w_q);
        checks.codes(&format!("{name} W_q codes"), &w_codes, &r.f64("W_q"));
        checks.close(&format!("{name} W_q"), &w_q, &r.f64("W_q"), 1e-12);
        let mut u_q = vec![0.0; u_rows * u_cols];
        let u_codes = q.fake_quantize_into(&r.f64("U"), u_rows, u_cols, &mut u_q);
        checks.codes(&format!("{name} U_q codes"), &u_codes, &r.f64("U_q"));
        checks.close(&format!("{name} U_q"), &u_q, &r.f64("U_q"), 1e-12);
        let out = run_ornn::<f64>(&r, &w_q, &u_q, Activation::Relu, Readout::Last);
        checks.close(
            &format!("{name} logits"),
            &out.logits,
            &r.f64("logits"),
            1e-9,
        );
        checks.close(&format!("{name} loss"), &[out.loss], &r.f64("loss"), 1e-9);
        // Straight-through: dL/dW = dL/dW_q, then back through the Björck iterations.
        let grad_a = bjorck.backward(&out.grad_w, Par::Seq).to_vec();
        checks.close(&format!("{name} grad_A"), &grad_a, &r.f64("grad_A"), 1e-9);
        checks.close(
            &format!("{name} grad_U"),
            &out.grad_u,
            &r.f64("grad_U"),
            1e-9,
        );
        checks.close(
            &format!("{name} grad_V"),
            &out.grad_v,
            &r.f64("grad_V"),
            1e-9,
        );
        checks.close(
            &format!("{name} grad_b"),
            &out.grad_b,
            &r.f64("grad_b"),
            1e-9,
        );
        checks.close(
            &format!("{name} grad_c"),
            &out.grad_c,
            &r.f64("grad_c"),
            1e-9,
        );
    }
    checks.finish();
}

/// projUNN-D and -T applied at rank r agree with the exact (dense) definitions, and a
/// step of exact rank r survives the randomised sketch unchanged.
#[test]
fn projunn_matches_reference() {
    use qornn::parametrisation::projunn::{apply_low_rank_step, low_rank_sketch};
    use rand::SeedableRng;
    let r = load("projunn");
    let n = r.shape("A")[0];
    let rank = r.shape("a")[1];
    let (a, b) = (r.f64("a"), r.f64("b"));
    let mut checks = Checks::default();
    for (kind, key) in [(ProjUnnKind::Direct, "A_D"), (ProjUnnKind::Tangent, "A_T")] {
        let mut w = r.f64("A");
        apply_low_rank_step(kind, &mut w, n, &a, &b, rank);
        checks.close(
            &format!("{key} from the given factors"),
            &w,
            &r.f64(key),
            1e-10,
        );
        // The same step, given as a dense n x n matrix and sketched at rank r.
        let mut dense = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                dense[i * n + j] = (0..rank).map(|k| a[i * rank + k] * b[j * rank + k]).sum();
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (sa, sb, got_rank) = low_rank_sketch(&dense, n, rank, &mut rng);
        assert_eq!(got_rank, rank);
        let mut w = r.f64("A");
        apply_low_rank_step(kind, &mut w, n, &sa, &sb, got_rank);
        checks.close(&format!("{key} from the sketch"), &w, &r.f64(key), 1e-10);
        let mut w32: Vec<f32> = r.f32("A");
        apply_low_rank_step(kind, &mut w32, n, &sa, &sb, got_rank);
        checks.close(&format!("{key} f32"), &w32, &r.f64(key), 1e-4);
    }
    checks.finish();
}

/// LSQ (Esser et al. 2020) at 4 bits: codes exactly, `v_hat`, `dL/dv` and `dL/ds` (with
/// `L = sum(v_hat * r)`) to 1e-12 relative.
#[test]
fn lsq_k4_matches_reference() {
    let r = load("lsq_k4");
    let shape = r.shape("v");
    let (rows, cols) = (shape[0], shape[1]);
    let (v, s) = (r.f64("v"), r.f64("s"));
    let bits = 4;
    let mut checks = Checks::default();
    let codes = qornn::quant::lsq::codes(&v, cols, &s, bits);
    let reference_codes: Vec<f64> = r.f64("v_hat").iter().map(|x| (x / s[0]).round()).collect();
    checks.exact(
        "codes",
        &codes.iter().map(|&c| c as f64).collect::<Vec<_>>(),
        &reference_codes,
    );
    let mut v_hat = vec![0.0; rows * cols];
    Quantizer::new(bits, Granularity::PerTensor)
        .quantize_with_steps(&v, rows, cols, &s)
        .dequantize_into(&mut v_hat);
    checks.close("v_hat", &v_hat, &r.f64("v_hat"), 1e-12);
    let mut grad = r.f64("r");
    let mut grad_s = vec![0.0];
    qornn::quant::lsq::backward(&v, cols, &s, bits, &mut grad, &mut grad_s);
    checks.close("grad_v", &grad, &r.f64("grad_v"), 1e-12);
    checks.close("grad_s", &grad_s, &r.f64("grad_s"), 1e-12);
    checks.finish();
}

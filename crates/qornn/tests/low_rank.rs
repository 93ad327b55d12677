//! Low-rank FastRNN/FastGRNN (`W = W1 W2`, `U = U1 U2`): the same loss as the full model
//! with `W = W1 W2`, and the chain rule `dW1 = dW W2^T`, `dW2 = W1^T dW` on its gradient.

use faer::Par;
use qornn::head::{Readout, Targets};
use qornn::init::Init;
use qornn::tasks::Batch;
use qornn::{Activation, BjorckConfig, Model, ModelSpec, Workspace};
use rand::{Rng, SeedableRng};

fn spec(model: &str, rank_w: Option<usize>, rank_u: Option<usize>) -> ModelSpec {
    ModelSpec {
        model: model.parse().unwrap(),
        block: 2,
        hidden: 6,
        input: 4,
        outputs: 3,
        activation: Activation::Relu,
        readout: Readout::Last,
        quantizer: None,
        bjorck: BjorckConfig::default(),
        init: Init::Henaff,
        vocabulary: None,
        rank_w,
        rank_u,
        act_bits: None,
        act_hidden_start: Default::default(),
        act_step_continuous: false,
        readout_bits: None,
    }
}

fn matmul(
    a: &[f32],
    b: &[f32],
    rows: usize,
    inner: usize,
    cols: usize,
    ta: bool,
    tb: bool,
) -> Vec<f32> {
    let at = |i: usize, k: usize| {
        if ta {
            a[k * rows + i]
        } else {
            a[i * inner + k]
        }
    };
    let bt = |k: usize, j: usize| {
        if tb {
            b[j * inner + k]
        } else {
            b[k * cols + j]
        }
    };
    (0..rows * cols)
        .map(|ij| {
            (0..inner)
                .map(|k| at(ij / cols, k) * bt(k, ij % cols))
                .sum()
        })
        .collect()
}

/// Loss and gradients (by tensor name) of `model` on `batch`.
fn run(model: &mut Model, batch: &Batch) -> (f32, Vec<(&'static str, Vec<f32>)>) {
    let mut ws = Workspace::new(&model.spec, batch.steps, batch.batch);
    model.parametrise(false, Par::Seq);
    let loss = model.forward(&mut ws, batch, Par::Seq);
    model.backward(&mut ws, batch, Par::Seq);
    (
        loss,
        model
            .params
            .iter()
            .map(|t| t.name)
            .zip(model.grads.clone())
            .collect(),
    )
}

fn grad<'a>(grads: &'a [(&'static str, Vec<f32>)], name: &str) -> &'a [f32] {
    &grads.iter().find(|(n, _)| *n == name).unwrap().1
}

fn close(a: &[f32], b: &[f32], what: &str) {
    let diff: f32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt();
    let norm: f32 = b.iter().map(|y| y * y).sum::<f32>().sqrt();
    assert!(
        diff <= 1e-4 * norm.max(1e-6),
        "{what}: |diff| {diff:.3e} vs |ref| {norm:.3e}"
    );
}

#[test]
fn low_rank_gradients_follow_the_chain_rule() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let batch = Batch {
        steps: 5,
        batch: 3,
        input: 4,
        x: (0..5 * 3 * 4).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        tokens: Vec::new(),
        targets: Targets::Classes(vec![0, 2, 1]),
    };
    for model in ["fastrnn", "fastgrnn"] {
        let mut low = Model::new(spec(model, Some(2), Some(3)), &mut rng);
        // Larger factors than EdgeML's initial 0.1 N(0, 1), so the gradients are not tiny.
        for t in low
            .params
            .iter_mut()
            .filter(|t| ["W1", "W2", "U1", "U2"].contains(&t.name))
        {
            t.data.iter_mut().for_each(|v| *v *= 5.0);
        }
        let find = |m: &Model, name: &str| {
            m.params
                .iter()
                .find(|t| t.name == name)
                .unwrap()
                .data
                .clone()
        };
        let (w1, w2, u1, u2) = (
            find(&low, "W1"),
            find(&low, "W2"),
            find(&low, "U1"),
            find(&low, "U2"),
        );
        let mut full = Model::new(spec(model, None, None), &mut rng);
        for t in full.params.iter_mut() {
            t.data = match t.name {
                "W" => matmul(&w1, &w2, 6, 2, 4, false, false),
                "U" => matmul(&u1, &u2, 6, 3, 6, false, false),
                name => find(&low, name),
            };
        }
        let (loss_low, g_low) = run(&mut low, &batch);
        let (loss_full, g_full) = run(&mut full, &batch);
        assert!(
            (loss_low - loss_full).abs() < 1e-5,
            "{model}: losses {loss_low} vs {loss_full}"
        );
        let (dw, du) = (grad(&g_full, "W"), grad(&g_full, "U"));
        close(
            grad(&g_low, "W1"),
            &matmul(dw, &w2, 6, 4, 2, false, true),
            "dW1",
        );
        close(
            grad(&g_low, "W2"),
            &matmul(&w1, dw, 2, 6, 4, true, false),
            "dW2",
        );
        close(
            grad(&g_low, "U1"),
            &matmul(du, &u2, 6, 6, 3, false, true),
            "dU1",
        );
        close(
            grad(&g_low, "U2"),
            &matmul(&u1, du, 3, 6, 6, true, false),
            "dU2",
        );
        close(grad(&g_low, "b_h"), grad(&g_full, "b_h"), "db_h");
    }
}

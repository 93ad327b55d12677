//! Every cell runs its time loop batch-parallel (one row range per thread, sequential
//! products inside): the loss and every gradient must match the single-threaded run,
//! also when the batch does not split evenly.

use faer::Par;
use qornn::head::{Readout, Targets};
use qornn::init::Init;
use qornn::tasks::Batch;
use qornn::{Activation, BjorckConfig, Model, ModelSpec, Workspace};
use rand::{Rng, SeedableRng};
use std::num::NonZeroUsize;

fn loss_and_grads(model: &mut Model, batch: &Batch, par: Par) -> (f32, Vec<Vec<f32>>) {
    model.grads.iter_mut().for_each(|g| g.fill(0.0));
    let mut ws = Workspace::new(&model.spec, batch.steps, batch.batch);
    model.parametrise(false, par);
    let loss = model.forward(&mut ws, batch, par);
    model.backward(&mut ws, batch, par);
    (loss, model.grads.clone())
}

#[test]
fn batch_parallel_time_loops_match_the_sequential_ones() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (steps, rows, input, hidden) = (7, 5, 3, 6);
    let batch = Batch {
        steps,
        batch: rows,
        input,
        x: (0..steps * rows * input)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect(),
        tokens: Vec::new(),
        targets: Targets::Classes((0..steps * rows).map(|i| i % 4).collect()),
    };
    let cases = [
        ("ornn-bjorck", Activation::Relu),
        ("ornn-bjorck", Activation::Modrelu),
        ("rnn", Activation::Tanh),
        ("lstm", Activation::Relu),
        ("gru", Activation::Relu),
        ("fastrnn", Activation::Relu),
        ("fastgrnn", Activation::Relu),
    ];
    for (name, activation) in cases {
        let spec = ModelSpec {
            model: name.parse().unwrap(),
            block: 2,
            hidden,
            input,
            outputs: 4,
            activation,
            readout: Readout::Every,
            quantizer: None,
            bjorck: BjorckConfig::default(),
            init: Init::Orthogonal,
            vocabulary: None,
            rank_w: None,
            rank_u: None,
            act_bits: None,
            act_hidden_start: Default::default(),
            act_step_continuous: false,
            readout_bits: None,
        };
        let mut model = Model::new(spec, &mut rng);
        // Non-zero biases so that every bias gradient is exercised.
        for t in model
            .params
            .iter_mut()
            .filter(|t| t.rows == 1 || t.cols == 1)
        {
            t.data
                .iter_mut()
                .for_each(|v| *v += rng.gen_range(-0.3..0.3));
        }
        let (loss_seq, grads_seq) = loss_and_grads(&mut model, &batch, Par::Seq);
        for threads in [2, 3, 8] {
            let par = Par::Rayon(NonZeroUsize::new(threads).unwrap());
            let (loss, grads) = loss_and_grads(&mut model, &batch, par);
            let what = format!("{name}/{activation:?} on {threads} threads");
            assert!(
                (loss - loss_seq).abs() <= 1e-6 * loss_seq.abs(),
                "{what}: loss"
            );
            for ((g, g_seq), t) in grads.iter().zip(&grads_seq).zip(&model.params) {
                let scale = g_seq.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                for (a, b) in g.iter().zip(g_seq) {
                    assert!(
                        (a - b).abs() <= 1e-5 * scale,
                        "{what}: d{} {a} vs {b}",
                        t.name
                    );
                }
            }
        }
    }
}

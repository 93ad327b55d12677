//! Weights under PyTorch's names: `torch.nn.LSTM`/`GRU` tensors saved by PyTorch (the
//! reference files) load unchanged and reproduce PyTorch's hidden states; ours round-trip.

mod common;

use common::{load, relative_error};
use faer::Par;
use qornn::head::{Readout, Targets};
use qornn::init::Init;
use qornn::tasks::Batch;
use qornn::{Activation, BjorckConfig, Model, ModelSpec, Workspace};

fn spec(model: &str, hidden: usize, input: usize) -> ModelSpec {
    ModelSpec {
        model: model.parse().unwrap(),
        block: 2,
        hidden,
        input,
        outputs: 2,
        activation: Activation::Relu,
        readout: Readout::Every,
        quantizer: None,
        bjorck: BjorckConfig::default(),
        init: Init::Henaff,
        vocabulary: None,
        rank_w: None,
        rank_u: None,
        act_bits: None,
        act_hidden_start: Default::default(),
        act_step_continuous: false,
        readout_bits: None,
    }
}

#[test]
fn pytorch_lstm_and_gru_weights_load_unchanged() {
    for (name, gates) in [("lstm", 4), ("gru", 3)] {
        let r = load(name);
        let (hidden, input) = (r.shape("weight_hh_l0")[1], r.shape("weight_ih_l0")[1]);
        assert_eq!(r.shape("weight_hh_l0")[0], gates * hidden);
        let spec = spec(name, hidden, input);
        let path = common::reference_dir().join(format!("{name}.safetensors"));
        let (tensors, read) = qornn::weights::load(&path, &spec).unwrap();
        assert_eq!(
            read,
            ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
        );
        let model = Model::from_params(spec.clone(), tensors, None);
        let x = r.shape("x");
        let (steps, batch) = (x[0], x[1]);
        let mut ws = Workspace::new(&spec, steps, batch);
        let batch = Batch {
            steps,
            batch,
            input,
            x: r.f32("x"),
            tokens: Vec::new(),
            targets: Targets::Classes(vec![0; steps * batch]),
        };
        model.forward(&mut ws, &batch, Par::Seq);
        let err = relative_error(ws.core.outputs(), &r.f64("h"));
        assert!(
            err < 1e-4,
            "{name}: hidden states differ from PyTorch's by {err:.2e}"
        );
    }
}

#[test]
fn weights_round_trip_and_refuse_wrong_shapes() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["lstm", "gru", "fastgrnn", "fastrnn", "rnn"] {
        let spec = spec(name, 6, 3);
        let model = Model::new(spec.clone(), &mut rand::thread_rng());
        let path = dir.path().join("w.safetensors");
        qornn::weights::save(&path, &model.params).unwrap();
        let (back, read) = qornn::weights::load(&path, &spec).unwrap();
        assert_eq!(back, model.params, "{name}");
        assert_eq!(read.len(), model.params.len());
        let bigger = self::spec(name, 7, 3);
        let msg = qornn::weights::load(&path, &bigger)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("w.safetensors") && msg.contains("shape"),
            "{msg}"
        );
    }
}

/// A weights file with a NaN or an infinity is refused, naming the file and the tensor.
#[test]
fn non_finite_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec("rnn", 6, 3);
    for bad in [f32::NAN, f32::INFINITY] {
        let mut model = Model::new(spec.clone(), &mut rand::thread_rng());
        model.params[1].data[2] = bad;
        let path = dir.path().join("bad.safetensors");
        qornn::weights::save(&path, &model.params).unwrap();
        let msg = qornn::weights::load(&path, &spec).unwrap_err().to_string();
        assert!(
            msg.contains("bad.safetensors") && msg.contains("non-finite"),
            "{msg}"
        );
    }
}

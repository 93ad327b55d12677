//! What a model is (`ModelSpec`: its name, sizes, quantizers, parametrisation and cell)
//! and the buffers of one `(T, B)` pass (`Workspace`).

use super::*;

/// Everything that fixes a model's shape and arithmetic.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// The registered model: its core and, for an ORNN, its recurrent parametrisation.
    pub model: ModelName,
    /// `--block`: the block size of a block-structured recurrence (`block-hadamrnn`).
    pub block: usize,
    pub hidden: usize,
    pub input: usize,
    pub outputs: usize,
    /// ORNN and RNN only.
    pub activation: Activation,
    pub readout: Readout,
    /// `None`: full precision.
    pub quantizer: Option<Quantizer>,
    pub bjorck: BjorckConfig,
    pub init: Init,
    /// Token inputs: the vocabulary of a float embedding `(V, d)` whose rows feed the core
    /// (`input` is then the embedding size d). `None`: dense inputs.
    pub vocabulary: Option<usize>,
    /// FastRNN/FastGRNN: `W = W1 W2` of rank `rank_w` and `U = U1 U2` of rank `rank_u`
    /// (EdgeML's low-rank option); `None`: full matrices.
    pub rank_w: Option<usize>,
    pub rank_u: Option<usize>,
    /// ORNN and RNN: the hidden state and the input fake-quantized at this many bits in
    /// training, as the integer engine computes them (`quant/activation.rs`), with a
    /// power-of-two step (the tensor `hidden.log2_step`); `None`: float activations.
    pub act_bits: Option<u32>,
    /// With `act_bits`: where the hidden step starts when quantization starts.
    pub act_hidden_start: HiddenStepStart,
    /// With `act_bits`: the hidden step `2^l` for any real `l` (`ActRange::Continuous`),
    /// else `2^round(l)`.
    pub act_step_continuous: bool,
    /// The read-out `V` fake-quantized at this many bits in training (the paper's
    /// per-tensor quantizer, straight through), as `qornn quantize --readout-bits` stores
    /// it; `None`: float `V`.
    pub readout_bits: Option<u32>,
}

impl ModelSpec {
    /// The parametrisation of an ORNN's recurrent matrix; `None` for other cores.
    pub fn parametrisation(&self) -> Option<Box<dyn RecurrentParametrisation>> {
        let build = self.model.entry().parametrisation?;
        Some(build(&ParametrisationContext {
            n: self.hidden,
            bjorck: self.bjorck,
            bits: self.quantizer.map(|q| q.bits),
            block: self.block,
        }))
    }

    /// The recurrent core (an ORNN's with its parametrisation's parameter tensor).
    pub fn cell(&self) -> Box<dyn Cell> {
        (self.model.entry().cell)(self, self.parametrisation().map(|p| p.tensor()))
    }

    /// The core's tensors, then the learned quantizer steps (LSQ), the hidden state's learned
    /// `log2` step (`--act-bits`), `readout.weight`, `readout.bias` and (for token inputs)
    /// `embedding.weight`, all zero.
    pub fn tensors(&self) -> Vec<Tensor> {
        let mut t = self.cell().tensors();
        if let Some(q) = self.quantizer {
            let exact_recurrence = self.parametrisation().is_some_and(|p| p.is_exact());
            t.extend(lsq::step_tensors(&t, &q, exact_recurrence));
        }
        if self.act_bits.is_some() {
            t.push(Tensor::zeros(activation::HIDDEN_STEP, 1, 1, Kind::Float));
        }
        t.extend(head::readout_tensors(self.hidden, self.outputs));
        if let Some(v) = self.vocabulary {
            t.push(Tensor::zeros(
                "embedding.weight",
                v,
                self.input,
                Kind::Float,
            ));
        }
        t
    }

    /// The block size `m` of a Hadamard recurrence.
    pub fn hadamard_block(&self) -> Option<usize> {
        self.parametrisation()?.hadamard_block()
    }

    /// Whether W is quantized block rotations (`qornn-rotations`).
    pub fn is_block_rotations(&self) -> bool {
        self.parametrisation()
            .is_some_and(|p| p.is_block_rotations())
    }

    /// ORNN or RNN: a core `act(W h + U x + b)`.
    pub fn is_elman(&self) -> bool {
        self.model.entry().elman
    }

    /// Floats carried from one batch to the next: `h` (and `c` for the LSTM), per sequence.
    pub fn state_len(&self, batch: usize) -> usize {
        self.cell().state_width() * batch
    }
}

/// Per-`(T, B)` activations: the core's, the head's, and the gradient between them.
pub struct Workspace {
    pub core: Box<dyn CellBuffers>,
    pub head: Head<f32>,
    /// `dh: (T, B, n)`: `dL/dh_t` from the read-out, written only at its rows (the last
    /// steps, `Head::backward`); zero before them from allocation on.
    pub(super) dh: Vec<f32>,
    /// Token models: `embedded: (T, B, d)`, the gathered embedding rows, and its gradient.
    pub(super) embedded: Vec<f32>,
    pub(super) grad_embedded: Vec<f32>,
    /// `--act-bits`: the input as the integer engine quantizes it, `(T, B, d)`.
    pub(super) quantized_input: Vec<f32>,
    /// `(T, B)`.
    pub(super) steps: usize,
    pub(super) batch: usize,
}

impl Workspace {
    /// The `(steps, batch)` this workspace holds.
    pub fn shape(&self) -> (usize, usize) {
        (self.steps, self.batch)
    }

    pub fn new(spec: &ModelSpec, steps: usize, batch: usize) -> Self {
        let embedded = if spec.vocabulary.is_some() {
            steps * batch * spec.input
        } else {
            0
        };
        let quantized_input = match (spec.act_bits, spec.vocabulary) {
            (Some(_), None) => steps * batch * spec.input,
            _ => 0,
        };
        Self {
            core: spec.cell().buffers(steps, batch),
            quantized_input: vec![0.0; quantized_input],
            head: Head::new(spec.readout, steps, batch, spec.outputs),
            dh: vec![0.0; steps * batch * spec.hidden],
            embedded: vec![0.0; embedded],
            grad_embedded: vec![0.0; embedded],
            steps,
            batch,
        }
    }
}

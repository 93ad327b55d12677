//! The model's quantizers: the weights' quantized forms and codes (the same codes the
//! integer path takes), the inputs and hidden state at A bits (`--act-bits`), and their
//! straight-through backward.

use super::*;

impl Model {
    /// `used`: the quantized forms of the recurrent matrix and of the weight matrices, from
    /// the same codes that `weight_codes` gives the integer path.
    pub(super) fn quantize_weights(&mut self) {
        if let Some(p) = &self.parametrisation {
            match self.spec.quantizer {
                // Exactly representable: `W` is its own quantized form.
                _ if p.is_exact() => self.used[RECURRENT].copy_from_slice(&self.w_orth),
                Some(q) => {
                    let codes = self.recurrent_codes(&q);
                    codes.dequantize_into(&mut self.used[RECURRENT]);
                }
                None => self.used[RECURRENT].copy_from_slice(&self.w_orth),
            }
        }
        if let Some(q) = self.spec.quantizer {
            for i in 0..self.params.len() {
                if self.params[i].kind == Kind::Quantized {
                    let codes = self.tensor_codes(&q, i);
                    codes.dequantize_into(&mut self.used[i]);
                }
            }
        }
        if let Some(bits) = self.spec.readout_bits {
            let v = &self.params[self.readout];
            let q = Quantizer::post_training(bits, Granularity::PerTensor);
            q.quantize(&v.data, v.rows, v.cols)
                .dequantize_into(&mut self.used[self.readout]);
        }
    }

    /// The recurrence's input for `batch`: its dense `x` (quantized as the integer engine
    /// quantizes it while the activations are), or (with an embedding) the embedding rows
    /// of its tokens gathered into `embedded: (T, B, d)`.
    pub(super) fn input<'a>(
        &self,
        (embedded, quantized): (&'a mut [f32], &'a mut [f32]),
        batch: &'a Batch,
    ) -> &'a [f32] {
        let Some(e) = self.embedding else {
            return match self.act_bits_in_use() {
                Some(bits) => {
                    activation::quantize_inputs(&batch.x, bits, quantized);
                    quantized
                }
                None => &batch.x,
            };
        };
        let d = self.spec.input;
        let table = &self.params[e].data;
        for (row, &token) in embedded.chunks_mut(d).zip(&batch.tokens) {
            let t = token as usize;
            row.copy_from_slice(&table[t * d..(t + 1) * d]);
        }
        embedded
    }

    /// The codes and steps of a quantized ORNN's or RNN's `W` and `U`, as the forward pass
    /// uses them (valid after `parametrise`): the model's own quantizer with its learned
    /// steps if any, and the parametrisation's exact codes where it has them (Hadamard).
    /// `None` for a full-precision model or another core.
    pub fn weight_codes(&self) -> Option<(QuantizedTensor<f32>, QuantizedTensor<f32>)> {
        let q = self.spec.quantizer?;
        if !self.spec.is_elman() {
            return None;
        }
        let w = match &self.parametrisation {
            Some(p) if p.is_exact() => p.exact_codes(&self.params[RECURRENT].data, q.bits)?,
            Some(_) => self.recurrent_codes(&q),
            None => self.tensor_codes(&q, RECURRENT),
        };
        Some((w, self.tensor_codes(&q, crate::cells::ornn::slot::U)))
    }

    /// Tensor `tensor`'s learned steps (LSQ), if it has them.
    pub(super) fn learned_steps_of(&self, tensor: usize) -> Option<&[f32]> {
        self.learned_steps
            .iter()
            .find(|l| l.tensor == tensor)
            .map(|l| &self.params[l.step].data[..])
    }

    /// The codes and steps of weight tensor `i` from the model's quantizer.
    pub(super) fn tensor_codes(&self, q: &Quantizer, i: usize) -> QuantizedTensor<f32> {
        let t = &self.params[i];
        quant::for_tensor(q, false).codes(&t.data, t.rows, t.cols, self.learned_steps_of(i))
    }

    /// The ORNN's `q(W)` as codes and steps, from the quantizer of its recurrent matrix.
    pub(super) fn recurrent_codes(&self, q: &Quantizer) -> QuantizedTensor<f32> {
        let n = self.spec.hidden;
        quant::for_tensor(q, true).codes(&self.w_orth, n, n, self.learned_steps_of(RECURRENT))
    }

    /// The activation bits the forward pass quantizes at now (`--act-bits`, when active).
    pub(super) fn act_bits_in_use(&self) -> Option<u32> {
        self.spec.act_bits.filter(|_| self.quantize_activations)
    }

    /// The hidden state's fake quantizer, while the activations are quantized.
    pub fn hidden_quantizer(&self) -> Option<HiddenQuantizer<f32>> {
        let bits = self.act_bits_in_use()?;
        let log2_step = self.params[self.hidden_step?].data[0];
        let modrelu = self.spec.activation == Activation::Modrelu;
        let mut quantizer = if self.spec.act_step_continuous {
            HiddenQuantizer::with_step(bits, 2f64.powf(log2_step as f64), modrelu)
        } else {
            HiddenQuantizer::new(bits, log2_step, modrelu)
        };
        quantizer.dither = self.dither;
        Some(quantizer)
    }

    /// Starts the hidden state's step where `spec.act_hidden_start` says, from the float
    /// model's `h` on `batch` (`HiddenStepStart`; its step is `2^l`, `l = -f_h`).
    /// Quantization of the activations is on afterwards.
    pub fn init_hidden_step(&mut self, ws: &mut Workspace, batch: &Batch, par: Par) {
        let (Some(bits), Some(index)) = (self.spec.act_bits, self.hidden_step) else {
            return;
        };
        self.quantize_activations = false;
        self.forward(ws, batch, par);
        let modrelu = self.spec.activation == Activation::Modrelu;
        let states = ws.core.outputs();
        let frac = match self.spec.act_hidden_start {
            HiddenStepStart::Fraction(frac) => frac,
            HiddenStepStart::Cover(cover) => {
                activation::covering_fraction_bits(states, bits, modrelu, cover)
            }
            HiddenStepStart::LeastSquares => {
                activation::least_squares_fraction_bits(states, bits, modrelu)
            }
            HiddenStepStart::LowestLoss => {
                let widest = activation::widest_fraction_bits(states, bits, modrelu);
                self.quantize_activations = true;
                let mut best = (f32::INFINITY, widest);
                for frac in widest..=widest + activation::LOSS_SEARCH_SPAN {
                    self.params[index].data[0] = -frac as f32;
                    let loss = self.forward(ws, batch, par);
                    // A non-finite loss is never the best.
                    if loss < best.0 {
                        best = (loss, frac);
                    }
                }
                best.1
            }
        };
        self.params[index].data[0] = -frac as f32;
        self.quantize_activations = true;
    }

    /// The quantizers' straight-through backward where it is not the identity (learned
    /// steps: the clipping mask and the steps' gradients); the ORNN's `dL/dq(W)` is in
    /// `recurrent_grad`.
    pub(super) fn quantizers_backward(&mut self) {
        let Some(q) = self.spec.quantizer else {
            return;
        };
        for l in &self.learned_steps {
            let t = &self.params[l.tensor];
            let steps = &self.params[l.step].data;
            let recurrent = t.kind == Kind::Recurrent;
            let quantizer = quant::for_tensor(&q, recurrent);
            if recurrent {
                let n = self.spec.hidden;
                let grad_steps = &mut self.grads[l.step];
                quantizer.backward(&self.w_orth, n, steps, &mut self.recurrent_grad, grad_steps);
            } else {
                let [grad, grad_steps] = self
                    .grads
                    .get_disjoint_mut([l.tensor, l.step])
                    .expect("distinct indices");
                quantizer.backward(&t.data, t.cols, steps, grad, grad_steps);
            }
        }
    }
}

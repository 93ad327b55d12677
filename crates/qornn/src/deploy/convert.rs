//! Conversion: a model's recurrence as integer codes with power-of-two activation scales
//! (run by `qornn-infer`): weight steps as `(mantissa, shift)`, biases in the
//! accumulator's unit. Its simulated twin is in `twin.rs`.

use crate::quant::{Granularity, QuantizedTensor, Quantizer, RangeRule};
use qornn_infer::{pack_codes, IntActivation, IntMatrix, IntRecurrence};

/// Bits of the mantissa of a weight step `M 2^-S`.
pub const STEP_MANTISSA_BITS: u32 = 12;

/// A positive step as `(M, S)` with `M` of [`STEP_MANTISSA_BITS`] bits: `step ~ M 2^-S`.
pub fn dyadic(step: f64) -> (i32, u32) {
    let shift = (STEP_MANTISSA_BITS as i32 - 1 - step.log2().floor() as i32).max(0) as u32;
    let mantissa = (step * 2f64.powi(shift as i32)).round() as i32;
    (mantissa.max(1), shift)
}

/// The integer recurrence with its owned tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedRecurrence {
    pub hidden: usize,
    pub input: usize,
    pub weight_bits: u32,
    pub w_codes: Vec<i8>,
    pub w_step: (i32, u32),
    pub u_codes: Vec<i8>,
    pub u_step: (i32, u32),
    /// The codes packed at `weight_bits` bits, as the engine and the file hold them.
    pub w_packed: Vec<u8>,
    pub u_packed: Vec<u8>,
    /// In units of `2^-(S + f_h)`.
    pub bias: Vec<i64>,
    /// modReLU only, in units of `2^-f_h`.
    pub bias_mod: Vec<i32>,
    pub activation: IntActivation,
    pub act_bits: u32,
    pub hidden_frac: i32,
    pub input_frac: i32,
    pub shift: u32,
    /// A Hadamard recurrence's block size m: `w_packed` then holds W's n signs as bits
    /// (`w_codes` keeps the dense codes `s_i (I ⊗ H_m)_ij` for the simulated twin).
    pub hadamard_block: Option<usize>,
}

/// The float recurrence to convert, and the fraction bits chosen for its activations.
pub struct FloatRecurrence<'a> {
    pub hidden: usize,
    pub input: usize,
    /// `(n, n)` and `(n, d)`, before quantization.
    pub w: &'a [f32],
    pub u: &'a [f32],
    pub bias: &'a [f32],
    pub bias_mod: Option<&'a [f32]>,
    pub weight_bits: u32,
    /// The weight quantizer's range rule (the model's own; per tensor).
    pub range: RangeRule,
    pub act_bits: u32,
    pub hidden_frac: i32,
    pub input_frac: i32,
}

impl QuantizedRecurrence {
    /// Quantizes W and U with the paper's per-tensor quantizer (the range rule of `f`),
    /// then as [`QuantizedRecurrence::from_codes`].
    pub fn new(f: &FloatRecurrence<'_>) -> Self {
        let q = Quantizer::new(f.weight_bits, Granularity::PerTensor).with_range(f.range);
        let w = q.quantize(f.w, f.hidden, f.hidden);
        let u = q.quantize(f.u, f.hidden, f.input);
        Self::from_codes(f, &w, &u)
    }

    /// The recurrence with W's and U's codes and (per-tensor) steps as given (the model's
    /// own: learned steps, a Hadamard matrix's `±1 / sqrt(m)`), the bias in the
    /// accumulator's unit; `S` is the smallest shift that keeps both products exact.
    pub fn from_codes(
        f: &FloatRecurrence<'_>,
        w: &QuantizedTensor<f32>,
        u: &QuantizedTensor<f32>,
    ) -> Self {
        let codes_and_step = |t: &QuantizedTensor<f32>| -> (Vec<i8>, (i32, u32)) {
            assert_eq!(
                t.steps.len(),
                1,
                "the integer engine takes one step per tensor"
            );
            (
                t.codes.iter().map(|&c| c as i8).collect(),
                dyadic(t.steps[0] as f64),
            )
        };
        let (w_codes, w_step) = codes_and_step(w);
        let (u_codes, u_step) = codes_and_step(u);
        let shift = (w_step.1 as i64)
            .max(u_step.1 as i64 + f.input_frac as i64 - f.hidden_frac as i64)
            .max(1) as u32;
        let unit = 2f64.powi(shift as i32 + f.hidden_frac);
        let pack = |codes: &[i8]| {
            let mut out = vec![0u8; IntMatrix::packed_len(1, codes.len(), f.weight_bits)];
            pack_codes(codes.iter().map(|&c| c as i32), f.weight_bits, &mut out);
            out
        };
        Self {
            hidden: f.hidden,
            input: f.input,
            weight_bits: f.weight_bits,
            w_packed: pack(&w_codes),
            u_packed: pack(&u_codes),
            w_codes,
            w_step,
            u_codes,
            u_step,
            bias: f
                .bias
                .iter()
                .map(|&b| (b as f64 * unit).round() as i64)
                .collect(),
            bias_mod: f.bias_mod.map_or(Vec::new(), |bm| {
                bm.iter()
                    .map(|&v| (v as f64 * 2f64.powi(f.hidden_frac)).round() as i32)
                    .collect()
            }),
            activation: if f.bias_mod.is_some() {
                IntActivation::Modrelu
            } else {
                IntActivation::Relu
            },
            act_bits: f.act_bits,
            hidden_frac: f.hidden_frac,
            input_frac: f.input_frac,
            shift,
            hadamard_block: None,
        }
    }

    /// The same recurrence stored as a Hadamard one: W's codes must be `s_i (I ⊗ H_m)_ij`
    /// (as `Model::weight_codes` gives them), kept as n sign bits.
    pub fn into_hadamard(mut self, block: usize) -> Self {
        let n = self.hidden;
        let mut signs = vec![0u8; n.div_ceil(8)];
        for i in 0..n {
            // Row i's first entry in its block is s_i (H_m's first column is all +1).
            let negative = self.w_codes[i * n + i / block * block] < 0;
            for j in 0..n {
                let entry = qornn_infer::hadamard_entry(i, j, block);
                let code = if negative { -entry } else { entry };
                assert_eq!(
                    self.w_codes[i * n + j] as i32,
                    code,
                    "not a Hadamard matrix"
                );
            }
            signs[i / 8] |= (negative as u8) << (i % 8);
        }
        self.w_packed = signs;
        self.hadamard_block = Some(block);
        self
    }

    /// The borrowed view the integer engine runs.
    pub fn as_int(&self) -> IntRecurrence<'_> {
        let matrix = |packed, rows, cols, (mantissa, shift): (i32, u32)| IntMatrix {
            rows,
            cols,
            bits: self.weight_bits,
            packed,
            mantissa,
            shift,
        };
        IntRecurrence {
            hidden: self.hidden,
            input: self.input,
            w: matrix(&self.w_packed, self.hidden, self.hidden, self.w_step),
            u: matrix(&self.u_packed, self.hidden, self.input, self.u_step),
            bias: &self.bias,
            bias_mod: &self.bias_mod,
            activation: self.activation,
            act_bits: self.act_bits,
            hidden_frac: self.hidden_frac,
            input_frac: self.input_frac,
            shift: self.shift,
            hadamard_block: self.hadamard_block.unwrap_or(0) as u32,
        }
    }

    /// Input codes `round(x 2^f_x)`, saturated to A bits (signed).
    pub fn quantize_input(&self, x: &[f32], out: &mut [i32]) {
        let hi = (1i64 << (self.act_bits - 1)) - 1;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = ((v as f64 * 2f64.powi(self.input_frac)).round() as i64).clamp(-hi - 1, hi) as i32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dyadic_steps_keep_twelve_bits() {
        for step in [1.0, 0.3, 1.0 / 64.0, 0.0123, 3.7] {
            let (m, s) = dyadic(step);
            assert!((1 << 11..1 << 12).contains(&m), "{step}: mantissa {m}");
            assert!((m as f64 * 2f64.powi(-(s as i32)) / step - 1.0).abs() < 1.0 / 2048.0);
        }
    }
}

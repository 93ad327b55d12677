//! Post-training activation quantization: a model's recurrence as integer codes with
//! power-of-two activation scales (run by `qornn-infer`), and its simulated twin, the
//! same fake-quantized model computed in `f64`. Every value of the twin is a dyadic
//! rational that `f64` holds exactly, so the two agree bit for bit (property-tested).

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

    /// The simulated twin of one step: the fake-quantized model in `f64`, dequantized
    /// weights `q(W) = W_c M 2^-S` and activations `h = H 2^-f_h`, re-quantized to codes.
    #[inline(always)]
    pub fn simulated_step(&self, h: &[i32], x: &[i32], out: &mut [i32]) {
        let (n, d) = (self.hidden, self.input);
        let step = |(m, s): (i32, u32)| m as f64 * 2f64.powi(-(s as i32));
        let (sw, su) = (step(self.w_step), step(self.u_step));
        let (h_unit, x_unit) = (2f64.powi(-self.hidden_frac), 2f64.powi(-self.input_frac));
        let bias_unit = 2f64.powi(-(self.shift as i32 + self.hidden_frac));
        let (lo, hi) = self.as_int().hidden_range();
        for (i, out_i) in out.iter_mut().enumerate().take(n) {
            let mut z = exact_dot(&self.w_codes[i * n..(i + 1) * n], sw, h, h_unit);
            z += exact_dot(&self.u_codes[i * d..(i + 1) * d], su, x, x_unit);
            z += self.bias[i] as f64 * bias_unit;
            let code = (z / h_unit + 0.5).floor();
            let a = match self.activation {
                IntActivation::Relu => code.max(0.0),
                IntActivation::Modrelu => {
                    // sign(0) = 0, as in the engine (f64::signum would give 1 for +0).
                    let sign = if code > 0.0 {
                        1.0
                    } else if code < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    sign * (code.abs() + self.bias_mod[i] as f64).max(0.0)
                }
            };
            *out_i = a.clamp(lo as f64, hi as f64) as i32;
        }
    }
}

/// `sum_j (c_j step) (v_j unit)` in `f64`, in eight interleaved partial sums. Every
/// product and partial sum is a multiple of `step unit` far below 2^53 of it, so each is
/// exact and the order of summation cannot change the result; eight independent sums
/// let the loop vectorise (one serial sum would wait on every addition).
#[inline(always)]
fn exact_dot(codes: &[i8], step: f64, values: &[i32], unit: f64) -> f64 {
    let mut sums = [0.0f64; 8];
    let (codes8, values8) = (codes.chunks_exact(8), values.chunks_exact(8));
    let (codes_rest, values_rest) = (codes8.remainder(), values8.remainder());
    for (c, v) in codes8.zip(values8) {
        for k in 0..8 {
            sums[k] += (c[k] as f64 * step) * (v[k] as f64 * unit);
        }
    }
    for (&c, &v) in codes_rest.iter().zip(values_rest) {
        sums[0] += (c as f64 * step) * (v as f64 * unit);
    }
    sums.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dyadic_steps_keep_twelve_bits() {
        for step in [1.0, 0.3, 1.0 / 64.0, 0.0123, 3.7] {
            let (m, s) = dyadic(step);
            assert!((1 << 11..1 << 12).contains(&m), "{step}: mantissa {m}");
            assert!((m as f64 * 2f64.powi(-(s as i32)) / step - 1.0).abs() < 1.0 / 2048.0);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// On random models and inputs, k = 2..8 and A = 4..16, the integer engine (on packed
        /// and on unpacked codes) and the simulated twin give the same hidden codes at every
        /// step; widths above 256 cross the engine's 32-bit partial sums.
        #[test]
        fn integer_engine_is_bit_exact_with_its_twin(
            seed in any::<u64>(),
            n in prop_oneof![1usize..64, 250usize..300],
            d in 1usize..6,
            k in 2u32..=8,
            a in 4u32..=16,
            modrelu in any::<bool>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut draw = |len: usize, scale: f32| -> Vec<f32> { (0..len).map(|_| rng.gen_range(-scale..scale)).collect() };
            let (w, u, b, bm) = (draw(n * n, 1.0), draw(n * d, 2.0), draw(n, 0.5), draw(n, 0.3));
            let xs = draw(10 * d, 1.5);
            // Fraction bits that give the codes room: |h| up to about 4, |x| up to 1.5.
            let hidden_frac = a as i32 - 4;
            let input_frac = a as i32 - 2;
            let model = QuantizedRecurrence::new(&FloatRecurrence {
                hidden: n, input: d, w: &w, u: &u, bias: &b, bias_mod: modrelu.then_some(&bm[..]),
                weight_bits: k, range: RangeRule::Max, act_bits: a, hidden_frac, input_frac,
            });
            let engine = model.as_int();
            prop_assert!(engine.validate().is_ok(), "{:?}", engine.validate());
            let (mut w_unpacked, mut u_unpacked) = (vec![0i8; n * n], vec![0i8; n * d]);
            engine.unpack(&mut w_unpacked, &mut u_unpacked);
            prop_assert_eq!(&w_unpacked, &model.w_codes);
            prop_assert_eq!(&u_unpacked, &model.u_codes);
            let mut next_unpacked = vec![0i32; n];
            let (mut h_int, mut h_sim) = (vec![0i32; n], vec![0i32; n]);
            let (mut next_int, mut next_sim) = (vec![0i32; n], vec![0i32; n]);
            let mut x = vec![0i32; d];
            for t in 0..10 {
                model.quantize_input(&xs[t * d..(t + 1) * d], &mut x);
                engine.step(&h_int, &x, &mut next_int);
                engine.step_unpacked(&w_unpacked, &u_unpacked, &h_int, &x, &mut next_unpacked);
                model.simulated_step(&h_sim, &x, &mut next_sim);
                prop_assert_eq!(&next_int, &next_sim, "step {}", t);
                prop_assert_eq!(&next_unpacked, &next_int, "step {} unpacked", t);
                std::mem::swap(&mut h_int, &mut next_int);
                std::mem::swap(&mut h_sim, &mut next_sim);
            }
        }
    }
}

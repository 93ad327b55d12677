//! Conversion: a model's recurrence as integer codes with power-of-two activation scales
//! (run by `qornn-infer`): weight steps as `(mantissa, shift)`, one per tensor or a
//! mantissa per row with the shift shared, biases in the accumulator's unit. Its simulated
//! twin is in `twin.rs`.

use crate::quant::{Granularity, QuantizedTensor, Quantizer, RangeRule};
use qornn_infer::{pack_codes, IntActivation, IntMatrix, IntRecurrence};

/// Bits of the mantissa of a weight step `M 2^-S`.
pub const STEP_MANTISSA_BITS: u32 = 12;

/// Bits of the mantissas of block rotations' steps: a rotation's gain `M_i 2^-S
/// sqrt(a^2 + b^2)` is raised to the sequence's length, so that 12 bits (a relative error
/// up to 2^-12 on the largest step, 2^-9 on a step 8 times smaller) would drift the state by
/// a factor of e over about a thousand steps; 16 bits (as the file's u16 holds) keep it
/// within a few percent at T = 1000.
pub const ROTATION_MANTISSA_BITS: u32 = 16;

/// A positive step as `(M, S)` with `M` of [`STEP_MANTISSA_BITS`] bits: `step ~ M 2^-S`.
pub fn dyadic(step: f64) -> (i32, u32) {
    dyadic_bits(step, STEP_MANTISSA_BITS)
}

/// `dyadic` with `M` of `bits` bits (rounding up to `2^bits` is held at `2^bits - 1`
/// when `bits` is 16, the widest a u16 holds).
fn dyadic_bits(step: f64, bits: u32) -> (i32, u32) {
    let shift = (bits as i32 - 1 - step.log2().floor() as i32).max(0) as u32;
    let mantissa = (step * 2f64.powi(shift as i32)).round() as i32;
    (mantissa.clamp(1, u16::MAX as i32), shift)
}

/// A weight tensor's step: `M 2^-S` for the whole tensor (one mantissa), or `M_i 2^-S`
/// for row i (a mantissa per row, the shift shared).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightStep {
    pub mantissas: Vec<i32>,
    pub shift: u32,
}

impl WeightStep {
    /// The dyadic form of a quantizer's steps (one, or one per row). Per row, the shift is
    /// the one that gives the largest step a `bits`-bit mantissa; smaller steps get fewer
    /// bits (a step 2^-b of the largest keeps `bits - b`), at least 1.
    pub fn from_steps(steps: &[f32], bits: u32) -> Self {
        let largest = steps.iter().fold(0.0f64, |m, &s| m.max(s as f64));
        let shift = dyadic_bits(largest, bits).1;
        let scale = 2f64.powi(shift as i32);
        let mut mantissas: Vec<i32> = steps
            .iter()
            .map(|&s| ((s as f64 * scale).round() as i32).clamp(1, u16::MAX as i32))
            .collect();
        // Equal steps on every row are one step for the tensor.
        if mantissas.iter().all(|&m| m == mantissas[0]) {
            mantissas.truncate(1);
        }
        Self { mantissas, shift }
    }

    pub fn is_per_row(&self) -> bool {
        self.mantissas.len() > 1
    }

    /// Row `i`'s mantissa.
    pub fn mantissa(&self, i: usize) -> i32 {
        self.mantissas[if self.is_per_row() { i } else { 0 }]
    }

    /// `2^-S`: row `i`'s step is `mantissa(i)` times it.
    pub fn unit(&self) -> f64 {
        2f64.powi(-(self.shift as i32))
    }

    /// Row `i`'s step `M_i 2^-S` (exact in `f64`).
    pub fn value(&self, i: usize) -> f64 {
        self.mantissa(i) as f64 * self.unit()
    }

    /// The per-row mantissas as the engine and the file hold them (little-endian u16);
    /// empty for one step per tensor.
    pub fn row_bytes(&self) -> Vec<u8> {
        if !self.is_per_row() {
            return Vec::new();
        }
        self.mantissas
            .iter()
            .flat_map(|&m| (m.clamp(0, u16::MAX as i32) as u16).to_le_bytes())
            .collect()
    }
}

/// The integer recurrence with its owned tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedRecurrence {
    pub hidden: usize,
    pub input: usize,
    pub weight_bits: u32,
    pub w_codes: Vec<i8>,
    pub w_step: WeightStep,
    pub u_codes: Vec<i8>,
    pub u_step: WeightStep,
    /// The codes packed at `weight_bits` bits, as the engine and the file hold them.
    pub w_packed: Vec<u8>,
    pub u_packed: Vec<u8>,
    /// `WeightStep::row_bytes` of W and U, which the engine borrows.
    pub w_row_mantissas: Vec<u8>,
    pub u_row_mantissas: Vec<u8>,
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
    /// Block rotations: `w_packed` then holds the pairs `(a_p, b_p)` of
    /// `[[a, -b], [b, a]]` (`w_codes` keeps the dense codes).
    pub rotations: bool,
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
        Self::with_granularity(f, Granularity::PerTensor)
    }

    /// As [`QuantizedRecurrence::new`], with one step per row of W and U when
    /// `granularity` says so.
    pub fn with_granularity(f: &FloatRecurrence<'_>, granularity: Granularity) -> Self {
        let q = Quantizer::new(f.weight_bits, granularity).with_range(f.range);
        let w = q.quantize(f.w, f.hidden, f.hidden);
        let u = q.quantize(f.u, f.hidden, f.input);
        Self::from_codes(f, &w, &u)
    }

    /// The recurrence with W's and U's codes and steps as given (the model's own: learned
    /// steps, a Hadamard matrix's `±1 / sqrt(m)`, per-row steps, rotation blocks' steps),
    /// the bias in the accumulator's unit; `S` is the smallest shift that keeps both
    /// products exact.
    pub fn from_codes(
        f: &FloatRecurrence<'_>,
        w: &QuantizedTensor<f32>,
        u: &QuantizedTensor<f32>,
    ) -> Self {
        Self::from_codes_with(f, w, u, STEP_MANTISSA_BITS)
    }

    /// [`QuantizedRecurrence::from_codes`] for block rotations, stored as their pairs of
    /// codes, W's steps with [`ROTATION_MANTISSA_BITS`]-bit mantissas: W's codes must be
    /// `[[a_p, -b_p], [b_p, a_p]]` on the diagonal, zero elsewhere (as `qornn-rotations`
    /// gives them).
    pub fn from_rotation_codes(
        f: &FloatRecurrence<'_>,
        w: &QuantizedTensor<f32>,
        u: &QuantizedTensor<f32>,
    ) -> Self {
        Self::from_codes_with(f, w, u, ROTATION_MANTISSA_BITS).into_rotations()
    }

    fn from_codes_with(
        f: &FloatRecurrence<'_>,
        w: &QuantizedTensor<f32>,
        u: &QuantizedTensor<f32>,
        w_mantissa_bits: u32,
    ) -> Self {
        let codes_and_step = |t: &QuantizedTensor<f32>, bits| -> (Vec<i8>, WeightStep) {
            (
                t.codes.iter().map(|&c| c as i8).collect(),
                WeightStep::from_steps(&t.steps, bits),
            )
        };
        let (w_codes, w_step) = codes_and_step(w, w_mantissa_bits);
        let (u_codes, u_step) = codes_and_step(u, STEP_MANTISSA_BITS);
        let shift = (w_step.shift as i64)
            .max(u_step.shift as i64 + f.input_frac as i64 - f.hidden_frac as i64)
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
            w_row_mantissas: w_step.row_bytes(),
            u_row_mantissas: u_step.row_bytes(),
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
            rotations: false,
        }
    }

    /// The same recurrence stored as block rotations, kept as the n codes
    /// `a_0, b_0, a_1, …`.
    fn into_rotations(mut self) -> Self {
        let n = self.hidden;
        assert!(n.is_multiple_of(2), "rotations need an even hidden size");
        let code = |i: usize, j: usize| self.w_codes[i * n + j] as i32;
        let mut pairs = Vec::with_capacity(n);
        for p in 0..n / 2 {
            let (a, b) = (code(2 * p, 2 * p), code(2 * p + 1, 2 * p));
            for i in [2 * p, 2 * p + 1] {
                for j in 0..n {
                    let expected = match (i - 2 * p, j as i64 - 2 * p as i64) {
                        (0, 0) | (1, 1) => a,
                        (0, 1) => -b,
                        (1, 0) => b,
                        _ => 0,
                    };
                    assert_eq!(code(i, j), expected, "not block rotations at ({i}, {j})");
                }
            }
            pairs.extend([a, b]);
        }
        let mut packed = vec![0u8; IntMatrix::packed_len(1, n, self.weight_bits)];
        pack_codes(pairs.into_iter(), self.weight_bits, &mut packed);
        self.w_packed = packed;
        self.rotations = true;
        self
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
        let matrix = |packed, rows, cols, step: &WeightStep, row_mantissas| IntMatrix {
            rows,
            cols,
            bits: self.weight_bits,
            packed,
            mantissa: step.mantissa(0),
            shift: step.shift,
            row_mantissas,
        };
        let (n, d) = (self.hidden, self.input);
        IntRecurrence {
            hidden: n,
            input: d,
            w: matrix(&self.w_packed, n, n, &self.w_step, &self.w_row_mantissas),
            u: matrix(&self.u_packed, n, d, &self.u_step, &self.u_row_mantissas),
            bias: &self.bias,
            bias_mod: &self.bias_mod,
            activation: self.activation,
            act_bits: self.act_bits,
            hidden_frac: self.hidden_frac,
            input_frac: self.input_frac,
            shift: self.shift,
            hadamard_block: self.hadamard_block.unwrap_or(0) as u32,
            rotations: self.rotations,
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

/// Random integer recurrences of every form, for the engines' property tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// How W is stored.
    #[derive(Clone, Copy, Debug)]
    pub enum Form {
        PerTensor,
        PerRow,
        /// Rotation blocks from W's diagonal 2 x 2 blocks (per row when n is odd).
        Rotations,
        /// `s_i (I ⊗ H_m)` with the signs of W's diagonal and m the largest power of two
        /// up to 64 dividing n (per row when n is odd).
        Hadamard,
        /// The same with blocks of the given size (a power of two dividing n).
        HadamardBlocks(usize),
    }

    pub fn form() -> impl proptest::strategy::Strategy<Value = Form> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Form::PerTensor),
            Just(Form::PerRow),
            Just(Form::Rotations),
            Just(Form::Hadamard)
        ]
    }

    pub fn model(form: Form, f: &FloatRecurrence<'_>) -> QuantizedRecurrence {
        let (n, k) = (f.hidden, f.weight_bits);
        match form {
            Form::PerTensor => QuantizedRecurrence::new(f),
            Form::PerRow => QuantizedRecurrence::with_granularity(f, Granularity::PerRow),
            Form::Rotations | Form::Hadamard if n % 2 == 1 => {
                QuantizedRecurrence::with_granularity(f, Granularity::PerRow)
            }
            Form::Hadamard | Form::HadamardBlocks(_) => {
                let block = match form {
                    Form::HadamardBlocks(m) => m,
                    _ => (1usize << n.trailing_zeros()).min(64),
                };
                let codes = (0..n * n)
                    .map(|k| {
                        let (i, j) = (k / n, k % n);
                        let sign = if f.w[i * n + i] < 0.0 { -1 } else { 1 };
                        sign * qornn_infer::hadamard_entry(i, j, block)
                    })
                    .collect();
                let w = QuantizedTensor {
                    rows: n,
                    cols: n,
                    bits: k,
                    granularity: Granularity::PerTensor,
                    codes,
                    steps: vec![1.0 / (block as f32).sqrt()],
                };
                let u = Quantizer::new(k, Granularity::PerTensor).quantize(f.u, n, f.input);
                QuantizedRecurrence::from_codes(f, &w, &u).into_hadamard(block)
            }
            Form::Rotations => {
                // (a, b) from W's entries (i, i) and (i + 1, i), in the symmetric range,
                // never both 0; the step 1 / sqrt(a^2 + b^2) on both rows.
                let limit = (1 << (k - 1)) - 1;
                let code = |v: f32| ((v * limit as f32).round() as i32).clamp(-limit, limit);
                let mut codes = vec![0; n * n];
                let mut steps = vec![0.0f32; n];
                for p in 0..n / 2 {
                    let (i, j) = (2 * p, 2 * p + 1);
                    let (a, b) = (code(f.w[i * n + i]).max(1), code(f.w[j * n + i]));
                    codes[i * n + i] = a;
                    codes[i * n + j] = -b;
                    codes[j * n + i] = b;
                    codes[j * n + j] = a;
                    let step = 1.0 / ((a * a + b * b) as f32).sqrt();
                    steps[i] = step;
                    steps[j] = step;
                }
                let w = QuantizedTensor {
                    rows: n,
                    cols: n,
                    bits: k,
                    granularity: Granularity::PerRow,
                    codes,
                    steps,
                };
                let u = Quantizer::new(k, Granularity::PerRow).quantize(f.u, n, f.input);
                QuantizedRecurrence::from_rotation_codes(f, &w, &u)
            }
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

    /// Every 4-bit rotation block's step `1 / sqrt(a^2 + b^2)` (from 1 down to 1 / sqrt(98))
    /// keeps a relative error below 2^-12 in the rotations' 16-bit mantissas, where 12
    /// bits shared with the largest step leave the smallest one above 2^-10.
    #[test]
    fn rotation_steps_keep_their_gain_over_long_sequences() {
        let blocks: Vec<(f32, f32)> = (0..=7)
            .flat_map(|a| (0..=7).map(move |b| (a as f32, b as f32)))
            .filter(|&(a, b)| a + b > 0.0)
            .collect();
        let steps: Vec<f32> = blocks
            .iter()
            .flat_map(|&(a, b)| [1.0 / (a * a + b * b).sqrt(); 2])
            .collect();
        let worst = |bits| {
            let w = WeightStep::from_steps(&steps, bits);
            (0..steps.len())
                .map(|i| (w.value(i) / steps[i] as f64 - 1.0).abs())
                .fold(0.0, f64::max)
        };
        assert!(
            worst(ROTATION_MANTISSA_BITS) < 2f64.powi(-12),
            "{}",
            worst(16)
        );
        assert!(worst(STEP_MANTISSA_BITS) > 2f64.powi(-10), "{}", worst(12));
        // The gain over 1000 steps of the worst block: within 20 % at 16 bits, beyond a
        // factor of e at 12.
        assert!((1.0 + worst(ROTATION_MANTISSA_BITS)).powi(1000) < 1.2);
        assert!((1.0 + worst(STEP_MANTISSA_BITS)).powi(1000) > std::f64::consts::E);
    }
}

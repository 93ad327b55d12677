//! The simulated twin of the integer recurrence: the same fake-quantized model computed
//! in `f64`. Every value of the twin is a dyadic rational that `f64` holds exactly, so the
//! twin and the integer engine agree bit for bit (property-tested below).

use super::convert::QuantizedRecurrence;
use qornn_infer::IntActivation;

/// The simulated twin of a recurrence: the fake-quantized model in `f64`, dequantized
/// weights `q(W) = W_c M 2^-S` (row i's step `M_i 2^-S`) and activations `h = H 2^-f_h`,
/// re-quantized to codes at each step. The dequantized weights are computed once here
/// (row i over its diagonal block of W, the only entries that can be non-zero), the
/// dequantized state once a step. Both are kept block by block, column by column, so that
/// a block's pre-activations are column times value sums across its rows.
pub struct Twin<'a> {
    q: &'a QuantizedRecurrence,
    /// `(n / block, block, block)`: diagonal block b's column k of `q(W)` at
    /// `(b block + k) block`.
    w: Vec<f64>,
    /// `(n / block, d, block)`: the rows of block b of `q(U)`, column j at `(b d + j) block`.
    u: Vec<f64>,
    /// The biases in `f64`: `b_i 2^-(S + f_h)`.
    bias: Vec<f64>,
}

impl<'a> Twin<'a> {
    pub fn new(q: &'a QuantizedRecurrence) -> Self {
        let (n, d) = (q.hidden, q.input);
        let block = q.as_int().w_block();
        let (w_unit, u_unit) = (q.w_step.unit(), q.u_step.unit());
        let bias_unit = 2f64.powi(-(q.shift as i32 + q.hidden_frac));
        // Entry (i, j) of q(W) is `W_ij M_i 2^-S`, of q(U) `U_ij M'_i 2^-S'`: exact, a code
        // times a mantissa times a power of two.
        let (mut w, mut u) = (Vec::with_capacity(n * block), Vec::with_capacity(n * d));
        for first in (0..n).step_by(block) {
            let rows = first..first + block;
            for k in 0..block {
                w.extend(rows.clone().map(|i| {
                    q.w_codes[i * n + first + k] as f64 * (q.w_step.mantissa(i) as f64 * w_unit)
                }));
            }
            for j in 0..d {
                u.extend(
                    rows.clone().map(|i| {
                        q.u_codes[i * d + j] as f64 * (q.u_step.mantissa(i) as f64 * u_unit)
                    }),
                );
            }
        }
        let bias = q.bias.iter().map(|&b| b as f64 * bias_unit).collect();
        Self { q, w, u, bias }
    }

    /// One step: `h` and `x` codes in, the next hidden codes in `out`; `values` is
    /// scratch (the dequantized state and input, then the pre-activations).
    pub fn step(&self, h: &[i32], x: &[i32], out: &mut [i32], values: &mut Vec<f64>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.step_avx2(h, x, out, values) };
        }
        self.step_any(h, x, out, values)
    }

    /// `step` compiled for AVX2, like `engine::scalar_step`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn step_avx2(&self, h: &[i32], x: &[i32], out: &mut [i32], values: &mut Vec<f64>) {
        self.step_any(h, x, out, values)
    }

    #[inline(always)]
    fn step_any(&self, h: &[i32], x: &[i32], out: &mut [i32], values: &mut Vec<f64>) {
        let q = self.q;
        let (n, d) = (q.hidden, q.input);
        let int = q.as_int();
        let ((lo, hi), block) = (int.hidden_range(), int.w_block());
        // Multiplying by `per_h_unit` is dividing by `h_unit`, exactly (powers of two).
        let per_h_unit = 2f64.powi(q.hidden_frac);
        let (h_unit, x_unit) = (2f64.powi(-q.hidden_frac), 2f64.powi(-q.input_frac));
        values.clear();
        values.extend(h[..n].iter().map(|&v| v as f64 * h_unit));
        values.extend(x[..d].iter().map(|&v| v as f64 * x_unit));
        // The pre-activations, then the codes, each a loop of its own that vectorises.
        values.resize(2 * n + d, 0.0);
        let (state, z) = values.split_at_mut(n + d);
        let (h, x) = state.split_at(n);
        // Block by block: its rows of q(W) read only its units of h. Every product (a code
        // times its step times a code times its unit) and every partial sum is a multiple
        // of the finest unit far below 2^53 of it, so each is exact and the order of
        // summation cannot change the result: the columns are added across the rows.
        let blocks = z.chunks_exact_mut(block).zip(h.chunks_exact(block));
        let weights = self
            .w
            .chunks_exact(block * block)
            .zip(self.u.chunks_exact(block * d));
        for (((z, h_block), (w, u)), bias) in blocks.zip(weights).zip(self.bias.chunks_exact(block))
        {
            // Sixteen rows at a time, their sums in registers; then the rows left.
            let mut first = 0;
            while first + 16 <= block {
                let mut sums: [f64; 16] = bias[first..first + 16].try_into().expect("16 rows");
                add_columns(&mut sums, w, u, block, first, h_block, x);
                z[first..first + 16].copy_from_slice(&sums);
                first += 16;
            }
            let rest = &mut z[first..];
            rest.copy_from_slice(&bias[first..]);
            add_columns(rest, w, u, block, first, h_block, x);
        }
        let (lo, hi) = (lo as f64, hi as f64);
        let codes = z.iter().map(|&z_i| (z_i * per_h_unit + 0.5).floor());
        match q.activation {
            IntActivation::Relu => {
                for (out_i, code) in out.iter_mut().zip(codes) {
                    *out_i = code.max(0.0).clamp(lo, hi) as i32;
                }
            }
            // sign(code) (|code| + bm)^+, sign(0) = 0 as in the engine (f64::signum would
            // give 1 for +0).
            IntActivation::Modrelu => {
                for ((out_i, code), &bm) in out.iter_mut().zip(codes).zip(&q.bias_mod) {
                    let sign = f64::from(u8::from(code > 0.0)) - f64::from(u8::from(code < 0.0));
                    *out_i = (sign * (code.abs() + bm as f64).max(0.0)).clamp(lo, hi) as i32;
                }
            }
        }
    }
}

/// `sums[r] += sum_k W_(first + r) k h_k + sum_j U_(first + r) j x_j` for the rows of one
/// block from `first`, with W's and U's columns `block` apart (`Twin`'s layout).
#[inline(always)]
fn add_columns(
    sums: &mut [f64],
    w: &[f64],
    u: &[f64],
    block: usize,
    first: usize,
    h: &[f64],
    x: &[f64],
) {
    let rows = sums.len();
    let columns = w.chunks_exact(block).zip(h);
    for (column, &value) in columns.chain(u.chunks_exact(block).zip(x)) {
        for (sum, &c) in sums.iter_mut().zip(&column[first..first + rows]) {
            *sum += c * value;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::deploy::convert::FloatRecurrence;
    use crate::quant::RangeRule;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// On random models (W and U per tensor, per row, or W as rotation blocks) and
        /// inputs, k = 2..8 and A = 4..16, the integer engine (on packed
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
            form in crate::deploy::convert::testing::form(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut draw = |len: usize, scale: f32| -> Vec<f32> { (0..len).map(|_| rng.gen_range(-scale..scale)).collect() };
            let (w, u, b, bm) = (draw(n * n, 1.0), draw(n * d, 2.0), draw(n, 0.5), draw(n, 0.3));
            let xs = draw(10 * d, 1.5);
            // Fraction bits that give the codes room: |h| up to about 4, |x| up to 1.5.
            let hidden_frac = a as i32 - 4;
            let input_frac = a as i32 - 2;
            let model = crate::deploy::convert::testing::model(form, &FloatRecurrence {
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
            let (twin, mut twin_values) = (super::Twin::new(&model), Vec::new());
            for t in 0..10 {
                model.quantize_input(&xs[t * d..(t + 1) * d], &mut x);
                engine.step(&h_int, &x, &mut next_int);
                engine.step_unpacked(&w_unpacked, &u_unpacked, &h_int, &x, &mut next_unpacked);
                twin.step(&h_sim, &x, &mut next_sim, &mut twin_values);
                prop_assert_eq!(&next_int, &next_sim, "step {}", t);
                prop_assert_eq!(&next_unpacked, &next_int, "step {} unpacked", t);
                std::mem::swap(&mut h_int, &mut next_int);
                std::mem::swap(&mut h_sim, &mut next_sim);
            }
        }
    }
}

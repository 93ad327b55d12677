//! The simulated twin of the integer recurrence: the same fake-quantized model computed
//! in `f64`. Every value of the twin is a dyadic rational that `f64` holds exactly, so the
//! twin and the integer engine agree bit for bit (property-tested below).

use super::convert::QuantizedRecurrence;
use qornn_infer::IntActivation;

impl QuantizedRecurrence {
    /// The simulated twin of one step: the fake-quantized model in `f64`, dequantized
    /// weights `q(W) = W_c M 2^-S` and activations `h = H 2^-f_h`, re-quantized to codes.
    #[inline(always)]
    pub fn simulated_step(&self, h: &[i32], x: &[i32], out: &mut [i32]) {
        let (n, d) = (self.hidden, self.input);
        let (h_unit, x_unit) = (2f64.powi(-self.hidden_frac), 2f64.powi(-self.input_frac));
        // Powers of two: multiplying by `per_h_unit` is dividing by `h_unit`, exactly.
        let per_h_unit = 2f64.powi(self.hidden_frac);
        let bias_unit = 2f64.powi(-(self.shift as i32 + self.hidden_frac));
        // Row i's steps are `M_i 2^-S` (`WeightStep::value`), the power taken once a step.
        let (w_unit, u_unit) = (self.w_step.unit(), self.u_step.unit());
        let int = self.as_int();
        let ((lo, hi), block) = (int.hidden_range(), int.w_block());
        for (i, out_i) in out.iter_mut().enumerate().take(n) {
            let sw = self.w_step.mantissa(i) as f64 * w_unit;
            let su = self.u_step.mantissa(i) as f64 * u_unit;
            // W's zeros outside row i's diagonal block add exactly 0.
            let start = i / block * block;
            let row = &self.w_codes[i * n + start..i * n + start + block];
            let mut z = exact_dot(row, sw, &h[start..start + block], h_unit);
            z += exact_dot(&self.u_codes[i * d..(i + 1) * d], su, x, x_unit);
            z += self.bias[i] as f64 * bias_unit;
            let code = (z * per_h_unit + 0.5).floor();
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

/// The twin's step, compiled for AVX2 where the CPU has it, like
/// `engine::scalar_step`.
pub fn twin_step(q: &QuantizedRecurrence, h: &[i32], x: &[i32], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { twin_step_avx2(q, h, x, out) };
    }
    q.simulated_step(h, x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn twin_step_avx2(q: &QuantizedRecurrence, h: &[i32], x: &[i32], out: &mut [i32]) {
    q.simulated_step(h, x, out)
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

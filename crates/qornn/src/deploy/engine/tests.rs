use super::*;
use crate::deploy::convert::{FloatRecurrence, QuantizedRecurrence};
use crate::quant::RangeRule;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    /// On random models (W and U per tensor, per row, or W as rotation blocks) and
    /// inputs, k = 2..8, A = 4..16, n up to 512 and batches that are not whole blocks,
    /// every kernel gives the scalar engine's hidden codes at
    /// every step (widths above 256 cross the int32 chunks).
    #[test]
    fn batched_engine_is_bit_exact_with_the_scalar_engine(
        seed in any::<u64>(),
        n in prop_oneof![1usize..40, 250usize..270, 500usize..=512],
        d in 1usize..6,
        k in 2u32..=8,
        a in 4u32..=16,
        modrelu in any::<bool>(),
        batch in prop_oneof![Just(1usize), 2usize..40],
        form in crate::deploy::convert::testing::form(),
    ) {
        every_kernel_matches_the_scalar_engine(seed, (n, d), k, a, modrelu, batch, form)?;
    }
}

/// Models whose finishing fits int32 and models whose does not (A = 16: hidden codes up to
/// 2^15 against hundreds of weights) both occur, in every form, and every kernel is
/// bit-exact with the scalar engine on both.
#[test]
fn kernels_finish_in_int32_where_the_bound_allows_and_agree_either_way() {
    use crate::deploy::convert::testing::Form;
    for form in [
        Form::PerTensor,
        Form::PerRow,
        Form::Rotations,
        Form::Hadamard,
    ] {
        let mut seen = [false; 2];
        for (seed, (n, a)) in [(32, 8), (48, 8), (80, 6), (48, 12), (256, 16), (512, 16)]
            .into_iter()
            .enumerate()
        {
            for (modrelu, batch) in [(false, 37), (true, 37), (true, 1)] {
                let shape = (n, 2);
                let narrow = every_kernel_matches_the_scalar_engine(
                    seed as u64,
                    shape,
                    4,
                    a,
                    modrelu,
                    batch,
                    form,
                )
                .unwrap();
                seen[narrow as usize] = true;
            }
        }
        assert_eq!(seen, [true, true], "{form:?}: [int64 seen, int32 seen]");
    }
}

/// Every kernel on a random model of `form` against the scalar engine, 5 steps of `batch`
/// sequences; whether the model finishes in int32.
fn every_kernel_matches_the_scalar_engine(
    seed: u64,
    (n, d): (usize, usize),
    k: u32,
    a: u32,
    modrelu: bool,
    batch: usize,
    form: crate::deploy::convert::testing::Form,
) -> Result<bool, TestCaseError> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let model = random_model(&mut rng, form, (n, d), k, a, modrelu);
    let steps = 5;
    let xs: Vec<f32> = (0..steps * batch * d)
        .map(|_| rng.gen_range(-1.5..1.5))
        .collect();
    let scalar = model.as_int();
    prop_assert!(scalar.validate().is_ok());
    let kernels = [
        Kernel::Blocks,
        Kernel::Avx2Bytes,
        Kernel::Avx2,
        Kernel::Portable,
        Kernel::Avx512VnniBytes,
        Kernel::Avx512VnniPairs,
    ];
    let engines: Vec<BatchedEngine> = kernels
        .iter()
        .map(|&k| BatchedEngine::with_kernel(model.as_int(), k))
        .collect();
    // The byte kernel takes every model within its bounds (hidden codes spanning at
    // most 256 values, `2 (hi - lo) max|w| <= 32767`) and no other.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let (lo, hi) = scalar.hidden_range();
        let (mut w_codes, mut u_codes) = (vec![0i8; n * n], vec![0i8; n * d]);
        scalar.unpack(&mut w_codes, &mut u_codes);
        let w_max = w_codes
            .iter()
            .map(|&c| (c as i32).abs())
            .max()
            .unwrap_or(0)
            .max(1);
        let within = hi - lo <= 255 && 2 * (hi - lo) * w_max <= 32767;
        prop_assert_eq!(
            engines[1].kernel() == Kernel::Avx2Bytes,
            within,
            "A = {}, k = {}",
            a,
            k
        );
        // The VNNI kernel takes the same models where the CPU has it.
        let vnni = if has_avx512_vnni() {
            Kernel::Avx512VnniBytes
        } else {
            Kernel::Avx2Bytes
        };
        prop_assert_eq!(engines[4].kernel() == vnni, within, "A = {}, k = {}", a, k);
        // The VNNI pair kernel takes the pair kernel's models up to n, d = 256 where
        // the CPU has it.
        let vnni_pairs = has_avx512_vnni() && engines[2].kernel() == Kernel::Avx2 && n <= 256;
        prop_assert_eq!(
            engines[5].kernel() == Kernel::Avx512VnniPairs,
            vnni_pairs,
            "n = {}",
            n
        );
        // The block kernel takes every structured W within int16 hidden codes.
        let structured = scalar.w_block() < n && hi <= i16::MAX as i32;
        prop_assert_eq!(
            engines[0].kernel() == Kernel::Blocks,
            structured,
            "A = {}, k = {}",
            a,
            k
        );
    }
    let mut states: Vec<BatchedState> = engines.iter().map(|e| e.state(batch)).collect();
    let mut h = vec![vec![0i32; n]; batch];
    let (mut next, mut x, mut got) = (vec![0i32; n], vec![0i32; batch * d], vec![0i32; n]);
    for t in 0..steps {
        for s in 0..batch {
            let at = (t * batch + s) * d;
            model.quantize_input(&xs[at..at + d], &mut x[s * d..(s + 1) * d]);
            scalar.step(&h[s], &x[s * d..(s + 1) * d], &mut next);
            h[s].copy_from_slice(&next);
        }
        for (engine, state) in engines.iter().zip(states.iter_mut()) {
            engine.step(state, &x);
            for (s, expected) in h.iter().enumerate() {
                engine.hidden(state, s, &mut got);
                prop_assert_eq!(
                    &got,
                    expected,
                    "{:?} step {} sequence {}",
                    engine.kernel(),
                    t,
                    s
                );
            }
        }
    }
    Ok(engines[0].finishes_in_int32())
}

/// A model of `form` with n units and d inputs from uniform W, U and biases (modReLU's
/// too when `modrelu`), W and U at k bits, activations at A bits with the hidden step
/// 2^-(A - 4) and the input step 2^-(A - 2).
fn random_model(
    rng: &mut impl rand::Rng,
    form: crate::deploy::convert::testing::Form,
    (n, d): (usize, usize),
    k: u32,
    a: u32,
    modrelu: bool,
) -> QuantizedRecurrence {
    let mut draw = |len: usize, scale: f32| -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
    };
    let (w, u, b, bm) = (
        draw(n * n, 1.0),
        draw(n * d, 2.0),
        draw(n, 0.5),
        draw(n, 0.3),
    );
    crate::deploy::convert::testing::model(
        form,
        &FloatRecurrence {
            hidden: n,
            input: d,
            w: &w,
            u: &u,
            bias: &b,
            bias_mod: modrelu.then_some(&bm[..]),
            weight_bits: k,
            range: RangeRule::Max,
            act_bits: a,
            hidden_frac: a as i32 - 4,
            input_frac: a as i32 - 2,
        },
    )
}

/// A ReLU recurrence of n units and one input, W's entries all `w`, U's 1, biases 0.1.
fn uniform_model(n: usize, w: f32, weight_bits: u32, act_bits: u32) -> QuantizedRecurrence {
    let (w, u, b) = (vec![w; n * n], vec![1.0f32; n], vec![0.1f32; n]);
    QuantizedRecurrence::new(&FloatRecurrence {
        hidden: n,
        input: 1,
        w: &w,
        u: &u,
        bias: &b,
        bias_mod: None,
        weight_bits,
        range: RangeRule::Max,
        act_bits,
        hidden_frac: act_bits as i32 - 4,
        input_frac: act_bits as i32 - 2,
    })
}

/// The proptest above compares every kernel with the scalar engine; these say whether the
/// VNNI kernels were among them on this CPU: the byte kernel on a model whose hidden codes
/// fit a byte (A = 8), the pair kernel on one whose codes need more (A = 12).
#[test]
fn the_vnni_byte_kernel_runs_where_the_cpu_has_it() {
    vnni_kernel_agrees(uniform_model(8, 0.25, 4, 8), Kernel::Avx512VnniBytes, 3);
}

#[test]
fn the_vnni_pair_kernel_runs_where_the_cpu_has_it() {
    vnni_kernel_agrees(uniform_model(9, 0.25, 4, 12), Kernel::Avx512VnniPairs, 50);
}

/// Where the CPU has AVX-512 VNNI, `model` runs on `kernel`, and two of its steps agree
/// with the scalar engine for 40 sequences (32 lanes side by side) and for 3 (one at a
/// time, 16 rows at once), sequence s's input code `(s - 2) spacing`; else it says so.
fn vnni_kernel_agrees(model: QuantizedRecurrence, kernel: Kernel, spacing: i32) {
    let engine = BatchedEngine::new(model.as_int());
    if !has_avx512_vnni() {
        eprintln!(
            "skipped: this CPU has no AVX-512 VNNI; {:?} ran",
            engine.kernel()
        );
        return;
    }
    assert_eq!(engine.kernel(), kernel);
    for batch in [40, 3] {
        let x: Vec<i32> = (0..batch).map(|s| (s - 2) * spacing).collect();
        let active = two_steps_agree(&engine, &model, &x);
        // ReLU zeroes the sequences of negative inputs, not the others.
        assert!(
            active as i32 >= batch - 2,
            "{active} of {batch} sequences active"
        );
    }
}

/// Two steps of the engine over one input code per sequence (`x`, one per sequence, the
/// same at both steps) give the scalar engine's codes; returns how many sequences end
/// with codes other than zero.
fn two_steps_agree(engine: &BatchedEngine, model: &QuantizedRecurrence, x: &[i32]) -> usize {
    let (n, batch) = (model.hidden, x.len());
    let mut state = engine.state(batch);
    engine.step(&mut state, x);
    engine.step(&mut state, x);
    let (mut got, mut h, mut next) = (vec![0; n], vec![0; n], vec![0; n]);
    let mut active = 0;
    for s in 0..batch {
        h.fill(0);
        for _ in 0..2 {
            model.as_int().step(&h, &x[s..s + 1], &mut next);
            h.copy_from_slice(&next);
        }
        engine.hidden(&state, s, &mut got);
        assert_eq!(got, h, "batch {batch} sequence {s}");
        active += usize::from(h.iter().any(|&c| c != 0));
    }
    active
}

#[test]
fn relu_codes_wider_than_int16_run_one_sequence_at_a_time() {
    let n = 4;
    let model = uniform_model(n, 0.5, 8, 16);
    let engine = BatchedEngine::new(model.as_int());
    assert_eq!(engine.kernel(), Kernel::PerSequence);
    let mut state = engine.state(3);
    let x = [4096, -4096, 2048];
    engine.step(&mut state, &x);
    let (mut got, mut expected) = (vec![0; n], vec![0; n]);
    for s in 0..3 {
        model.as_int().step(&[0; 4], &x[s..s + 1], &mut expected);
        engine.hidden(&state, s, &mut got);
        assert_eq!(got, expected);
    }
}

/// The block kernel's three builds (portable, AVX2, AVX-512) give the same codes on
/// Hadamard and rotation models, and so do its two one-sequence steps (scalar, AVX-512):
/// the engine runs only the widest one the CPU has, so the others are compared here
/// directly; a build this CPU lacks is skipped and said so.
#[test]
fn the_block_kernels_agree_with_the_portable_one() {
    use crate::deploy::convert::testing::Form;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (d, lanes) = (2, 2 * layout::LANES);
    // n = 256: Hadamard blocks of 64 (multiplied); n = 48, 80: blocks of 16 (transformed),
    // and of 8, 4 and 2 (the first stages of the transform of 16 units at a time).
    for (form, modrelu, n) in [
        (Form::Hadamard, true, 256),
        (Form::Hadamard, false, 256),
        (Form::Hadamard, true, 48),
        (Form::Hadamard, false, 80),
        (Form::HadamardBlocks(8), true, 64),
        (Form::HadamardBlocks(4), false, 48),
        (Form::HadamardBlocks(2), true, 32),
        (Form::Rotations, true, 256),
    ] {
        let model = random_model(&mut rng, form, (n, d), 4, 8, modrelu);
        let engine = BatchedEngine::new(model.as_int());
        let blocks = engine.blocks.as_ref().expect("a block-diagonal W");
        // Rotation pairs that finish in int32 run the folded kernel under AVX-512.
        assert_eq!(
            blocks.has_folded_blocks(),
            matches!(form, Form::Rotations),
            "{form:?}: folded blocks"
        );
        let (lo, hi) = engine.rec.hidden_range();
        let h: Vec<i32> = (0..n * lanes).map(|_| rng.gen_range(lo..=hi)).collect();
        let x: Vec<i32> = (0..d * lanes).map(|_| rng.gen_range(-128..=127)).collect();
        let mut expected = vec![0; n * lanes];
        blocks::step_portable(blocks, &engine.finisher, n, &h, &x, &mut expected, lanes);
        #[cfg(target_arch = "x86_64")]
        {
            let mut got = vec![0; n * lanes];
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2; `h`, `x`, `got` hold n, d, n rows of `lanes`.
                unsafe { blocks::step_avx2(blocks, &engine.finisher, n, &h, &x, &mut got, lanes) };
                assert_eq!(got, expected, "{form:?} modrelu {modrelu}: AVX2");
            } else {
                eprintln!("skipped: this CPU has no AVX2");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F; as above.
                unsafe {
                    blocks::step_avx512(blocks, &engine.finisher, n, &h, &x, &mut got, lanes)
                };
                assert_eq!(got, expected, "{form:?} modrelu {modrelu}: AVX-512");
                // One sequence at a time, 16 rows per vector, against the scalar loop.
                assert!(
                    blocks.has_sixteen_row_groups(),
                    "{form:?}: 16 divides n and m"
                );
                for s in 0..3 {
                    let one_h: Vec<i32> = (0..n).map(|i| h[i * lanes + s]).collect();
                    let one_x: Vec<i32> = (0..d).map(|j| x[j * lanes + s]).collect();
                    let (mut scalar, mut wide) = (vec![0; n], vec![0; n]);
                    blocks.step_one(&engine.finisher, &one_h, &one_x, &mut scalar);
                    // SAFETY: the CPU has AVX-512F, the layout its groups of 16 rows;
                    // n and d codes.
                    unsafe {
                        blocks::step_one_avx512(blocks, &engine.finisher, &one_h, &one_x, &mut wide)
                    };
                    assert_eq!(wide, scalar, "{form:?} modrelu {modrelu}: one sequence");
                }
            } else {
                eprintln!("skipped: this CPU has no AVX-512F (and its one-sequence kernel)");
            }
        }
        assert!(
            expected.iter().any(|&c| c != 0 && c != lo && c != hi),
            "{form:?}: codes inside the range"
        );
    }
}

//! The `.qornn` format: a round trip through bytes, and clear refusals of corrupt,
//! truncated and wrong-version files.

use qornn::deploy::convert::{FloatRecurrence, QuantizedRecurrence};
use qornn::deploy::model_file::{IntegerModel, QuantizedReadout};
use qornn::deploy::twin::Twin;
use qornn::head::Readout;
use qornn::quant::RangeRule;
use qornn_infer::format::{FormatError, ModelFile, TaskInfo};
use rand::{Rng, SeedableRng};

fn model(modrelu: bool, bits: u32) -> IntegerModel {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(bits as u64);
    let (n, d, c) = (5, 3, 4);
    let mut draw =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let (w, u, b, bm, v, cb) = (
        draw(n * n),
        draw(n * d),
        draw(n),
        draw(n),
        draw(c * n),
        draw(c),
    );
    IntegerModel {
        recurrence: QuantizedRecurrence::new(&FloatRecurrence {
            hidden: n,
            input: d,
            w: &w,
            u: &u,
            bias: &b,
            bias_mod: modrelu.then_some(&bm[..]),
            weight_bits: bits,
            range: RangeRule::Max,
            act_bits: 10,
            hidden_frac: 6,
            input_frac: 8,
        }),
        outputs: c,
        readout: Readout::Every,
        readout_weight: v,
        readout_bias: cb,
        readout_codes: None,
        task: TaskInfo {
            kind: 0,
            parameter: 10,
            seed: u64::MAX - 3,
            sequences: 64,
            batch: 32,
        },
        float_loss: 0.25,
        float_accuracy: f64::NAN,
    }
}

#[test]
fn round_trip_at_every_width() {
    for bits in 2..=8 {
        for modrelu in [false, true] {
            let m = model(modrelu, bits);
            let bytes = m.to_bytes();
            let back = IntegerModel::from_bytes(&bytes).unwrap();
            assert_eq!(back.recurrence, m.recurrence, "bits {bits}");
            assert_eq!(
                (back.readout_weight, back.readout_bias, back.task),
                (m.readout_weight.clone(), m.readout_bias.clone(), m.task)
            );
            assert!(back.float_accuracy.is_nan() && back.float_loss == 0.25);
        }
    }
}

#[test]
fn corrupt_truncated_and_foreign_files_are_refused() {
    let bytes = model(true, 4).to_bytes();
    let mut flipped = bytes.clone();
    flipped[qornn_infer::format::HEADER_LEN + 2] ^= 0x10;
    assert!(matches!(
        ModelFile::parse(&flipped),
        Err(FormatError::Checksum { .. })
    ));
    assert!(matches!(
        ModelFile::parse(&bytes[..bytes.len() - 1]),
        Err(FormatError::Truncated { .. })
    ));
    assert!(matches!(
        ModelFile::parse(&bytes[..50]),
        Err(FormatError::Truncated { .. })
    ));
    let mut version = bytes.clone();
    version[8] = 1;
    assert_eq!(
        ModelFile::parse(&version).unwrap_err(),
        FormatError::UnsupportedVersion { found: 1 }
    );
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert_eq!(ModelFile::parse(&magic).unwrap_err(), FormatError::BadMagic);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.qornn");
    std::fs::write(&path, &flipped).unwrap();
    let msg = IntegerModel::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("broken.qornn") && msg.contains("Checksum"),
        "{msg}"
    );
}

/// A read-out quantized to R bits survives the round trip as codes, and the runtime's
/// integer sums, scaled once, are exactly the dequantized read-out computed in f64.
#[test]
fn quantized_readout_round_trips_and_is_exact() {
    for readout_bits in [2, 5, 8, 12, 16] {
        let mut m = model(false, 4);
        let (n, c) = (m.recurrence.hidden, m.outputs);
        let r = QuantizedReadout::new(&m.readout_weight, c, n, readout_bits);
        let limit = 1i32 << (readout_bits - 1);
        assert!(r.codes.iter().all(|&k| (-limit..limit).contains(&k)));
        assert!(
            r.codes.iter().any(|&k| k.abs() >= limit - 1),
            "uses its range"
        );
        m.readout_codes = Some(r.clone());
        let bytes = m.to_bytes();
        let back = IntegerModel::from_bytes(&bytes).unwrap();
        assert_eq!(back.readout_codes.as_ref(), Some(&r), "R = {readout_bits}");

        let file = ModelFile::parse(&bytes).unwrap();
        let h: Vec<i32> = (0..n as i32).map(|j| (j * 37 + 5) % 1024).collect();
        let mut acc = vec![0i64; c];
        assert!(file.readout_accumulate(&h, &mut acc));
        let v = r.dequantized();
        let (mantissa, shift) = r.step;
        let f_h = m.recurrence.hidden_frac;
        for (i, &a) in acc.iter().enumerate() {
            let by_integers = a as f64 * mantissa as f64 * 2f64.powi(-(shift as i32) - f_h);
            let in_f64: f64 = (0..n)
                .map(|j| v[i * n + j] * (h[j] as f64 * 2f64.powi(-f_h)))
                .sum();
            assert_eq!(by_integers, in_f64, "output {i}, R = {readout_bits}");
        }
    }
    // A float read-out has no integer sums.
    let bytes = model(false, 4).to_bytes();
    assert!(!ModelFile::parse(&bytes)
        .unwrap()
        .readout_accumulate(&[0; 5], &mut [0; 4]));
}

/// Files whose checksum is valid but whose fields break the engine's premises are refused:
/// a wrong header length, an evaluation batch or sequence count of 0 (a division by zero
/// in `qornn eval --model`), a weight step mantissa wider than 12 bits or a bias of 2^61
/// (either could overflow `i64` in the engine).
#[test]
fn crafted_files_with_valid_checksums_are_refused() {
    let bytes = model(false, 4).to_bytes();
    let reseal = |mut b: Vec<u8>| {
        let end = b.len() - 4;
        let sum = qornn_infer::format::fnv1a(&b[..end]);
        b[end..].copy_from_slice(&sum.to_le_bytes());
        b
    };
    let with = |at: usize, value: u32| {
        let mut b = bytes.clone();
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        reseal(b)
    };
    assert!(IntegerModel::from_bytes(&reseal(bytes.clone())).is_ok());
    for (at, value, needle) in [
        (12, 64, "header length"),
        (88, 0, "batch of 0"),
        (92, 0, "batch of 0"),
        (56, 1 << 20, "mantissa"),
        (64, 0, "mantissa"),
    ] {
        let err = IntegerModel::from_bytes(&with(at, value)).unwrap_err();
        assert!(err.contains(needle), "offset {at}: {err}");
    }
    // A bias of 2^61 (written at the 8 bytes it needs).
    let mut m = model(false, 4);
    m.recurrence.bias[0] = 1 << 61;
    let err = IntegerModel::from_bytes(&m.to_bytes()).unwrap_err();
    assert!(err.contains("bias"), "{err}");
}

/// Issue 22, defect 3: fields whose sums overflowed `int32_t` in the C library (f_h, f_x and
/// the weight shifts near `i32::MAX`/`i32::MIN`), a read-out step the C header could not
/// hold as `int32_t`, and a non-finite float read-out (printed as `inff` into the header)
/// were accepted. Each is refused now, with a valid checksum, naming the field.
#[test]
fn fields_the_c_library_cannot_compute_with_are_refused() {
    let reseal = |mut b: Vec<u8>| {
        let end = b.len() - 4;
        let sum = qornn_infer::format::fnv1a(&b[..end]);
        b[end..].copy_from_slice(&sum.to_le_bytes());
        b
    };
    let with = |bytes: &[u8], at: usize, value: u32| {
        let mut b = bytes.to_vec();
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        reseal(b)
    };
    let float_readout = model(false, 4).to_bytes();
    let mut quantized = model(false, 4);
    quantized.readout_codes = Some(QuantizedReadout::new(&quantized.readout_weight, 4, 5, 8));
    let quantized = quantized.to_bytes();
    assert!(IntegerModel::from_bytes(&quantized).is_ok());
    let extremes = [
        i32::MAX as u32,
        i32::MIN as u32,
        (i32::MAX - 1) as u32,
        u32::MAX,
    ];
    for value in extremes {
        for (bytes, at, needle) in [
            (&float_readout, 44, "fraction"),
            (&float_readout, 48, "fraction"),
            (&float_readout, 60, "shift"),
            (&float_readout, 68, "shift"),
            (&quantized, 116, "read-out step"),
            (&quantized, 120, "read-out step"),
        ] {
            if value == u32::MAX && needle == "fraction" {
                continue; // f = -1 is a fraction in range.
            }
            let err = IntegerModel::from_bytes(&with(bytes, at, value)).unwrap_err();
            assert!(err.contains(needle), "offset {at} = {value:#x}: {err}");
        }
    }
    // The last read-out bias, then the first float read-out weight, made infinite or NaN.
    let bias_at = float_readout.len() - 4 - 4;
    let weight_at = float_readout.len() - 4 - 4 * 4 - 4 * 4 * 5;
    for at in [bias_at, weight_at] {
        for value in [f32::INFINITY, f32::NAN] {
            let err =
                IntegerModel::from_bytes(&with(&float_readout, at, value.to_bits())).unwrap_err();
            assert!(err.contains("not finite"), "offset {at}: {err}");
        }
    }
}

/// A Hadamard recurrence (W = s_i (I ⊗ H_m)_ij / sqrt(m)) is stored as its n signs plus the
/// block size (version 3), round-trips, and its multiplier-free integer step, packed or
/// unpacked, equals the simulated twin bit for bit, for binary and ternary blocks.
#[test]
fn hadamard_recurrences_store_signs_and_run_multiplier_free() {
    use qornn::quant::{Granularity, QuantizedTensor};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (n, block, modrelu) in [(16, 16, true), (32, 4, false), (64, 64, true)] {
        let d = 3;
        let signs: Vec<i32> = (0..n)
            .map(|_| if rng.gen_bool(0.5) { -1 } else { 1 })
            .collect();
        let w = QuantizedTensor::<f32> {
            rows: n,
            cols: n,
            bits: 4,
            granularity: Granularity::PerTensor,
            codes: (0..n * n)
                .map(|k| signs[k / n] * qornn_infer::hadamard_entry(k / n, k % n, block))
                .collect(),
            steps: vec![1.0 / (block as f32).sqrt()],
        };
        let draw = |rng: &mut rand_chacha::ChaCha8Rng, len: usize, scale: f32| -> Vec<f32> {
            (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
        };
        let (u_float, b, bm) = (
            draw(&mut rng, n * d, 1.0),
            draw(&mut rng, n, 0.3),
            draw(&mut rng, n, 0.1),
        );
        let float = FloatRecurrence {
            hidden: n,
            input: d,
            w: &[],
            u: &u_float,
            bias: &b,
            bias_mod: modrelu.then_some(&bm[..]),
            weight_bits: 4,
            range: RangeRule::Max,
            act_bits: 12,
            hidden_frac: 8,
            input_frac: 10,
        };
        let u = qornn::quant::Quantizer::new(4, Granularity::PerTensor).quantize(&u_float, n, d);
        let dense = QuantizedRecurrence::from_codes(&float, &w, &u);
        let hadamard = dense.clone().into_hadamard(block);
        assert_eq!(hadamard.w_packed.len(), n.div_ceil(8));
        let mut file = model(modrelu, 4);
        file.recurrence = hadamard.clone();
        file.readout_weight = vec![0.5; file.outputs * n];
        let bytes = file.to_bytes();
        let back = IntegerModel::from_bytes(&bytes).unwrap();
        assert_eq!(back.recurrence, hadamard);
        let mut dense_file = model(modrelu, 4);
        dense_file.recurrence = dense;
        dense_file.readout_weight = vec![0.5; file.outputs * n];
        assert!(bytes.len() < dense_file.to_bytes().len());
        let engine = back.recurrence.as_int();
        engine.validate().unwrap();
        let (mut w_codes, mut u_codes) = (vec![0i8; n * n], vec![0i8; n * d]);
        engine.unpack(&mut w_codes, &mut u_codes);
        assert_eq!(w_codes, hadamard.w_codes);
        let (mut h_int, mut h_sim, mut h_unpacked) = (vec![0i32; n], vec![0i32; n], vec![0i32; n]);
        let (mut next_int, mut next_sim, mut next_unpacked) = (vec![0; n], vec![0; n], vec![0; n]);
        let mut x = vec![0i32; d];
        let (twin, mut twin_values) = (Twin::new(&back.recurrence), Vec::new());
        for t in 0..20 {
            let xs = draw(&mut rng, d, 1.5);
            back.recurrence.quantize_input(&xs, &mut x);
            engine.step(&h_int, &x, &mut next_int);
            engine.step_unpacked(&w_codes, &u_codes, &h_unpacked, &x, &mut next_unpacked);
            twin.step(&h_sim, &x, &mut next_sim, &mut twin_values);
            assert_eq!(next_int, next_sim, "n {n} m {block} step {t}");
            assert_eq!(next_unpacked, next_sim, "n {n} m {block} step {t} unpacked");
            std::mem::swap(&mut h_int, &mut next_int);
            std::mem::swap(&mut h_sim, &mut next_sim);
            std::mem::swap(&mut h_unpacked, &mut next_unpacked);
        }
        assert!(h_sim.iter().any(|&v| v != 0), "the state stayed at zero");
    }
}

/// A version 3 file written before version 4 (per-row steps, rotations, narrow biases),
/// kept in `tests/data`: it still loads, as the model it was written from, and written
/// again as version 4 it is smaller (its biases at the width they need) and the same model.
#[test]
fn version_3_files_still_load() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/version-3.qornn");
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
    let old = IntegerModel::from_bytes(&bytes).unwrap();
    let mut expected = model(true, 4);
    let readout = QuantizedReadout::new(&expected.readout_weight, 4, 5, 6);
    expected.readout_weight = readout.dequantized_f32();
    expected.readout_codes = Some(readout);
    // The float accuracy is NaN (no accuracy on this task), which no `==` equals.
    assert!(old.float_accuracy.is_nan());
    let comparable = |m: &IntegerModel| IntegerModel {
        float_accuracy: 0.0,
        ..m.clone()
    };
    assert_eq!(comparable(&old), comparable(&expected));
    let new = old.to_bytes();
    assert_eq!(u32::from_le_bytes(new[8..12].try_into().unwrap()), 4);
    assert!(new.len() < bytes.len(), "{} >= {}", new.len(), bytes.len());
    let again = IntegerModel::from_bytes(&new).unwrap();
    assert_eq!(comparable(&again), comparable(&old));
}

/// Biases take 1, 2, 4 or 8 bytes each as their largest magnitude needs, and read back.
#[test]
fn biases_are_stored_at_the_width_they_need() {
    use qornn_infer::format::signed_width;
    for (values, width) in [
        (vec![0i64, -128, 127], 1),
        (vec![128], 2),
        (vec![-129, 5], 2),
        (vec![i16::MIN as i64, i16::MAX as i64 + 1], 4),
        (vec![i32::MIN as i64], 4),
        (vec![i32::MAX as i64 + 1], 8),
        (vec![-(1i64 << 60)], 8),
    ] {
        assert_eq!(signed_width(values.iter().copied()), width, "{values:?}");
    }
    let base = IntegerModel {
        float_accuracy: 0.5,
        ..model(true, 4)
    };
    let mut sizes = Vec::new();
    for largest in [100i64, 30_000, 1 << 30, 1 << 40] {
        let mut m = base.clone();
        m.recurrence.bias = vec![-largest, largest, 0, 1, -1];
        m.recurrence.bias_mod = vec![-3, 200, 0, 1, -40_000];
        let bytes = m.to_bytes();
        assert_eq!(IntegerModel::from_bytes(&bytes).unwrap(), m, "{largest}");
        sizes.push(bytes.len());
    }
    // 5 biases at 1, 2, 4 and 8 bytes.
    assert_eq!(
        [
            sizes[1] - sizes[0],
            sizes[2] - sizes[1],
            sizes[3] - sizes[2]
        ],
        [5, 10, 20]
    );
}

/// Per-row steps (a u16 mantissa per row, the shift shared) and block rotations (the pairs
/// `(a, b)`) round-trip, and the file's engine equals the simulated twin bit for bit.
#[test]
fn per_row_steps_and_rotations_round_trip() {
    use qornn::quant::{Granularity, QuantizedTensor, Quantizer};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (n, d) = (6, 3);
    let draw = |rng: &mut rand_chacha::ChaCha8Rng, len: usize, scale: f32| -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-scale..scale)).collect()
    };
    let (w_float, u_float, b) = (
        draw(&mut rng, n * n, 1.0),
        draw(&mut rng, n * d, 1.0),
        draw(&mut rng, n, 0.3),
    );
    let float = FloatRecurrence {
        hidden: n,
        input: d,
        w: &w_float,
        u: &u_float,
        bias: &b,
        bias_mod: None,
        weight_bits: 4,
        range: RangeRule::Max,
        act_bits: 12,
        hidden_frac: 8,
        input_frac: 10,
    };
    let per_row = QuantizedRecurrence::with_granularity(&float, Granularity::PerRow);
    assert!(per_row.w_step.is_per_row() && per_row.u_step.is_per_row());
    // Three blocks (3, 4), (1, -7), (7, 0) with steps 1/5, 1/sqrt(50), 1/7.
    let pairs = [(3, 4), (1, -7), (7, 0)];
    let mut codes = vec![0; n * n];
    let mut steps = vec![0.0; n];
    for (p, &(a, b)) in pairs.iter().enumerate() {
        let (i, j) = (2 * p, 2 * p + 1);
        (
            codes[i * n + i],
            codes[i * n + j],
            codes[j * n + i],
            codes[j * n + j],
        ) = (a, -b, b, a);
        let step = 1.0 / ((a * a + b * b) as f32).sqrt();
        (steps[i], steps[j]) = (step, step);
    }
    let w = QuantizedTensor {
        rows: n,
        cols: n,
        bits: 4,
        granularity: Granularity::PerRow,
        codes,
        steps,
    };
    let u = Quantizer::new(4, Granularity::PerTensor).quantize(&u_float, n, d);
    let rotations = QuantizedRecurrence::from_rotation_codes(&float, &w, &u);
    assert_eq!(rotations.w_packed, [0x43, 0x91, 0x07]);
    for q in [per_row, rotations] {
        let mut file = model(false, 4);
        file.readout_weight = vec![0.5; file.outputs * n];
        file.recurrence = q.clone();
        let back = IntegerModel::from_bytes(&file.to_bytes()).unwrap();
        assert_eq!(back.recurrence, q);
        let engine = back.recurrence.as_int();
        engine.validate().unwrap();
        let (mut h_int, mut h_sim) = (vec![0i32; n], vec![0i32; n]);
        let (mut next_int, mut next_sim) = (vec![0; n], vec![0; n]);
        let mut x = vec![0i32; d];
        let (twin, mut twin_values) = (Twin::new(&q), Vec::new());
        for t in 0..20 {
            q.quantize_input(&draw(&mut rng, d, 1.5), &mut x);
            engine.step(&h_int, &x, &mut next_int);
            twin.step(&h_sim, &x, &mut next_sim, &mut twin_values);
            assert_eq!(next_int, next_sim, "step {t}");
            std::mem::swap(&mut h_int, &mut next_int);
            std::mem::swap(&mut h_sim, &mut next_sim);
        }
        assert!(h_sim.iter().any(|&v| v != 0), "the state stayed at zero");
    }
}

/// Issue 22, defect 21: a valid file could claim 65,536 outputs, whose read-out a reader
/// unpacks to gigabytes; outputs are bounded by 4096 (every deployable model has 50 at
/// most), so that what a file costs to evaluate stays within a small multiple of its
/// size's bound.
#[test]
fn more_than_4096_outputs_are_refused() {
    let bytes = model(false, 4).to_bytes();
    let mut wide = bytes.clone();
    wide[24..28].copy_from_slice(&4097u32.to_le_bytes());
    assert_eq!(
        ModelFile::parse(&wide).unwrap_err(),
        FormatError::Invalid("sizes")
    );
}

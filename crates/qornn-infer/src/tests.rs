use super::*;

fn model<'a>(w: &'a [u8], u: &'a [u8], bias: &'a [i64]) -> IntRecurrence<'a> {
    IntRecurrence {
        hidden: 2,
        input: 1,
        w: IntMatrix {
            rows: 2,
            cols: 2,
            bits: 8,
            packed: w,
            mantissa: 1,
            shift: 0,
            row_mantissas: &[],
        },
        u: IntMatrix {
            rows: 2,
            cols: 1,
            bits: 8,
            packed: u,
            mantissa: 1,
            shift: 0,
            row_mantissas: &[],
        },
        hadamard_block: 0,
        rotations: false,
        bias,
        bias_mod: &[],
        activation: IntActivation::Relu,
        act_bits: 4,
        hidden_frac: 0,
        input_frac: 0,
        shift: 1,
    }
}

#[test]
fn one_step_by_hand_and_saturation() {
    // S = 1: num = 2 (W h + U x) + B; Z = (num + 1) >> 1.
    let m = model(&[1, 2, 0xff, 3], &[5, 0xf9], &[1, 0]);
    assert_eq!(m.validate(), Ok(()));
    let mut out = [0; 2];
    m.step(&[1, 2], &[1], &mut out);
    // unit 0: 2 (1 + 4 + 5) + 1 = 21 -> 11; unit 1: 2 (-1 + 6 - 7) = -4 -> -2 -> relu 0.
    assert_eq!(out, [11, 0]);
    m.step(&[7, 7], &[3], &mut out);
    assert_eq!(out[0], 15, "saturates at 2^4 - 1");
}

#[test]
fn a_rotation_pair_by_hand() {
    // One block [[3, -4], [4, 3]] (codes a = 3, b = 4 at 4 bits), rows with their own
    // mantissas 1 and 2, U = 0, S = 1.
    let mut m = model(&[0x43], &[0, 0], &[0, 0]);
    m.w.bits = 4;
    m.rotations = true;
    m.w.row_mantissas = &[1, 0, 2, 0];
    m.act_bits = 8;
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(
        [
            m.w_code(0, 0),
            m.w_code(0, 1),
            m.w_code(1, 0),
            m.w_code(1, 1)
        ],
        [3, -4, 4, 3]
    );
    let mut out = [0; 2];
    m.step(&[5, 1], &[0], &mut out);
    // unit 0: 3 * 5 - 4 * 1 = 11, times M = 1 and 2^(S - S_w) = 2: 22 -> 11;
    // unit 1: (4 * 5 + 3 * 1) 2 2 = 92 -> 46.
    assert_eq!(out, [11, 46]);
    m.w.row_mantissas = &[1, 0];
    assert!(matches!(
        m.validate(),
        Err(Error::Length {
            what: "w row mantissas",
            ..
        })
    ));
    let negative = [0x83u8];
    m.w.row_mantissas = &[1, 0, 2, 0];
    m.w.packed = &negative;
    assert!(m.validate().is_err(), "b = -8 at 4 bits");
}

#[test]
fn codes_pack_and_unpack_at_every_width() {
    for bits in 2..=16u32 {
        let lo = -(1i32 << (bits - 1));
        let codes: [i32; 11] = core::array::from_fn(|i| lo + (i as i32 * 7919) % (1 << bits));
        let mut packed = [0u8; 22];
        pack_codes(
            codes.iter().copied(),
            bits,
            &mut packed[..IntMatrix::packed_len(1, 11, bits)],
        );
        let m = IntMatrix {
            rows: 1,
            cols: 11,
            bits,
            packed: &packed,
            mantissa: 1,
            shift: 0,
            row_mantissas: &[],
        };
        for (i, &c) in codes.iter().enumerate() {
            assert_eq!(m.code(i), c, "bits {bits}, code {i}");
        }
    }
}

#[test]
fn wrong_lengths_are_refused() {
    let m = model(&[1, 2, 3], &[5, 0xf9], &[1, 0]);
    assert_eq!(
        m.validate(),
        Err(Error::Length {
            what: "w codes",
            expected: 4,
            found: 3
        })
    );
    let m = model(&[1, 2, 3, 4], &[5, 0xf9], &[1]);
    assert_eq!(
        m.validate(),
        Err(Error::Length {
            what: "bias",
            expected: 2,
            found: 1
        })
    );
}

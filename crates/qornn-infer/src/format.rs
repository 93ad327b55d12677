//! The `.qornn` integer model file, version 4 (layout in `docs/format.md`; versions 2 and 3
//! still read): parsed from a byte slice without allocation; every length is checked and
//! the FNV-1a checksum too.

use crate::{IntActivation, IntMatrix, IntRecurrence};

pub const MAGIC: [u8; 8] = *b"QORNNINT";
pub const VERSION: u32 = 4;
/// The oldest version still read: version 2 has no Hadamard recurrences (offset 124 was
/// reserved and 0), version 3 no rotations, per-row steps or narrow biases.
pub const MIN_VERSION: u32 = 2;
/// The header of version 4; versions 2 and 3 end theirs at [`OLD_HEADER_LEN`].
pub const HEADER_LEN: usize = 144;
pub const OLD_HEADER_LEN: usize = 128;
/// Version 4, offset 132: which weights have a step per row.
pub const ROW_STEPS_W: u32 = 1;
pub const ROW_STEPS_U: u32 = 2;
pub const CHECKSUM_LEN: usize = 4;

/// Why a file was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FormatError {
    BadMagic,
    UnsupportedVersion {
        found: u32,
    },
    Truncated {
        needed: usize,
        found: usize,
    },
    Checksum {
        stored: u32,
        computed: u32,
    },
    /// A header field out of range (which one).
    Invalid(&'static str),
}

/// The read-out after the recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadoutKind {
    Last,
    Every,
}

/// The task the model was trained on, and how its evaluation data is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// 0 copy, 1 adding, 2 smnist, 3 pmnist.
    pub kind: u32,
    /// Copy: the delay T0; adding: the length T; 0 otherwise.
    pub parameter: u32,
    pub seed: u64,
    pub sequences: u32,
    pub batch: u32,
}

/// A parsed model: views into the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct ModelFile<'a> {
    pub recurrence: IntRecurrence<'a>,
    pub outputs: usize,
    pub readout: ReadoutKind,
    /// `V: (C, n)` as codes when the read-out is quantized (see
    /// [`ModelFile::readout_accumulate`]), else `None` and `V` is float.
    pub readout_codes: Option<IntMatrix<'a>>,
    /// `V: (C, n)` (float read-out only) and `c: (C)` as little-endian f32 bytes.
    readout_weight: &'a [u8],
    readout_bias: &'a [u8],
    pub task: TaskInfo,
    /// The float model's test metrics, measured when the file was written (NaN: none).
    pub float_loss: f64,
    pub float_accuracy: f64,
    /// The biases in their own sections, kept as bytes to avoid alignment needs, each
    /// value `bias_bytes` (`bias_mod_bytes`) little-endian two's-complement bytes.
    bias: &'a [u8],
    bias_mod: &'a [u8],
    bias_bytes: usize,
    bias_mod_bytes: usize,
}

/// The little-endian two's-complement integer of 1 to 8 bytes, sign-extended.
fn signed_at(b: &[u8], at: usize, width: usize) -> i64 {
    let mut x = [0u8; 8];
    x[..width].copy_from_slice(&b[at..at + width]);
    let unused = 64 - 8 * width as u32;
    (i64::from_le_bytes(x) << unused) >> unused
}

/// Bytes each of `values` needs as a two's-complement integer (1, 2, 4 or 8).
pub fn signed_width(values: impl Iterator<Item = i64>) -> usize {
    let widest = values.map(|v| 64 - v.max(-v - 1).leading_zeros() + 1).max();
    match widest.unwrap_or(1) {
        0..=8 => 1,
        9..=16 => 2,
        17..=32 => 4,
        _ => 8,
    }
}

/// FNV-1a, 32 bits.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn f32_at(b: &[u8], index: usize) -> f32 {
    f32::from_le_bytes([
        b[4 * index],
        b[4 * index + 1],
        b[4 * index + 2],
        b[4 * index + 3],
    ])
}

fn f64_at(b: &[u8], at: usize) -> f64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    f64::from_le_bytes(x)
}

impl<'a> ModelFile<'a> {
    /// `V_ij` of a float read-out (0 when the read-out is quantized).
    pub fn readout_weight(&self, i: usize, j: usize) -> f32 {
        if self.readout_codes.is_some() {
            return 0.0;
        }
        f32_at(self.readout_weight, i * self.recurrence.hidden + j)
    }

    /// A quantized read-out in integers: `out_i = sum_j V_ij H_j` for the hidden codes `H`
    /// (exact in `i64`: a code below 2^15 times one below 2^16, at most 4096 terms), so that
    /// the output is `y_i = out_i M_v 2^-(S_v + f_h) + c_i`. Returns `false` (and leaves
    /// `out` alone) when the read-out is float.
    pub fn readout_accumulate(&self, h: &[i32], out: &mut [i64]) -> bool {
        let Some(v) = self.readout_codes else {
            return false;
        };
        for (i, o) in out.iter_mut().enumerate().take(v.rows) {
            *o = h
                .iter()
                .enumerate()
                .map(|(j, &x)| v.code(i * v.cols + j) as i64 * x as i64)
                .sum();
        }
        true
    }

    /// `c_i`.
    pub fn readout_bias(&self, i: usize) -> f32 {
        f32_at(self.readout_bias, i)
    }

    /// The bias of unit `i` in accumulator units.
    pub fn bias(&self, i: usize) -> i64 {
        signed_at(self.bias, self.bias_bytes * i, self.bias_bytes)
    }

    /// The modReLU bias of unit `i` in hidden-code units (0 for ReLU).
    pub fn bias_mod(&self, i: usize) -> i32 {
        if self.bias_mod.is_empty() {
            0
        } else {
            signed_at(self.bias_mod, self.bias_mod_bytes * i, self.bias_mod_bytes) as i32
        }
    }

    /// Parses and checks a whole file. The recurrence's `bias` and `bias_mod` slices are
    /// empty: read them with [`ModelFile::bias`] / [`ModelFile::bias_mod`] into buffers
    /// the caller owns (`IntRecurrence` wants aligned `i64`s).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if bytes.len() < OLD_HEADER_LEN + CHECKSUM_LEN {
            return Err(FormatError::Truncated {
                needed: OLD_HEADER_LEN + CHECKSUM_LEN,
                found: bytes.len(),
            });
        }
        if bytes[..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let field = |at: usize| u32_at(bytes, at);
        let version = field(8);
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let header_len = if version >= 4 {
            HEADER_LEN
        } else {
            OLD_HEADER_LEN
        };
        if field(12) as usize != header_len {
            return Err(FormatError::Invalid("header length"));
        }
        if bytes.len() < header_len + CHECKSUM_LEN {
            return Err(FormatError::Truncated {
                needed: header_len + CHECKSUM_LEN,
                found: bytes.len(),
            });
        }
        // Version 4's fields, and what older files mean by them.
        let (w_form, row_steps, bias_bytes, bias_mod_bytes) = if version >= 4 {
            (field(128), field(132), field(136), field(140))
        } else {
            (0, 0, 8, 4)
        };
        let rotations = match w_form {
            0 => false,
            1 => true,
            _ => return Err(FormatError::Invalid("W's form")),
        };
        if row_steps > (ROW_STEPS_W | ROW_STEPS_U) {
            return Err(FormatError::Invalid("per-row step flags"));
        }
        let (n, d, c, k, a) = (
            field(16) as usize,
            field(20) as usize,
            field(24) as usize,
            field(28),
            field(32),
        );
        if n == 0 || d == 0 || c == 0 || n > 1 << 12 || d > 1 << 12 || c > 1 << 12 {
            return Err(FormatError::Invalid("sizes"));
        }
        if !(2..=8).contains(&k) {
            return Err(FormatError::Invalid("weight bits"));
        }
        let activation = match field(36) {
            0 => IntActivation::Relu,
            1 => IntActivation::Modrelu,
            _ => return Err(FormatError::Invalid("activation")),
        };
        let readout = match field(40) {
            0 => ReadoutKind::Last,
            1 => ReadoutKind::Every,
            _ => return Err(FormatError::Invalid("readout")),
        };
        let readout_bits = field(112);
        if readout_bits != 0 && !(2..=16).contains(&readout_bits) {
            return Err(FormatError::Invalid("read-out bits"));
        }
        let v_len = if readout_bits == 0 {
            4 * c * n
        } else {
            IntMatrix::packed_len(c, n, readout_bits)
        };
        let hadamard_block = field(124);
        // W is one form: its section's length (below) and `IntRecurrence::w_code` read
        // it as a Hadamard one's signs or as rotations' codes, not both.
        if rotations && hadamard_block > 0 {
            return Err(FormatError::Invalid(
                "W's form: rotations with a Hadamard block",
            ));
        }
        let w_len = if hadamard_block > 0 {
            n.div_ceil(8)
        } else if rotations {
            IntMatrix::packed_len(1, n, k)
        } else {
            IntMatrix::packed_len(n, n, k)
        };
        let u_len = IntMatrix::packed_len(n, d, k);
        let modrelu = activation == IntActivation::Modrelu;
        if !matches!(bias_bytes, 1 | 2 | 4 | 8)
            || (modrelu && !matches!(bias_mod_bytes, 1 | 2 | 4))
            || (!modrelu && version >= 4 && bias_mod_bytes != 0)
        {
            return Err(FormatError::Invalid("bias widths"));
        }
        let (bias_bytes, bias_mod_bytes) = (bias_bytes as usize, bias_mod_bytes as usize);
        let bm_len = if modrelu { bias_mod_bytes * n } else { 0 };
        let row_len = |flag: u32| if row_steps & flag != 0 { 2 * n } else { 0 };
        let sections = [
            w_len,
            u_len,
            row_len(ROW_STEPS_W),
            row_len(ROW_STEPS_U),
            bias_bytes * n,
            bm_len,
            v_len,
            4 * c,
        ];
        let needed = header_len + sections.iter().sum::<usize>() + CHECKSUM_LEN;
        if bytes.len() != needed {
            return Err(FormatError::Truncated {
                needed,
                found: bytes.len(),
            });
        }
        let body = &bytes[..needed - CHECKSUM_LEN];
        let (stored, computed) = (u32_at(bytes, needed - CHECKSUM_LEN), fnv1a(body));
        if stored != computed {
            return Err(FormatError::Checksum { stored, computed });
        }
        let mut offset = header_len;
        let mut take = |len: usize| {
            let s = &bytes[offset..offset + len];
            offset += len;
            s
        };
        let (w, u, w_rows, u_rows, bias, bias_mod, v, cb) = (
            take(w_len),
            take(u_len),
            take(row_len(ROW_STEPS_W)),
            take(row_len(ROW_STEPS_U)),
            take(bias_bytes * n),
            take(bm_len),
            take(v_len),
            take(4 * c),
        );
        let recurrence = IntRecurrence {
            hidden: n,
            input: d,
            w: IntMatrix {
                rows: n,
                cols: n,
                bits: k,
                packed: w,
                mantissa: field(56) as i32,
                shift: field(60),
                row_mantissas: w_rows,
            },
            u: IntMatrix {
                rows: n,
                cols: d,
                bits: k,
                packed: u,
                mantissa: field(64) as i32,
                shift: field(68),
                row_mantissas: u_rows,
            },
            bias: &[],
            bias_mod: &[],
            activation,
            act_bits: a,
            hidden_frac: field(44) as i32,
            input_frac: field(48) as i32,
            shift: field(52),
            hadamard_block,
            rotations,
        };
        let task = TaskInfo {
            kind: field(72),
            parameter: field(76),
            seed: u32_at(bytes, 80) as u64 | (u32_at(bytes, 84) as u64) << 32,
            sequences: field(88),
            batch: field(92),
        };
        if task.sequences == 0 || task.batch == 0 {
            return Err(FormatError::Invalid("evaluation sequences or batch of 0"));
        }
        let readout_codes = (readout_bits != 0).then_some(IntMatrix {
            rows: c,
            cols: n,
            bits: readout_bits,
            packed: v,
            mantissa: field(116) as i32,
            shift: field(120),
            row_mantissas: &[],
        });
        let frac_ok = |f: i32| (-IntRecurrence::MAX_FRAC..=IntRecurrence::MAX_FRAC).contains(&f);
        if !frac_ok(recurrence.hidden_frac) || !frac_ok(recurrence.input_frac) {
            return Err(FormatError::Invalid(
                "fraction bits f_h or f_x outside -62..=62",
            ));
        }
        if let Some(v) = readout_codes {
            if !(1..=IntRecurrence::MAX_MANTISSA).contains(&v.mantissa)
                || v.shift > IntRecurrence::MAX_SHIFT
            {
                return Err(FormatError::Invalid(
                    "read-out step: mantissa outside 1..=4096 or shift above 62",
                ));
            }
        }
        // Float values the read-out computes with (and `qornn export --c` prints as C
        // literals) must be numbers.
        let floats_ok = |bytes: &[u8]| (0..bytes.len() / 4).all(|k| f32_at(bytes, k).is_finite());
        if (readout_codes.is_none() && !floats_ok(v)) || !floats_ok(cb) {
            return Err(FormatError::Invalid("read-out weight or bias not finite"));
        }
        Ok(Self {
            recurrence,
            outputs: c,
            readout,
            readout_codes,
            readout_weight: v,
            readout_bias: cb,
            task,
            float_loss: f64_at(bytes, 96),
            float_accuracy: f64_at(bytes, 104),
            bias,
            bias_mod,
            bias_bytes,
            bias_mod_bytes,
        })
    }
}

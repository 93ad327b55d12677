//! Writing and reading `.qornn` integer model files (layout: `docs/format.md`; the
//! parser is `qornn_infer::format`, shared with the `no_std` runtime).

use crate::deploy::convert::{dyadic, QuantizedRecurrence, WeightStep};
use crate::error::{Error, Result};
use crate::head::Readout;
use crate::quant::{Granularity, Quantizer};
use qornn_infer::format::{
    fnv1a, signed_width, ModelFile, TaskInfo, HEADER_LEN, MAGIC, ROW_STEPS_U, ROW_STEPS_W, VERSION,
};
use qornn_infer::{pack_codes, IntActivation, IntMatrix};
use std::path::Path;

/// An integer model with its read-out and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegerModel {
    pub recurrence: QuantizedRecurrence,
    pub outputs: usize,
    pub readout: Readout,
    /// `V: (C, n)` (float; when `readout_codes` is set, its dequantized values), `c: (C)`.
    pub readout_weight: Vec<f32>,
    pub readout_bias: Vec<f32>,
    /// `V` quantized (`--readout-bits`), or `None` for a float read-out.
    pub readout_codes: Option<QuantizedReadout>,
    pub task: TaskInfo,
    pub float_loss: f64,
    pub float_accuracy: f64,
}

/// A read-out `V: (C, n)` quantized per tensor like the weights, `V = codes M 2^-S`: the
/// output `y = V h + c` is then `(sum_j codes_ij H_j) M 2^-(S + f_h) + c_i`, an exact
/// integer sum scaled once.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedReadout {
    pub bits: u32,
    pub codes: Vec<i32>,
    pub step: (i32, u32),
}

impl QuantizedReadout {
    /// The paper's min-max quantizer at `bits` (2..=16), its step rounded to 12 bits.
    pub fn new(v: &[f32], rows: usize, cols: usize, bits: u32) -> Self {
        Self::with_step_times(v, rows, cols, bits, 1.0)
    }

    /// As [`QuantizedReadout::new`], the step times `factor` before it is rounded: the
    /// codes of `v` for `factor v` (a continuous hidden step's mantissa, `qornn quantize`).
    pub fn with_step_times(v: &[f32], rows: usize, cols: usize, bits: u32, factor: f64) -> Self {
        let q = Quantizer::post_training(bits, Granularity::PerTensor);
        let t = q.quantize(v, rows, cols);
        Self {
            bits,
            codes: t.codes,
            step: dyadic(t.steps[0] as f64 * factor),
        }
    }

    /// `codes M 2^-S` in `f64` (exact: a 16-bit code times a 12-bit mantissa).
    pub fn dequantized(&self) -> Vec<f64> {
        let step = self.step.0 as f64 * 2f64.powi(-(self.step.1 as i32));
        self.codes.iter().map(|&c| c as f64 * step).collect()
    }

    /// The dequantized `V` as the float read-out stores it (`IntegerModel::readout_weight`).
    pub fn dequantized_f32(&self) -> Vec<f32> {
        self.dequantized().iter().map(|&v| v as f32).collect()
    }
}

/// The header's mantissa field: the tensor's step, or 0 when it has one per row (its own
/// section).
fn header_mantissa(step: &WeightStep) -> u32 {
    if step.is_per_row() {
        0
    } else {
        step.mantissa(0) as u32
    }
}

/// A weight step as the file holds it.
fn step_of(m: &IntMatrix<'_>) -> WeightStep {
    WeightStep {
        mantissas: if m.row_mantissas.is_empty() {
            vec![m.mantissa]
        } else {
            (0..m.rows).map(|i| m.mantissa_of(i)).collect()
        },
        shift: m.shift,
    }
}

impl IntegerModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        let q = &self.recurrence;
        let mut b = Vec::with_capacity(HEADER_LEN);
        b.extend(MAGIC);
        let activation = match q.activation {
            IntActivation::Relu => 0u32,
            IntActivation::Modrelu => 1,
        };
        let readout = match self.readout {
            Readout::Last => 0u32,
            Readout::Every => 1,
        };
        let fields: [u32; 16] = [
            VERSION,
            HEADER_LEN as u32,
            q.hidden as u32,
            q.input as u32,
            self.outputs as u32,
            q.weight_bits,
            q.act_bits,
            activation,
            readout,
            q.hidden_frac as u32,
            q.input_frac as u32,
            q.shift,
            header_mantissa(&q.w_step),
            q.w_step.shift,
            header_mantissa(&q.u_step),
            q.u_step.shift,
        ];
        fields.iter().for_each(|f| b.extend(f.to_le_bytes()));
        for f in [self.task.kind, self.task.parameter] {
            b.extend(f.to_le_bytes());
        }
        b.extend(self.task.seed.to_le_bytes());
        for f in [self.task.sequences, self.task.batch] {
            b.extend(f.to_le_bytes());
        }
        b.extend(self.float_loss.to_le_bytes());
        b.extend(self.float_accuracy.to_le_bytes());
        let (readout_bits, (mantissa, shift)) = self
            .readout_codes
            .as_ref()
            .map_or((0, (0, 0)), |r| (r.bits, r.step));
        let hadamard_block = q.hadamard_block.unwrap_or(0) as u32;
        for f in [readout_bits, mantissa as u32, shift, hadamard_block] {
            b.extend(f.to_le_bytes());
        }
        // Version 4: W's form, the per-row steps, the biases at the width they need.
        let row_steps = [(&q.w_step, ROW_STEPS_W), (&q.u_step, ROW_STEPS_U)]
            .iter()
            .filter(|(step, _)| step.is_per_row())
            .fold(0, |flags, (_, flag)| flags | flag);
        let bias_bytes = signed_width(q.bias.iter().copied());
        let bias_mod_bytes = match q.activation {
            IntActivation::Relu => 0,
            IntActivation::Modrelu => signed_width(q.bias_mod.iter().map(|&v| v as i64)).min(4),
        };
        for f in [
            q.rotations as u32,
            row_steps,
            bias_bytes as u32,
            bias_mod_bytes as u32,
        ] {
            b.extend(f.to_le_bytes());
        }
        debug_assert_eq!(b.len(), HEADER_LEN);
        b.extend(&q.w_packed);
        b.extend(&q.u_packed);
        b.extend(&q.w_row_mantissas);
        b.extend(&q.u_row_mantissas);
        q.bias
            .iter()
            .for_each(|v| b.extend(&v.to_le_bytes()[..bias_bytes]));
        q.bias_mod
            .iter()
            .for_each(|v| b.extend(&v.to_le_bytes()[..bias_mod_bytes]));
        match &self.readout_codes {
            Some(r) => {
                let mut packed = vec![0u8; IntMatrix::packed_len(1, r.codes.len(), r.bits)];
                pack_codes(r.codes.iter().copied(), r.bits, &mut packed);
                b.extend(packed);
            }
            None => self
                .readout_weight
                .iter()
                .for_each(|v| b.extend(v.to_le_bytes())),
        }
        self.readout_bias
            .iter()
            .for_each(|v| b.extend(v.to_le_bytes()));
        let checksum = fnv1a(&b);
        b.extend(checksum.to_le_bytes());
        b
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::checkpoint::write_atomically(path, &self.to_bytes())
    }

    /// Reads a file; a corrupt, truncated or wrong-version one is refused, naming it.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| Error::bad_file(path, e))
    }

    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let f = ModelFile::parse(bytes).map_err(|e| format!("not a valid .qornn model: {e:?}"))?;
        let r = f.recurrence;
        let (n, d, c) = (r.hidden, r.input, f.outputs);
        let unpack = |m: &qornn_infer::IntMatrix<'_>| {
            (0..m.rows * m.cols)
                .map(|i| m.code(i) as i8)
                .collect::<Vec<_>>()
        };
        let recurrence = QuantizedRecurrence {
            hidden: n,
            input: d,
            weight_bits: r.w.bits,
            w_codes: (0..n * n).map(|k| r.w_code(k / n, k % n) as i8).collect(),
            w_step: step_of(&r.w),
            u_codes: unpack(&r.u),
            u_step: step_of(&r.u),
            w_packed: r.w.packed.to_vec(),
            u_packed: r.u.packed.to_vec(),
            w_row_mantissas: r.w.row_mantissas.to_vec(),
            u_row_mantissas: r.u.row_mantissas.to_vec(),
            bias: (0..n).map(|i| f.bias(i)).collect(),
            bias_mod: match r.activation {
                IntActivation::Modrelu => (0..n).map(|i| f.bias_mod(i)).collect(),
                IntActivation::Relu => Vec::new(),
            },
            activation: r.activation,
            act_bits: r.act_bits,
            hidden_frac: r.hidden_frac,
            input_frac: r.input_frac,
            shift: r.shift,
            hadamard_block: (r.hadamard_block > 0).then_some(r.hadamard_block as usize),
            rotations: r.rotations,
        };
        let readout_codes = f.readout_codes.map(|v| QuantizedReadout {
            bits: v.bits,
            codes: (0..c * n).map(|k| v.code(k)).collect(),
            step: (v.mantissa, v.shift),
        });
        recurrence
            .as_int()
            .validate()
            .map_err(|e| format!("the integer model is out of range: {e:?}"))?;
        Ok(Self {
            recurrence,
            outputs: c,
            readout: match f.readout {
                qornn_infer::format::ReadoutKind::Last => Readout::Last,
                qornn_infer::format::ReadoutKind::Every => Readout::Every,
            },
            readout_codes: readout_codes.clone(),
            readout_weight: match &readout_codes {
                Some(r) => r.dequantized_f32(),
                None => (0..c * n).map(|k| f.readout_weight(k / n, k % n)).collect(),
            },
            readout_bias: (0..c).map(|i| f.readout_bias(i)).collect(),
            task: f.task,
            float_loss: f.float_loss,
            float_accuracy: f.float_accuracy,
        })
    }
}

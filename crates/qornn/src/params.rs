//! Named parameter tensors: what each is (the recurrent matrix of an ORNN, a weight matrix
//! that `--bits` quantizes, or a float tensor), its shape and its values.

/// How a tensor is treated by the quantizer and the optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The ORNN's recurrent matrix (`A` for Björck, `W` for projUNN): quantized after
    /// orthogonalisation, with its own learning rate.
    Recurrent,
    /// A weight matrix, quantized to k bits in the forward pass (straight-through).
    Quantized,
    /// Kept in float: biases, scalars, the read-out, the embedding.
    Float,
    /// A learned quantizer step (LSQ) of the tensor it is named after, with its own
    /// learning rate; stored as the quantized tensor's step, not counted again.
    Step,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The name in checkpoints (PyTorch's or EdgeML's where they exist).
    pub name: &'static str,
    pub rows: usize,
    pub cols: usize,
    pub kind: Kind,
    /// `rows x cols`, row-major.
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(name: &'static str, rows: usize, cols: usize, kind: Kind) -> Self {
        Self {
            name,
            rows,
            cols,
            kind,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Zeroed buffers shaped like `tensors` (gradients, moments).
pub fn zeros_like(tensors: &[Tensor]) -> Vec<Vec<f32>> {
    tensors.iter().map(|t| vec![0.0; t.len()]).collect()
}

/// Storage of one tensor in bits: `k` bits per entry plus one 32-bit step per tensor (or
/// per row) when quantized, 32 bits per entry otherwise.
pub fn stored_bits(t: &Tensor, bits: Option<u32>, per_row: bool) -> u64 {
    match (t.kind, bits) {
        (Kind::Step, _) => 0,
        (Kind::Recurrent | Kind::Quantized, Some(k)) => {
            let steps = if per_row { t.rows } else { 1 };
            t.len() as u64 * k as u64 + 32 * steps as u64
        }
        _ => 32 * t.len() as u64,
    }
}

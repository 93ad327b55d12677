//! How the ORNN's recurrent matrix `W` comes from its trained parameter `weight_hh`, one
//! file per parametrisation behind [`RecurrentParametrisation`]:
//! - `bjorck.rs`: a free `A`, spectrally normalised, then Björck iterations;
//! - `projunn.rs`: `W` itself, kept orthogonal by a retraction of each optimiser step;
//! - `hadamard.rs`: `diag(sign(v)) (I ⊗ H_m) / sqrt(m)`, exactly orthogonal (HadamRNN);
//! - `rotations.rs`: `⊕ R(θ_k)`, 2 x 2 rotations with integer codes, exactly orthogonal,
//!   and `⊕ r_k R(θ_k)` with a learned radius `r_k < 1` (the LRU's diagonal recurrence).
//!
//! Adding one: a file with a type implementing the trait and its `--model` entries
//! ([`crate::registry::ModelEntry`], e.g. `ModelEntry::elman("qornn-x", Some(build))`), and
//! its line in the `register!` below.

use crate::cells::recurrence::Recurrence;
use crate::init::Init;
use crate::params::Tensor;
use crate::quant::QuantizedTensor;
use crate::registry::register;
use faer::Par;
use rand::RngCore;

register! {
    bjorck: QORNN_BJORCK, ORNN_BJORCK;
    projunn: QORNN_PROJUNN_D, QORNN_PROJUNN_T, ORNN_PROJUNN_D, ORNN_PROJUNN_T;
    hadamard: HADAMRNN, BLOCK_HADAMRNN;
    rotations: QORNN_ROTATIONS, LRU;
}

/// What an optimiser step needs besides the parameter and its step.
#[derive(Clone, Copy, Debug)]
pub struct StepContext {
    /// The run's seed and the step being taken (projUNN's sketch is drawn from them).
    pub seed: u64,
    pub step: u64,
    /// projUNN: the rank of the approximated step and the tolerance of its retraction.
    pub rank: usize,
    pub tolerance: f64,
}

/// The map from the parameter `weight_hh` to the orthogonal `W` the ORNN uses (before
/// quantization), its backward pass, and what happens to the parameter after an optimiser
/// step. Holds its own buffers and state (the power iteration's vector).
pub trait RecurrentParametrisation: Send + Sync {
    /// The parameter, zero: `weight_hh`, `(n, n)` or `(1, n)`, of `Kind::Recurrent`.
    fn tensor(&self) -> Tensor;

    /// Its initial value (`init` is the model's recurrent initialisation).
    fn init(&self, param: &mut Tensor, init: Init, rng: &mut dyn RngCore);

    /// `W` from the parameter into `w: (n, n)`. In training the parametrisation's own state
    /// (a power iteration) advances; in evaluation it stays.
    fn forward(&mut self, param: &[f32], training: bool, w: &mut [f32], par: Par);

    /// How the cell applies `q(W)`: a dense product unless the parametrisation has a faster
    /// exact form.
    fn recurrence<'a>(&'a self, q_w: &'a [f32]) -> Recurrence<'a, f32> {
        Recurrence::Dense(q_w)
    }

    /// Whether `W` is exactly representable in integers, so that it needs no quantizer
    /// (Hadamard matrices); then `exact_codes` gives its codes.
    fn is_exact(&self) -> bool {
        false
    }

    /// An exact `W`'s codes that differ between two values of the parameter (Hadamard: the
    /// signs; rotations: the blocks' lattice directions); `None` where `W` has no codes of its
    /// own.
    fn code_changes(&self, _before: &[f32], _after: &[f32]) -> Option<usize> {
        None
    }

    /// The block size `m` of a Hadamard recurrence (stored with its signs).
    fn hadamard_block(&self) -> Option<usize> {
        None
    }

    /// Whether `W` is 2 x 2 rotation blocks `[[a, -b], [b, a]]` on its diagonal, one step
    /// per block (stored as the pairs `(a, b)`).
    fn is_block_rotations(&self) -> bool {
        false
    }

    /// `W`'s exact integer codes (see `is_exact`), for `bits`-bit models.
    fn exact_codes(&self, _param: &[f32], _bits: u32) -> Option<QuantizedTensor<f32>> {
        None
    }

    /// Adds `dL/dparam` into `grad` from the cell's gradient of what it applied
    /// (`recurrence`): `dL/dq(W)` for a dense matrix, taken straight through the quantizer.
    fn backward(&mut self, param: &[f32], grad_applied: &[f32], grad: &mut [f32], par: Par);

    /// Applies an optimiser step `delta` to the parameter: added, unless the
    /// parametrisation retracts or clamps it.
    fn apply_step(&self, param: &mut [f32], delta: &[f32], _context: &StepContext) {
        param.iter_mut().zip(delta).for_each(|(p, d)| *p += d);
    }

    /// Bits to store the parameter's `W` at `bits` bits per quantized entry.
    fn stored_bits(&self, param: &Tensor, bits: Option<u32>, per_row: bool) -> u64 {
        crate::params::stored_bits(param, bits, per_row)
    }

    /// State kept in checkpoints besides the parameter (name and length), if any.
    fn state_layout(&self) -> Option<(&'static str, usize)> {
        None
    }

    /// That state's current value.
    fn state(&self) -> Option<Vec<f32>> {
        None
    }

    /// Restores the state from a checkpoint (`None`: recomputed from the parameter).
    fn restore(&mut self, _param: &[f32], _state: Option<Vec<f32>>) {}
}
